//! Outbox rows the broker refuses for good (too large, a topic that does not exist) are moved
//! aside with their error and the relay goes on with the others; a topic that is merely late is
//! waited for; and recovery trusts only `outbox-id` headers written from its own database.

mod common;

use std::time::Duration;

use common::*;
use saga_events::Service;
use saga_messaging::outbox::{self, OutboxRecord};
use saga_messaging::{Headers, Outbox, OutboxRelay, RelaySettings, headers};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

fn relay(iso: &Isolated, missing_topic_grace: Duration) -> anyhow::Result<OutboxRelay> {
    Ok(OutboxRelay::new(
        iso.pool.clone(),
        &iso.kafka,
        RelaySettings {
            lock_key: iso.lock_key,
            missing_topic_grace,
            ..RelaySettings::default()
        },
    )?)
}

/// A record of `size` bytes keyed by the order called `name`, to `topic`.
fn raw(topic: &str, name: &str, size: usize) -> OutboxRecord {
    let id = uuid::Uuid::new_v4();
    let mut record_headers = Headers::new();
    record_headers.insert(headers::EVENT_ID, id.to_string());
    OutboxRecord {
        id,
        event_type: "OrderConfirmed".into(),
        topic: topic.to_owned(),
        key: Some(order(name).into_bytes()),
        payload: vec![7; size],
        headers: record_headers,
    }
}

/// Writes `records` in one transaction, as a service would.
async fn write(iso: &Isolated, records: &[OutboxRecord]) -> anyhow::Result<()> {
    let outbox = Outbox::new(iso.codec.clone());
    let mut tx = iso.pool.begin().await?;
    let written = outbox.write(&mut tx, records, &[]).await?;
    outbox.commit(tx, written).await?;
    Ok(())
}

async fn refused(iso: &Isolated) -> anyhow::Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT topic, error FROM outbox_refused ORDER BY id")
            .fetch_all(&iso.pool)
            .await?,
    )
}

/// The event ids on `topic`.
async fn event_ids_on(iso: &Isolated, topic: &str) -> anyhow::Result<Vec<String>> {
    Ok(iso
        .records(topic)
        .await?
        .iter()
        .filter_map(|r| r.headers.get(headers::EVENT_ID).map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn rows_refused_for_good_are_moved_aside_and_the_others_go_out() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let events = iso.topics.events(Service::Order);
    let nowhere = format!("{}nowhere", iso.topics.prefix());
    let before = raw(&events, "refused-a", 100);
    let too_large = raw(&events, "refused-b", 3 * 1024 * 1024);
    let lost_topic = raw(&nowhere, "refused-c", 100);
    let after = raw(&events, "refused-d", 100);
    write(
        &iso,
        &[
            before.clone(),
            too_large.clone(),
            lost_topic.clone(),
            after.clone(),
        ],
    )
    .await?;

    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay(&iso, Duration::from_secs(1))?.run(shutdown.clone()));
    eventually("the outbox emptied", DEADLINE, || async {
        let left = iso.unpublished().await?;
        let refused = refused(&iso).await?;
        Ok((
            left == 0 && refused.len() == 2,
            format!("{left} left, refused {refused:?}"),
        ))
    })
    .await?;
    assert_eq!(
        event_ids_on(&iso, &events).await?,
        [before.id.to_string(), after.id.to_string()],
        "the rows around the refused ones were published, in order"
    );
    let refused = refused(&iso).await?;
    assert_eq!(refused[0].0, events);
    assert!(refused[0].1.contains("too large"), "{refused:?}");
    assert_eq!(refused[1].0, nowhere);
    assert!(refused[1].1.contains("does not exist"), "{refused:?}");

    // The topic created, the operator sends the row again (what `sagactl outbox resend` runs).
    create_topic(&nowhere).await?;
    let mut conn = iso.pool.acquire().await?;
    let row: i64 = sqlx::query_scalar("SELECT id FROM outbox_refused WHERE topic = $1")
        .bind(&nowhere)
        .fetch_one(&mut *conn)
        .await?;
    assert_eq!(outbox::resend(&mut conn, Some(&[row])).await?, 1);
    drop(conn);
    eventually("the resent row published", DEADLINE, || async {
        let ids = event_ids_on(&iso, &nowhere).await?;
        Ok((ids == [lost_topic.id.to_string()], format!("{ids:?}")))
    })
    .await?;
    assert_eq!(
        self::refused(&iso).await?.len(),
        1,
        "only the too-large row is left aside"
    );
    shutdown.cancel();
    running.await?;
    Ok(())
}

#[tokio::test]
async fn a_topic_created_within_the_grace_gets_its_rows() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let late = format!("{}late", iso.topics.prefix());
    let record = raw(&late, "late-topic", 100);
    write(&iso, std::slice::from_ref(&record)).await?;
    let shutdown = CancellationToken::new();
    let relay = relay(&iso, Duration::from_secs(120))?;
    let running = tokio::spawn(relay.clone().run(shutdown.clone()));
    eventually("the relay active", DEADLINE, || async {
        Ok((
            relay.status() == saga_messaging::RelayStatus::Active,
            format!("{:?}", relay.status()),
        ))
    })
    .await?;
    create_topic(&late).await?;
    eventually("the row published to the late topic", DEADLINE, || async {
        let ids = event_ids_on(&iso, &late).await?;
        Ok((ids == [record.id.to_string()], format!("{ids:?}")))
    })
    .await?;
    assert!(refused(&iso).await?.is_empty(), "nothing refused");
    shutdown.cancel();
    running.await?;
    Ok(())
}

#[tokio::test]
async fn recovery_trusts_no_outbox_id_written_elsewhere() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let events = iso.topics.events(Service::Order);
    let record = raw(&events, "foreign-id", 100);
    write(&iso, std::slice::from_ref(&record)).await?;
    let row: i64 = sqlx::query_scalar("SELECT id FROM outbox")
        .fetch_one(&iso.pool)
        .await?;
    // Records someone else wrote, naming the row's id: bare, and scoped to another database.
    for foreign in [row.to_string(), format!("1234/elsewhere/{row}")] {
        let mut copied = Headers::new();
        copied.insert(headers::OUTBOX_ID, foreign);
        produce_raw(
            &iso,
            &events,
            0,
            &order("foreign-id"),
            b"someone else's",
            &copied,
        )
        .await?;
    }
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay(&iso, Duration::from_secs(60))?.run(shutdown.clone()));
    eventually("the row published", DEADLINE, || async {
        let ids = event_ids_on(&iso, &events).await?;
        Ok((ids.contains(&record.id.to_string()), format!("{ids:?}")))
    })
    .await?;
    // Its row goes with the relay's next round, once the broker acknowledged it.
    eventually("the published row deleted", DEADLINE, || async {
        let left = iso.unpublished().await?;
        Ok((left == 0, format!("{left} unpublished")))
    })
    .await?;
    shutdown.cancel();
    running.await?;
    Ok(())
}
