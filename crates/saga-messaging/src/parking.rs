//! Per-order parking of messages a service could not handle yet (the `parked` table).
//!
//! Common retry-topic designs lose per-key order: a failed message goes to a retry topic while
//! later messages of the same key overtake it. Here, while an order has a message parked at a
//! service (retrying or dead), that service parks the order's later messages behind it and
//! releases them, in order, once the head succeeds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use saga_events::SagaEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::consumer::Delivery;
use crate::error::FailureKind;
use crate::headers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedStatus {
    Retrying,
    Dead,
    Waiting,
}

impl ParkedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ParkedStatus::Retrying => "RETRYING",
            ParkedStatus::Dead => "DEAD",
            ParkedStatus::Waiting => "WAITING",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            ParkedStatus::Retrying,
            ParkedStatus::Dead,
            ParkedStatus::Waiting,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One parked message, as stored.
#[derive(Debug, Clone)]
pub struct Parked {
    pub id: i64,
    pub order_id: String,
    pub event_id: String,
    pub status: ParkedStatus,
    pub source: Delivery,
    pub payload: Vec<u8>,
    pub attempts: i32,
}

#[derive(sqlx::FromRow)]
struct ParkedRow {
    id: i64,
    order_id: String,
    event_id: String,
    status: String,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    source_timestamp: Option<i64>,
    message_key: Option<String>,
    payload: Vec<u8>,
    headers: Json<BTreeMap<String, String>>,
    attempts: i32,
}

impl From<ParkedRow> for Parked {
    fn from(row: ParkedRow) -> Self {
        Self {
            id: row.id,
            order_id: row.order_id,
            event_id: row.event_id,
            status: ParkedStatus::parse(&row.status).unwrap_or(ParkedStatus::Dead),
            source: Delivery {
                topic: row.source_topic,
                partition: row.source_partition,
                offset: row.source_offset,
                timestamp_millis: row.source_timestamp,
                key: row.message_key,
                headers: row.headers.0,
            },
            payload: row.payload,
            attempts: row.attempts,
        }
    }
}

const COLUMNS: &str =
    "id, order_id, event_id, status, source_topic, source_partition, source_offset,
    source_timestamp, message_key, payload, headers, attempts";

/// Serializes the handling of one order's messages within this service's database, across
/// partitions and topics, until the transaction ends.
pub async fn lock_order(conn: &mut PgConnection, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where an arriving message stands for this service, in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Already handled (in the inbox) or already parked: a duplicate.
    Duplicate,
    /// Another message of the order is parked: this one waits behind it.
    BehindParked,
    /// Nothing stands in the way.
    Clear,
}

pub async fn arrival(
    conn: &mut PgConnection,
    event_id: uuid::Uuid,
    order_id: &str,
) -> Result<Arrival, sqlx::Error> {
    let (processed, parked, order_parked): (bool, bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1),
                EXISTS (SELECT 1 FROM parked WHERE event_id = $1::text),
                EXISTS (SELECT 1 FROM parked WHERE order_id = $2)",
    )
    .bind(event_id)
    .bind(order_id)
    .fetch_one(conn)
    .await?;
    Ok(if processed || parked {
        Arrival::Duplicate
    } else if order_parked {
        Arrival::BehindParked
    } else {
        Arrival::Clear
    })
}

/// What a new parked row records.
#[derive(Debug)]
pub struct NewParked<'a> {
    pub order_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub status: ParkedStatus,
    pub source: &'a Delivery,
    pub payload: &'a [u8],
    pub failure: Option<(FailureKind, &'a str)>,
}

impl<'a> NewParked<'a> {
    pub fn of(
        event: &'a SagaEvent,
        source: &'a Delivery,
        payload: &'a [u8],
        status: ParkedStatus,
        failure: Option<(FailureKind, &'a str)>,
    ) -> Self {
        Self {
            order_id: event.order_id(),
            event_id: &event.metadata().event_id,
            event_type: event.event_type().name(),
            status,
            source,
            payload,
            failure,
        }
    }
}

pub async fn insert(conn: &mut PgConnection, parked: NewParked<'_>) -> Result<i64, sqlx::Error> {
    let (attempts, kind, error) = match parked.failure {
        Some((kind, error)) => (1, Some(format!("{kind:?}")), Some(error)),
        None => (0, None, None),
    };
    sqlx::query_scalar(
        "INSERT INTO parked (order_id, event_id, event_type, status, source_topic, source_partition,
                             source_offset, source_timestamp, message_key, payload, headers, attempts,
                             error_kind, error, first_failed_at, last_failed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                 CASE WHEN $12 > 0 THEN now() END, CASE WHEN $12 > 0 THEN now() END)
         RETURNING id",
    )
    .bind(parked.order_id)
    .bind(parked.event_id)
    .bind(parked.event_type)
    .bind(parked.status.as_str())
    .bind(&parked.source.topic)
    .bind(parked.source.partition)
    .bind(parked.source.offset)
    .bind(parked.source.timestamp_millis)
    .bind(parked.source.key.as_deref())
    .bind(parked.payload)
    .bind(Json(&parked.source.headers))
    .bind(attempts)
    .bind(kind)
    .bind(error)
    .fetch_one(conn)
    .await
}

/// The parked row of an event, locked until the transaction ends.
pub async fn lock_by_event(
    conn: &mut PgConnection,
    event_id: &str,
) -> Result<Option<Parked>, sqlx::Error> {
    let row: Option<ParkedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM parked WHERE event_id = $1 FOR UPDATE"
    )))
    .bind(event_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Parked::from))
}

/// The order's oldest waiting message, locked.
pub async fn next_waiting(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<Parked>, sqlx::Error> {
    let row: Option<ParkedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM parked WHERE order_id = $1 AND status = 'WAITING'
         ORDER BY id LIMIT 1 FOR UPDATE"
    )))
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Parked::from))
}

/// Records one more failed attempt; returns the row's failure times for the record's headers.
pub async fn record_failure(
    conn: &mut PgConnection,
    id: i64,
    status: ParkedStatus,
    attempts: i32,
    kind: FailureKind,
    error: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>), sqlx::Error> {
    sqlx::query_as(
        "UPDATE parked SET status = $2, attempts = $3, error_kind = $4, error = $5,
                first_failed_at = coalesce(first_failed_at, now()), last_failed_at = now()
         WHERE id = $1 RETURNING first_failed_at, last_failed_at",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(attempts)
    .bind(format!("{kind:?}"))
    .bind(error)
    .fetch_one(conn)
    .await
}

pub async fn remove(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM parked WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Headers of a retry or dead-letter record: the original headers plus where the message came
/// from, why it failed, how often, and when.
#[allow(clippy::too_many_arguments)]
pub fn failure_headers(
    service: &str,
    source: &Delivery,
    attempts: i32,
    kind: FailureKind,
    error: &str,
    first_failure: DateTime<Utc>,
    last_failure: DateTime<Utc>,
    not_before_millis: Option<i64>,
) -> BTreeMap<String, String> {
    let mut map = source.headers.clone();
    // The original record's outbox id means nothing on another topic.
    map.remove(headers::OUTBOX_ID);
    for stale in [
        headers::REDRIVEN_AT,
        headers::REDRIVEN_FROM,
        headers::REDRIVEN_BY,
        headers::NOT_BEFORE,
    ] {
        map.remove(stale);
    }
    map.insert(headers::SERVICE.into(), service.into());
    map.insert(headers::SOURCE_TOPIC.into(), source.topic.clone());
    map.insert(
        headers::SOURCE_PARTITION.into(),
        source.partition.to_string(),
    );
    map.insert(headers::SOURCE_OFFSET.into(), source.offset.to_string());
    if let Some(timestamp) = source.timestamp_millis {
        map.insert(headers::SOURCE_TIMESTAMP.into(), timestamp.to_string());
    }
    map.insert(headers::ATTEMPTS.into(), attempts.to_string());
    map.insert(headers::ERROR_KIND.into(), format!("{kind:?}"));
    map.insert(headers::ERROR.into(), error.chars().take(2000).collect());
    map.insert(headers::FIRST_FAILURE.into(), first_failure.to_rfc3339());
    map.insert(headers::LAST_FAILURE.into(), last_failure.to_rfc3339());
    if let Some(not_before) = not_before_millis {
        map.insert(headers::NOT_BEFORE.into(), not_before.to_string());
    }
    map
}
