//! The publishing half of the transactional outbox.
//!
//! One relay per service database is active at a time (a Postgres advisory lock held on a
//! dedicated connection); standbys wait for the lock. The active relay publishes unpublished rows
//! in id order with an idempotent producer, stamps them published once the broker acknowledged
//! them, and wakes on LISTEN/NOTIFY, polling only as a fallback.
//!
//! Crash safety: every record carries its row id in the `outbox-id` header and goes to the
//! partition Kafka's Java clients would choose for its key. When a relay takes over, it reads the
//! tail of each partition it is about to write to; a row whose id is at or below the highest id
//! already there was published before the crash (the idempotent producer keeps a partition in
//! order), so it is stamped instead of sent again. Rows are therefore published once even if a
//! relay dies between the broker's ack and the stamp.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgPool};
use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::headers;
use crate::kafka::{KafkaSettings, partition_for};
use crate::outbox::NOTIFY_CHANNEL;

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
    /// How often a standby tries to take the lock.
    pub standby_interval: Duration,
    /// How far back from a partition's end the takeover check looks for `outbox-id` headers.
    pub recovery_window: i64,
    /// Postgres advisory lock that elects the active relay of a database.
    pub lock_key: i64,
    /// Published outbox rows and inbox entries older than this are deleted. It must exceed the
    /// topics' retention: an inbox entry has to outlive every copy of its event that could
    /// still be delivered.
    pub retention: Duration,
    /// How often the active relay deletes what is past retention.
    pub cleanup_interval: Duration,
    /// Rows deleted per statement, so that no cleanup transaction grows large.
    pub cleanup_batch: i64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            standby_interval: Duration::from_secs(1),
            recovery_window: 200,
            lock_key: RELAY_LOCK_KEY,
            // Topics keep 7 days; one more day of margin.
            retention: Duration::from_secs(8 * 24 * 3600),
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch: 1000,
        }
    }
}

#[derive(Debug, Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the advisory lock connection was lost")]
    LockLost,
    #[error("{0}")]
    Blocking(String),
}

#[derive(Debug, sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    topic: String,
    message_key: String,
    payload: Vec<u8>,
    headers: sqlx::types::Json<BTreeMap<String, String>>,
}

/// Publishes a service's outbox.
#[derive(Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    producer: FutureProducer,
    kafka: KafkaSettings,
    settings: RelaySettings,
    partitions: Arc<tokio::sync::Mutex<HashMap<String, i32>>>,
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
            producer: kafka.producer_config().create()?,
            kafka: kafka.clone(),
            settings,
            partitions: Default::default(),
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

    fn set_status(&self, status: RelayStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
        metrics::gauge!("saga_outbox_relay_active").set(if status == RelayStatus::Active {
            1.0
        } else {
            0.0
        });
    }

    /// Runs until `shutdown`: waits for the lock, publishes while holding it, starts over after
    /// any failure (database or broker away), and flushes the producer before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    self.set_status(RelayStatus::Starting);
                    warn!(%error, retry_in = ?backoff, "outbox relay interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let producer = self.producer.clone();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
        if let Ok(Err(error)) = flushed {
            warn!(%error, "producer flush at shutdown failed");
        }
        self.set_status(RelayStatus::Stopped);
        info!("outbox relay stopped");
    }

    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        // The lock lives as long as this session: a dedicated connection, never returned to the
        // pool, so that a crash (or a lost connection) releases it.
        let mut lock_conn = self.pool.acquire().await?.detach();
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.settings.lock_key)
                .fetch_one(&mut lock_conn)
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
        self.recover().await?;

        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        let mut lock_checked = Instant::now();
        // The elected relay is also the database's one cleaner.
        let mut cleaned: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let published = self.publish_batch().await?;
            if published as i64 >= self.settings.batch_size {
                continue;
            }
            if lock_checked.elapsed() > Duration::from_secs(5) {
                lock_conn.ping().await.map_err(|_| RelayError::LockLost)?;
                self.report_backlog().await?;
                lock_checked = Instant::now();
            }
            if cleaned.is_none_or(|at| at.elapsed() >= self.settings.cleanup_interval) {
                self.clean_up().await?;
                cleaned = Some(Instant::now());
            }
            tokio::select! {
                notification = listener.recv() => { notification?; }
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Drain what committed before shutdown began, then hand the lock over.
        self.publish_batch().await?;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.settings.lock_key)
            .execute(&mut lock_conn)
            .await;
        let _ = lock_conn.close().await;
        self.set_status(RelayStatus::Stopped);
        Ok(())
    }

    /// Deletes published outbox rows and inbox entries past retention, a bounded batch per
    /// statement. `SKIP LOCKED` means a row some transaction is using is simply left for the
    /// next round: cleanup never waits on, nor blocks, the hot path. Returns the rows deleted.
    pub async fn clean_up(&self) -> Result<u64, RelayError> {
        let horizon = format!("{} seconds", self.settings.retention.as_secs());
        let mut deleted = 0;
        for statement in [
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE published_at < now() - $1::interval
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM inbox WHERE event_id IN (
                 SELECT event_id FROM inbox WHERE processed_at < now() - $1::interval
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ] {
            loop {
                let rows = sqlx::query(statement)
                    .bind(&horizon)
                    .bind(self.settings.cleanup_batch)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                deleted += rows;
                if rows < self.settings.cleanup_batch as u64 {
                    break;
                }
            }
        }
        if deleted > 0 {
            info!(
                rows = deleted,
                "deleted outbox and inbox rows past retention"
            );
        }
        metrics::counter!("saga_retention_deleted_rows_total").increment(deleted);
        Ok(deleted)
    }

    /// Unpublished rows and the age of the oldest, as gauges.
    async fn report_backlog(&self) -> Result<(), RelayError> {
        let (backlog, oldest): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        metrics::gauge!("saga_outbox_backlog").set(backlog as f64);
        metrics::gauge!("saga_outbox_oldest_unpublished_seconds").set(oldest.unwrap_or(0.0));
        Ok(())
    }

    /// Stamps unpublished rows that a previous relay already delivered (see the module docs).
    async fn recover(&self) -> Result<(), RelayError> {
        let pending: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, topic, message_key FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 100000",
        )
        .fetch_all(&self.pool)
        .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut highest: HashMap<(String, i32), Option<i64>> = HashMap::new();
        let mut delivered = Vec::new();
        for (id, topic, key) in pending {
            let partition = partition_for(key.as_bytes(), self.partition_count(&topic).await?);
            let slot = (topic.clone(), partition);
            let top = match highest.get(&slot) {
                Some(top) => *top,
                None => {
                    let top = self.highest_outbox_id(&topic, partition).await?;
                    highest.insert(slot, top);
                    top
                }
            };
            if top.is_some_and(|top| id <= top) {
                delivered.push(id);
            }
        }
        if !delivered.is_empty() {
            self.mark_published(&delivered).await?;
            info!(
                rows = delivered.len(),
                "found rows already on the broker; stamped them without resending"
            );
        }
        Ok(())
    }

    /// The highest `outbox-id` header among the last records of one partition.
    async fn highest_outbox_id(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, RelayError> {
        let reader: BaseConsumer = self.kafka.reader_config().create()?;
        let topic = topic.to_owned();
        let window = self.settings.recovery_window;
        tokio::task::spawn_blocking(move || -> Result<Option<i64>, RelayError> {
            let (low, high) =
                reader.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
            if high <= low {
                return Ok(None);
            }
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(
                &topic,
                partition,
                Offset::Offset((high - window).max(low)),
            )?;
            reader.assign(&assignment)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            let mut highest = None;
            while std::time::Instant::now() < deadline {
                match reader.poll(Duration::from_millis(500)) {
                    Some(Ok(message)) => {
                        let id = headers::to_map(message.headers())
                            .get(headers::OUTBOX_ID)
                            .and_then(|v| v.parse::<i64>().ok());
                        highest = highest.max(id);
                        if message.offset() >= high - 1 {
                            return Ok(highest);
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => return Ok(highest),
                    Some(Err(error)) => return Err(error.into()),
                    None => {}
                }
            }
            Err(RelayError::Blocking(format!(
                "timed out reading the tail of {topic}[{partition}]"
            )))
        })
        .await
        .map_err(|e| RelayError::Blocking(e.to_string()))?
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, RelayError> {
        if let Some(count) = self.partitions.lock().await.get(topic) {
            return Ok(*count);
        }
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let count = tokio::task::spawn_blocking(move || -> Result<i32, RelayError> {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(10))?;
            let topic = metadata
                .topics()
                .first()
                .ok_or_else(|| RelayError::Blocking(format!("no metadata for topic {name}")))?;
            if let Some(error) = topic.error() {
                return Err(KafkaError::MetadataFetch(error.into()).into());
            }
            Ok(topic.partitions().len() as i32)
        })
        .await
        .map_err(|e| RelayError::Blocking(e.to_string()))??;
        if count == 0 {
            return Err(RelayError::Kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            )));
        }
        self.partitions.lock().await.insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn unpublished(&self) -> Result<Vec<OutboxRow>, RelayError> {
        Ok(sqlx::query_as(
            "SELECT id, topic, message_key, payload, headers FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.settings.batch_size)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Hands one row to the producer, on the partition its key maps to, with its row id.
    async fn enqueue(&self, row: &OutboxRow) -> Result<DeliveryFuture, RelayError> {
        let partition = partition_for(
            row.message_key.as_bytes(),
            self.partition_count(&row.topic).await?,
        );
        let mut row_headers = row.headers.0.clone();
        row_headers.insert(headers::OUTBOX_ID.into(), row.id.to_string());
        let record = FutureRecord::to(&row.topic)
            .partition(partition)
            .key(&row.message_key)
            .payload(&row.payload)
            .headers(headers::from_map(&row_headers));
        self.producer
            .send_result(record)
            .map_err(|(error, _)| RelayError::Kafka(error))
    }

    /// Publishes up to one batch; returns how many rows it stamped.
    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let rows = self.unpublished().await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            match self.enqueue(row).await {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => {
                    // Queue full or a fatal producer state: settle what is queued, then start
                    // over from the database.
                    failure = Some(error);
                    break;
                }
            }
        }
        let results = join_all(deliveries).await;
        let mut delivered = Vec::with_capacity(results.len());
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(Ok(_)) if failure.is_none() => delivered.push(row.id),
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    failure.get_or_insert(RelayError::Kafka(error));
                }
                Err(_canceled) => {
                    failure.get_or_insert(RelayError::Kafka(KafkaError::Canceled));
                }
            }
        }
        // Only the unbroken prefix is stamped: later rows of a partition must not be marked
        // before an earlier failed one is resent. A takeover's tail check settles the rest.
        self.mark_published(&delivered).await?;
        metrics::counter!("saga_events_published_total").increment(delivered.len() as u64);
        match failure {
            Some(error) => Err(error),
            None => Ok(delivered.len()),
        }
    }

    async fn mark_published(&self, ids: &[i64]) -> Result<(), RelayError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Produces every unpublished row and waits for the broker's acks, but never stamps them: what a
/// relay that dies between the ack and the stamp leaves behind. Only for crash-safety tests.
#[doc(hidden)]
pub async fn produce_without_stamping(relay: &OutboxRelay) -> Result<usize, RelayError> {
    let rows = relay.unpublished().await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        deliveries.push(relay.enqueue(row).await?);
    }
    for delivery in join_all(deliveries).await {
        match delivery {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(error.into()),
            Err(_) => return Err(KafkaError::Canceled.into()),
        }
    }
    Ok(rows.len())
}
