//! The writing half of the transactional outbox: events are encoded and stored in the same
//! transaction as the state change that produced them, so either both happen or neither does.
//! All of the outbox's SQL is here (the relay reads and deletes through these functions too).
//!
//! Writing: the outbox's one INSERT is written here once. [`Outbox::write`] runs it (and, in the
//! same statement, the inbox's: a consumer's batch pays one round trip for both), and
//! [`Outbox::commit`] commits and wakes the relay. A write that is a single statement needs no
//! transaction of its own: it puts the insert among its CTEs ([`Staged`]), runs in autocommit,
//! and wakes the relay after ([`Outbox::wake`]); Order's `POST /orders` is one round trip so.
//! A transaction's statement can carry the insert the same way ([`Outbox::staged_in`], then
//! [`Outbox::commit`]): a workflow's hand-over writes its instance and its events so.
//!
//! Waking the relay: when this process's own relay is the active one, the writer wakes it in
//! memory once its transaction committed ([`Outbox::commit`]). Only when the active relay is
//! elsewhere (another replica) does the transaction send a Postgres `NOTIFY`, which every
//! committing transaction would otherwise pay for with a cluster-wide lock at commit.

use saga_events::{EventCodec, SagaEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::deferred::DeferredWrites;
use crate::error::HandlerError;
use crate::headers::{self, Headers};
use crate::inbox;
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

    /// Writes what a transaction leaves for the saga, in one statement (one round trip): the
    /// records to publish, in order, and the inbox entries of the events it handled. This is the
    /// only place either table is inserted into. Commit the transaction with
    /// [`Outbox::commit`], which wakes the relay.
    pub async fn write(
        &self,
        conn: &mut PgConnection,
        records: &[OutboxRecord],
        handled: &[inbox::Entry],
    ) -> Result<Written, sqlx::Error> {
        self.write_with(conn, records, handled, DeferredWrites::default())
            .await
    }

    /// [`Outbox::write`], with the writes a batch's reactions deferred as CTEs of the same
    /// statement ([`crate::deferred`]).
    pub async fn write_with(
        &self,
        conn: &mut PgConnection,
        records: &[OutboxRecord],
        handled: &[inbox::Entry],
        deferred: DeferredWrites,
    ) -> Result<Written, sqlx::Error> {
        if records.is_empty() && handled.is_empty() && deferred.is_empty() {
            return Ok(Written::nothing());
        }
        let inbox = inbox::Columns::of(handled);
        let outbox = Columns::of(records);
        const HANDLED: &str = "WITH handled AS (
                     INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
                     SELECT * FROM unnest($7::uuid[], $8::text[], $9::text[], $10::int[],
                                          $11::bigint[])
                     ON CONFLICT (event_id) DO NOTHING)";
        static INSERT: LazyLock<String> = LazyLock::new(|| insert(1, "true"));
        static WRITE: LazyLock<String> = LazyLock::new(|| format!("{HANDLED}\n {}", *INSERT));
        let with_deferred;
        let statement = if deferred.is_empty() {
            WRITE.as_str()
        } else {
            // Numbered after the outbox's six parameters and the inbox's five.
            let ctes = deferred.ctes(Staged::PARAMETERS + 5 + 1);
            with_deferred = format!("{HANDLED}{ctes}\n {}", *INSERT);
            with_deferred.as_str()
        };
        let query = outbox
            .bind(sqlx::query(AssertSqlSafe(statement)))
            .bind(&inbox.ids)
            .bind(&inbox.types)
            .bind(&inbox.topics)
            .bind(&inbox.partitions)
            .bind(&inbox.offsets);
        deferred.bind(query).execute(&mut *conn).await?;
        if !records.is_empty() && !self.wake.is_active() {
            notify(conn).await?;
        }
        Ok(Written {
            rows: records.len(),
        })
    }

    /// Encodes `events` (with the current span's trace context, so that consumers continue
    /// this trace) and writes them, in order, in the transaction behind `conn`.
    pub async fn append(
        &self,
        conn: &mut PgConnection,
        events: &[SagaEvent],
    ) -> Result<Written, HandlerError> {
        let staged = self.stage(events).await?;
        Ok(self.write(conn, &staged.records, &[]).await?)
    }

    /// Encodes `events` with the current span's trace context, for [`Outbox::write`] or for a
    /// statement of the caller's own to insert ([`Staged`]).
    pub async fn stage(&self, events: &[SagaEvent]) -> Result<Staged, HandlerError> {
        let context = trace::current_context_headers();
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            records.push(self.encode(event, &context).await?);
        }
        Ok(Staged { records })
    }

    /// What a statement of the caller's transaction inserted ([`Staged`]) leaves for
    /// [`Outbox::commit`], which wakes this process's relay; a relay in another process is told
    /// now (`NOTIFY`, delivered when the transaction commits).
    pub async fn staged_in(
        &self,
        conn: &mut PgConnection,
        staged: &Staged,
    ) -> Result<Written, sqlx::Error> {
        let written = staged.written();
        if written.rows > 0 && !self.wake.is_active() {
            notify(conn).await?;
        }
        Ok(written)
    }

    /// Wakes the relay for rows a statement of the caller's own inserted ([`Staged`]), once that
    /// statement committed; `conn` tells a relay in another process (a `NOTIFY`). The rows are
    /// already written, so a `NOTIFY` that fails is only logged: the relay's poll finds them.
    pub async fn wake(&self, conn: &mut PgConnection, written: Written) {
        if written.rows == 0 {
            return;
        }
        if !self.wake.is_active()
            && let Err(error) = notify(conn).await
        {
            tracing::warn!(%error, "the relay could not be told of new outbox rows; its poll will find them");
        }
        self.wake.notify.notify_one();
    }

    /// Commits a transaction, and wakes this process's relay if the transaction wrote to the
    /// outbox: the one way a writer commits, so that no caller has to remember the wake.
    pub async fn commit(
        &self,
        tx: Transaction<'_, Postgres>,
        written: Written,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        if written.rows > 0 {
            self.wake.notify.notify_one();
        }
        Ok(())
    }

    pub fn codec(&self) -> &EventCodec {
        &self.codec
    }

    /// An event as an outbox record, with the trace context it was caused under.
    pub async fn encode(
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

/// How many rows a transaction wrote to the outbox: [`Outbox::commit`] wakes the relay when
/// any. Written by [`Outbox::write`]; a transaction that writes several times adds them up.
#[must_use = "commit the transaction with Outbox::commit, or the relay is not woken"]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    rows: usize,
}

impl Written {
    pub fn nothing() -> Self {
        Self::default()
    }

    /// Both writes of one transaction.
    pub fn and(self, other: Written) -> Written {
        Written {
            rows: self.rows + other.rows,
        }
    }
}

/// The outbox's insert of the records whose columns are bound from `$first` on
/// ([`Columns`]), in their order (ids follow it, and the relay publishes in id order), where
/// `when` holds: an SQL condition, over the CTEs of the statement it is part of.
fn insert(first: usize, when: &str) -> String {
    let [ids, types, topics, keys, payloads, headers] =
        std::array::from_fn::<usize, { Staged::PARAMETERS }, _>(|i| first + i);
    format!(
        "INSERT INTO outbox (event_id, event_type, topic, message_key, payload, headers)
         SELECT event_id, event_type, topic, message_key, payload, headers
         FROM unnest(${ids}::uuid[], ${types}::text[], ${topics}::text[], ${keys}::bytea[],
                     ${payloads}::bytea[], ${headers}::bytea[])
              WITH ORDINALITY AS r(event_id, event_type, topic, message_key, payload, headers, n)
         WHERE {when}
         ORDER BY n"
    )
}

/// Records encoded for the outbox ([`Outbox::stage`]), to be inserted by a statement of the
/// caller's own: it puts [`Staged::insert`] among its CTEs and binds [`Staged::bind`] after its
/// own parameters. Run in autocommit, that statement is the whole write, in one round trip;
/// [`Outbox::wake`] then wakes the relay. Within a transaction, [`Outbox::staged_in`] and
/// [`Outbox::commit`] do.
#[derive(Debug, Default)]
pub struct Staged {
    records: Vec<OutboxRecord>,
}

impl Staged {
    /// How many parameters [`Staged::bind`] binds: one array per column.
    pub const PARAMETERS: usize = 6;

    /// Whether there is nothing to insert.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The insert, as the data-modifying statement of a CTE: its records bound at `$first` on
    /// ([`Staged::PARAMETERS`] of them), inserted only where `when` holds (an SQL condition over
    /// the other CTEs).
    pub fn insert(first: usize, when: &str) -> String {
        insert(first, when)
    }

    /// What the insert writes when its condition holds, for [`Outbox::wake`].
    pub fn written(&self) -> Written {
        Written {
            rows: self.records.len(),
        }
    }

    /// Binds the records' columns, in the order [`Staged::insert`] numbers them.
    pub fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        Columns::of(&self.records).bind(query)
    }
}

/// The outbox's columns of some records, as arrays for `unnest`.
struct Columns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    topics: Vec<&'a str>,
    keys: Vec<Option<&'a [u8]>>,
    payloads: Vec<&'a [u8]>,
    headers: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    fn of(records: &'a [OutboxRecord]) -> Self {
        Self {
            ids: records.iter().map(|r| r.id).collect(),
            types: records.iter().map(|r| r.event_type.as_str()).collect(),
            topics: records.iter().map(|r| r.topic.as_str()).collect(),
            keys: records.iter().map(|r| r.key.as_deref()).collect(),
            payloads: records.iter().map(|r| r.payload.as_slice()).collect(),
            headers: records.iter().map(|r| r.headers.encode()).collect(),
        }
    }

    /// Binds the columns as [`insert`] numbers them, after the parameters bound before.
    fn bind(self, query: Query<'a, Postgres, PgArguments>) -> Query<'a, Postgres, PgArguments> {
        query
            .bind(self.ids)
            .bind(self.types)
            .bind(self.topics)
            .bind(self.keys)
            .bind(self.payloads)
            .bind(self.headers)
    }
}

async fn notify(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// A row not yet published, as the relay reads it.
#[derive(Debug, Clone)]
pub struct Unpublished {
    pub id: i64,
    pub topic: String,
    pub message_key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<u8>,
    /// How long ago the row was written, in seconds.
    pub age_seconds: f64,
}
crate::from_row!(Unpublished {
    id,
    topic,
    message_key,
    payload,
    headers,
    age_seconds
});

/// Up to `limit` rows not yet published, oldest first.
pub async fn unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Unpublished>, sqlx::Error> {
    unpublished_after(conn, &[], limit).await
}

/// Deletes `published` (rows the broker has acknowledged) and reads up to `limit` rows not yet
/// published, oldest first, in one statement: a relay under load pays one round trip per round
/// for both. The delete is a data-modifying `WITH`, carried out whether or not the read uses
/// it; the read sees the table as it was before the delete, hence the filter.
pub async fn unpublished_after(
    conn: &mut PgConnection,
    published: &[i64],
    limit: i64,
) -> Result<Vec<Unpublished>, sqlx::Error> {
    sqlx::query_as(
        "WITH published AS (DELETE FROM outbox WHERE id = ANY($1))
         SELECT id, topic, message_key, payload, headers,
                extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_seconds
         FROM outbox WHERE id <> ALL($1) ORDER BY id LIMIT $2",
    )
    .bind(published)
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

/// Deletes rows of `topic` found published there (recovery: an id counts only on its own
/// row's topic).
pub async fn mark_published_on(
    conn: &mut PgConnection,
    topic: &str,
    ids: &[i64],
) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1) AND topic = $2")
            .bind(ids)
            .bind(topic)
            .execute(conn)
            .await?
            .rows_affected(),
    )
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

/// How many rows wait to be published, and how long the oldest has waited (seconds; 0 when
/// none): measured on its own, so that it keeps growing while the relay cannot publish.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM clock_timestamp() - min(created_at))::float8, 0)
         FROM outbox",
    )
    .fetch_one(conn)
    .await
}

/// Moves rows the broker refused for good into `outbox_refused`, each with its error; returns
/// how many moved.
pub async fn refuse(
    conn: &mut PgConnection,
    refused: &[(i64, String)],
) -> Result<u64, sqlx::Error> {
    if refused.is_empty() {
        return Ok(0);
    }
    let (ids, errors): (Vec<i64>, Vec<String>) = refused.iter().cloned().unzip();
    Ok(sqlx::query(
        "WITH moved AS (DELETE FROM outbox WHERE id = ANY($1) RETURNING *)
         INSERT INTO outbox_refused (id, event_id, event_type, topic, message_key, payload,
                                     headers, created_at, error)
         SELECT m.id, m.event_id, m.event_type, m.topic, m.message_key, m.payload, m.headers,
                m.created_at, r.error
         FROM moved m JOIN unnest($1::bigint[], $2::text[]) AS r(id, error) ON r.id = m.id
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&errors)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A row the broker refused, as `sagactl outbox` lists it.
#[derive(Debug, Clone)]
pub struct RefusedRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub topic: String,
    pub message_key: Option<Vec<u8>>,
    pub payload_bytes: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub refused_at: chrono::DateTime<chrono::Utc>,
    pub error: String,
}
crate::from_row!(RefusedRow {
    id,
    event_id,
    event_type,
    topic,
    message_key,
    payload_bytes,
    created_at,
    refused_at,
    error
});

/// Every refused row, oldest first.
pub async fn refused(conn: &mut PgConnection) -> Result<Vec<RefusedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_id, event_type, topic, message_key, octet_length(payload) AS payload_bytes,
                created_at, refused_at, error
         FROM outbox_refused ORDER BY id",
    )
    .fetch_all(conn)
    .await
}

/// How many rows were refused and wait for an operator.
pub async fn refused_count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM outbox_refused")
        .fetch_one(conn)
        .await
}

/// Puts refused rows back into the outbox (all of them with `ids` None), as new rows that the
/// relay publishes like any other, and wakes a relay listening elsewhere; returns how many.
pub async fn resend(conn: &mut PgConnection, ids: Option<&[i64]>) -> Result<u64, sqlx::Error> {
    let resent = sqlx::query(
        "WITH moved AS (DELETE FROM outbox_refused WHERE $1::bigint[] IS NULL OR id = ANY($1)
                        RETURNING *)
         INSERT INTO outbox (event_id, event_type, topic, message_key, payload, headers)
         SELECT event_id, event_type, topic, message_key, payload, headers FROM moved ORDER BY id",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if resent > 0 {
        notify(conn).await?;
    }
    Ok(resent)
}
