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
//!
//! Failures: a transient one (database, broker, registry away) is retried in place with backoff
//! and the offset does not move. A message whose handling fails is parked for its order (see
//! [`crate::parking`]) and scheduled on `<service>.retry` with its attempt count and a not-before
//! time, so the partition keeps flowing; after `max_attempts` it goes to `<service>.dlq`. A message
//! that cannot be decoded goes straight to `<service>.dlq` with its raw bytes. Retry and
//! dead-letter records leave through the outbox, in the same transaction as the parking.

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
use saga_events::{EventCodec, EventType, SagaEvent, Service, TopicNames};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::error::{FailureKind, HandlerError};
use crate::headers;
use crate::kafka::KafkaSettings;
use crate::outbox::Outbox;
use crate::parking::{self, Arrival, NewParked, ParkedStatus};
use crate::trace;

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_millis: Option<i64>,
    pub key: Option<String>,
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
    topics: TopicNames,
    reactions: R,
    service: Service,
    group: String,
    settings: ConsumerSettings,
    #[cfg(feature = "fault-injection")]
    faults: crate::faults::FaultInjection,
}

/// How a consumer treats messages whose handling fails.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Attempts (the first delivery included) before a message goes to the dead-letter topic.
    pub max_attempts: i32,
    /// Delay before the first retry; each further retry waits twice as long.
    pub retry_delay: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

impl<R> std::fmt::Debug for EventConsumer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("service", &self.shared.service.name())
            .field("group", &self.shared.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// How many messages may wait for one partition's worker before the poll loop waits too.
const PARTITION_QUEUE: usize = 256;

impl<R: Reactions> EventConsumer<R> {
    /// A consumer in `group` of the `subscriptions` (event topics) and of the service's own
    /// retry topic.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: Service,
        group: String,
        subscriptions: Vec<String>,
        pool: PgPool,
        outbox: Outbox,
        kafka: KafkaSettings,
        reactions: R,
        settings: ConsumerSettings,
    ) -> Self {
        let codec = outbox.codec().clone();
        let topics_names = codec.topics().clone();
        let mut topics = subscriptions;
        topics.push(topics_names.retry(service));
        #[cfg(feature = "fault-injection")]
        let faults = match crate::faults::FaultInjection::from_env(service.name()) {
            Ok(faults) => {
                if !faults.is_empty() {
                    warn!(
                        service = service.name(),
                        "FAULT INJECTION IS ON: some events will fail on purpose"
                    );
                }
                faults
            }
            Err(error) => {
                error!(%error, "FAULT_INJECTION is malformed; injecting nothing");
                crate::faults::FaultInjection::default()
            }
        };
        #[cfg(not(feature = "fault-injection"))]
        if std::env::var_os("FAULT_INJECTION").is_some() {
            warn!("FAULT_INJECTION is set, but this build cannot inject faults; ignoring it");
        }
        Self {
            shared: Arc::new(Shared {
                pool,
                outbox,
                codec,
                topics: topics_names,
                reactions,
                service,
                group,
                settings,
                #[cfg(feature = "fault-injection")]
                faults,
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
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
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
    /// Handles one message to the end: applied, skipped as a duplicate, parked for retry, or
    /// dead-lettered. Returns false only when shutdown interrupted a wait, in which case nothing
    /// was committed and the offset stays.
    async fn handle(
        &self,
        payload: &[u8],
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::new();
        let decoded = loop {
            match self.codec.decode(payload).await {
                Ok(event) => break Ok(event),
                Err(error) if error.is_transient() => {
                    warn!(%error, %delivery, "cannot decode yet; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
                Err(error) => break Err(error.to_string()),
            }
        };
        let event = match decoded {
            Ok(event) => event,
            Err(reason) => {
                warn!(%reason, %delivery, "undecodable message; dead-lettering it");
                return self
                    .retry_in_place(shutdown, "undecodable", || {
                        self.dead_letter_now(payload, delivery, FailureKind::Undecodable, &reason)
                    })
                    .await;
            }
        };
        if let Err(error) = event_uuid(&event) {
            // Without a valid event id the message can be neither deduplicated nor parked.
            let reason = error.to_string();
            warn!(%reason, %delivery, "event without a valid event id; dead-lettering it");
            return self
                .retry_in_place(shutdown, event.event_type().name(), || {
                    self.dead_letter_now(payload, delivery, FailureKind::Permanent, &reason)
                })
                .await;
        }
        let event_type = event.event_type();
        if !self.reactions.wants(event_type) {
            metrics::counter!("saga_events_consumed_total", "event_type" => event_type.name(), "outcome" => "ignored").increment(1);
            return true;
        }
        if delivery.topic == self.topics.retry(self.service)
            && !self.wait_until_due(delivery, shutdown).await
        {
            return false;
        }

        let span = info_span!(
            "react",
            service = self.service.name(),
            event_type = event_type.name(),
            order_id = %event.order_id(),
            event_id = %event.metadata().event_id,
            source = %delivery,
        );
        trace::continue_trace(&span, &delivery.headers);
        async {
            let started = Instant::now();
            let finished = if delivery.topic == self.topics.retry(self.service) {
                self.retry_in_place(shutdown, event_type.name(), || self.retry(&event, delivery))
                    .await
            } else {
                self.retry_in_place(shutdown, event_type.name(), || {
                    self.first_delivery(&event, payload, delivery)
                })
                .await
            };
            metrics::histogram!("saga_event_handling_seconds", "event_type" => event_type.name())
                .record(started.elapsed().as_secs_f64());
            finished
        }
        .instrument(span)
        .await
    }

    /// Runs `attempt` until it succeeds or fails for a reason other than a transient one.
    /// Non-transient errors here are bugs in the bookkeeping itself: they are logged, and the
    /// message is retried like a transient one rather than lost.
    async fn retry_in_place<F, Fut>(
        &self,
        shutdown: &CancellationToken,
        event_type: &'static str,
        mut attempt: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<&'static str, HandlerError>>,
    {
        let mut backoff = Backoff::new();
        loop {
            match attempt().await {
                Ok(outcome) => {
                    debug!(outcome, "handled");
                    metrics::counter!("saga_events_consumed_total", "event_type" => event_type, "outcome" => outcome).increment(1);
                    return true;
                }
                Err(error) => {
                    if error.kind() == FailureKind::Transient {
                        warn!(%error, "transient failure; retrying in place");
                    } else {
                        error!(%error, "could not record the outcome of a message; retrying in place");
                    }
                    metrics::counter!("saga_transient_retries_total", "event_type" => event_type)
                        .increment(1);
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// A retry record is not handled before its not-before time. Retry records of one partition
    /// are due in roughly the order they were written, so waiting here delays only retries.
    async fn wait_until_due(&self, delivery: &Delivery, shutdown: &CancellationToken) -> bool {
        let due = delivery
            .headers
            .get(headers::NOT_BEFORE)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let wait_ms = due - chrono::Utc::now().timestamp_millis();
        if wait_ms <= 0 {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// A message from one of the subscribed event topics.
    async fn first_delivery(
        &self,
        event: &SagaEvent,
        payload: &[u8],
        delivery: &Delivery,
    ) -> Result<&'static str, HandlerError> {
        let event_id = event_uuid(event)?;
        let order_id = event.order_id();
        let mut tx = self.pool.begin().await?;
        parking::lock_order(&mut tx, order_id).await?;
        let arrival = parking::arrival(&mut tx, event_id, order_id).await?;
        if arrival == Arrival::Duplicate {
            tx.rollback().await?;
            return Ok("duplicate");
        }
        if arrival == Arrival::BehindParked {
            parking::insert(
                &mut tx,
                NewParked::of(event, delivery, payload, ParkedStatus::Waiting, None),
            )
            .await?;
            tx.commit().await?;
            info!("parked behind an earlier message of the same order");
            return Ok("parked_behind");
        }
        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
        match self.apply(&mut attempt, event, delivery).await {
            Ok(_) => {
                attempt.commit().await?;
                tx.commit().await?;
                Ok("applied")
            }
            Err(error) if error.kind() == FailureKind::Transient => Err(error),
            Err(error) => {
                attempt.rollback().await?;
                let reason = error.to_string();
                let failure = Some((error.kind(), reason.as_str()));
                let id = parking::insert(
                    &mut tx,
                    NewParked::of(event, delivery, payload, ParkedStatus::Retrying, failure),
                )
                .await?;
                let outcome = self
                    .after_failure(&mut tx, id, delivery, payload, 1, error.kind(), &reason)
                    .await?;
                tx.commit().await?;
                Ok(outcome)
            }
        }
    }

    /// A record from `<service>.retry`: one more attempt at a parked message (or a redriven dead
    /// letter). On success the order's waiting messages are released, in order.
    async fn retry(
        &self,
        event: &SagaEvent,
        delivery: &Delivery,
    ) -> Result<&'static str, HandlerError> {
        let order_id = event.order_id();
        let mut tx = self.pool.begin().await?;
        parking::lock_order(&mut tx, order_id).await?;
        let Some(parked) = parking::lock_by_event(&mut tx, &event.metadata().event_id).await?
        else {
            tx.rollback().await?;
            return Ok("stale_retry");
        };
        let attempts_so_far: i32 = delivery
            .headers
            .get(headers::ATTEMPTS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        let redriven = delivery.headers.contains_key(headers::REDRIVEN_AT);
        let current = match parked.status {
            ParkedStatus::Retrying => attempts_so_far == parked.attempts,
            ParkedStatus::Dead => redriven,
            ParkedStatus::Waiting => false,
        };
        if !current {
            // A copy of an older retry record, or a redrive of something already handled.
            tx.rollback().await?;
            return Ok("stale_retry");
        }
        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
        match self.apply(&mut attempt, event, &parked.source).await {
            Ok(_) => {
                attempt.commit().await?;
                parking::remove(&mut tx, parked.id).await?;
                self.release_waiting(&mut tx, order_id).await?;
                tx.commit().await?;
                info!(
                    attempt = parked.attempts + 1,
                    redriven, "succeeded on retry"
                );
                Ok("applied_on_retry")
            }
            Err(error) if error.kind() == FailureKind::Transient => Err(error),
            Err(error) => {
                attempt.rollback().await?;
                let attempts = parked.attempts.max(0) + 1;
                let reason = error.to_string();
                let outcome = self
                    .after_failure(
                        &mut tx,
                        parked.id,
                        &parked.source,
                        &parked.payload,
                        attempts,
                        error.kind(),
                        &reason,
                    )
                    .await?;
                tx.commit().await?;
                Ok(outcome)
            }
        }
    }

    /// Applies the order's waiting messages in the order they arrived, until one fails: that one
    /// becomes the order's new head, scheduled for retry.
    async fn release_waiting(
        &self,
        tx: &mut PgConnection,
        order_id: &str,
    ) -> Result<(), HandlerError> {
        while let Some(waiting) = parking::next_waiting(tx, order_id).await? {
            let event = match self.codec.decode(&waiting.payload).await {
                Ok(event) => event,
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => {
                    let reason = error.to_string();
                    self.after_failure(
                        tx,
                        waiting.id,
                        &waiting.source,
                        &waiting.payload,
                        self.settings.max_attempts,
                        FailureKind::Undecodable,
                        &reason,
                    )
                    .await?;
                    return Ok(());
                }
            };
            let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
            match self.apply(&mut attempt, &event, &waiting.source).await {
                Ok(_) => {
                    attempt.commit().await?;
                    parking::remove(tx, waiting.id).await?;
                    info!(event_id = %waiting.event_id, "released a waiting message");
                }
                Err(error) if error.kind() == FailureKind::Transient => return Err(error),
                Err(error) => {
                    attempt.rollback().await?;
                    let reason = error.to_string();
                    self.after_failure(
                        tx,
                        waiting.id,
                        &waiting.source,
                        &waiting.payload,
                        1,
                        error.kind(),
                        &reason,
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Records a failed attempt and writes the next record: another retry, or the dead letter.
    #[allow(clippy::too_many_arguments)]
    async fn after_failure(
        &self,
        tx: &mut PgConnection,
        parked_id: i64,
        source: &Delivery,
        payload: &[u8],
        attempts: i32,
        kind: FailureKind,
        reason: &str,
    ) -> Result<&'static str, HandlerError> {
        let dead = attempts >= self.settings.max_attempts || kind == FailureKind::Undecodable;
        let status = if dead {
            ParkedStatus::Dead
        } else {
            ParkedStatus::Retrying
        };
        let (first, last) =
            parking::record_failure(tx, parked_id, status, attempts, kind, reason).await?;
        let key = source.key.clone().unwrap_or_default();
        let delay = self.settings.retry_delay * 2u32.saturating_pow((attempts - 1).max(0) as u32);
        let (topic, not_before) = if dead {
            (self.topics.dlq(self.service), None)
        } else {
            let due = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
            (self.topics.retry(self.service), Some(due))
        };
        let record = parking::failure_headers(
            self.service.name(),
            source,
            attempts,
            kind,
            reason,
            first,
            last,
            not_before,
        );
        self.outbox
            .append_raw(tx, &topic, &key, payload, &record)
            .await?;
        if dead {
            metrics::counter!("saga_dead_letters_total", "service" => self.service.name())
                .increment(1);
            error!(%source, attempts, reason, "dead-lettered after its last attempt");
            Ok("dead_lettered")
        } else {
            metrics::counter!("saga_retries_scheduled_total", "service" => self.service.name())
                .increment(1);
            warn!(%source, attempts, reason, retry_in = ?delay, "handling failed; scheduled a retry");
            Ok("retry_scheduled")
        }
    }

    /// A message no retry can help (not a saga event, or one without a usable id): straight to
    /// the dead-letter topic, raw bytes and all.
    async fn dead_letter_now(
        &self,
        payload: &[u8],
        delivery: &Delivery,
        kind: FailureKind,
        reason: &str,
    ) -> Result<&'static str, HandlerError> {
        let now = chrono::Utc::now();
        let record = parking::failure_headers(
            self.service.name(),
            delivery,
            1,
            kind,
            reason,
            now,
            now,
            None,
        );
        let mut tx = self.pool.begin().await?;
        self.outbox
            .append_raw(
                &mut tx,
                &self.topics.dlq(self.service),
                delivery.key.as_deref().unwrap_or(""),
                payload,
                &record,
            )
            .await?;
        tx.commit().await?;
        metrics::counter!("saga_dead_letters_total", "service" => self.service.name()).increment(1);
        Ok("dead_lettered")
    }

    /// Inbox row, reaction and its outbox rows, in the caller's transaction. A duplicate (already
    /// in the inbox) changes nothing.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &SagaEvent,
        delivery: &Delivery,
    ) -> Result<bool, HandlerError> {
        let event_id = event_uuid(event)?;
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
            return Ok(false);
        }
        #[cfg(feature = "fault-injection")]
        if let Some(reason) = self.faults.should_fail(event) {
            return Err(HandlerError::permanent(reason));
        }
        let outgoing = self.reactions.react(tx, event, delivery).await?;
        self.outbox.append(tx, &outgoing).await?;
        Ok(true)
    }
}

fn event_uuid(event: &SagaEvent) -> Result<uuid::Uuid, HandlerError> {
    crate::error::parse_uuid("event_id", &event.metadata().event_id)
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
