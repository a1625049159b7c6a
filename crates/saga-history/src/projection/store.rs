//! What the projector writes, each batch in one transaction: the records it read into the event
//! log, every touched order's views folded again from the log, and the checkpoints that say the
//! records are in. A record read twice (a redelivery, a restart after a kill -9 between the
//! commit and the next poll) is below its checkpoint or already in the log, and the views are a
//! function of the log: nothing changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::OrderHistory;
use chrono::{DateTime, Utc};
use saga_events::{EventType, SagaEvent};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A partition of an event topic.
pub type Partition = (String, i32);

/// One record of an event topic, decoded, as the event log keeps it.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub order_id: Uuid,
    pub event: SagaEvent,
    pub recorded_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    pub written_as: String,
}

/// The next offset to read on every partition read so far.
pub async fn checkpoints(pool: &PgPool) -> Result<HashMap<Partition, i64>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, kafka_partition, next_offset FROM checkpoints")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// The advisory lock every projecting transaction takes shared: whoever holds it exclusively
/// (`sagactl history rebuild`, to compare generations at one checkpoint vector; a test, to hold
/// the projection back) stops the projection at a batch boundary until they let go.
pub const PROJECTION_LOCK: i64 = 0x0068_6973_746f_7279;

/// Begins a projecting transaction, waiting while someone holds the projection back (see
/// [`PROJECTION_LOCK`]), in one round trip: the `BEGIN` statement takes the lock.
pub async fn begin_projecting(
    pool: &PgPool,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with(AssertSqlSafe(format!(
        "BEGIN; SELECT pg_advisory_xact_lock_shared({PROJECTION_LOCK})"
    )))
    .await
}

/// Locks the checkpoints of `partitions` for this transaction (so that two replicas of the
/// projector take turns instead of writing the same rows), and returns them.
pub async fn lock_checkpoints(
    tx: &mut PgConnection,
    partitions: &[Partition],
) -> Result<HashMap<Partition, i64>, sqlx::Error> {
    let (topics, numbers): (Vec<&str>, Vec<i32>) =
        partitions.iter().map(|(t, p)| (t.as_str(), *p)).unzip();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT c.topic, c.kafka_partition, c.next_offset
         FROM checkpoints c
         JOIN unnest($1::text[], $2::int[]) AS p(topic, kafka_partition)
           USING (topic, kafka_partition)
         ORDER BY c.topic, c.kafka_partition
         FOR UPDATE OF c",
    )
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// Appends `rows` to the event log (a row already there stays as it is), and returns every event
/// the log then holds for each order they touch, in one statement: the rows it adds come from
/// the insert, the others from the statement's snapshot, which does not see the insert.
pub async fn append(
    tx: &mut PgConnection,
    rows: &[LogRow],
) -> Result<BTreeMap<Uuid, Vec<SagaEvent>>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut columns = LogColumns::default();
    for row in rows {
        columns.push(row);
    }
    let orders: Vec<Uuid> = rows
        .iter()
        .map(|row| row.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let logged: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "WITH appended AS (
             INSERT INTO event_log (topic, kafka_partition, kafka_offset, record_key, event_id,
                                    event_type, order_id, producer, occurred_at, recorded_at,
                                    trace_id, written_as, event)
             SELECT t, p, o, k, i, et, oid, pr, oc, ra, tr, wa, ev::jsonb
             FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                         $7::uuid[], $8::text[], $9::timestamptz[], $10::timestamptz[],
                         $11::text[], $12::text[], $13::text[])
                  AS r(t, p, o, k, i, et, oid, pr, oc, ra, tr, wa, ev)
             ON CONFLICT DO NOTHING
             RETURNING order_id, event_type, event
         )
         SELECT order_id, event_type, event FROM event_log WHERE order_id = ANY($14)
         UNION ALL
         SELECT order_id, event_type, event FROM appended",
    )
    .bind(&columns.topics)
    .bind(&columns.partitions)
    .bind(&columns.offsets)
    .bind(&columns.keys)
    .bind(&columns.event_ids)
    .bind(&columns.event_types)
    .bind(&columns.order_ids)
    .bind(&columns.producers)
    .bind(&columns.occurred)
    .bind(&columns.recorded)
    .bind(&columns.trace_ids)
    .bind(&columns.written_as)
    .bind(&columns.events)
    .bind(&orders)
    .fetch_all(&mut *tx)
    .await?;
    // By order id: the views are written in one order, so replicas queue on them, not deadlock.
    let mut events: BTreeMap<Uuid, Vec<SagaEvent>> = BTreeMap::new();
    for (order, event_type, json) in logged {
        events
            .entry(order)
            .or_default()
            .push(read_event(&event_type, json)?);
    }
    Ok(events)
}

#[derive(Default)]
struct LogColumns {
    topics: Vec<String>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    keys: Vec<Option<String>>,
    event_ids: Vec<String>,
    event_types: Vec<&'static str>,
    order_ids: Vec<Uuid>,
    producers: Vec<String>,
    occurred: Vec<DateTime<Utc>>,
    recorded: Vec<Option<DateTime<Utc>>>,
    trace_ids: Vec<Option<String>>,
    written_as: Vec<String>,
    events: Vec<String>,
}

impl LogColumns {
    fn push(&mut self, row: &LogRow) {
        let metadata = row.event.metadata();
        self.topics.push(row.topic.clone());
        self.partitions.push(row.partition);
        self.offsets.push(row.offset);
        self.keys.push(row.key.as_deref().map(printable));
        self.event_ids.push(printable(&metadata.event_id));
        self.event_types.push(row.event.event_type().name());
        self.order_ids.push(row.order_id);
        self.producers.push(printable(&metadata.producer));
        self.occurred.push(millis(metadata.occurred_at));
        self.recorded.push(row.recorded_at);
        self.trace_ids.push(row.trace_id.as_deref().map(printable));
        self.written_as.push(printable(&row.written_as));
        self.events
            .push(printable_json(row.event.to_json()).to_string());
    }
}

/// Postgres refuses NUL in text, and in JSON (`\u0000`); an event may carry one in any string.
fn printable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `json` with every NUL in its strings (and keys) replaced, so that `jsonb` takes it.
fn printable_json(json: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Value::String(text) if text.contains('\0') => Value::String(printable(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(printable_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (printable(&key), printable_json(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The earliest time Postgres stores (4713 BC), in epoch milliseconds.
const EARLIEST_MS: i64 = -210_866_803_200_000;

/// Whether Postgres (and chrono) can hold `ms` as a timestamp. An event stamped outside is not
/// one the read side can place in time.
pub fn storable(ms: i64) -> bool {
    ms >= EARLIEST_MS && DateTime::from_timestamp_millis(ms).is_some()
}

/// Epoch milliseconds as a timestamp; a value out of range is clamped to the range's ends (the
/// projector lets no such event in: see [`storable`]).
pub fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms.max(EARLIEST_MS)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An event the log holds, read back into its type: it was written from that type, so failing
/// here means the row was changed by hand.
pub fn read_event(event_type: &str, json: serde_json::Value) -> Result<SagaEvent, sqlx::Error> {
    let kind = EventType::from_name(event_type).ok_or_else(|| {
        sqlx::Error::Decode(
            format!("the event log holds an unknown event type {event_type:?}").into(),
        )
    })?;
    SagaEvent::from_json(kind, json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Writes the views of `orders`, each from the moments of its history (see
/// [`crate::moments`]; an order not placed yet has none), and moves the checkpoints of the
/// partitions a batch read to just past its last records (never back: a replica behind another
/// writes nothing older), in one statement.
pub async fn save(
    tx: &mut PgConnection,
    orders: &[(Uuid, Vec<(i64, OrderHistory)>)],
    next: &HashMap<Partition, i64>,
) -> Result<(), sqlx::Error> {
    let mut current = ViewColumns::default();
    let mut versions = VersionColumns::default();
    for (order, moments) in orders {
        for (at, history) in moments {
            versions.push(*order, *at, history);
        }
        if let Some((_, now)) = moments.last() {
            current.push(*order, now);
        }
    }
    let touched: Vec<Uuid> = orders.iter().map(|(order, _)| *order).collect();
    let mut topics = Vec::with_capacity(next.len());
    let mut partitions = Vec::with_capacity(next.len());
    let mut offsets = Vec::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        topics.push(topic.as_str());
        partitions.push(*partition);
        offsets.push(*offset);
    }
    // Only the versions that changed are written: a new event usually adds a moment at the end
    // and leaves the earlier ones as they were, so rewriting them all (as a delete and insert)
    // cost a write, two index entries and a dead row each, for every order a batch touches.
    // Unchanged ones are left out before the insert: `ON CONFLICT` would lock each (a WAL record)
    // even where its `WHERE` then writes nothing.
    sqlx::query(
        "WITH fresh AS (
             SELECT o, v, s, r, c, a, f, h::jsonb AS h
             FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::bigint[], $8::text[]) AS x(o, v, s, r, c, a, f, h)
         ),
         stale AS (
             DELETE FROM order_versions ov
             WHERE ov.order_id = ANY($9)
               AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.o = ov.order_id
                                                     AND fresh.v = ov.valid_from)
         ),
         versions AS (
             INSERT INTO order_versions (order_id, valid_from, status, cancellation_reason,
                                         currency, authorized_cents, refunded_cents, held)
             SELECT o, v, s, r, c, a, f, h FROM fresh
             WHERE NOT EXISTS (
                 SELECT 1 FROM order_versions ov
                 WHERE ov.order_id = fresh.o AND ov.valid_from = fresh.v
                   AND (ov.status, ov.cancellation_reason, ov.currency, ov.authorized_cents,
                        ov.refunded_cents, ov.held)
                       IS NOT DISTINCT FROM (fresh.s, fresh.r, fresh.c, fresh.a, fresh.f, fresh.h))
             ON CONFLICT (order_id, valid_from) DO UPDATE SET
                 status = excluded.status, cancellation_reason = excluded.cancellation_reason,
                 currency = excluded.currency, authorized_cents = excluded.authorized_cents,
                 refunded_cents = excluded.refunded_cents, held = excluded.held
         ),
         views AS (
             INSERT INTO order_view (order_id, customer_id, status, cancellation_reason,
                                     compensation, currency, total_cents, placed_at,
                                     last_event_at, events)
             SELECT * FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[],
                                  $14::text[], $15::text[], $16::bigint[], $17::timestamptz[],
                                  $18::timestamptz[], $19::int[])
             ON CONFLICT (order_id) DO UPDATE SET
                 customer_id = excluded.customer_id, status = excluded.status,
                 cancellation_reason = excluded.cancellation_reason,
                 compensation = excluded.compensation, currency = excluded.currency,
                 total_cents = excluded.total_cents, placed_at = excluded.placed_at,
                 last_event_at = excluded.last_event_at, events = excluded.events
         )
         INSERT INTO checkpoints (topic, kafka_partition, next_offset)
         SELECT * FROM unnest($20::text[], $21::int[], $22::bigint[])
         ON CONFLICT (topic, kafka_partition)
         DO UPDATE SET next_offset = GREATEST(checkpoints.next_offset, excluded.next_offset)",
    )
    .bind(&versions.order_ids)
    .bind(&versions.valid_from)
    .bind(&versions.statuses)
    .bind(&versions.reasons)
    .bind(&versions.currencies)
    .bind(&versions.authorized)
    .bind(&versions.refunded)
    .bind(&versions.held)
    .bind(&touched)
    .bind(&current.order_ids)
    .bind(&current.customers)
    .bind(&current.statuses)
    .bind(&current.reasons)
    .bind(&current.compensations)
    .bind(&current.currencies)
    .bind(&current.totals)
    .bind(&current.placed_at)
    .bind(&current.last_event_at)
    .bind(&current.events)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Default)]
struct ViewColumns {
    order_ids: Vec<Uuid>,
    customers: Vec<String>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    compensations: Vec<Option<&'static str>>,
    currencies: Vec<String>,
    totals: Vec<i64>,
    placed_at: Vec<DateTime<Utc>>,
    last_event_at: Vec<DateTime<Utc>>,
    events: Vec<i32>,
}

impl ViewColumns {
    fn push(&mut self, order: Uuid, history: &OrderHistory) {
        let (Some(status), Some(placement)) = (history.status(), &history.placement) else {
            return;
        };
        self.order_ids.push(order);
        self.customers.push(printable(&placement.customer_id));
        self.statuses.push(status.as_str());
        self.reasons.push(status.reason().map(|r| r.as_str()));
        self.compensations
            .push(history.compensation().map(|c| c.as_str()));
        self.currencies.push(printable(&placement.currency));
        self.totals.push(placement.total_cents);
        self.placed_at.push(millis(placement.placed_at_ms));
        self.last_event_at.push(millis(history.last_event_at_ms));
        self.events
            .push(i32::try_from(history.events).unwrap_or(i32::MAX));
    }
}

#[derive(Default)]
struct VersionColumns {
    order_ids: Vec<Uuid>,
    valid_from: Vec<DateTime<Utc>>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    currencies: Vec<String>,
    authorized: Vec<i64>,
    refunded: Vec<i64>,
    held: Vec<String>,
}

impl VersionColumns {
    fn push(&mut self, order: Uuid, at: i64, history: &OrderHistory) {
        let (Some(status), Some(placement)) = (history.status(), &history.placement) else {
            return;
        };
        let mut held: BTreeMap<String, i64> = BTreeMap::new();
        for (sku, units) in history.held() {
            *held.entry(printable(sku)).or_default() += i64::from(*units);
        }
        self.order_ids.push(order);
        self.valid_from.push(millis(at));
        self.statuses.push(status.as_str());
        self.reasons.push(status.reason().map(|r| r.as_str()));
        self.currencies.push(printable(&placement.currency));
        self.authorized.push(history.authorized_cents);
        self.refunded.push(history.refunded_cents);
        self.held
            .push(serde_json::to_string(&held).unwrap_or_else(|_| "{}".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_postgres_cannot_hold_are_not_storable() {
        assert!(storable(0) && storable(EARLIEST_MS));
        assert!(!storable(EARLIEST_MS - 1));
        assert!(!storable(i64::MIN) && !storable(i64::MAX));
        assert_eq!(millis(i64::MIN).timestamp_millis(), EARLIEST_MS);
    }

    #[test]
    fn no_nul_reaches_jsonb() {
        let json = serde_json::json!({"a\u{0}": ["x\u{0}y", 1, {"b": "\u{0}"}]});
        let text = printable_json(json).to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert!(text.contains("x\u{FFFD}y"), "{text}");
    }
}
