//! Step 2 of a batch, without I/O: what to do with each record, given what the inbox says of it
//! (handled before? its order parked?) and what the records before it in the batch decided.
//!
//! - A record this service ignores is skipped; a duplicate (handled or parked before, or twice
//!   in the batch) is skipped.
//! - An order has one head. A record of an order that is parked (before, or by an earlier
//!   record of this batch) waits behind the head. A record whose reaction failed in an earlier
//!   run of the batch becomes its order's head, scheduled for retry.
//! - Poison keyed by an order becomes the order's head, dead-lettered at once (or waits behind
//!   the head the order already has); poison without an order is dead-lettered.
//! - Everything else is applied.

use std::collections::HashSet;

use uuid::Uuid;

use super::handler::Outcome;
use super::read::{Item, Read};
use crate::inbox::Standing;

/// What each record of a batch run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Skip(Outcome),
    Apply,
    /// Park behind its order's head.
    ParkWaiting,
    /// Become its order's head, scheduled for retry.
    ParkFailed,
    /// Poison that becomes its order's head, dead-lettered.
    ParkDead,
    /// Poison with no order: dead-lettered.
    DeadLetter,
}

/// What the plan needs to know of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    Ignored,
    Poison {
        order: Option<Uuid>,
    },
    Event {
        event_id: Uuid,
        order: Uuid,
        /// Its reaction failed in an earlier run of this batch.
        failed: bool,
    },
}

impl Subject {
    pub fn of(item: &Item) -> Self {
        match &item.read {
            Read::Ignored(_) => Subject::Ignored,
            Read::Poison { order, .. } => Subject::Poison { order: *order },
            Read::Event {
                event_id, order, ..
            } => Subject::Event {
                event_id: *event_id,
                order: *order,
                failed: item.failure.is_some(),
            },
        }
    }

    /// The order the record's locks and standing are about, if any.
    pub fn order(self) -> Option<Uuid> {
        match self {
            Subject::Ignored => None,
            Subject::Poison { order } => order,
            Subject::Event { order, .. } => Some(order),
        }
    }

    /// What the inbox is asked about the record: its event id, if it has one, and its order.
    /// None for a record that needs no answer (its standing is not asked).
    pub fn question(self) -> Option<(Option<Uuid>, String)> {
        match self {
            Subject::Event {
                event_id, order, ..
            } => Some((Some(event_id), order.to_string())),
            Subject::Poison { order: Some(order) } => Some((None, order.to_string())),
            _ => None,
        }
    }
}

/// The plan, in arrival order. `standings` answers, in order, each subject that has a
/// [`Subject::question`].
pub(super) fn plan(subjects: &[Subject], standings: &[Standing]) -> Vec<Step> {
    let mut standings = standings.iter().copied();
    let mut parked_orders: HashSet<Uuid> = HashSet::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut steps = Vec::with_capacity(subjects.len());
    for subject in subjects {
        steps.push(match *subject {
            Subject::Ignored => Step::Skip(Outcome::Ignored),
            // An order has one head: behind one, a poison record waits like any other
            // message, and is dead-lettered when its turn comes.
            Subject::Poison { order: Some(order) } => {
                let parked_before = standings.next() == Some(Standing::OrderParked);
                let parked_in_batch = !parked_orders.insert(order);
                if parked_before || parked_in_batch {
                    Step::ParkWaiting
                } else {
                    Step::ParkDead
                }
            }
            Subject::Poison { order: None } => Step::DeadLetter,
            Subject::Event {
                event_id,
                order,
                failed,
            } => {
                let stands = standings.next().unwrap_or(Standing::Clear);
                if stands == Standing::OrderParked {
                    parked_orders.insert(order);
                }
                if stands == Standing::Known || !seen.insert(event_id) {
                    Step::Skip(Outcome::Duplicate)
                } else if parked_orders.contains(&order) {
                    Step::ParkWaiting
                } else if failed {
                    parked_orders.insert(order);
                    Step::ParkFailed
                } else {
                    Step::Apply
                }
            }
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u128, order: u128) -> Subject {
        Subject::Event {
            event_id: Uuid::from_u128(n),
            order: Uuid::from_u128(order),
            failed: false,
        }
    }

    fn failed(n: u128, order: u128) -> Subject {
        Subject::Event {
            event_id: Uuid::from_u128(n),
            order: Uuid::from_u128(order),
            failed: true,
        }
    }

    fn poison(order: Option<u128>) -> Subject {
        Subject::Poison {
            order: order.map(Uuid::from_u128),
        }
    }

    /// Given the inbox's answers, when the batch is planned, then each record's step.
    fn when(subjects: &[Subject], standings: &[Standing]) -> Vec<Step> {
        plan(subjects, standings)
    }

    #[test]
    fn clear_events_are_applied_and_ignored_ones_skipped() {
        let steps = when(
            &[event(1, 10), Subject::Ignored, event(2, 20)],
            &[Standing::Clear, Standing::Clear],
        );
        assert_eq!(
            steps,
            [Step::Apply, Step::Skip(Outcome::Ignored), Step::Apply]
        );
    }

    #[test]
    fn an_event_handled_before_or_twice_in_the_batch_is_a_duplicate() {
        let steps = when(
            &[event(1, 10), event(2, 10), event(2, 10)],
            &[Standing::Known, Standing::Clear, Standing::Clear],
        );
        assert_eq!(
            steps,
            [
                Step::Skip(Outcome::Duplicate),
                Step::Apply,
                Step::Skip(Outcome::Duplicate)
            ]
        );
    }

    #[test]
    fn a_failed_event_becomes_the_head_and_its_orders_later_events_wait_behind_it() {
        let steps = when(
            &[failed(1, 10), event(2, 10), event(3, 20)],
            &[Standing::Clear, Standing::Clear, Standing::Clear],
        );
        assert_eq!(steps, [Step::ParkFailed, Step::ParkWaiting, Step::Apply]);
    }

    #[test]
    fn events_of_an_order_parked_before_wait_even_if_they_failed() {
        let steps = when(
            &[event(1, 10), failed(2, 10)],
            &[Standing::OrderParked, Standing::OrderParked],
        );
        assert_eq!(steps, [Step::ParkWaiting, Step::ParkWaiting]);
    }

    #[test]
    fn poison_heads_its_order_once_and_waits_behind_any_head() {
        let steps = when(
            &[poison(Some(10)), poison(Some(10)), event(1, 10)],
            &[Standing::Clear, Standing::Clear, Standing::Clear],
        );
        assert_eq!(
            steps,
            [Step::ParkDead, Step::ParkWaiting, Step::ParkWaiting]
        );

        let behind = when(&[poison(Some(20))], &[Standing::OrderParked]);
        assert_eq!(behind, [Step::ParkWaiting]);
    }

    #[test]
    fn poison_without_an_order_is_dead_lettered_and_asks_the_inbox_nothing() {
        let subjects = [poison(None), event(1, 10)];
        assert_eq!(subjects[0].question(), None);
        let steps = when(&subjects, &[Standing::Clear]);
        assert_eq!(steps, [Step::DeadLetter, Step::Apply]);
    }
}
