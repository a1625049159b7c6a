//! `sagactl dlq redrive` by `--id` and `--all`, run as an operator would against a consumer of
//! topics of its own: a dry run produces nothing, a redrive applies exactly what it names, and
//! every redriven record carries where it came from, who sent it and when.

use std::process::Command;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_events::{EventCodec, EventMetadata, OrderConfirmed, SagaEvent, Service, TopicNames};
use saga_messaging::inspect::reader::PartitionReader;
use saga_messaging::{
    ConsumerSettings, ConsumerSetup, EventConsumer, Health, KafkaSettings, Outbox, OutboxRelay,
    RelaySettings, headers,
};
use saga_testkit::{Recorder, isolated};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs this package's `sagactl` on the test's topics; returns its JSON output.
fn sagactl(prefix: &str, args: &[&str]) -> anyhow::Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args(["--topic-prefix", prefix, "--json"])
        .args(args)
        .env("USER", "redrive-test")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "sagactl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (done, seen) = check().await?;
        if done {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}; last saw {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn applied(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT order_id FROM effects ORDER BY order_id")
            .fetch_all(pool)
            .await?,
    )
}

#[tokio::test]
async fn redrive_by_id_and_all_applies_what_it_names_with_its_provenance() -> anyhow::Result<()> {
    let id = &Uuid::new_v4().simple().to_string()[..12];
    let pool = isolated::schema_pool(&format!("redrive_{id}"), 8).await?;
    saga_messaging::migrate(&pool, &mut saga_testkit::effects_migrator()).await?;
    let prefix = format!("at-{id}.");
    let topics = TopicNames::new(prefix.clone());
    let kafka = KafkaSettings::new(isolated::bootstrap());
    isolated::create_topics(&topics.all(), 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let codec = EventCodec::new(&isolated::registry_url(), topics.clone())?;

    let (first, second) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let reactions = Recorder::default().fail_order(&first).fail_order(&second);
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(
        pool.clone(),
        &kafka,
        RelaySettings {
            lock_key: i64::from_str_radix(&id[..12], 16)?,
            ..RelaySettings::default()
        },
    )?;
    let outbox = Outbox::waking(codec.clone(), relay.wake());
    let relaying = tokio::spawn(relay.run(shutdown.clone()));
    let consumer = EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: format!("{prefix}order-service"),
            subscriptions: vec![topics.events(Service::Order)],
            pool: pool.clone(),
            outbox,
            kafka: kafka.clone(),
            settings: ConsumerSettings {
                retry_delay: Duration::from_millis(100),
                ..ConsumerSettings::default()
            },
            health: Health::new(),
        },
        reactions.clone(),
    );
    let consuming = tokio::spawn(consumer.run(shutdown.clone()));

    let producer: FutureProducer = kafka.producer_config().create()?;
    let mut event_ids = Vec::new();
    for order_id in [&first, &second] {
        let event: SagaEvent = OrderConfirmed {
            metadata: EventMetadata::first(order_id, "redrive-test"),
            order_id: order_id.clone(),
        }
        .into();
        event_ids.push(event.metadata().event_id.clone());
        let encoded = codec.encode(&event).await?;
        // As a relay writes it: the type and id in headers.
        let mut record_headers = saga_messaging::Headers::new();
        record_headers.insert(headers::EVENT_TYPE, encoded.event_type.name());
        record_headers.insert(headers::EVENT_ID, encoded.event_id.as_str());
        producer
            .send(
                FutureRecord::to(&encoded.topic)
                    .key(&encoded.key)
                    .payload(&encoded.payload)
                    .headers(record_headers.to_kafka()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let letters = || -> anyhow::Result<Vec<Value>> {
        Ok(sagactl(&prefix, &["dlq", "list", "order"])?
            .as_array()
            .cloned()
            .unwrap_or_default())
    };
    wait_until("both events dead-lettered", || async {
        let letters = letters()?;
        Ok((letters.len() == 2, format!("{letters:?}")))
    })
    .await?;
    reactions.lift();
    let letters = letters()?;
    let letter_of = |order: &str| {
        letters
            .iter()
            .find(|l| l["order_id"] == order)
            .and_then(|l| l["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no dead letter of {order}: {letters:?}"))
    };
    let first_letter = letter_of(&first)?;

    // A dry run produces nothing.
    let retry_topic = topics.retry(Service::Order);
    let reader = PartitionReader::new(&kafka)?;
    let retry_end = reader.watermarks(&retry_topic, 0)?.1;
    let dry = sagactl(
        &prefix,
        &[
            "dlq",
            "redrive",
            "order",
            "--id",
            &first_letter,
            "--dry-run",
        ],
    )?;
    assert_eq!(dry["redriven"].as_array().map(Vec::len), Some(1), "{dry}");
    assert_eq!(
        reader.watermarks(&retry_topic, 0)?.1,
        retry_end,
        "a dry run produced"
    );
    assert!(applied(&pool).await?.is_empty());

    // --id: exactly that one.
    sagactl(&prefix, &["dlq", "redrive", "order", "--id", &first_letter])?;
    wait_until("the first order's event applied", || async {
        let applied = applied(&pool).await?;
        Ok((applied == [first.clone()], format!("{applied:?}")))
    })
    .await?;

    // --all: the other one too, and the first is not applied again.
    let all = sagactl(&prefix, &["dlq", "redrive", "order", "--all"])?;
    assert_eq!(all["redriven"].as_array().map(Vec::len), Some(2), "{all}");
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    wait_until("the second order's event applied", || async {
        let applied = applied(&pool).await?;
        Ok((applied == both, format!("{applied:?}")))
    })
    .await?;

    // Provenance: every redriven record says where it came from, who sent it and when, and
    // keeps its event id.
    let redriven: Vec<_> = reader
        .read_partition(&retry_topic, 0)?
        .into_iter()
        .filter(|r| r.headers.contains_key(headers::REDRIVEN_AT))
        .collect();
    assert_eq!(redriven.len(), 3, "one --id and two --all redrives");
    for record in &redriven {
        let from = record.headers.get(headers::REDRIVEN_FROM).unwrap_or("");
        assert!(
            from.starts_with(&format!("{}[0]@", topics.dlq(Service::Order))),
            "{from}"
        );
        assert_eq!(
            record.headers.get(headers::REDRIVEN_BY),
            Some("redrive-test")
        );
        let at = record.headers.get(headers::REDRIVEN_AT).unwrap_or("");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        assert!(
            event_ids
                .iter()
                .any(|id| record.headers.get(headers::EVENT_ID) == Some(id)),
            "{:?}",
            record.headers
        );
        assert_eq!(record.headers.get(headers::OUTBOX_ID), None);
    }
    shutdown.cancel();
    consuming.await??;
    relaying.await?;
    Ok(())
}
