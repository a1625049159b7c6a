//! Per-order parking of messages a service could not handle yet (the `parked` table).
//!
//! Common retry-topic designs lose per-key order: a failed message goes to a retry topic while
//! later messages of the same key overtake it. Here, while an order has a message parked at a
//! service (retrying or dead), that service parks the order's later messages behind it and
//! releases them, in order, once the head succeeds. A message that cannot even be decoded parks
//! its order too when its key names one, so that nothing of that order runs ahead of it.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::delivery::Delivery;
use crate::error::FailureKind;
use crate::headers::{self, Headers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedStatus {
    /// Failed; a record on `<service>.retry` will try it again.
    Retrying,
    /// Gave up; a record on `<service>.dlq` waits for a person.
    Dead,
    /// Never tried: an earlier message of its order is parked.
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
    pub order_id: Uuid,
    pub event_id: Option<Uuid>,
    pub status: ParkedStatus,
    /// The record as it first arrived (payload included).
    pub source: Delivery,
    pub attempts: i32,
}

struct ParkedRow {
    id: i64,
    order_id: String,
    event_id: Option<Uuid>,
    status: String,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    source_timestamp: Option<i64>,
    message_key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<u8>,
    attempts: i32,
}
crate::from_row!(ParkedRow {
    id,
    order_id,
    event_id,
    status,
    source_topic,
    source_partition,
    source_offset,
    source_timestamp,
    message_key,
    payload,
    headers,
    attempts
});

impl ParkedRow {
    fn into_parked(self) -> Result<Parked, sqlx::Error> {
        let corrupt = |what: String| sqlx::Error::Decode(what.into());
        Ok(Parked {
            id: self.id,
            order_id: Uuid::parse_str(&self.order_id)
                .map_err(|e| corrupt(format!("parked row {}: order_id: {e}", self.id)))?,
            event_id: self.event_id,
            status: ParkedStatus::parse(&self.status).ok_or_else(|| {
                corrupt(format!("parked row {}: status {}", self.id, self.status))
            })?,
            source: Delivery {
                topic: self.source_topic,
                partition: self.source_partition,
                offset: self.source_offset,
                timestamp_millis: self.source_timestamp,
                key: self.message_key,
                headers: Headers::decode(&self.headers)
                    .map_err(|e| corrupt(format!("parked row {}: headers: {e}", self.id)))?,
                payload: self.payload,
            },
            attempts: self.attempts,
        })
    }
}

const COLUMNS: &str =
    "id, order_id, event_id, status, source_topic, source_partition, source_offset,
    source_timestamp, message_key, payload, headers, attempts";

/// Begins a transaction that holds the advisory locks of `orders` (see [`lock_orders`]), in one
/// round trip: the `BEGIN` statement takes them.
pub async fn begin_locked(
    pool: &PgPool,
    orders: &[Uuid],
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let keys = lock_keys(orders);
    if keys.is_empty() {
        return pool.begin().await;
    }
    // The keys are integers computed here: nothing a record carries reaches the statement.
    let list = keys
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    pool.begin_with(AssertSqlSafe(format!(
        "BEGIN; SELECT pg_advisory_xact_lock(k)
                FROM unnest(ARRAY[{list}]::bigint[]) WITH ORDINALITY AS l(k, n) ORDER BY l.n"
    )))
    .await
}

fn lock_keys(orders: &[Uuid]) -> Vec<i64> {
    let mut keys: Vec<i64> = orders.iter().map(|o| lock_key(*o)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Serializes the handling of the given orders' messages within this service's database, across
/// partitions and topics, until the transaction ends. The locks are taken in one fixed order, so
/// that two transactions locking overlapping sets of orders queue instead of deadlocking.
pub async fn lock_orders(conn: &mut PgConnection, orders: &[Uuid]) -> Result<(), sqlx::Error> {
    let keys = lock_keys(orders);
    match keys.as_slice() {
        [] => Ok(()),
        [key] => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(key)
                .execute(conn)
                .await?;
            Ok(())
        }
        keys => {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS l(k, n)
                 ORDER BY l.n",
            )
            .bind(keys)
            .execute(conn)
            .await?;
            Ok(())
        }
    }
}

/// Takes the advisory lock of `order` until the transaction ends, unless another transaction
/// holds it: false then, without waiting (a caller that locks rows first must not wait for a
/// lock that is taken before rows elsewhere).
pub async fn try_lock_order(conn: &mut PgConnection, order: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lock_key(order))
        .fetch_one(conn)
        .await
}

/// The advisory lock of an order: its first eight bytes (UUIDv7 ids start with a timestamp, the
/// random part follows; collisions only make two orders wait for each other).
fn lock_key(order: Uuid) -> i64 {
    let bytes = order.as_bytes();
    let mut key = [0u8; 8];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = bytes[i] ^ bytes[i + 8];
    }
    i64::from_be_bytes(key)
}

/// What a new parked row records.
#[derive(Debug)]
pub struct NewParked<'a> {
    pub order_id: Uuid,
    pub event_id: Option<Uuid>,
    pub event_type: Option<&'a str>,
    pub status: ParkedStatus,
    pub source: &'a Delivery,
    pub failure: Option<(FailureKind, &'a str)>,
}

pub async fn insert(conn: &mut PgConnection, parked: NewParked<'_>) -> Result<i64, sqlx::Error> {
    let (attempts, kind, error) = match parked.failure {
        Some((kind, error)) => (1, Some(kind.as_str()), Some(error)),
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
    .bind(parked.order_id.to_string())
    .bind(parked.event_id)
    .bind(parked.event_type)
    .bind(parked.status.as_str())
    .bind(&parked.source.topic)
    .bind(parked.source.partition)
    .bind(parked.source.offset)
    .bind(parked.source.timestamp_millis)
    .bind(parked.source.key.as_deref())
    .bind(&parked.source.payload)
    .bind(parked.source.headers.encode())
    .bind(attempts)
    .bind(kind)
    .bind(error.map(printable))
    .fetch_one(conn)
    .await
}

/// Like [`insert`], unless the same record (topic, partition, offset) is parked already: then
/// None.
pub async fn insert_unless_parked(
    conn: &mut PgConnection,
    parked: NewParked<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM parked
                        WHERE source_topic = $1 AND source_partition = $2 AND source_offset = $3)",
    )
    .bind(&parked.source.topic)
    .bind(parked.source.partition)
    .bind(parked.source.offset)
    .fetch_one(&mut *conn)
    .await?;
    if exists {
        return Ok(None);
    }
    insert(conn, parked).await.map(Some)
}

/// The order of a parked row, without locking it: what a retry needs to know which order to
/// lock first.
pub async fn order_of(conn: &mut PgConnection, id: i64) -> Result<Option<Uuid>, sqlx::Error> {
    let order: Option<String> = sqlx::query_scalar("SELECT order_id FROM parked WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(order.and_then(|o| Uuid::parse_str(&o).ok()))
}

/// The parked row of an event, without locking it (retry records written before rows were
/// named in their headers).
pub async fn id_of_event(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM parked WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(conn)
        .await
}

/// A parked row, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: i64) -> Result<Option<Parked>, sqlx::Error> {
    let row: Option<ParkedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM parked WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(ParkedRow::into_parked).transpose()
}

/// Whether the order has a head: a message parked RETRYING or DEAD, which its waiting messages
/// stay behind.
pub async fn has_head(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM parked
                        WHERE order_id = $1 AND status IN ('RETRYING', 'DEAD'))",
    )
    .bind(order_id.to_string())
    .fetch_one(conn)
    .await
}

/// Which of `orders` have a message parked here, in any state: a message that reached this
/// service and is not settled yet.
pub async fn orders_with_parked(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<String> = orders.iter().map(Uuid::to_string).collect();
    let parked: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT order_id FROM parked WHERE order_id = ANY($1)")
            .bind(&ids)
            .fetch_all(conn)
            .await?;
    Ok(parked
        .iter()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect())
}

/// The order's oldest waiting message, locked.
pub async fn next_waiting(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Parked>, sqlx::Error> {
    let row: Option<ParkedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM parked WHERE order_id = $1 AND status = 'WAITING'
         ORDER BY id LIMIT 1 FOR UPDATE"
    )))
    .bind(order_id.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(ParkedRow::into_parked).transpose()
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
    .bind(kind.as_str())
    .bind(printable(error))
    .fetch_one(conn)
    .await
}

/// Gives a parked row up without another attempt (its retry record could not be handled).
pub async fn mark_dead(conn: &mut PgConnection, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE parked SET status = 'DEAD', error = $2, last_failed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(printable(error))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM parked WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Error texts quote what arrived, and what arrived may hold NUL: Postgres refuses it in text.
fn printable(text: &str) -> String {
    text.replace('\0', "\\0")
}

/// What a retry or dead-letter record says about the message and its failure.
#[derive(Debug)]
pub struct Failure<'a> {
    pub service: &'a str,
    pub source: &'a Delivery,
    pub parked_id: Option<i64>,
    pub attempts: i32,
    pub kind: FailureKind,
    pub error: &'a str,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub not_before_millis: Option<i64>,
}

impl Failure<'_> {
    /// The original headers plus where the message came from, why it failed, how often, and
    /// when.
    pub fn headers(&self) -> Headers {
        let mut map = self.source.headers.clone();
        // The original record's outbox id means nothing on another topic, and stale provenance
        // of an earlier redrive would mislead.
        for stale in [
            headers::OUTBOX_ID,
            headers::REDRIVEN_AT,
            headers::REDRIVEN_FROM,
            headers::REDRIVEN_BY,
            headers::SKIPPED_BY,
            headers::NOT_BEFORE,
            headers::PARKED_ID,
        ] {
            map.remove(stale);
        }
        map.insert(headers::SERVICE, self.service);
        map.insert(headers::SOURCE_TOPIC, self.source.topic.as_str());
        map.insert(headers::SOURCE_PARTITION, self.source.partition.to_string());
        map.insert(headers::SOURCE_OFFSET, self.source.offset.to_string());
        if let Some(timestamp) = self.source.timestamp_millis {
            map.insert(headers::SOURCE_TIMESTAMP, timestamp.to_string());
        }
        if let Some(id) = self.parked_id {
            map.insert(headers::PARKED_ID, id.to_string());
        }
        map.insert(headers::ATTEMPTS, self.attempts.to_string());
        map.insert(headers::ERROR_KIND, self.kind.as_str());
        map.insert(
            headers::ERROR,
            self.error.chars().take(2000).collect::<String>(),
        );
        map.insert(headers::FIRST_FAILURE, self.first.to_rfc3339());
        map.insert(headers::LAST_FAILURE, self.last.to_rfc3339());
        if let Some(not_before) = self.not_before_millis {
            map.insert(headers::NOT_BEFORE, not_before.to_string());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_for_orders_made_in_the_same_millisecond() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_ne!(lock_key(a), lock_key(b));
        assert_eq!(lock_key(a), lock_key(a));
    }

    #[test]
    fn failure_headers_name_the_source_and_drop_stale_provenance() {
        let mut original = Headers::new();
        original.insert(headers::OUTBOX_ID, "42");
        original.insert(headers::REDRIVEN_BY, "ops");
        original.insert(headers::EVENT_ID, "e-1");
        let source = Delivery {
            topic: "payment.events".into(),
            partition: 2,
            offset: 7,
            timestamp_millis: Some(1),
            key: Some(b"k".to_vec()),
            headers: original,
            payload: vec![1],
        };
        let now = Utc::now();
        let headers = Failure {
            service: "inventory",
            source: &source,
            parked_id: Some(9),
            attempts: 2,
            kind: FailureKind::Permanent,
            error: "boom",
            first: now,
            last: now,
            not_before_millis: Some(5),
        }
        .headers();
        assert_eq!(headers.get(headers::OUTBOX_ID), None);
        assert_eq!(headers.get(headers::REDRIVEN_BY), None);
        assert_eq!(headers.get(headers::EVENT_ID), Some("e-1"));
        assert_eq!(headers.get(headers::SOURCE_TOPIC), Some("payment.events"));
        assert_eq!(headers.get(headers::PARKED_ID), Some("9"));
        assert_eq!(headers.get(headers::NOT_BEFORE), Some("5"));
    }
}
