//! The writing half of the transactional outbox: events are encoded and stored in the same
//! transaction as the state change that produced them, so either both happen or neither does.
//! All of the outbox's SQL is here (the relay reads and deletes through these functions too).
//!
//! Waking the relay: when this process's own relay is the active one, the writer wakes it in
//! memory once its transaction committed ([`Outbox::committed`]). Only when the active relay is
//! elsewhere (another replica) does the transaction send a Postgres `NOTIFY`, which every
//! committing transaction would otherwise pay for with a cluster-wide lock at commit.

use saga_events::{EventCodec, SagaEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::HandlerError;
use crate::headers::{self, Headers};
use crate::trace;

/// Postgres channel the relay listens on; a notification is delivered when the writing
/// transaction commits, never before.
pub const NOTIFY_CHANNEL: &str = "saga_outbox";

/// One record to publish: a new event, or a retry or dead letter carrying someone else's bytes.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// The event's id, or a fresh one for a retry or dead-letter record (the event's own id stays
    /// in its headers).
    pub id: Uuid,
    /// Short event type name, or `unknown` for bytes that are not a saga event.
    pub event_type: String,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Headers,
}

/// How writers wake the relay of their own process.
#[derive(Debug, Default)]
pub struct RelayWake {
    local_relay_active: AtomicBool,
    notify: Notify,
}

impl RelayWake {
    /// Told by the relay whether it holds the lock.
    pub fn set_active(&self, active: bool) {
        self.local_relay_active.store(active, Ordering::Relaxed);
    }

    fn is_active(&self) -> bool {
        self.local_relay_active.load(Ordering::Relaxed)
    }

    /// Completes once a writer committed since the last call (a wake-up is never lost).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

/// Appends events to the outbox table within a caller's transaction.
#[derive(Debug, Clone)]
pub struct Outbox {
    codec: EventCodec,
    wake: Arc<RelayWake>,
}

impl Outbox {
    /// An outbox that wakes a relay through Postgres (`NOTIFY`) only.
    pub fn new(codec: EventCodec) -> Self {
        Self {
            codec,
            wake: Arc::default(),
        }
    }

    /// An outbox that wakes the relay holding `wake` in memory while that relay is active.
    pub fn waking(codec: EventCodec, wake: Arc<RelayWake>) -> Self {
        Self { codec, wake }
    }

    /// Inserts `records` in order with one statement, in the transaction behind `conn`. Call
    /// [`Outbox::committed`] once that transaction committed.
    pub async fn insert(
        &self,
        conn: &mut PgConnection,
        records: &[OutboxRecord],
    ) -> Result<(), sqlx::Error> {
        insert(conn, records, !self.wake.is_active()).await
    }

    /// Wakes this process's relay: a transaction that wrote to the outbox committed.
    pub fn committed(&self) {
        self.wake.notify.notify_one();
    }

    pub fn codec(&self) -> &EventCodec {
        &self.codec
    }

    /// Encodes `events` and inserts them, in order, into the outbox of the transaction behind
    /// `conn`. The current span's trace context goes into each record's headers, so that
    /// consumers continue this trace. Call [`Outbox::committed`] once the transaction committed.
    pub async fn append(
        &self,
        conn: &mut PgConnection,
        events: &[SagaEvent],
    ) -> Result<(), HandlerError> {
        let context = trace::current_context_headers();
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            records.push(self.record(event, &context).await?);
        }
        self.insert(conn, &records).await?;
        Ok(())
    }

    /// An event as an outbox record, with the trace context it was caused under.
    pub async fn record(
        &self,
        event: &SagaEvent,
        trace_context: &Headers,
    ) -> Result<OutboxRecord, HandlerError> {
        let encoded = self.codec.encode(event).await?;
        let id = crate::error::parse_uuid("event_id", &encoded.event_id)?;
        let mut record_headers = trace_context.clone();
        record_headers.insert(headers::EVENT_TYPE, encoded.event_type.name());
        record_headers.insert(headers::EVENT_ID, id.to_string());
        Ok(OutboxRecord {
            id,
            event_type: encoded.event_type.name().to_owned(),
            topic: encoded.topic,
            key: Some(encoded.key.into_bytes()),
            payload: encoded.payload,
            headers: record_headers,
        })
    }
}

/// Inserts `records` in order with one statement; with `notify`, a relay listening elsewhere is
/// woken when the transaction commits.
async fn insert(
    conn: &mut PgConnection,
    records: &[OutboxRecord],
    notify: bool,
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(records.len());
    let mut types = Vec::with_capacity(records.len());
    let mut topics = Vec::with_capacity(records.len());
    let mut keys = Vec::with_capacity(records.len());
    let mut payloads = Vec::with_capacity(records.len());
    let mut header_bytes = Vec::with_capacity(records.len());
    for record in records {
        ids.push(record.id);
        types.push(record.event_type.as_str());
        topics.push(record.topic.as_str());
        keys.push(record.key.as_deref());
        payloads.push(record.payload.as_slice());
        header_bytes.push(record.headers.encode());
    }
    // Ids follow the order of the arrays, which is the order the relay publishes in.
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, topic, message_key, payload, headers)
         SELECT event_id, event_type, topic, message_key, payload, headers
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[])
              WITH ORDINALITY AS r(event_id, event_type, topic, message_key, payload, headers, n)
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&header_bytes)
    .execute(&mut *conn)
    .await?;
    if notify {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// A row not yet published, as the relay reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unpublished {
    pub id: i64,
    pub topic: String,
    pub message_key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<u8>,
}

/// Up to `limit` rows not yet published, oldest first.
pub async fn unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Unpublished>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, topic, message_key, payload, headers FROM outbox ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// For each topic and key with rows not yet published, the creation time of the oldest (epoch
/// ms):
/// where the relay's recovery starts reading each partition back.
pub async fn unpublished_since(
    conn: &mut PgConnection,
) -> Result<Vec<(String, Option<Vec<u8>>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT topic, message_key, (extract(epoch FROM min(created_at)) * 1000)::bigint
         FROM outbox GROUP BY topic, message_key",
    )
    .fetch_all(conn)
    .await
}

/// Deletes published rows. The relay's session commits this without waiting for the disk: a
/// row that comes back after a crash is found on its topic by the next relay's recovery.
pub async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Rows waiting to be published and the age of the oldest, in seconds.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    let (count, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 FROM outbox",
    )
    .fetch_one(conn)
    .await?;
    Ok((count, oldest.unwrap_or(0.0)))
}
