//! What happens to a batch of records from the event topics: one transaction, replayed without
//! the records whose reactions fail.
//!
//! 1. Every record is read first: a saga event this service reacts to, one it ignores, or poison
//!    (bytes that are not a saga event, or an event whose ids are not ids). Only the registry
//!    being away stops this step, and the batch waits for it.
//! 2. In one transaction: the advisory locks of all the batch's orders, in one fixed order; one
//!    query for where each event stands (handled before, parked, or its order parked); then the
//!    plan for each record — apply, skip, park behind its order, or dead-letter.
//! 3. The reactions run one after another in that transaction. When one fails on its own merits,
//!    the transaction is rolled back and replayed with that record parked and scheduled for
//!    retry instead: no savepoint is paid for records that succeed.
//! 4. One insert records the applied events in the inbox, one appends everything to publish to
//!    the outbox, and the commit makes it all true at once.
//!
//! If something that is not any one reaction fails for good (the bookkeeping itself), the batch
//! is handled again one record at a time, which finds the record at fault; a single record whose
//! bookkeeping cannot be written goes straight to the dead-letter topic with its raw bytes.

use std::collections::{BTreeSet, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use saga_events::{EventCodec, EventType, SagaEvent, Service, TopicNames};
use sqlx::{PgConnection, PgPool};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::lane::{Abandoned, LaneControl};
use super::poll::Routed;
use super::{Arrival, ConsumerSettings, ConsumerSetup, Reactions, Refusal};
use crate::backoff::Backoff;
use crate::delivery::Delivery;
use crate::error::{FailureKind, HandlerError, error_chain};
use crate::headers::{self, Headers};
use crate::health::Health;
use crate::inbox::{self, Standing};
use crate::outbox::{Outbox, OutboxRecord};
use crate::parking::{self, Failure, NewParked, ParkedStatus};
use crate::trace;

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

/// A record as read in step 1.
pub(super) enum Read {
    Event {
        event: Box<SagaEvent>,
        event_id: Uuid,
        order: Uuid,
        /// The record its writer wrote (an older major's name when it was upcast).
        written_as: std::sync::Arc<str>,
    },
    Ignored(EventType),
    Poison {
        kind: FailureKind,
        reason: String,
        /// The order the record's key names, if it names one: parked behind the poison.
        order: Option<Uuid>,
        event_type: Option<EventType>,
    },
}

pub(super) struct Item {
    pub routed: Routed,
    pub read: Read,
    /// Set when its reaction failed in an earlier run of this batch.
    pub failure: Option<HandlerError>,
}

impl Item {
    fn delivery(&self) -> &Delivery {
        &self.routed.delivery
    }

    fn position(&self) -> Position {
        let d = self.delivery();
        (d.topic.clone(), d.partition, d.offset)
    }
}

/// Why a run of a batch did not commit.
enum BatchFailure {
    /// The reaction to the item at this index failed on its own merits.
    At(usize, HandlerError),
    /// Infrastructure: try the same again later.
    Transient(HandlerError),
    /// Writing the batch's bookkeeping failed, and no one item can be blamed yet.
    Bookkeeping(HandlerError),
}

impl BatchFailure {
    fn classify(error: HandlerError) -> Self {
        if error.is_transient() {
            BatchFailure::Transient(error)
        } else {
            BatchFailure::Bookkeeping(error)
        }
    }
}

impl From<sqlx::Error> for BatchFailure {
    fn from(error: sqlx::Error) -> Self {
        BatchFailure::classify(error.into())
    }
}

/// How a run that waits on infrastructure ended.
pub(super) enum Attempt<T> {
    Done(T),
    /// Failed for good: the caller decides where the record goes.
    Failed(HandlerError),
    /// Shutdown or a revocation came first.
    Interrupted,
}

impl<T> Attempt<T> {
    /// The same ending, with what a successful run returned mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Done(value) => Attempt::Done(f(value)),
            Attempt::Failed(error) => Attempt::Failed(error),
            Attempt::Interrupted => Attempt::Interrupted,
        }
    }
}

/// One failed attempt at a record: what its retry or dead-letter record says.
pub(super) struct FailedAttempt<'a> {
    pub parked_id: Option<i64>,
    pub source: &'a Delivery,
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub kind: FailureKind,
    pub error: &'a str,
    pub first: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
    /// No retry can help (the record is not a usable event): dead-letter it now.
    pub hopeless: bool,
}

impl<'a> FailedAttempt<'a> {
    /// The first attempt, failed just now.
    pub fn first(source: &'a Delivery, kind: FailureKind, error: &'a str) -> Self {
        let now = chrono::Utc::now();
        Self {
            parked_id: None,
            source,
            attempts: 1,
            kind,
            error,
            first: now,
            last: now,
            hopeless: false,
        }
    }

    pub fn parked(mut self, id: i64) -> Self {
        self.parked_id = Some(id);
        self
    }

    pub fn hopeless(mut self) -> Self {
        self.hopeless = true;
        self
    }
}

/// What each item of a batch run does.
enum Step {
    Skip(Outcome),
    Apply,
    ParkWaiting,
    ParkFailed,
    ParkDead,
    DeadLetter,
}

/// Handles a service's records; shared by its lanes.
pub(crate) struct Handler<R> {
    pub(super) pool: PgPool,
    pub(super) outbox: Outbox,
    pub(super) codec: EventCodec,
    pub(super) topics: TopicNames,
    pub(super) reactions: R,
    pub(super) service: Service,
    /// The consumer group, as traces name it.
    pub(super) group: String,
    pub(super) settings: ConsumerSettings,
    pub(super) health: Health,
    #[cfg(feature = "fault-injection")]
    faults: crate::faults::FaultInjection,
}

impl<R: Reactions> Handler<R> {
    pub fn new(setup: &ConsumerSetup, reactions: R) -> Self {
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
                error!(%error, "FAULT_INJECTION is malformed; injecting nothing");
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

    /// Handles records of the event topics; returns the positions of those now handled (all of
    /// them, unless shutdown or a revocation interrupted).
    pub async fn handle_batch(&self, batch: Vec<Routed>, lane: &LaneControl<'_>) -> Vec<Position> {
        let mut items = Vec::with_capacity(batch.len());
        let mut abandoned = Abandoned::default();
        for routed in batch {
            if abandoned.contains(&routed) {
                continue;
            }
            match self.read_until_readable(&routed, lane).await {
                Some(read) => items.push(Item {
                    routed,
                    read,
                    failure: None,
                }),
                None if lane.shutting_down() => return Vec::new(),
                // Revoked while the registry was away: the next owner reads it, and everything
                // of its partition after it.
                None => abandoned.abandon(&routed),
            }
        }
        self.run_items(items, lane).await
    }

    /// Reads a record, waiting out a registry that is away. None if shutdown or the record's
    /// revocation came first.
    pub(super) async fn read_until_readable(
        &self,
        routed: &Routed,
        lane: &LaneControl<'_>,
    ) -> Option<Read> {
        let delivery = &routed.delivery;
        let label = format!("{}[{}]", delivery.topic, delivery.partition);
        loop {
            match self.persist(lane, &label, || self.read(delivery)).await {
                Attempt::Done(read) => return Some(read),
                Attempt::Failed(error) => {
                    return Some(Read::Poison {
                        kind: error.kind(),
                        reason: error.reason(),
                        order: delivery.key_order(),
                        event_type: None,
                    });
                }
                Attempt::Interrupted if lane.shutting_down() || !lane.is_current(routed) => {
                    return None;
                }
                // Another partition's revocation woke the lane: keep trying.
                Attempt::Interrupted => {}
            }
        }
    }

    /// Step 1 for one record. Only a transient registry failure is an error.
    pub(super) async fn read(&self, delivery: &Delivery) -> Result<Read, HandlerError> {
        if delivery.headers.contains_key(headers::UNREADABLE_HEADERS) {
            return Ok(Read::Poison {
                kind: FailureKind::Undecodable,
                reason: "the record's header names are not valid UTF-8".to_owned(),
                order: delivery.key_order(),
                event_type: None,
            });
        }
        // The relays that write the event topics name each record's type in a header: what this
        // service ignores is acknowledged without decoding it.
        if let Some(named) = delivery
            .headers
            .get(headers::EVENT_TYPE)
            .and_then(EventType::from_name)
            && !self.reactions.wants(named)
        {
            return Ok(Read::Ignored(named));
        }
        let (event, written_as) = match self.codec.decode_written(&delivery.payload).await {
            Ok(decoded) => (decoded.event, decoded.written_as),
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                return Ok(Read::Poison {
                    kind: FailureKind::Undecodable,
                    reason: error_chain(&error),
                    order: delivery.key_order(),
                    event_type: None,
                });
            }
        };
        let event_type = event.event_type();
        if !self.reactions.wants(event_type) {
            return Ok(Read::Ignored(event_type));
        }
        // Anything larger is not a saga event, and whatever a service would emit in reply to it
        // could outgrow what the event topics take, stopping the relay that sends it.
        if delivery.payload.len() > self.settings.max_event_bytes {
            return Ok(Read::Poison {
                kind: FailureKind::Permanent,
                reason: format!(
                    "the record's value is {} bytes; events are at most {} (MAX_EVENT_BYTES)",
                    delivery.payload.len(),
                    self.settings.max_event_bytes
                ),
                order: delivery.key_order(),
                event_type: Some(event_type),
            });
        }
        let ids =
            crate::error::parse_uuid("event_id", &event.metadata().event_id).and_then(|event_id| {
                crate::error::parse_uuid("order_id", event.order_id()).map(|o| (event_id, o))
            });
        let refusal = match ids {
            // Without usable ids the event can be neither deduplicated nor kept in order.
            Err(error) => error.reason(),
            // The saga keys every record by its order: a record keyed otherwise sits on another
            // order's partition, where its order's events are not kept in order.
            Ok((_, order)) if delivery.key_order() != Some(order) => format!(
                "the record key {:?} is not the event's order id {order}",
                String::from_utf8_lossy(delivery.key.as_deref().unwrap_or_default())
            ),
            Ok((event_id, order)) => {
                return Ok(Read::Event {
                    event: Box::new(event),
                    event_id,
                    order,
                    written_as,
                });
            }
        };
        Ok(Read::Poison {
            kind: FailureKind::Permanent,
            reason: refusal,
            order: delivery.key_order(),
            event_type: Some(event_type),
        })
    }

    /// Steps 2 to 4, with the replays: until the batch commits, or shutdown.
    pub(super) async fn run_items(
        &self,
        mut items: Vec<Item>,
        lane: &LaneControl<'_>,
    ) -> Vec<Position> {
        let label = describe(&items);
        let mut backoff = Backoff::new();
        let mut failing_since: Option<Instant> = None;
        let mut in_place = None;
        loop {
            if items.is_empty() {
                return Vec::new();
            }
            match self.run_once(&items).await {
                Ok(outcomes) => {
                    self.health.moving(&label);
                    for (item, outcome) in items.iter().zip(&outcomes) {
                        self.count(item, *outcome);
                    }
                    return items.iter().map(Item::position).collect();
                }
                Err(BatchFailure::At(index, error)) => {
                    debug!(record = %items[index].delivery(), error = %error.reason(), "reaction failed; replaying the batch without it");
                    items[index].failure = Some(error);
                }
                Err(BatchFailure::Transient(error)) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    in_place.get_or_insert_with(|| self.health.retrying_in_place());
                    self.waiting_on_infrastructure(&label, since, &error);
                    if !backoff.wait(lane.interrupted()).await {
                        if lane.shutting_down() {
                            return Vec::new();
                        }
                        items.retain(|item| lane.is_current(&item.routed));
                    }
                }
                Err(BatchFailure::Bookkeeping(error)) if items.len() > 1 => {
                    warn!(batch = %label, error = %error.reason(), "a batch could not be recorded; handling its records one by one");
                    let mut handled = Vec::new();
                    let mut abandoned = Abandoned::default();
                    for item in items {
                        if abandoned.contains(&item.routed) {
                            continue;
                        }
                        let routed_at = (
                            item.routed.delivery.topic.clone(),
                            item.routed.delivery.partition,
                        );
                        let one = Box::pin(self.run_items(vec![item], lane)).await;
                        if one.is_empty() {
                            if lane.shutting_down() {
                                break;
                            }
                            abandoned.abandon_partition(routed_at);
                        }
                        handled.extend(one);
                    }
                    return handled;
                }
                Err(BatchFailure::Bookkeeping(error)) => {
                    let item = &items[0];
                    let reason = format!("could not be recorded: {}", error.reason());
                    error!(record = %item.delivery(), %reason, "dead-lettering a record whose bookkeeping fails");
                    let attempt = self
                        .persist(lane, &label, || {
                            self.dead_letter_raw(item.delivery(), &reason)
                        })
                        .await;
                    match attempt {
                        Attempt::Done(()) => {
                            self.count(item, Outcome::DeadLettered);
                            return vec![item.position()];
                        }
                        Attempt::Failed(error) => {
                            // Not even a dead letter can be written: keep the record and keep
                            // trying, with the partition named on /readyz.
                            let since = *failing_since.get_or_insert_with(Instant::now);
                            in_place.get_or_insert_with(|| self.health.retrying_in_place());
                            self.waiting_on_infrastructure(&label, since, &error);
                            if !backoff.wait(lane.interrupted()).await
                                && (lane.shutting_down() || !lane.is_current(&item.routed))
                            {
                                return Vec::new();
                            }
                        }
                        Attempt::Interrupted
                            if lane.shutting_down() || !lane.is_current(&item.routed) =>
                        {
                            return Vec::new();
                        }
                        // Another partition's revocation woke the lane: this record is still
                        // ours, and nothing behind it may go first.
                        Attempt::Interrupted => {}
                    }
                }
            }
        }
    }

    /// One run of steps 2 to 4, each saga event inside a process span of its own (a child of the
    /// producer span its record names), and that inside the span of the batch's transaction.
    async fn run_once(&self, items: &[Item]) -> Result<Vec<Outcome>, BatchFailure> {
        let events = items
            .iter()
            .filter(|item| matches!(item.read, Read::Event { .. }))
            .count();
        let spans: Vec<Option<(tracing::Span, tracing::Span)>> = items
            .iter()
            .map(|item| match &item.read {
                Read::Event { event, order, .. } => {
                    let process = trace::process_span(
                        &self.group,
                        item.delivery(),
                        event.event_type().name(),
                        &order.to_string(),
                    );
                    let transaction = trace::transaction_span(&process, events);
                    Some((process, transaction))
                }
                _ => None,
            })
            .collect();
        let contexts: Vec<Headers> = items
            .iter()
            .zip(&spans)
            .map(|(item, spans)| match spans {
                Some((_, transaction)) => trace::context_or(transaction, &item.delivery().headers),
                None => Headers::new(),
            })
            .collect();
        let result = self.run_once_in(items, &contexts).await;
        for (index, spans) in spans.iter().enumerate() {
            if let Some((process, _)) = spans {
                let outcome = match &result {
                    Ok(outcomes) => outcomes.get(index).map_or("unknown", |o| o.label()),
                    Err(BatchFailure::At(at, _)) if *at == index => "failed",
                    Err(_) => "rolled_back",
                };
                trace::processed(process, outcome);
            }
        }
        result
    }

    /// Steps 2 to 4; `contexts` holds the trace context each item's emitted events carry.
    async fn run_once_in(
        &self,
        items: &[Item],
        contexts: &[Headers],
    ) -> Result<Vec<Outcome>, BatchFailure> {
        if items
            .iter()
            .all(|item| matches!(item.read, Read::Ignored(_)))
        {
            return Ok(vec![Outcome::Ignored; items.len()]);
        }
        let orders: Vec<Uuid> = items
            .iter()
            .filter_map(|item| match &item.read {
                Read::Event { order, .. } => Some(*order),
                Read::Poison { order, .. } => *order,
                Read::Ignored(_) => None,
            })
            .collect();
        let mut tx = parking::begin_locked(&self.pool, &orders).await?;
        let checks: Vec<(Option<Uuid>, String)> = items
            .iter()
            .filter_map(|item| match &item.read {
                Read::Event {
                    event_id, order, ..
                } => Some((Some(*event_id), order.to_string())),
                Read::Poison {
                    order: Some(order), ..
                } => Some((None, order.to_string())),
                _ => None,
            })
            .collect();
        let mut standing = inbox::standing(&mut tx, &checks).await?.into_iter();

        // The plan, in arrival order: an order parked by an earlier record of this batch parks
        // its later records too.
        let mut parked_orders: HashSet<Uuid> = HashSet::new();
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut steps = Vec::with_capacity(items.len());
        for item in items {
            steps.push(match &item.read {
                Read::Ignored(_) => Step::Skip(Outcome::Ignored),
                // An order has one head: behind one, a poison record waits like any other
                // message, and is dead-lettered when its turn comes.
                Read::Poison {
                    order: Some(order), ..
                } => {
                    let parked_before = standing.next() == Some(Standing::OrderParked);
                    let parked_in_batch = !parked_orders.insert(*order);
                    if parked_before || parked_in_batch {
                        Step::ParkWaiting
                    } else {
                        Step::ParkDead
                    }
                }
                Read::Poison { order: None, .. } => Step::DeadLetter,
                Read::Event {
                    event_id, order, ..
                } => {
                    let stands = standing.next().unwrap_or(Standing::Clear);
                    if stands == Standing::OrderParked {
                        parked_orders.insert(*order);
                    }
                    if stands == Standing::Known || !seen.insert(*event_id) {
                        Step::Skip(Outcome::Duplicate)
                    } else if parked_orders.contains(order) {
                        Step::ParkWaiting
                    } else if item.failure.is_some() {
                        parked_orders.insert(*order);
                        Step::ParkFailed
                    } else {
                        Step::Apply
                    }
                }
            });
        }

        let applying: Vec<usize> = (0..items.len())
            .filter(|i| matches!(steps[*i], Step::Apply))
            .collect();
        let arrivals: Vec<Arrival<'_>> = applying
            .iter()
            .filter_map(|i| match &items[*i].read {
                Read::Event {
                    event,
                    order,
                    written_as,
                    ..
                } => Some(Arrival {
                    event: event.as_ref(),
                    order_id: *order,
                    delivery: items[*i].delivery(),
                    written_as,
                }),
                _ => None,
            })
            .collect();
        let arrival_contexts: Vec<Headers> =
            applying.iter().map(|i| contexts[*i].clone()).collect();
        let mut emitted = if arrivals.is_empty() {
            Vec::new()
        } else {
            match self.react(&mut tx, &arrivals, &arrival_contexts).await {
                Ok(emitted) => emitted,
                Err(Refusal { error, .. }) if error.is_transient() => {
                    return Err(BatchFailure::Transient(error));
                }
                Err(Refusal {
                    index: Some(index),
                    error,
                }) => return Err(BatchFailure::At(applying[index], error)),
                Err(Refusal { index: None, error }) => {
                    return Err(match applying.as_slice() {
                        [only] => BatchFailure::At(*only, error),
                        _ => BatchFailure::Bookkeeping(error),
                    });
                }
            }
        }
        .into_iter();

        let mut records: Vec<OutboxRecord> = Vec::new();
        let mut handled: Vec<inbox::Entry> = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, step) in items.iter().zip(&steps) {
            let delivery = item.delivery();
            let outcome = match (step, &item.read) {
                (Step::Skip(outcome), _) => *outcome,
                (
                    Step::Apply,
                    Read::Event {
                        event, event_id, ..
                    },
                ) => {
                    records.extend(emitted.next().unwrap_or_default());
                    handled.push(inbox::Entry {
                        event_id: *event_id,
                        event_type: event.event_type().name(),
                        topic: delivery.topic.clone(),
                        partition: delivery.partition,
                        offset: delivery.offset,
                    });
                    Outcome::Applied
                }
                (
                    Step::ParkWaiting,
                    Read::Event {
                        event,
                        event_id,
                        order,
                        ..
                    },
                ) => {
                    parking::insert(
                        &mut tx,
                        NewParked {
                            order_id: *order,
                            event_id: Some(*event_id),
                            event_type: Some(event.event_type().name()),
                            status: ParkedStatus::Waiting,
                            source: delivery,
                            failure: None,
                        },
                    )
                    .await?;
                    info!(record = %delivery, "parked behind an earlier message of the same order");
                    Outcome::ParkedBehind
                }
                (
                    Step::ParkFailed,
                    Read::Event {
                        event,
                        event_id,
                        order,
                        ..
                    },
                ) => {
                    let error = item
                        .failure
                        .as_ref()
                        .map(HandlerError::reason)
                        .unwrap_or_default();
                    let kind = item
                        .failure
                        .as_ref()
                        .map_or(FailureKind::Permanent, HandlerError::kind);
                    let id = parking::insert(
                        &mut tx,
                        NewParked {
                            order_id: *order,
                            event_id: Some(*event_id),
                            event_type: Some(event.event_type().name()),
                            status: ParkedStatus::Retrying,
                            source: delivery,
                            failure: Some((kind, &error)),
                        },
                    )
                    .await?;
                    let (record, outcome) = self
                        .failure_record(FailedAttempt::first(delivery, kind, &error).parked(id));
                    if outcome == Outcome::DeadLettered {
                        parking::record_failure(&mut tx, id, ParkedStatus::Dead, 1, kind, &error)
                            .await?;
                    }
                    records.push(record);
                    outcome
                }
                // A record that is not a usable event, keyed by an order: the order's head, or
                // behind the head it already has (dead-lettered when its turn comes).
                (
                    step @ (Step::ParkDead | Step::ParkWaiting),
                    Read::Poison {
                        kind,
                        reason,
                        order: Some(order),
                        event_type,
                    },
                ) => {
                    let head = matches!(step, Step::ParkDead);
                    let parked = parking::insert_unless_parked(
                        &mut tx,
                        NewParked {
                            order_id: *order,
                            event_id: None,
                            event_type: event_type.map(EventType::name),
                            status: if head {
                                ParkedStatus::Dead
                            } else {
                                ParkedStatus::Waiting
                            },
                            source: delivery,
                            failure: head.then_some((*kind, reason.as_str())),
                        },
                    )
                    .await?;
                    match parked {
                        // A redelivery of a record parked before (its dead letter, if it is the
                        // head, exists).
                        None => Outcome::Duplicate,
                        Some(_) if !head => {
                            info!(record = %delivery, "parked a record that is not a usable saga event behind an earlier message of its order");
                            Outcome::ParkedBehind
                        }
                        Some(id) => {
                            let (record, _) = self.failure_record(
                                FailedAttempt::first(delivery, *kind, reason)
                                    .parked(id)
                                    .hopeless(),
                            );
                            warn!(record = %delivery, %reason, "dead-lettered a record that is not a usable saga event; its order waits behind it");
                            records.push(record);
                            Outcome::DeadLettered
                        }
                    }
                }
                (Step::DeadLetter, Read::Poison { kind, reason, .. }) => {
                    let (record, _) = self
                        .failure_record(FailedAttempt::first(delivery, *kind, reason).hopeless());
                    warn!(record = %delivery, %reason, "dead-lettered a record that is not a usable saga event");
                    records.push(record);
                    Outcome::DeadLettered
                }
                _ => Outcome::Ignored,
            };
            outcomes.push(outcome);
        }
        self.outbox
            .insert_with_inbox(&mut tx, &records, &handled)
            .await?;
        tx.commit().await?;
        if !records.is_empty() {
            self.outbox.committed();
        }
        Ok(outcomes)
    }

    /// Runs the service's reactions to a batch, and encodes what each event emits with the trace
    /// context in `contexts` (one per arrival, that of its handling): each saga stays one trace
    /// however its events were batched. A panicking reaction fails the batch like an error (one
    /// event's, when the batch holds one).
    pub(super) async fn react(
        &self,
        tx: &mut PgConnection,
        arrivals: &[Arrival<'_>],
        contexts: &[Headers],
    ) -> Result<Vec<Vec<OutboxRecord>>, Refusal> {
        let started = Instant::now();
        let reaction = async {
            #[cfg(feature = "fault-injection")]
            for (index, arrival) in arrivals.iter().enumerate() {
                match self.faults.should_fail(arrival.event) {
                    Some(crate::faults::Fault::Fail(reason)) => {
                        return Err(Refusal::at(index, HandlerError::rejected(reason)));
                    }
                    Some(crate::faults::Fault::Panic(reason)) => panic!("{reason}"),
                    None => {}
                }
            }
            self.reactions.react(tx, arrivals).await
        };
        let emitted = AssertUnwindSafe(reaction)
            .catch_unwind()
            .await
            .map_err(|panic| Refusal {
                index: (arrivals.len() == 1).then_some(0),
                error: HandlerError::Panicked(panic_message(&panic)),
            })??;
        if emitted.len() != arrivals.len() {
            return Err(Refusal::from(HandlerError::rejected(format!(
                "the reactions answered for {} of {} events",
                emitted.len(),
                arrivals.len()
            ))));
        }
        let elapsed = started.elapsed().as_secs_f64() / arrivals.len() as f64;
        let now_millis = chrono::Utc::now().timestamp_millis();
        let mut records = Vec::with_capacity(arrivals.len());
        for (index, ((arrival, events), context)) in
            arrivals.iter().zip(emitted).zip(contexts).enumerate()
        {
            let event = arrival.event;
            let event_type = event.event_type().name();
            metrics::histogram!("saga_event_handling_seconds", "event_type" => event_type)
                .record(elapsed);
            // How old the event is when it takes effect: every hop's queueing and retries.
            let age_millis = now_millis
                .saturating_sub(event.metadata().occurred_at)
                .max(0);
            metrics::histogram!(
                "saga_event_age_seconds",
                "topic" => arrival.delivery.topic.clone(),
                "event_type" => event_type
            )
            .record(age_millis as f64 / 1000.0);
            let mut encoded = Vec::with_capacity(events.len());
            for outgoing in &events {
                encoded.push(
                    self.outbox
                        .record(outgoing, context)
                        .await
                        .map_err(|error| Refusal::at(index, error))?,
                );
            }
            records.push(encoded);
        }
        Ok(records)
    }

    /// Whether a message that failed `attempts` times this way goes to the dead-letter topic.
    pub(super) fn gives_up(&self, kind: FailureKind, attempts: i32) -> bool {
        kind == FailureKind::Undecodable || attempts >= self.settings.max_attempts
    }

    /// The retry or dead-letter record of a failed attempt, and which of the two it is.
    pub(super) fn failure_record(&self, failed: FailedAttempt<'_>) -> (OutboxRecord, Outcome) {
        let FailedAttempt {
            parked_id,
            source,
            attempts,
            kind,
            error,
            first,
            last,
            hopeless,
        } = failed;
        let dead = hopeless || self.gives_up(kind, attempts);
        let delay = self.settings.retry_delay
            * 2u32.saturating_pow(u32::try_from(attempts - 1).unwrap_or(0));
        let (topic, not_before) = if dead {
            (self.topics.dlq(self.service), None)
        } else {
            let due = chrono::Utc::now().timestamp_millis()
                + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (self.topics.retry(self.service), Some(due))
        };
        let headers = Failure {
            service: self.service.name(),
            source,
            parked_id,
            attempts,
            kind,
            error,
            first,
            last,
            not_before_millis: not_before,
        }
        .headers();
        let labels = [
            ("service", self.service.name().to_owned()),
            ("topic", source.topic.clone()),
            ("error_kind", kind.as_str().to_owned()),
        ];
        let outcome = if dead {
            metrics::counter!("saga_dead_letters_total", &labels).increment(1);
            error!(record = %source, attempts, error, "dead-lettered");
            Outcome::DeadLettered
        } else {
            metrics::counter!("saga_retries_scheduled_total", &labels).increment(1);
            warn!(record = %source, attempts, error, retry_in = ?delay, "handling failed; scheduled a retry");
            Outcome::RetryScheduled
        };
        let record = OutboxRecord {
            id: Uuid::new_v4(),
            event_type: source
                .headers
                .get(headers::EVENT_TYPE)
                .filter(|t| EventType::ALL.iter().any(|e| e.name() == *t))
                .unwrap_or("unknown")
                .to_owned(),
            topic,
            key: source.key.clone(),
            payload: source.payload.clone(),
            headers,
        };
        (record, outcome)
    }

    /// A record whose bookkeeping cannot be written, straight to the dead-letter topic.
    async fn dead_letter_raw(&self, delivery: &Delivery, reason: &str) -> Result<(), HandlerError> {
        let (record, _) = self.failure_record(
            FailedAttempt::first(delivery, FailureKind::Permanent, reason).hopeless(),
        );
        let mut tx = self.pool.begin().await?;
        self.outbox.insert(&mut tx, &[record]).await?;
        tx.commit().await?;
        self.outbox.committed();
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails for good, or shutdown or a revocation interrupts
    /// its backoff. Infrastructure failures are waited out; after `stuck_after` the wait is
    /// named on `/readyz`.
    pub(super) async fn persist<T, F, Fut>(
        &self,
        lane: &LaneControl<'_>,
        label: &str,
        mut attempt: F,
    ) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HandlerError>>,
    {
        let mut backoff = Backoff::new();
        let mut failing_since: Option<Instant> = None;
        let mut in_place = None;
        loop {
            match attempt().await {
                Ok(value) => {
                    if failing_since.is_some() {
                        self.health.moving(label);
                    }
                    return Attempt::Done(value);
                }
                Err(error) if error.is_transient() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    in_place.get_or_insert_with(|| self.health.retrying_in_place());
                    self.waiting_on_infrastructure(label, since, &error);
                    if !backoff.wait(lane.interrupted()).await {
                        return Attempt::Interrupted;
                    }
                }
                Err(error) => return Attempt::Failed(error),
            }
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

    fn waiting_on_infrastructure(&self, label: &str, since: Instant, error: &HandlerError) {
        let reason = error.reason();
        warn!(partitions = label, error = %reason, "infrastructure failure; retrying in place");
        metrics::counter!("saga_retries_in_place_total", "service" => self.service.name())
            .increment(1);
        if since.elapsed() >= self.settings.stuck_after {
            self.health.stuck(label, since, &reason);
        }
    }

    fn count(&self, item: &Item, outcome: Outcome) {
        let event_type = match &item.read {
            Read::Event { event, .. } => event.event_type().name(),
            Read::Ignored(event_type) => event_type.name(),
            Read::Poison { .. } => "unknown",
        };
        metrics::counter!(
            "saga_events_consumed_total",
            "service" => self.service.name(),
            "topic" => item.delivery().topic.clone(),
            "event_type" => event_type,
            "outcome" => outcome.label()
        )
        .increment(1);
    }
}

/// `topic[p, q]…` of the records in a batch: how a stuck batch is named.
fn describe(items: &[Item]) -> String {
    let mut partitions: BTreeSet<(&str, i32)> = BTreeSet::new();
    for item in items {
        partitions.insert((item.delivery().topic.as_str(), item.delivery().partition));
    }
    let mut text = String::new();
    let mut current: Option<&str> = None;
    for (topic, partition) in partitions {
        if current == Some(topic) {
            text.push_str(&format!(",{partition}"));
        } else {
            if current.is_some() {
                text.push_str("] ");
            }
            text.push_str(&format!("{topic}[{partition}"));
            current = Some(topic);
        }
    }
    if current.is_some() {
        text.push(']');
    }
    text
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
