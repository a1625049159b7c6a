//! The outbox relay against the real broker and Postgres: order, exactly-once per row across a
//! crash between the broker's ack and the row's deletion, and a single active relay per database.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use saga_events::{SagaEvent, Service};
use saga_messaging::inbox;
use saga_messaging::relay::produce_without_deleting;
use saga_messaging::{Outbox, OutboxRelay, RelaySettings, RelayStatus};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// Writes each event in its own transaction, as services do; returns (order, event id) in the
/// order they were written.
async fn write(iso: &Isolated, events: Vec<SagaEvent>) -> anyhow::Result<Vec<(String, String)>> {
    let outbox = Outbox::new(iso.codec.clone());
    let mut written = Vec::new();
    for event in events {
        let mut tx = iso.pool.begin().await?;
        let appended = outbox.append(&mut tx, std::slice::from_ref(&event)).await?;
        outbox.commit(tx, appended).await?;
        written.push((
            event.order_id().to_owned(),
            event.metadata().event_id.clone(),
        ));
    }
    Ok(written)
}

/// Orders 0..orders, `rounds` events each, interleaved across orders.
fn interleaved(orders: usize, rounds: usize) -> Vec<SagaEvent> {
    (0..rounds)
        .flat_map(|_| (0..orders).map(|o| event(&format!("order-{o}"))))
        .collect()
}

fn relay(iso: &Isolated) -> anyhow::Result<OutboxRelay> {
    Ok(OutboxRelay::new(
        iso.pool.clone(),
        &iso.kafka,
        RelaySettings {
            lock_key: iso.lock_key,
            standby_interval: Duration::from_millis(100),
            ..RelaySettings::default()
        },
    )?)
}

async fn wait_until_all_published(iso: &Isolated) -> anyhow::Result<()> {
    eventually("every outbox row published", DEADLINE, || async {
        let left = iso.unpublished().await?;
        Ok((left == 0, format!("{left} unpublished")))
    })
    .await
}

async fn wait_for_status(relay: &OutboxRelay, status: RelayStatus) -> anyhow::Result<()> {
    eventually(&format!("relay {status:?}"), DEADLINE, || async {
        Ok((relay.status() == status, format!("{:?}", relay.status())))
    })
    .await
}

/// Every written event is on the topic exactly once, and each order's events are in the order
/// they were written.
async fn assert_published_once_in_order(
    iso: &Isolated,
    written: &[(String, String)],
) -> anyhow::Result<()> {
    let records = iso.records(&iso.topics.events(Service::Order)).await?;
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &records {
        let event = iso.codec.decode(&record.payload).await?;
        let id = event.metadata().event_id.clone();
        *copies.entry(id.clone()).or_default() += 1;
        assert_eq!(record.key_str(), Some(event.order_id()));
        per_order
            .entry(event.order_id().to_owned())
            .or_default()
            .push(id);
    }
    let duplicated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "published more than once: {duplicated:?}"
    );
    assert_eq!(records.len(), written.len(), "every row published");
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (order, id) in written {
        expected.entry(order.clone()).or_default().push(id.clone());
    }
    assert_eq!(
        per_order, expected,
        "each order's events in the order they were written"
    );
    Ok(())
}

#[tokio::test]
async fn rows_are_published_in_order_and_once_each() -> anyhow::Result<()> {
    let iso = Isolated::new(3).await?;
    let written = write(&iso, interleaved(5, 10)).await?;
    let relay = relay(&iso)?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(shutdown.clone()));
    wait_until_all_published(&iso).await?;
    shutdown.cancel();
    running.await?;
    assert_published_once_in_order(&iso, &written).await
}

#[tokio::test]
async fn a_relay_restarted_between_ack_and_delete_sends_nothing_twice() -> anyhow::Result<()> {
    let iso = Isolated::new(3).await?;
    let mut written = write(&iso, interleaved(4, 5)).await?;

    // The first relay gets every row acknowledged by the broker, then dies before deleting them.
    let crashed = relay(&iso)?;
    assert_eq!(produce_without_deleting(&crashed).await?, 20);
    drop(crashed);
    assert_eq!(iso.unpublished().await?, 20, "nothing was deleted");

    written.extend(write(&iso, interleaved(4, 3)).await?);
    let successor = relay(&iso)?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(successor.clone().run(shutdown.clone()));
    wait_until_all_published(&iso).await?;
    shutdown.cancel();
    running.await?;
    assert_published_once_in_order(&iso, &written).await
}

/// Outbox ids are taken at insert and become visible at commit, so a row can commit after a row
/// with a higher id was published. A relay that takes over must still send it (once): finding a
/// higher id on the partition says nothing about a lower one.
#[tokio::test]
async fn a_row_committed_after_a_later_row_was_published_is_sent_by_the_next_relay()
-> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let outbox = Outbox::new(iso.codec.clone());
    let slow = event("slow-writer");
    let fast = event("fast-writer");

    // A inserts first, so it has the lower id, but commits last.
    let mut slow_tx = iso.pool.begin().await?;
    let slow_written = outbox
        .append(&mut slow_tx, std::slice::from_ref(&slow))
        .await?;
    let mut written = write(&iso, vec![fast.clone()]).await?;

    // The first relay publishes B, then stops.
    let first = relay(&iso)?;
    let stop = CancellationToken::new();
    let running = tokio::spawn(first.clone().run(stop.clone()));
    wait_until_all_published(&iso).await?;
    stop.cancel();
    running.await?;

    // A commits; the next relay recovers and publishes.
    outbox.commit(slow_tx, slow_written).await?;
    written.insert(
        0,
        (slow.order_id().to_owned(), slow.metadata().event_id.clone()),
    );
    let second = relay(&iso)?;
    let stop = CancellationToken::new();
    let running = tokio::spawn(second.clone().run(stop.clone()));
    wait_until_all_published(&iso).await?;
    stop.cancel();
    running.await?;
    assert_published_once_in_order(&iso, &written).await
}

/// A producer in librdkafka's fatal state can never send again: the relay must replace it
/// rather than retry with it forever.
#[tokio::test]
async fn a_producer_that_failed_for_good_is_replaced() -> anyhow::Result<()> {
    let iso = Isolated::new(2).await?;
    let mut written = write(&iso, interleaved(2, 2)).await?;
    let publisher = relay(&iso)?;
    let stop = CancellationToken::new();
    let running = tokio::spawn(publisher.clone().run(stop.clone()));
    wait_until_all_published(&iso).await?;

    saga_testkit::make_fatal(publisher.producer().client());
    written.extend(write(&iso, interleaved(2, 2)).await?);
    wait_until_all_published(&iso).await?;
    stop.cancel();
    running.await?;
    assert_published_once_in_order(&iso, &written).await
}

#[tokio::test]
async fn a_second_relay_stays_idle_until_the_first_lets_go() -> anyhow::Result<()> {
    let iso = Isolated::new(3).await?;
    let first = relay(&iso)?;
    let first_stop = CancellationToken::new();
    let first_running = tokio::spawn(first.clone().run(first_stop.clone()));
    wait_for_status(&first, RelayStatus::Active).await?;

    let second = relay(&iso)?;
    let second_stop = CancellationToken::new();
    let second_running = tokio::spawn(second.clone().run(second_stop.clone()));
    wait_for_status(&second, RelayStatus::Standby).await?;

    let mut written = write(&iso, interleaved(3, 5)).await?;
    wait_until_all_published(&iso).await?;
    assert_eq!(
        second.status(),
        RelayStatus::Standby,
        "the second relay never took over"
    );

    // The first one stops: the second takes the lock and carries on.
    first_stop.cancel();
    first_running.await?;
    wait_for_status(&second, RelayStatus::Active).await?;
    written.extend(write(&iso, interleaved(3, 3)).await?);
    wait_until_all_published(&iso).await?;
    second_stop.cancel();
    second_running.await?;
    assert_published_once_in_order(&iso, &written).await
}

#[tokio::test]
async fn cleanup_deletes_only_inbox_entries_past_retention_in_small_batches() -> anyhow::Result<()>
{
    let iso = Isolated::new(1).await?;
    // Rows never published, however old, are never cleaned up.
    write(&iso, interleaved(1, 2)).await?;
    sqlx::query("UPDATE outbox SET created_at = now() - interval '30 days'")
        .execute(&iso.pool)
        .await?;
    // Three of four inbox entries are past retention.
    for age_days in [9, 10, 11, 0] {
        sqlx::query(
            "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset, processed_at)
             VALUES ($1, 'OrderConfirmed', 't', 0, 0, now() - make_interval(days => $2))",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(age_days)
        .execute(&iso.pool)
        .await?;
    }

    let retention = inbox::Retention {
        batch: 2,
        ..inbox::Retention::default()
    };
    let mut conn = iso.pool.acquire().await?;
    assert_eq!(
        inbox::clean_up(&mut conn, &retention).await?,
        3,
        "three inbox entries, two per statement"
    );
    assert_eq!(iso.unpublished().await?, 2, "every unpublished row stays");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&iso.pool)
        .await?;
    assert_eq!(inbox, 1);
    assert_eq!(
        inbox::clean_up(&mut conn, &retention).await?,
        0,
        "nothing left to delete"
    );
    Ok(())
}
