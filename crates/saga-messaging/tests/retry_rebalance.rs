//! A retry partition that moves to another member while its lane waits for a record's not-before
//! time: the old owner must neither handle the records behind the one it waits on nor commit
//! past it. Otherwise the new owner starts after a retry that nobody handled, its parked row stays
//! RETRYING forever, and every later message of that order waits behind it.
//!
//! The layout is the ordinary one: an attempt-2 retry (due late) sits ahead of an attempt-1 retry
//! (due early) on one partition. The first member consumes the event topic and the retry topic;
//! the second consumes only the retry topic, so balancing the group can only move the retry
//! partition, and it does.

mod common;

use std::time::Duration;

use common::*;
use saga_events::{SagaEvent, Service};
use saga_messaging::inspect::reader::committed_offsets;
use saga_messaging::parking::{self, NewParked, ParkedStatus};
use saga_messaging::{
    ConsumerSettings, ConsumerSetup, Delivery, EventConsumer, FailureKind, Headers, Health, Outbox,
    headers,
};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(90);
/// How long after the start the late retry is due: the second member joins well before that.
const LATE: Duration = Duration::from_secs(20);

fn member(iso: &Isolated, subscriptions: Vec<String>, health: &Health) -> EventConsumer {
    EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: format!("{}retry-rebalance", iso.topics.prefix()),
            subscriptions,
            pool: iso.pool.clone(),
            outbox: Outbox::new(iso.codec.clone()),
            kafka: iso.kafka.clone(),
            settings: ConsumerSettings::default(),
            health: health.clone(),
        },
        Recorder::default(),
    )
}

/// Parks `event` as RETRYING after `attempts` failures and writes its retry record, due at
/// `due_millis`, to partition 0 of the retry topic.
async fn park_with_retry(
    iso: &Isolated,
    event: &SagaEvent,
    attempts: i32,
    due_millis: i64,
) -> anyhow::Result<i64> {
    let encoded = iso.codec.encode(event).await?;
    let mut event_headers = Headers::new();
    event_headers.insert(headers::EVENT_TYPE, encoded.event_type.name());
    event_headers.insert(headers::EVENT_ID, encoded.event_id.as_str());
    let source = Delivery {
        topic: iso.topics.events(Service::Order),
        partition: 0,
        offset: attempts.into(),
        timestamp_millis: None,
        key: Some(encoded.key.clone().into_bytes()),
        headers: event_headers.clone(),
        payload: encoded.payload.clone(),
    };
    let mut conn = iso.pool.acquire().await?;
    let id = parking::insert(
        &mut conn,
        NewParked {
            order_id: uuid::Uuid::parse_str(&encoded.key)?,
            event_id: Some(uuid::Uuid::parse_str(&encoded.event_id)?),
            event_type: Some(encoded.event_type.name()),
            status: ParkedStatus::Retrying,
            source: &source,
            failure: Some((FailureKind::Permanent, "failed on purpose")),
        },
    )
    .await?;
    sqlx::query("UPDATE parked SET attempts = $2 WHERE id = $1")
        .bind(id)
        .bind(attempts)
        .execute(&mut *conn)
        .await?;
    let now = chrono::Utc::now();
    let record_headers = parking::Failure {
        service: Service::Order.name(),
        source: &source,
        parked_id: Some(id),
        attempts,
        kind: FailureKind::Permanent,
        error: "failed on purpose",
        first: now,
        last: now,
        not_before_millis: Some(due_millis),
    }
    .headers();
    produce_raw(
        iso,
        &iso.topics.retry(Service::Order),
        0,
        &encoded.key,
        &encoded.payload,
        &record_headers,
    )
    .await?;
    Ok(id)
}

#[tokio::test]
async fn a_retry_partition_moved_mid_wait_is_not_committed_past_its_unhandled_record()
-> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let late_due = now + i64::try_from(LATE.as_millis())?;
    // r1: an attempt-2 retry, due late; r2 behind it: an attempt-1 retry of another order, due now.
    let r1 = park_with_retry(&iso, &event("late-retry"), 2, late_due).await?;
    let r2 = park_with_retry(&iso, &event("early-retry"), 1, now).await?;

    let shutdown = CancellationToken::new();
    let first_health = Health::new();
    let first = tokio::spawn(
        member(&iso, vec![iso.topics.events(Service::Order)], &first_health).run(shutdown.clone()),
    );
    eventually("the first member fetching", DEADLINE, || async {
        Ok((
            first_health.problems().is_empty(),
            format!("{:?}", first_health.problems()),
        ))
    })
    .await?;
    // The first member now waits for r1 to fall due; the second joins meanwhile and takes the
    // retry partition.
    let second_health = Health::new();
    let second = tokio::spawn(member(&iso, Vec::new(), &second_health).run(shutdown.clone()));

    let group = format!("{}retry-rebalance", iso.topics.prefix());
    let retry_topic = iso.topics.retry(Service::Order);
    let kafka = iso.kafka.clone();
    let committed_past_r1_while_parked = std::cell::Cell::new(None);
    eventually("both retries handled", DEADLINE, || async {
        // The offset first, then the rows: a handled record's row is gone for good, so r1 still
        // parked after the offset was read means the offset passed it while it waited. Read the
        // other way round, r1 handled (its row deleted, then its offset committed) between the
        // two reads looked like that too: fetching the offset takes a new client, and so long.
        let (kafka, group, topic) = (kafka.clone(), group.clone(), retry_topic.clone());
        let committed =
            tokio::task::spawn_blocking(move || committed_offsets(&kafka, &group, &topic, &[0]))
                .await??;
        let offset = committed.first().and_then(|(_, o)| *o).unwrap_or(0);
        let parked: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM parked ORDER BY id")
                .fetch_all(&iso.pool)
                .await?;
        if offset > 0 && parked.iter().any(|(id, _)| *id == r1) {
            committed_past_r1_while_parked
                .set(committed_past_r1_while_parked.get().or(Some(offset)));
        }
        Ok((
            parked.is_empty() && offset == 2,
            format!("parked rows {parked:?} (r1 = {r1}, r2 = {r2}), committed offset {offset}"),
        ))
    })
    .await?;
    assert_eq!(
        committed_past_r1_while_parked.get(),
        None,
        "the retry partition was committed past r1 while r1 was still parked"
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&iso.pool)
        .await?;
    assert_eq!(applied, 2, "both parked events applied once each");
    shutdown.cancel();
    first.await??;
    second.await??;
    Ok(())
}
