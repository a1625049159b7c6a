//! One head per order: a poison record keyed by an order that already has a message parked
//! (RETRYING) waits behind it instead of becoming a second head, and when the first head
//! succeeds the order's messages are released only up to the next head, never past it.

mod common;

use std::time::Duration;

use common::*;
use saga_events::Service;
use saga_messaging::{
    ConsumerSettings, ConsumerSetup, EventConsumer, Headers, Health, Outbox, OutboxRelay,
    RelaySettings,
};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_poison_record_behind_a_retrying_head_waits_and_nothing_passes_it() -> anyhow::Result<()>
{
    let iso = Isolated::new(1).await?;
    let first = event("two-heads");
    let last = event("two-heads");
    let order_id = order("two-heads");

    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(
        iso.pool.clone(),
        &iso.kafka,
        RelaySettings {
            lock_key: iso.lock_key,
            ..RelaySettings::default()
        },
    )?;
    let outbox = Outbox::waking(iso.codec.clone(), relay.wake());
    let relaying = tokio::spawn(relay.run(shutdown.clone()));
    let consumer = EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: format!("{}two-heads", iso.topics.prefix()),
            subscriptions: vec![iso.topics.events(Service::Order)],
            pool: iso.pool.clone(),
            outbox,
            kafka: iso.kafka.clone(),
            // The first retry comes after the poison record and the last event have arrived.
            settings: ConsumerSettings {
                retry_delay: Duration::from_secs(3),
                ..ConsumerSettings::default()
            },
            health: Health::new(),
        },
        Recorder::default().fail_once(&first.metadata().event_id),
    );
    let consuming = tokio::spawn(consumer.run(shutdown.clone()));

    // The first event fails and heads the order; a record of the same order that is not a saga
    // event follows, then the order's last event.
    produce(&iso, &[&first]).await?;
    eventually("the first event parked", DEADLINE, || async {
        let statuses = statuses(&iso, &order_id).await?;
        Ok((statuses == ["RETRYING"], format!("{statuses:?}")))
    })
    .await?;
    produce_raw(
        &iso,
        &iso.topics.events(Service::Order),
        0,
        &order_id,
        b"not an avro record",
        &Headers::new(),
    )
    .await?;
    produce(&iso, &[&last]).await?;

    eventually(
        "the first event applied on retry, the poison record dead-lettered as the new head",
        DEADLINE,
        || async {
            let statuses = statuses(&iso, &order_id).await?;
            let applied = applied(&iso).await?;
            Ok((
                statuses == ["DEAD", "WAITING"] && applied.len() == 1,
                format!("parked {statuses:?}, applied {applied:?}"),
            ))
        },
    )
    .await?;
    let applied = applied(&iso).await?;
    assert_eq!(
        applied,
        [first.metadata().event_id.clone()],
        "only the head ran; the last event waits behind the poison record"
    );
    let dead_letters = iso.records(&iso.topics.dlq(Service::Order)).await?;
    assert_eq!(
        dead_letters.len(),
        1,
        "the poison record's dead letter: {dead_letters:?}"
    );
    assert_eq!(dead_letters[0].payload, b"not an avro record");

    shutdown.cancel();
    consuming.await??;
    relaying.await?;
    Ok(())
}

/// The order's parked rows' statuses, oldest first.
async fn statuses(iso: &Isolated, order_id: &str) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT status FROM parked WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&iso.pool)
            .await?,
    )
}

async fn applied(iso: &Isolated) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT event_id FROM effects ORDER BY event_id")
            .fetch_all(&iso.pool)
            .await?,
    )
}
