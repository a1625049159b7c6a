//! The idempotent consumer.
//!
//! Every handled event is recorded in the inbox in the same Postgres transaction as the service's
//! reaction and the events it emits (appended to the outbox). A redelivered event finds its id in
//! the inbox and changes nothing. An offset is stored only after that transaction committed, and
//! librdkafka commits stored offsets every second, on revocation and at shutdown: a crash
//! anywhere means redelivery, never loss.
//!
//! The pieces, each in its own module, in the order a record meets them:
//! - [`poll`]: one thread owns the Kafka consumer. It polls, routes each record to the lane that
//!   owns its partition, pauses a partition whose lane is full (the others keep flowing), and on
//!   revocation waits for the lanes to finish what they hold of the revoked partitions before
//!   committing and letting go.
//! - [`lane`]: a lane is a task that handles the records of the partitions assigned to it. It
//!   takes everything that is ready (up to a batch size) and hands it over as one batch, so a busy
//!   service pays for one transaction per batch, not per message. Each partition belongs to one
//!   lane, so its records are handled in order. [`control`] is what handling may ask of its lane.
//! - [`batch`]: a batch of event records, in one transaction, in four stages: [`read`] (what
//!   each record is), [`plan`] (pure: apply, skip, park or dead-letter, from what the inbox
//!   says), [`react`] (the service's reactions), [`bookkeeping`] (parked rows, inbox and outbox
//!   in one statement). A message whose reaction fails is parked for its order and scheduled on
//!   `<service>.retry`; the batch is replayed without it.
//! - [`retry`]: records from `<service>.retry`: one more attempt at a parked message, and, when it
//!   succeeds, the release of the order's messages that waited behind it.
//! - Shared by both: [`failure`] (the retry or dead-letter record of a failed attempt) and
//!   [`persist`] (infrastructure failures waited out in place). [`handler`] holds what they all
//!   share.
//!
//! Failures: only infrastructure failures (database, broker, registry away) are retried in place,
//! with backoff; the partition waits and, after [`ConsumerSettings::stuck_after`], is named on
//! `/readyz`. Anything about one record ends, after retries, in `<service>.dlq` with its raw
//! bytes, so no record can stop a partition.

mod batch;
mod bookkeeping;
mod control;
mod erased;
mod failure;
mod handler;
mod lane;
mod persist;
mod plan;
mod poll;
mod react;
mod read;
mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use saga_events::{EventType, SagaEvent, Service};
use sqlx::{PgConnection, PgPool};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use uuid::Uuid;

use crate::deferred::DeferredWrites;
use crate::delivery::Delivery;
use crate::error::HandlerError;
use crate::health::Health;
use crate::inbox;
use crate::kafka::KafkaSettings;
use crate::outbox::Outbox;

/// An event to react to, and the record it arrived in.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub event: &'a SagaEvent,
    /// The event's order id, already checked to be a UUID (and the record's key) by the consumer.
    pub order_id: Uuid,
    pub delivery: &'a Delivery,
    /// The record full name its writer used: `saga.order.OrderPlaced` for a major-1 record the
    /// codec upcast, so that a projection can show which major an event came as.
    pub written_as: &'a str,
}

/// Why a service could not react to a batch. When one event is at fault, `index` names it: that
/// event is parked for its order and retried, and the batch runs again without it.
#[derive(Debug)]
pub struct Refusal {
    pub index: Option<usize>,
    pub error: HandlerError,
}

impl Refusal {
    /// The event at `index` cannot be reacted to.
    pub fn at(index: usize, error: impl Into<HandlerError>) -> Self {
        Self {
            index: Some(index),
            error: error.into(),
        }
    }
}

impl<E: Into<HandlerError>> From<E> for Refusal {
    /// A failure of the batch as a whole (the database, an encoding).
    fn from(error: E) -> Self {
        Self {
            index: None,
            error: error.into(),
        }
    }
}

/// A service's reactions to the events it consumes.
///
/// Reactions get a whole batch (events of one or more partitions, each partition's in order),
/// so that a service can load what it knows of all their orders in one query, decide each
/// reaction in memory (a pure function of the event and that state, in the services' domain
/// modules), and write every change in a few statements.
pub trait Reactions: Send + Sync + 'static {
    /// Whether the service cares about this event type at all; others are acknowledged unread.
    fn wants(&self, event_type: EventType) -> bool;

    /// Whether the saga waits on this service's reaction to events of this type. Events that
    /// only feed a projection are not: a lane holding nothing urgent waits up to
    /// [`ConsumerSettings::linger`] for more, so that they are recorded many to a transaction.
    fn is_urgent(&self, _event_type: EventType) -> bool {
        true
    }

    /// What the reactions read of a batch's orders before reacting ([`Reactions::load`]), handed
    /// to [`Reactions::react`]; `()` for reactions that read nothing first.
    type Loaded: Default + Send + 'static;

    /// The first read of a batch's transaction, once its orders are locked: where each of
    /// `questions` (event id, order id) stands for this service ([`inbox::standing`]), and what
    /// the reactions read of `orders`. A service that reads its orders asks both in one round
    /// trip ([`inbox::standing_beside`]); by default, only the standing is read.
    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        questions: &'a [(Option<Uuid>, String)],
        orders: &'a [Uuid],
    ) -> impl Future<Output = Result<(Vec<inbox::Standing>, Self::Loaded), sqlx::Error>> + Send + 'a
    {
        let _ = orders;
        async move {
            Ok((
                inbox::standing(tx, questions).await?,
                Self::Loaded::default(),
            ))
        }
    }

    /// Reacts to `events`, in order, within the consumer's transaction, with what
    /// [`Reactions::load`] read of their orders (and of the batch's others, which no event here
    /// may need: those skipped, parked or dead-lettered). Returns, for each event, the events it
    /// emits: they are appended to the outbox in that same transaction. Writes that nothing in
    /// the reaction reads back may go to `deferred` instead of running at once: they run in the
    /// batch's last statement, with its inbox and outbox inserts ([`crate::deferred`]); one that
    /// fails there fails the batch as a failing reaction would.
    fn react<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        loaded: Self::Loaded,
        deferred: &'a mut DeferredWrites,
    ) -> impl Future<Output = Result<Vec<Vec<SagaEvent>>, Refusal>> + Send + 'a;
}

/// [`ConsumerSettings::max_event_bytes`] unless configured: 256 KiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// How a consumer batches and treats messages whose handling fails.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Attempts (the first delivery included) before a message goes to the dead-letter topic.
    pub max_attempts: i32,
    /// Delay before the first retry; each further retry waits twice as long.
    pub retry_delay: Duration,
    /// Most records handled in one transaction.
    pub batch_size: usize,
    /// Lanes handling event partitions concurrently (the retry topic has one more of its own).
    pub lanes: usize,
    /// How long a lane holding only events that are not urgent waits for more before it
    /// handles them ([`Reactions::is_urgent`]).
    pub linger: Duration,
    /// How long after a batch a busy lane lets records gather before the next one: batches
    /// grow with the load instead of each record paying for a transaction of its own.
    pub busy_linger: Duration,
    /// How long a retry in place may last before the partition is reported stuck.
    pub stuck_after: Duration,
    /// `group.instance.id`: a stable name makes the consumer a static member of its group.
    pub instance_id: Option<String>,
    /// The largest record value a service reacts to; a larger one is dead-lettered. Saga
    /// events are a few kilobytes at most (the HTTP API bounds every field), and what a service
    /// emits in reply to an event, or forwards to its retry and dead-letter topics, must still
    /// fit what those topics take: see [`crate::kafka::MAX_FORWARDED_BYTES`].
    pub max_event_bytes: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_delay: Duration::from_secs(1),
            batch_size: 200,
            lanes: 1,
            linger: Duration::from_millis(20),
            busy_linger: Duration::from_millis(2),
            stuck_after: crate::health::DEFAULT_STUCK_AFTER,
            instance_id: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Everything a consumer needs besides the service's reactions.
#[derive(Debug, Clone)]
pub struct ConsumerSetup {
    pub service: Service,
    pub group: String,
    /// The event topics consumed; the service's own retry topic is added.
    pub subscriptions: Vec<String>,
    pub pool: PgPool,
    pub outbox: Outbox,
    pub kafka: KafkaSettings,
    pub settings: ConsumerSettings,
    pub health: Health,
}

#[derive(Debug, Error)]
pub enum ConsumerError {
    #[error("kafka consumer")]
    Kafka(#[from] KafkaError),
    #[error("could not start the poll thread")]
    Thread(#[source] std::io::Error),
    #[error("a lane stopped unexpectedly: {0}")]
    LaneFailed(String),
    #[error("the poll thread stopped unexpectedly")]
    PollFailed,
    /// librdkafka will not use this consumer again.
    #[error("the kafka consumer failed for good ({code:?}): {reason}")]
    Fatal {
        code: rdkafka::types::RDKafkaErrorCode,
        reason: String,
    },
}

fn rebuild_backoff() -> crate::Backoff {
    crate::Backoff::with(Duration::from_millis(500), Duration::from_secs(30))
}

/// Consumes a service's topics and applies its [`Reactions`].
pub struct EventConsumer {
    handler: Arc<handler::Handler>,
    setup: ConsumerSetup,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("service", &self.setup.service)
            .field("group", &self.setup.group)
            .field("topics", &self.setup.subscriptions)
            .finish_non_exhaustive()
    }
}

impl EventConsumer {
    pub fn new(setup: ConsumerSetup, reactions: impl Reactions) -> Self {
        Self {
            handler: Arc::new(handler::Handler::new(&setup, Box::new(reactions))),
            setup,
        }
    }

    /// Runs until `shutdown`; then finishes the batches being handled, commits stored offsets
    /// and leaves the group. A lane or the poll thread failing cancels `shutdown` (the service
    /// stops, and its supervisor starts it again) and is returned as an error.
    ///
    /// A consumer librdkafka gives up on for good (a fatal error) is replaced instead: the batches
    /// in flight finish, the old consumer is closed and a new one joins the group. The known
    /// case is a static member (`CONSUMER_INSTANCE_ID`) whose session timed out while the broker
    /// was away: it rejoins under its instance id, and that new membership fences the commits
    /// the old one still sends. What the old consumer could not commit is delivered again, and
    /// the inbox makes that harmless.
    ///
    /// Replacements that keep failing wait longer each time (up to 30 s): two processes given
    /// the same instance id by mistake fence each other, and must not do it in a tight loop.
    ///
    /// The future is boxed here so that the consumer's code is compiled once, in this crate, and
    /// not again into each service that spawns it (see [`erased`]).
    pub fn run(self, shutdown: CancellationToken) -> BoxFuture<'static, Result<(), ConsumerError>> {
        Box::pin(self.run_until(shutdown))
    }

    async fn run_until(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut backoff = rebuild_backoff();
        loop {
            let round = shutdown.child_token();
            let started = std::time::Instant::now();
            match self.run_once(round).await {
                Err(ConsumerError::Fatal { code, reason }) if !shutdown.is_cancelled() => {
                    if started.elapsed() >= Duration::from_secs(60) {
                        backoff = rebuild_backoff();
                    }
                    let delay = backoff.next_delay();
                    warn!(?code, %reason, ?delay, "the Kafka consumer failed for good; joining the group with a new one");
                    metrics::counter!("saga_consumer_rebuilds_total", "service" => self.setup.service.name())
                        .increment(1);
                    self.setup
                        .health
                        .consumer_rebuilt(&format!("{code:?}: {reason}"));
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Ok(()) => return Ok(()),
                Err(error) => {
                    shutdown.cancel();
                    return Err(error);
                }
            }
        }
    }

    /// One consumer's life: until `shutdown`, a lane's failure, or the consumer's own.
    async fn run_once(&self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let setup = &self.setup;
        let retry_topic = setup.outbox.codec().topics().retry(setup.service);
        let mut topics = setup.subscriptions.clone();
        topics.push(retry_topic.clone());

        let (router, receivers) = poll::Router::new(
            setup.settings.lanes.max(1),
            setup.settings.batch_size.max(1) * 4,
            retry_topic,
        );
        let router = Arc::new(router);
        let consumer = Arc::new(poll::create(
            &setup.kafka,
            &setup.group,
            setup.settings.instance_id.as_deref(),
            router.clone(),
            setup.health.clone(),
        )?);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        rdkafka::consumer::Consumer::subscribe(consumer.as_ref(), &names)?;
        info!(group = %setup.group, topics = ?topics, "consuming");

        let mut lanes = tokio::task::JoinSet::new();
        for (index, receiver) in receivers.into_iter().enumerate() {
            lanes.spawn(lane::run(
                self.handler.clone(),
                consumer.clone(),
                router.clone(),
                index,
                receiver,
                shutdown.clone(),
            ));
        }

        let (done, finished) = tokio::sync::oneshot::channel();
        {
            let router = router.clone();
            let shutdown = shutdown.clone();
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name(format!("{}-poll", setup.service.name()))
                .spawn(move || {
                    let result = poll::run(consumer, &router, &shutdown, &runtime);
                    let _ = done.send(result);
                })
                .map_err(ConsumerError::Thread)?;
        }

        let mut failure = None;
        let mut finished = std::pin::pin!(finished);
        let polled = loop {
            tokio::select! {
                result = &mut finished => break result,
                Some(joined) = lanes.join_next(), if !lanes.is_empty() => {
                    if shutdown.is_cancelled() {
                        continue;
                    }
                    let reason = match joined {
                        Ok(()) => "it returned".to_owned(),
                        Err(error) => error.to_string(),
                    };
                    error!(%reason, "a consumer lane stopped; stopping the service");
                    failure.get_or_insert(ConsumerError::LaneFailed(reason));
                    shutdown.cancel();
                }
            }
        };
        shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(20), async {
            while lanes.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            warn!("consumer lanes did not finish within 20s");
            lanes.abort_all();
        }
        match (failure, polled) {
            (Some(failure), _) => Err(failure),
            (None, Ok(result)) => result,
            (None, Err(_)) => Err(ConsumerError::PollFailed),
        }
    }
}
