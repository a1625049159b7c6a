//! The publishing half of the transactional outbox.
//!
//! One relay per service database is active at a time: it holds a Postgres advisory lock on a
//! session of its own, and every query it makes goes through that session, so that losing the
//! session means losing the lock, and the relay starts over. Standbys wait for the lock.
//!
//! The active relay publishes rows in id order with an idempotent producer (`acks=all`) and
//! deletes them once the broker acknowledged them, in the statement that reads the next round's
//! rows (a round of its own within 50 ms when no wake comes first). It wakes when a writer of
//! its own process commits, or on LISTEN/NOTIFY for writers in other processes, polling only as
//! a fallback. Deletes are committed without waiting for the disk: a row that comes back after a
//! crash is found on its topic by recovery.
//!
//! Recovery ([`recovery`]): every record carries its row id in the `outbox-id` header and goes
//! to the partition Kafka's Java clients would choose for its key. When a relay takes over (or
//! starts over after any failure), it reads back each partition it has unpublished rows for,
//! from the oldest such row's creation time, and deletes exactly the rows it finds there. Every
//! other row is sent. A row that committed after a later row was already published (ids are
//! assigned at insert, visible at commit) is therefore never mistaken for a published one.
//!
//! Row ids are scoped to their database (`<system identifier>/<database>/<id>`): recovery never
//! takes a record written from another database, or copied by some other producer, for one of
//! its own rows. A row the broker refuses for good is moved aside ([`refusal`]); the relay goes
//! on with the others.
//!
//! The backlog and the age of the oldest unpublished row are measured on their own timer, not by
//! the relay's rounds, so that they keep growing while the broker is away.
//!
//! A producer that fails for good (librdkafka's fatal errors, such as a producer id the broker
//! fenced) is replaced by a new one before the relay starts over.

mod pace;
mod publish;
mod recovery;
mod refusal;

pub use publish::produce_without_deleting;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::kafka::KafkaSettings;
use crate::outbox::{self, NOTIFY_CHANNEL, RelayWake};
use crate::producer::AckingProducer;

/// Advisory lock key of the relay: each service has its own database, so one key suffices.
pub const RELAY_LOCK_KEY: i64 = 0x5a6a_0b0b_0001;

/// What a relay is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStatus {
    Starting,
    /// Waiting for the lock another relay holds.
    Standby,
    /// Holding the lock and publishing.
    Active,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows fetched and produced per round trip.
    pub batch_size: i64,
    /// Fallback poll when no notification arrives (e.g. the listener reconnected and missed one).
    pub poll_interval: Duration,
    /// When wakes come fast and the last round published something ([`pace`]), how long to let
    /// more rows gather before the next round (`RELAY_BUSY_LINGER_MS`, default 2): batches grow
    /// with the load, and a row after a quiet spell is published at once.
    pub busy_linger: Duration,
    /// How often a standby tries to take the lock.
    pub standby_interval: Duration,
    /// How far before the oldest unpublished row's creation recovery starts reading: covers
    /// clock differences between the database and the relay's host.
    pub recovery_margin: Duration,
    /// Postgres advisory lock that elects the active relay of a database.
    pub lock_key: i64,
    /// How long rows for a topic that does not exist are retried before they are moved aside
    /// as refused (`OUTBOX_MISSING_TOPIC_GRACE_SECONDS`, default 60).
    pub missing_topic_grace: Duration,
    /// How often the backlog gauges are measured.
    pub gauge_interval: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            busy_linger: Duration::from_millis(
                std::env::var("RELAY_BUSY_LINGER_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(2),
            ),
            standby_interval: Duration::from_secs(1),
            recovery_margin: Duration::from_secs(60),
            lock_key: RELAY_LOCK_KEY,
            missing_topic_grace: Duration::from_secs(
                std::env::var("OUTBOX_MISSING_TOPIC_GRACE_SECONDS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60),
            ),
            gauge_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Error)]
pub enum RelayError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("kafka")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
    #[error("a blocking task failed")]
    Blocking(#[from] tokio::task::JoinError),
    #[error("shutdown came before the broker acknowledged the batch")]
    Interrupted,
}

/// How long a stopping relay waits for the broker to acknowledge what it already sent.
pub(super) const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The longest acknowledged rows stay in the outbox before a round deletes them. Long enough
/// that a relay publishing every few tens of milliseconds deletes them with its next read; short
/// enough that the backlog gauge, sampled every few seconds, rarely sees them.
const DELETE_WITHIN: Duration = Duration::from_millis(50);

/// Publishes a service's outbox.
#[derive(Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    wake: Arc<RelayWake>,
    producer: Arc<Mutex<AckingProducer>>,
    kafka: KafkaSettings,
    settings: RelaySettings,
    partitions: Arc<Mutex<HashMap<String, i32>>>,
    missing: Arc<refusal::MissingTopics>,
    /// `<system identifier>/<database>` of the outbox's database: the scope of its row ids.
    scope: Arc<std::sync::OnceLock<String>>,
    status: Arc<AtomicU8>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("kafka", &self.kafka)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: RelaySettings,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            pool,
            wake: Arc::default(),
            producer: Arc::new(Mutex::new(AckingProducer::create(
                &kafka.producer_config(),
            )?)),
            kafka: kafka.clone(),
            settings,
            partitions: Default::default(),
            missing: Default::default(),
            scope: Default::default(),
            status: Arc::new(AtomicU8::new(RelayStatus::Starting as u8)),
        })
    }

    /// What this relay (or any clone of it) is doing now.
    pub fn status(&self) -> RelayStatus {
        match self.status.load(Ordering::Relaxed) {
            1 => RelayStatus::Standby,
            2 => RelayStatus::Active,
            3 => RelayStatus::Stopped,
            _ => RelayStatus::Starting,
        }
    }

    /// What writers of this process wake the relay with: give it to their [`crate::Outbox`].
    pub fn wake(&self) -> Arc<RelayWake> {
        self.wake.clone()
    }

    fn set_status(&self, status: RelayStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
        self.wake.set_active(status == RelayStatus::Active);
        metrics::gauge!("saga_outbox_relay_active").set(if status == RelayStatus::Active {
            1.0
        } else {
            0.0
        });
    }

    /// The producer in use (replaced when it fails for good). Public for tests that break it.
    #[doc(hidden)]
    pub fn producer(&self) -> AckingProducer {
        self.producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Connects the producer to the broker and learns the partitions of `topics` ahead of the
    /// first record.
    pub async fn warm_up(&self, topics: &[String]) -> Result<(), RelayError> {
        for topic in topics {
            self.partition_count(topic).await?;
        }
        Ok(())
    }

    /// Replaces a producer that can no longer be used.
    fn rebuild_producer_if_fatal(&self) {
        let producer = self.producer();
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        error!(?code, %reason, "the producer failed for good; building a new one");
        metrics::counter!("saga_relay_producer_rebuilds_total").increment(1);
        match AckingProducer::create(&self.kafka.producer_config()) {
            Ok(fresh) => {
                *self
                    .producer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
            Err(error) => error!(%error, "could not build a new producer"),
        }
    }

    /// Runs until `shutdown`: waits for the lock, publishes while holding it, starts over after
    /// any failure (database or broker away), and flushes the producer before returning.
    ///
    /// Boxed here, so that the relay is compiled once, in this crate, rather than into every
    /// service that spawns it: a release build compiles an `async` body where it is polled.
    pub fn run(self, shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(self.run_until(shutdown))
    }

    async fn run_until(self, shutdown: CancellationToken) {
        let gauges = tokio::spawn(self.clone().measure_backlog(shutdown.clone()));
        let mut backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    self.set_status(RelayStatus::Starting);
                    self.rebuild_producer_if_fatal();
                    warn!(error = %crate::error::error_chain(&error), "outbox relay interrupted; starting over");
                    if !backoff.wait(shutdown.cancelled()).await {
                        break;
                    }
                }
            }
        }
        let producer = self.producer();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
        if let Ok(Err(error)) = flushed {
            warn!(%error, "producer flush at shutdown failed");
        }
        self.set_status(RelayStatus::Stopped);
        gauges.abort();
        info!("outbox relay stopped");
    }

    /// Sets the backlog gauges every [`RelaySettings::gauge_interval`] until `shutdown`, whatever
    /// the relay is doing: `SagaOutboxStale` must fire precisely while nothing is published.
    async fn measure_backlog(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.settings.gauge_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let measured = async {
                let mut conn = self.pool.acquire().await?;
                let (rows, oldest) = outbox::backlog(&mut conn).await?;
                let refused = outbox::refused_count(&mut conn).await?;
                Ok::<_, sqlx::Error>((rows, oldest, refused))
            }
            .await;
            match measured {
                Ok((rows, oldest, refused)) => {
                    metrics::gauge!("saga_outbox_backlog").set(rows as f64);
                    metrics::gauge!("saga_outbox_oldest_unpublished_seconds").set(oldest);
                    metrics::gauge!("saga_outbox_refused_rows").set(refused as f64);
                }
                // The database away: the consumer and /readyz say so; the gauges keep their
                // last value.
                Err(error) => debug!(%error, "outbox backlog not measured"),
            }
        }
    }

    /// `<system identifier>/<database>` of the outbox's database, asked once.
    async fn scope(&self, conn: &mut PgConnection) -> Result<String, RelayError> {
        if let Some(scope) = self.scope.get() {
            return Ok(scope.clone());
        }
        let scope: String = sqlx::query_scalar(
            "SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()",
        )
        .fetch_one(conn)
        .await?;
        Ok(self.scope.get_or_init(|| scope).clone())
    }

    /// Whether the row of `topic` that failed with `error` is refused for good: the reason, if
    /// so.
    fn refused(&self, topic: &str, error: &RelayError) -> Option<String> {
        match refusal::verdict(error) {
            refusal::Verdict::ForGood => Some(crate::error::error_chain(error)),
            refusal::Verdict::TopicMissing => {
                let waited = self.missing.missing_for(topic);
                (waited >= self.settings.missing_topic_grace).then(|| {
                    format!(
                        "topic {topic} does not exist (waited {}s): {}",
                        waited.as_secs(),
                        crate::error::error_chain(error)
                    )
                })
            }
            refusal::Verdict::Transient => None,
        }
    }

    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        // The lock lives as long as this session: a dedicated connection, never returned to the
        // pool, so that a crash (or a lost connection) releases it.
        let mut session = self.pool.acquire().await?.detach();
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut session)
            .await?;
        // The outbox is a queue: rows are inserted and deleted all day, so it holds a few live
        // rows among many dead ones until the next vacuum. Statistics then make a sequential
        // scan look cheap, but it visits every dead row on every round, while the primary key's
        // index skips rows it already found dead. Only this session is told.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut session)
            .await?;
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.settings.lock_key)
                .fetch_one(&mut session)
                .await?;
            if locked {
                break;
            }
            self.set_status(RelayStatus::Standby);
            tokio::select! {
                _ = tokio::time::sleep(self.settings.standby_interval) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        self.set_status(RelayStatus::Active);
        info!("outbox relay active");
        self.recover(&mut session).await?;

        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        let mut pace = pace::Pace::default();
        // Rows the broker acknowledged, deleted by the next round's read.
        let mut acknowledged = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let published = self
                .publish_batch(&mut session, &mut acknowledged, shutdown)
                .await?;
            if published as i64 >= self.settings.batch_size {
                continue;
            }
            // Acknowledged rows wait for the next round at most DELETE_WITHIN: under load a
            // wake comes first and the delete rides on its read; when quiet, a round of its own.
            let poll = if acknowledged.is_empty() {
                self.settings.poll_interval
            } else {
                DELETE_WITHIN.min(self.settings.poll_interval)
            };
            tokio::select! {
                _ = self.wake.woken() => {}
                notification = listener.recv() => { notification?; }
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => break,
            }
            // Busy (the last round published something, and rows keep coming): let a few more
            // rows gather, so that one round trip carries them all. A row that comes after a
            // quiet spell goes out at once: one order at a time pays no linger on any hop.
            let busy = pace.woken(Instant::now(), published > 0);
            if busy && !self.settings.busy_linger.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.busy_linger) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        // Drain what committed before shutdown began (briefly: the broker may be what is
        // away), then hand the lock over.
        let drained = CancellationToken::new();
        let drain = async {
            self.publish_batch(&mut session, &mut acknowledged, &drained)
                .await?;
            outbox::mark_published(&mut session, &acknowledged).await?;
            Ok::<_, RelayError>(())
        };
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, drain).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.settings.lock_key)
            .execute(&mut session)
            .await;
        let _ = session.close().await;
        self.set_status(RelayStatus::Stopped);
        Ok(())
    }
}
