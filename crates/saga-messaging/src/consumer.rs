//! The idempotent consumer.
//!
//! Each message is handled in one Postgres transaction that records its `event_id` in the inbox,
//! applies the service's reaction and appends the resulting events to the outbox. A redelivered
//! event finds its id in the inbox and changes nothing. The offset is stored only after that
//! transaction committed and is committed by librdkafka's auto-commit (and on partition
//! revocation), so a crash anywhere means redelivery, never loss.
//!
//! Partitions are processed concurrently, each strictly in order, by one worker task per
//! partition.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use saga_events::{EventCodec, EventType, SagaEvent};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::error::{FailureKind, HandlerError};
use crate::headers;
use crate::kafka::KafkaSettings;
use crate::outbox::Outbox;
use crate::trace;

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_millis: Option<i64>,
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// A service's reactions to the events it consumes.
pub trait Reactions: Send + Sync + 'static {
    /// Whether the service cares about this event type at all; others are acknowledged unread.
    fn wants(&self, event_type: EventType) -> bool;

    /// Reacts to one event within the consumer's transaction. The returned events are appended
    /// to the outbox in that same transaction.
    fn react<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a SagaEvent,
        delivery: &'a Delivery,
    ) -> impl Future<Output = Result<Vec<SagaEvent>, HandlerError>> + Send + 'a;
}

/// Commits the offsets stored so far before partitions are taken away, so that the next owner
/// starts after what this one finished.
struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance
            && let Err(error) = consumer.commit_consumer_state(CommitMode::Sync)
        {
            debug!(%error, "nothing committed on revocation");
        }
    }
}

type SagaConsumer = StreamConsumer<CommitOnRevoke>;

/// Consumes a service's topics and applies its [`Reactions`].
pub struct EventConsumer<R> {
    shared: Arc<Shared<R>>,
    kafka: KafkaSettings,
    topics: Vec<String>,
}

struct Shared<R> {
    pool: PgPool,
    outbox: Outbox,
    codec: EventCodec,
    reactions: R,
    service: &'static str,
    group: String,
}

impl<R> std::fmt::Debug for EventConsumer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("service", &self.shared.service)
            .field("group", &self.shared.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// How many messages may wait for one partition's worker before the poll loop waits too.
const PARTITION_QUEUE: usize = 256;

enum Outcome {
    Applied,
    Duplicate,
}

impl<R: Reactions> EventConsumer<R> {
    pub fn new(
        service: &'static str,
        group: String,
        topics: Vec<String>,
        pool: PgPool,
        outbox: Outbox,
        kafka: KafkaSettings,
        reactions: R,
    ) -> Self {
        let codec = outbox.codec().clone();
        Self {
            shared: Arc::new(Shared {
                pool,
                outbox,
                codec,
                reactions,
                service,
                group,
            }),
            kafka,
            topics,
        }
    }

    /// Runs until `shutdown`; then finishes the messages being handled, commits stored offsets
    /// and closes the consumer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        let consumer: Arc<SagaConsumer> = Arc::new(
            self.kafka
                .consumer_config(&self.shared.group)
                .create_with_context(CommitOnRevoke)?,
        );
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        info!(group = %self.shared.group, topics = ?self.topics, "consuming");

        let mut queues: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
        let mut workers = JoinSet::new();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message.detach(),
                Err(error) => {
                    // Broker away, rebalancing, …: librdkafka reconnects by itself.
                    warn!(%error, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let slot = (message.topic().to_owned(), message.partition());
            let queue = queues.entry(slot).or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(PARTITION_QUEUE);
                workers.spawn(partition_worker(
                    self.shared.clone(),
                    consumer.clone(),
                    receiver,
                    shutdown.clone(),
                ));
                sender
            });
            tokio::select! {
                _ = shutdown.cancelled() => break,
                sent = queue.send(message) => {
                    if sent.is_err() {
                        error!("a partition worker stopped unexpectedly");
                    }
                }
            }
        }

        drop(queues);
        let drained = tokio::time::timeout(Duration::from_secs(20), async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("partition workers did not finish within 20s");
            workers.abort_all();
        }
        let closing = consumer.clone();
        let committed = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || closing.commit_consumer_state(CommitMode::Sync)),
        )
        .await;
        match committed {
            Ok(Ok(Ok(()))) => info!("offsets committed"),
            Ok(Ok(Err(error))) => debug!(%error, "no offsets to commit at shutdown"),
            _ => warn!("committing offsets at shutdown failed or timed out"),
        }
        // Closing can block on the broker: leave it to a blocking thread with a deadline.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || drop(consumer)),
        )
        .await;
        Ok(())
    }
}

async fn partition_worker<R: Reactions>(
    shared: Arc<Shared<R>>,
    consumer: Arc<SagaConsumer>,
    mut queue: mpsc::Receiver<OwnedMessage>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let delivery = Delivery {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_millis: message.timestamp().to_millis(),
            headers: headers::to_map(message.headers()),
        };
        let finished = shared
            .handle(message.payload().unwrap_or_default(), &delivery, &shutdown)
            .await;
        if !finished {
            // Shut down in the middle of retrying: the offset stays where it was.
            return;
        }
        if let Err(error) =
            consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
        {
            // The partition was revoked meanwhile; its next owner redelivers and the inbox
            // makes that harmless.
            debug!(%error, %delivery, "offset not stored");
        }
    }
}

impl<R: Reactions> Shared<R> {
    /// Handles one message to the end: applied, skipped as a duplicate, or given up on. Returns
    /// false only when shutdown interrupted a retry, in which case nothing was committed.
    async fn handle(
        &self,
        payload: &[u8],
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::new();
        let event = loop {
            match self.codec.decode(payload).await {
                Ok(event) => break event,
                Err(error) if error.is_transient() => {
                    warn!(%error, %delivery, "cannot decode yet; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
                Err(error) => {
                    self.give_up(delivery, None, FailureKind::Undecodable, &error.to_string());
                    return true;
                }
            }
        };
        let event_type = event.event_type();
        if !self.reactions.wants(event_type) {
            metrics::counter!("saga_events_consumed_total", "event_type" => event_type.name(), "outcome" => "ignored").increment(1);
            return true;
        }

        let span = info_span!(
            "react",
            service = self.service,
            event_type = event_type.name(),
            order_id = %event.order_id(),
            event_id = %event.metadata().event_id,
            source = %delivery,
        );
        trace::continue_trace(&span, &delivery.headers);
        async {
            let started = Instant::now();
            let mut backoff = Backoff::new();
            loop {
                match self.transact(&event, delivery).await {
                    Ok(outcome) => {
                        let outcome = match outcome {
                            Outcome::Applied => "applied",
                            Outcome::Duplicate => "duplicate",
                        };
                        debug!(outcome, "handled");
                        metrics::counter!("saga_events_consumed_total", "event_type" => event_type.name(), "outcome" => outcome).increment(1);
                        metrics::histogram!("saga_event_handling_seconds", "event_type" => event_type.name())
                            .record(started.elapsed().as_secs_f64());
                        return true;
                    }
                    Err(error) if error.kind() == FailureKind::Transient => {
                        warn!(%error, "transient failure; retrying in place");
                        metrics::counter!("saga_transient_retries_total", "event_type" => event_type.name()).increment(1);
                        if !backoff.wait(shutdown).await {
                            return false;
                        }
                    }
                    Err(error) => {
                        self.give_up(delivery, Some(&event), error.kind(), &error.to_string());
                        return true;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn transact(
        &self,
        event: &SagaEvent,
        delivery: &Delivery,
    ) -> Result<Outcome, HandlerError> {
        let event_id = uuid::Uuid::parse_str(&event.metadata().event_id).map_err(|e| {
            HandlerError::permanent(format!(
                "event_id {:?} is not a UUID: {e}",
                event.metadata().event_id
            ))
        })?;
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(event.event_type().name())
        .bind(&delivery.topic)
        .bind(delivery.partition)
        .bind(delivery.offset)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        let outgoing = self.reactions.react(&mut tx, event, delivery).await?;
        self.outbox.append(&mut tx, &outgoing).await?;
        tx.commit().await?;
        Ok(Outcome::Applied)
    }

    /// A message that will not succeed by retrying in place. It is logged with its coordinates
    /// and the partition moves on.
    fn give_up(
        &self,
        delivery: &Delivery,
        event: Option<&SagaEvent>,
        kind: FailureKind,
        reason: &str,
    ) {
        let event_type = event
            .map(|e| e.event_type().name())
            .unwrap_or("undecodable");
        metrics::counter!("saga_events_failed_total", "event_type" => event_type, "kind" => format!("{kind:?}"))
            .increment(1);
        error!(
            service = self.service,
            %delivery,
            event_type,
            order_id = event.map(|e| e.order_id()).unwrap_or(""),
            ?kind,
            reason,
            "message could not be handled"
        );
    }
}

/// Capped exponential backoff with full jitter, for retrying in place.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// Sleeps for the next delay; false if shutdown came first.
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let ceiling = self.next.as_millis() as u64;
        let delay = Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling));
        self.next = (self.next * 2).min(Self::CAP);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}
