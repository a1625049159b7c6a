//! How a participant reacts to a batch of events. The consumer's batches are its hot path, so a
//! batch runs a fixed few statements whatever its size: what the participant knows of the
//! batch's orders (its own rows and which of them are closed, read in the consumer's statement
//! that asks where the batch's events stand), the batch's context if it has one (Inventory
//! locks its stock), then each reaction decided in memory by the participant's rules against
//! the latest standing of its order, and every change written at the end (one statement per
//! table written to, none for a table left alone; as CTEs of the consumer's last statement
//! where the ledger can defer them).

use std::collections::{HashMap, HashSet};

use saga_events::{CancellationReason, EventType, SagaEvent};
use saga_messaging::{Arrival, DeferredWrites, HandlerError, Reactions, Refusal, inbox};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::closed_orders;
use crate::participant::{Change, Changes, Ledger, Standings};

/// A participant as the consumer's [`Reactions`]: what a service hands
/// `saga_runtime::ServiceRuntime::run`.
#[derive(Debug, Clone)]
pub struct Reacting<P>(pub P);

impl<P: Ledger> Reactions for Reacting<P> {
    type Loaded = Standings<P::Step>;

    fn wants(&self, event_type: EventType) -> bool {
        P::SERVICE.reacts_to(event_type)
    }

    /// What the participant knows of the batch's orders (its own rows, and which orders are
    /// closed: [`closed_orders::joined`]), read in the consumer's statement that asks where the
    /// batch's events stand.
    async fn load(
        &self,
        tx: &mut PgConnection,
        questions: &[(Option<Uuid>, String)],
        orders: &[Uuid],
    ) -> Result<(Vec<inbox::Standing>, Standings<P::Step>), sqlx::Error> {
        let (standing, rows) = inbox::standing_beside::<closed_orders::Known<P::Row>>(
            tx,
            questions,
            &closed_orders::joined(P::LOAD),
            orders,
        )
        .await?;
        Ok((standing, standings::<P>(rows)?))
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
        mut known: Standings<P::Step>,
        deferred: &mut DeferredWrites,
    ) -> Result<Vec<Vec<SagaEvent>>, Refusal> {
        let participant = &self.0;
        // What was read of the batch's other orders (skipped, parked) is no concern of the
        // ledger's: Inventory, say, locks the stock of every reservation it is shown.
        let reacted: HashSet<Uuid> = events.iter().map(|a| a.order_id).collect();
        known.retain(|order, _| reacted.contains(order));
        let prepared = participant.prepare(tx, events, &known).await?;
        let mut context = prepared.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let mut current: Standings<P::Step> = HashMap::new();
        let mut emitted = Vec::with_capacity(events.len());
        for (index, arrival) in events.iter().enumerate() {
            let order = arrival.order_id;
            let standing = current
                .get(&order)
                .or_else(|| known.get(&order))
                .cloned()
                .unwrap_or_default();
            let decision = participant
                .decide(&standing, arrival.event, &mut context, now)
                .map_err(|refused| Refusal::at(index, HandlerError::rejected(refused.0)))?;
            if decision.standing != standing {
                current.insert(order, decision.standing);
            }
            emitted.push(decision.emit);
        }
        let changes = Changes {
            steps: changed_steps(&known, &current),
            prepared,
            decided: context,
        };
        participant.save(tx, &changes, deferred).await?;
        deferred.extend(closed_orders::recorded(&newly_closed(&known, &current)));
        Ok(emitted)
    }
}

/// What the participant knows of each order, from the rows of [`closed_orders::joined`].
fn standings<P: Ledger>(
    rows: Vec<closed_orders::Known<P::Row>>,
) -> Result<Standings<P::Step>, sqlx::Error> {
    let mut known = Standings::with_capacity(rows.len());
    for row in rows {
        if let Some(own) = row.own {
            let (order, step) = P::read(own)?;
            known.entry(order).or_default().step = Some(step);
        }
        if let Some((order, reason)) = row.closed {
            known.entry(order).or_default().closed = Some(reason);
        }
    }
    Ok(known)
}

/// The steps of the orders whose standing the batch changed, beside the step each had before.
fn changed_steps<'a, S>(known: &'a Standings<S>, current: &'a Standings<S>) -> Vec<Change<'a, S>> {
    current
        .iter()
        .filter_map(|(order, standing)| {
            Some(Change {
                order_id: *order,
                loaded: known.get(order).and_then(|k| k.step.as_ref()),
                step: standing.step.as_ref()?,
                closed: standing.closed,
            })
        })
        .collect()
}

/// The orders the batch closed (an order closed before keeps its row, and its first reason).
fn newly_closed<S>(
    known: &Standings<S>,
    current: &Standings<S>,
) -> Vec<(Uuid, CancellationReason)> {
    current
        .iter()
        .filter(|(order, _)| known.get(order).is_none_or(|k| k.closed.is_none()))
        .filter_map(|(order, standing)| standing.closed.map(|reason| (*order, reason)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standing::Standing;

    const ORDER: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    fn standing(step: Option<u8>, closed: Option<CancellationReason>) -> Standing<u8> {
        Standing { step, closed }
    }

    #[test]
    fn the_ledger_gets_every_changed_step_beside_the_step_it_loaded() {
        let known = Standings::from([(ORDER, standing(Some(1), None))]);
        let current = Standings::from([
            (ORDER, standing(Some(2), None)),
            (OTHER, standing(None, Some(CancellationReason::TIMED_OUT))),
        ]);
        let steps = changed_steps(&known, &current);
        assert_eq!(
            steps.len(),
            1,
            "an order closed without a step has none to write"
        );
        assert_eq!(steps[0].order_id, ORDER);
        assert_eq!((steps[0].loaded, steps[0].step), (Some(&1), &2));
    }

    #[test]
    fn only_orders_the_batch_closed_are_recorded() {
        let known = Standings::from([(ORDER, standing(None, Some(CancellationReason::TIMED_OUT)))]);
        let current = Standings::from([
            (
                ORDER,
                standing(Some(1), Some(CancellationReason::TIMED_OUT)),
            ),
            (
                OTHER,
                standing(None, Some(CancellationReason::OUT_OF_STOCK)),
            ),
        ]);
        assert_eq!(
            newly_closed(&known, &current),
            [(OTHER, CancellationReason::OUT_OF_STOCK)]
        );
    }
}
