//! Step 4 of a batch: every write the plan calls for besides the reactions' own. Parked rows
//! for the records that wait or fail, the retry and dead-letter records that go with them, the
//! inbox entries of the applied events and the outbox records of what they emitted, the last
//! two in one statement ([`crate::Outbox::write`]). The caller commits.

use saga_events::SagaEvent;
use sqlx::PgConnection;
use tracing::{info, warn};
use uuid::Uuid;

use super::failure::FailedAttempt;
use super::handler::{Handler, Outcome};
use super::plan::Step;
use super::read::{Item, Read};
use crate::deferred::DeferredWrites;
use crate::error::{FailureKind, HandlerError};
use crate::inbox;
use crate::outbox::{OutboxRecord, Written};
use crate::parking::{self, NewParked, ParkedStatus};

/// What a batch leaves in the inbox and the outbox.
#[derive(Default)]
struct Books {
    records: Vec<OutboxRecord>,
    handled: Vec<inbox::Entry>,
}

impl Handler {
    /// Writes the batch's bookkeeping; `emitted` holds, for each applied record in order, the
    /// records its reaction emitted, and `deferred` the writes the reactions left for the same
    /// statement. Returns what became of each record.
    pub(super) async fn keep_books(
        &self,
        tx: &mut PgConnection,
        items: &[Item],
        steps: &[Step],
        emitted: Vec<Vec<OutboxRecord>>,
        deferred: DeferredWrites,
    ) -> Result<(Vec<Outcome>, Written), sqlx::Error> {
        let mut emitted = emitted.into_iter();
        let mut books = Books::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, step) in items.iter().zip(steps) {
            let outcome = match (step, &item.read) {
                (Step::Skip(outcome), _) => *outcome,
                (
                    Step::Apply,
                    Read::Event {
                        event, event_id, ..
                    },
                ) => {
                    let delivery = item.delivery();
                    books.records.extend(emitted.next().unwrap_or_default());
                    books.handled.push(inbox::Entry {
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
                    ParkedEvent::of(item, (event, event_id, order))
                        .park(tx, ParkedStatus::Waiting, None)
                        .await?;
                    info!(record = %item.delivery(), "parked behind an earlier message of the same order");
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
                    let parked = ParkedEvent::of(item, (event, event_id, order));
                    self.park_failed(tx, item, parked, &mut books).await?
                }
                (Step::ParkDead, Read::Poison { .. }) => {
                    self.park_poison(tx, item, true, &mut books).await?
                }
                (Step::ParkWaiting, Read::Poison { .. }) => {
                    self.park_poison(tx, item, false, &mut books).await?
                }
                (Step::DeadLetter, Read::Poison { kind, reason, .. }) => {
                    let (record, _) = self.failure_record(
                        FailedAttempt::first(item.delivery(), *kind, reason).hopeless(),
                    );
                    warn!(record = %item.delivery(), %reason, "dead-lettered a record that is not a usable saga event");
                    books.records.push(record);
                    Outcome::DeadLettered
                }
                _ => Outcome::Ignored,
            };
            outcomes.push(outcome);
        }
        let written = self
            .outbox
            .write_with(tx, &books.records, &books.handled, deferred)
            .await?;
        Ok((outcomes, written))
    }

    /// An event whose reaction failed: its order's head, with its first retry (or, with one
    /// attempt allowed, its dead letter).
    async fn park_failed(
        &self,
        tx: &mut PgConnection,
        item: &Item,
        parked: ParkedEvent<'_>,
        books: &mut Books,
    ) -> Result<Outcome, sqlx::Error> {
        let error = item
            .failure
            .as_ref()
            .map(HandlerError::reason)
            .unwrap_or_default();
        let kind = item
            .failure
            .as_ref()
            .map_or(FailureKind::Permanent, HandlerError::kind);
        let id = parked
            .park(tx, ParkedStatus::Retrying, Some((kind, &error)))
            .await?;
        let (record, outcome) =
            self.failure_record(FailedAttempt::first(item.delivery(), kind, &error).parked(id));
        if outcome == Outcome::DeadLettered {
            parking::record_failure(tx, id, ParkedStatus::Dead, 1, kind, &error).await?;
        }
        books.records.push(record);
        Ok(outcome)
    }

    /// A record that is not a usable event, keyed by an order: the order's head (`head`),
    /// dead-lettered, or behind the head it already has (dead-lettered when its turn comes).
    async fn park_poison(
        &self,
        tx: &mut PgConnection,
        item: &Item,
        head: bool,
        books: &mut Books,
    ) -> Result<Outcome, sqlx::Error> {
        let Read::Poison {
            kind,
            reason,
            order: Some(order),
            event_type,
        } = &item.read
        else {
            return Ok(Outcome::Ignored);
        };
        let delivery = item.delivery();
        let parked = parking::insert_unless_parked(
            tx,
            NewParked {
                order_id: *order,
                event_id: None,
                event_type: event_type.map(|t| t.name()),
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
        Ok(match parked {
            // A redelivery of a record parked before (its dead letter, if it is the head,
            // exists).
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
                books.records.push(record);
                Outcome::DeadLettered
            }
        })
    }
}

/// An event parked for its order.
struct ParkedEvent<'a> {
    event_id: Uuid,
    order: Uuid,
    event_type: &'static str,
    source: &'a crate::delivery::Delivery,
}

impl<'a> ParkedEvent<'a> {
    fn of(item: &'a Item, read: (&SagaEvent, &Uuid, &Uuid)) -> Self {
        let (event, event_id, order) = read;
        Self {
            event_id: *event_id,
            order: *order,
            event_type: event.event_type().name(),
            source: item.delivery(),
        }
    }

    /// Inserts the parked row; returns its id.
    async fn park(
        self,
        tx: &mut PgConnection,
        status: ParkedStatus,
        failure: Option<(FailureKind, &str)>,
    ) -> Result<i64, sqlx::Error> {
        parking::insert(
            tx,
            NewParked {
                order_id: self.order,
                event_id: Some(self.event_id),
                event_type: Some(self.event_type),
                status,
                source: self.source,
                failure,
            },
        )
        .await
    }
}
