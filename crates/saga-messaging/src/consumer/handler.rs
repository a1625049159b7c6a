//! The handler a consumer's lanes share: the service's reactions with everything their handling
//! needs (pool, outbox, codec, settings, health), and the names of what becomes of a record.
//! Each stage of handling is an `impl Handler` block in a module of its own (this one imports
//! none of them): [`super::read`],
//! [`super::batch`] (with the pure [`super::plan`] and [`super::bookkeeping`]),
//! [`super::react`], [`super::failure`], [`super::persist`] and [`super::retry`].

use std::time::Instant;

use saga_events::{EventCodec, EventType, Service, TopicNames};
use sqlx::PgPool;
use tracing::warn;

use super::erased::ErasedReactions;
use super::{ConsumerSettings, ConsumerSetup};
use crate::delivery::Delivery;
use crate::headers;
use crate::health::Health;
use crate::outbox::Outbox;

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The service reacted to it.
    Applied,
    /// A parked message that succeeded on a later attempt.
    AppliedOnRetry,
    /// Handled before: nothing changed.
    Duplicate,
    /// Not an event this service reacts to.
    Ignored,
    /// Waits behind an earlier message of its order.
    ParkedBehind,
    /// Failed; scheduled on the retry topic.
    RetryScheduled,
    /// Given up on: on the dead-letter topic.
    DeadLettered,
    /// A retry record for something already settled.
    StaleRetry,
    /// A dead letter an operator gave up on (`sagactl dlq skip`).
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AppliedOnRetry => "applied_on_retry",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::ParkedBehind => "parked_behind",
            Outcome::RetryScheduled => "retry_scheduled",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::StaleRetry => "stale_retry",
            Outcome::Skipped => "skipped",
        }
    }
}

/// A record's place in its topic: what the lane stores offsets from.
pub(super) type Position = (String, i32, i64);

/// Handles a service's records; shared by its lanes.
pub(crate) struct Handler {
    pub(super) pool: PgPool,
    pub(super) outbox: Outbox,
    pub(super) codec: EventCodec,
    pub(super) topics: TopicNames,
    pub(super) reactions: Box<dyn ErasedReactions>,
    pub(super) service: Service,
    /// The consumer group, as traces name it.
    pub(super) group: String,
    pub(super) settings: ConsumerSettings,
    pub(super) health: Health,
    #[cfg(feature = "fault-injection")]
    pub(super) faults: crate::faults::FaultInjection,
}

impl Handler {
    pub fn new(setup: &ConsumerSetup, reactions: Box<dyn ErasedReactions>) -> Self {
        #[cfg(feature = "fault-injection")]
        let faults = match crate::faults::FaultInjection::from_env(setup.service.name()) {
            Ok(faults) => {
                if !faults.is_empty() {
                    warn!(
                        service = setup.service.name(),
                        "FAULT INJECTION IS ON: some events will fail on purpose"
                    );
                }
                faults
            }
            Err(error) => {
                tracing::error!(%error, "FAULT_INJECTION is malformed; injecting nothing");
                crate::faults::FaultInjection::default()
            }
        };
        #[cfg(not(feature = "fault-injection"))]
        if std::env::var_os("FAULT_INJECTION").is_some() {
            warn!("FAULT_INJECTION is set, but this build cannot inject faults; ignoring it");
        }
        Self {
            pool: setup.pool.clone(),
            codec: setup.outbox.codec().clone(),
            topics: setup.outbox.codec().topics().clone(),
            outbox: setup.outbox.clone(),
            reactions,
            service: setup.service,
            group: setup.group.clone(),
            settings: setup.settings.clone(),
            health: setup.health.clone(),
            #[cfg(feature = "fault-injection")]
            faults,
        }
    }

    pub fn batch_size(&self) -> usize {
        self.settings.batch_size.max(1)
    }

    pub fn linger(&self) -> std::time::Duration {
        self.settings.linger
    }

    pub fn busy_linger(&self) -> std::time::Duration {
        self.settings.busy_linger
    }

    /// Whether a record should be handled at once, judged by its event-type header: only a known
    /// event this service ignores, or one it calls not urgent, may wait.
    pub fn is_urgent(&self, delivery: &Delivery) -> bool {
        match delivery
            .headers
            .get(headers::EVENT_TYPE)
            .and_then(EventType::from_name)
        {
            Some(event_type) => {
                self.reactions.wants(event_type) && self.reactions.is_urgent(event_type)
            }
            None => true,
        }
    }

    /// Names a partition held by its lane on `/readyz` (see `lane::run`).
    pub fn hold_partition(&self, label: &str, offset: i64) {
        self.health.stuck(
            label,
            Instant::now(),
            &format!("held at offset {offset}: a record was left unhandled; restart the service to redeliver it"),
        );
    }

    /// Counts what became of a record.
    pub(super) fn count(&self, topic: &str, event_type: &str, outcome: Outcome) {
        metrics::counter!(
            "saga_events_consumed_total",
            "service" => self.service.name(),
            "topic" => topic.to_owned(),
            "event_type" => event_type.to_owned(),
            "outcome" => outcome.label()
        )
        .increment(1);
    }
}
