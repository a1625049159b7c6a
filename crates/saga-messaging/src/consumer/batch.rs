//! What happens to a batch of records from the event topics: one transaction, replayed without
//! the records whose reactions fail.
//!
//! 1. Every record is read first ([`super::read`]). Only the registry being away stops this
//!    step, and the batch waits for it.
//! 2. In one transaction: the advisory locks of all the batch's orders, in one fixed order; one
//!    query for where each event stands (handled before, parked, or its order parked), which
//!    also reads what the service needs of the batch's orders ([`super::Reactions::load`]); then the
//!    plan for each record ([`super::plan`]): apply, skip, park behind its order, or
//!    dead-letter.
//! 3. The reactions run one after another in that transaction ([`super::react`]). When one
//!    fails on its own merits, the transaction is rolled back and replayed with that record
//!    parked and scheduled for retry instead: no savepoint is paid for records that succeed.
//! 4. The bookkeeping ([`super::bookkeeping`]): parked rows, then one statement for the inbox
//!    and the outbox; the commit makes it all true at once and wakes the relay.
//!
//! If something that is not any one reaction fails for good (the bookkeeping itself), the batch
//! is handled again one record at a time, which finds the record at fault; a single record whose
//! bookkeeping cannot be written goes straight to the dead-letter topic with its raw bytes.

use tracing::{debug, error, warn};
use uuid::Uuid;

use super::control::{Abandoned, LaneControl};
use super::erased::Loaded;
use super::handler::{Handler, Outcome, Position};
use super::persist::{Attempt, InPlace};
use super::plan::{Step, Subject, plan};
use super::poll::Routed;
use super::read::{Item, Read, describe};
use super::{Arrival, Refusal};
use crate::deferred::DeferredWrites;
use crate::error::HandlerError;
use crate::headers::Headers;
use crate::outbox::OutboxRecord;
use crate::parking;
use crate::trace;

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

impl Handler {
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

    /// Steps 2 to 4, with the replays: until the batch commits, or shutdown.
    pub(super) async fn run_items(
        &self,
        mut items: Vec<Item>,
        lane: &LaneControl<'_>,
    ) -> Vec<Position> {
        let label = describe(&items);
        let mut waiting = InPlace::default();
        loop {
            if items.is_empty() {
                return Vec::new();
            }
            match self.run_once(&items).await {
                Ok(outcomes) => {
                    self.health.moving(&label);
                    for (item, outcome) in items.iter().zip(&outcomes) {
                        self.count(&item.delivery().topic, item.event_type_name(), *outcome);
                    }
                    return items.iter().map(Item::position).collect();
                }
                Err(BatchFailure::At(index, error)) => {
                    debug!(record = %items[index].delivery(), error = %error.reason(), "reaction failed; replaying the batch without it");
                    items[index].failure = Some(error);
                }
                Err(BatchFailure::Transient(error)) => {
                    if !self.wait_in_place(&mut waiting, &label, &error, lane).await {
                        if lane.shutting_down() {
                            return Vec::new();
                        }
                        items.retain(|item| lane.is_current(&item.routed));
                    }
                }
                Err(BatchFailure::Bookkeeping(error)) if items.len() > 1 => {
                    warn!(batch = %label, error = %error.reason(), "a batch could not be recorded; handling its records one by one");
                    return self.one_by_one(items, lane).await;
                }
                Err(BatchFailure::Bookkeeping(error)) => {
                    let item = &items[0];
                    if let Some(done) = self
                        .dead_letter_unrecordable(item, &label, &error, &mut waiting, lane)
                        .await
                    {
                        return done;
                    }
                }
            }
        }
    }

    /// A batch whose bookkeeping failed, again one record at a time: the record at fault is
    /// found, and the others go through. Nothing of a partition is handled past a record of it
    /// that was not.
    async fn one_by_one(&self, items: Vec<Item>, lane: &LaneControl<'_>) -> Vec<Position> {
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
        handled
    }

    /// One record whose bookkeeping cannot be written goes to the dead-letter topic as it is.
    /// Some(positions) when settled (handled, or given back: shutdown, revocation); None to
    /// keep trying, for nothing behind it may go first.
    async fn dead_letter_unrecordable(
        &self,
        item: &Item,
        label: &str,
        error: &HandlerError,
        waiting: &mut InPlace,
        lane: &LaneControl<'_>,
    ) -> Option<Vec<Position>> {
        let reason = format!("could not be recorded: {}", error.reason());
        error!(record = %item.delivery(), %reason, "dead-lettering a record whose bookkeeping fails");
        let attempt = self
            .persist(lane, label, || {
                self.dead_letter_raw(item.delivery(), &reason)
            })
            .await;
        let gone = || lane.shutting_down() || !lane.is_current(&item.routed);
        match attempt {
            Attempt::Done(()) => {
                self.count(
                    &item.delivery().topic,
                    item.event_type_name(),
                    Outcome::DeadLettered,
                );
                Some(vec![item.position()])
            }
            // Not even a dead letter can be written: keep the record and keep trying, with the
            // partition named on /readyz.
            Attempt::Failed(error) => {
                let waited = self.wait_in_place(waiting, label, &error, lane).await;
                (!waited && gone()).then(Vec::new)
            }
            Attempt::Interrupted if gone() => Some(Vec::new()),
            // Another partition's revocation woke the lane: this record is still ours, and
            // nothing behind it may go first.
            Attempt::Interrupted => None,
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
        let subjects: Vec<Subject> = items.iter().map(Subject::of).collect();
        let orders: Vec<Uuid> = subjects.iter().filter_map(|s| s.order()).collect();
        let mut tx = parking::begin_locked(&self.pool, &orders).await?;
        let questions: Vec<_> = subjects.iter().filter_map(|s| s.question()).collect();
        let (standings, loaded) = self.reactions.load(&mut tx, &questions, &orders).await?;
        let steps = plan(&subjects, &standings);
        let mut deferred = DeferredWrites::default();
        let emitted = self
            .react_as_planned(&mut tx, items, &steps, contexts, loaded, &mut deferred)
            .await?;
        let carries_reactions = !deferred.is_empty();
        let (outcomes, written) = self
            .keep_books(&mut tx, items, &steps, emitted, deferred)
            .await
            .map_err(|error| {
                let error = HandlerError::from(error);
                // The reactions' own writes ran in that statement: blamed as a reaction failing
                // with no one event named would be, not as bookkeeping alone.
                if carries_reactions && !error.is_transient() {
                    blame_reactions(&applying(&steps), error)
                } else {
                    BatchFailure::classify(error)
                }
            })?;
        self.outbox.commit(tx, written).await?;
        Ok(outcomes)
    }

    /// Step 3 for the records the plan applies; a refusal names the batch's item at fault.
    async fn react_as_planned(
        &self,
        tx: &mut sqlx::PgConnection,
        items: &[Item],
        steps: &[Step],
        contexts: &[Headers],
        loaded: Loaded,
        deferred: &mut DeferredWrites,
    ) -> Result<Vec<Vec<OutboxRecord>>, BatchFailure> {
        let applying = applying(steps);
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
        if arrivals.is_empty() {
            return Ok(Vec::new());
        }
        let arrival_contexts: Vec<Headers> =
            applying.iter().map(|i| contexts[*i].clone()).collect();
        match self
            .react(tx, &arrivals, &arrival_contexts, loaded, deferred)
            .await
        {
            Ok(emitted) => Ok(emitted),
            Err(Refusal { error, .. }) if error.is_transient() => {
                Err(BatchFailure::Transient(error))
            }
            Err(Refusal {
                index: Some(index),
                error,
            }) => Err(BatchFailure::At(applying[index], error)),
            Err(Refusal { index: None, error }) => Err(blame_reactions(&applying, error)),
        }
    }
}

/// The batch's items whose events its reactions are given.
fn applying(steps: &[Step]) -> Vec<usize> {
    (0..steps.len())
        .filter(|i| matches!(steps[*i], Step::Apply))
        .collect()
}

/// The reactions to the items at `applying` failed together: the one item's fault if there is
/// one, or the batch's to be handled again one record at a time.
fn blame_reactions(applying: &[usize], error: HandlerError) -> BatchFailure {
    match applying {
        [only] => BatchFailure::At(*only, error),
        _ => BatchFailure::Bookkeeping(error),
    }
}
