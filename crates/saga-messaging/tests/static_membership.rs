//! A static group member (`group.instance.id`) that the broker fences, because another consumer
//! joined under its instance id, is not left dead: librdkafka gives that consumer up for good, and
//! the service's consumer replaces it, rejoins and consumes again. The same happens to a member
//! whose session timed out while the broker was away (librdkafka issue #3437), which is how the
//! fault suite first met it.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use saga_events::{SagaEvent, Service};
use saga_messaging::{ConsumerSettings, ConsumerSetup, EventConsumer, Health, Outbox};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(120);
const INSTANCE: &str = "static-member-1";

/// `count` events of distinct orders.
async fn produce_events(iso: &Isolated, count: usize) -> anyhow::Result<()> {
    let events: Vec<SagaEvent> = (0..count).map(|i| event(&format!("static-{i}"))).collect();
    produce(iso, &events.iter().collect::<Vec<_>>()).await
}

async fn applied(iso: &Isolated) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&iso.pool)
        .await?)
}

#[tokio::test]
async fn a_fenced_static_member_is_replaced_and_consumes_again() -> anyhow::Result<()> {
    let iso = Isolated::new(2).await?;
    let group = format!("{}static", iso.topics.prefix());
    let topic = iso.topics.events(Service::Order);
    let health = Health::new();
    let member = EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: group.clone(),
            subscriptions: vec![topic.clone()],
            pool: iso.pool.clone(),
            outbox: Outbox::new(iso.codec.clone()),
            kafka: iso.kafka.clone(),
            settings: ConsumerSettings {
                instance_id: Some(INSTANCE.to_owned()),
                ..ConsumerSettings::default()
            },
            health: health.clone(),
        },
        Recorder::default(),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(member.run(shutdown.clone()));
    produce_events(&iso, 10).await?;
    eventually("the member consuming", DEADLINE, || async {
        let n = applied(&iso).await?;
        Ok((n == 10, format!("{n} applied")))
    })
    .await?;

    // An intruder joins under the same instance id: the broker fences the member's membership.
    let kafka = iso.kafka.clone();
    let (intruder_group, intruder_topic) = (group.clone(), topic.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let intruder: BaseConsumer = kafka
            .consumer_config(&intruder_group, Some(INSTANCE))
            .create()?;
        intruder.subscribe(&[intruder_topic.as_str()])?;
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < until {
            let _ = intruder.poll(Duration::from_millis(100));
        }
        Ok(())
    })
    .await??;

    // The member, fenced meanwhile and replaced, owns the partitions again and consumes.
    produce_events(&iso, 10).await?;
    eventually("the replaced member consuming again", DEADLINE, || async {
        let n = applied(&iso).await?;
        Ok((n == 20, format!("{n} applied")))
    })
    .await?;
    assert!(!running.is_finished(), "the consumer stopped");
    let rebuilds = health.consumer_rebuilds();
    assert!(
        rebuilds.iter().any(|why| why.contains("Fenced")),
        "the member was not fenced and replaced: {rebuilds:?}"
    );
    shutdown.cancel();
    running.await??;
    Ok(())
}
