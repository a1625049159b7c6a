//! What a participant knows of an order and what an event does to it: the words its rules are
//! written in, the same for Payment, Inventory and Shipping whatever step each takes. The rule
//! they share — act once, never for a closed order, never past the deadline — is here too, so
//! that no participant can drift from it.

use saga_events::{CancellationReason, SagaEvent};
use thiserror::Error;

/// What a participant knows of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing<S> {
    /// What the participant did for the order, once it did: Payment's payment, Inventory's
    /// reservation, Shipping's shipment.
    pub step: Option<S>,
    /// Set once the order is cancelled (or found past its deadline): the participant does
    /// nothing more for it, and what it did is undone.
    pub closed: Option<CancellationReason>,
}

/// Nothing known: the participant never heard of the order.
impl<S> Default for Standing<S> {
    fn default() -> Self {
        Self {
            step: None,
            closed: None,
        }
    }
}

impl<S> Standing<S> {
    /// The order's step if it is still in effect (`in_effect` says so: an authorized payment, a
    /// held reservation, a scheduled shipment): what a compensation undoes. `None` — nothing
    /// taken, or undone already — owes nothing, so a repeated compensation changes nothing.
    pub fn in_effect(&self, in_effect: impl FnOnce(&S) -> bool) -> Option<&S> {
        self.step.as_ref().filter(|step| in_effect(step))
    }
}

impl<S: Clone> Standing<S> {
    /// Whether the request to act for the order (Payment's `OrderPlaced`, Inventory's
    /// `PaymentAuthorized`, Shipping's `StockReserved`) is turned away before the participant's
    /// own rules see it, and with what decision. A participant acts once per order, whatever
    /// was delivered twice, and never for an order closed first. A request arriving past the
    /// `deadline_at` it carries closes the order `TIMED_OUT` and does nothing: Order cancels the
    /// saga at its deadline, and nothing may be done for it after. `None`: go ahead.
    pub fn turns_away(&self, deadline_at: Option<i64>, now_ms: i64) -> Option<Decision<S>> {
        if self.step.is_some() || self.closed.is_some() {
            return Some(Decision::unchanged(self));
        }
        deadline_at
            .is_some_and(|deadline| now_ms >= deadline)
            .then(|| Decision {
                standing: Standing {
                    step: None,
                    closed: Some(CancellationReason::TIMED_OUT),
                },
                emit: Vec::new(),
            })
    }
}

/// The order's standing after an event, and what the participant tells the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<S> {
    pub standing: Standing<S>,
    pub emit: Vec<SagaEvent>,
}

impl<S: Clone> Decision<S> {
    /// The event changes nothing and is answered with nothing.
    pub fn unchanged(standing: &Standing<S>) -> Self {
        Self {
            standing: standing.clone(),
            emit: Vec::new(),
        }
    }
}

impl<S> Decision<S> {
    /// The order's step is now `step` (taken, or moved on), it stays as closed as it was, and
    /// the participant tells the saga `told`.
    pub fn changed(standing: &Standing<S>, step: S, told: impl Into<SagaEvent>) -> Self {
        Self {
            standing: Standing {
                step: Some(step),
                closed: standing.closed,
            },
            emit: vec![told.into()],
        }
    }

    /// This decision, with the order closed for `reason` (its `OrderCancelled` arrived) unless
    /// it was closed before: the first reason stands.
    pub fn closing(mut self, reason: CancellationReason) -> Self {
        self.standing.closed.get_or_insert(reason);
        self
    }
}

/// An event a participant cannot react to: it contradicts what the participant knows (a refund
/// asked for an order that has no payment, say). The consumer parks it and retries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn taken() -> Standing<&'static str> {
        Standing {
            step: Some("taken"),
            closed: None,
        }
    }

    #[test]
    fn a_first_request_in_time_goes_ahead() {
        let nothing_yet = Standing::<&str>::default();
        assert_eq!(nothing_yet.turns_away(None, NOW), None);
        assert_eq!(nothing_yet.turns_away(Some(NOW + 1), NOW), None);
    }

    #[test]
    fn a_request_at_or_past_its_deadline_closes_the_order_and_does_nothing() {
        let decision = Standing::<&str>::default()
            .turns_away(Some(NOW), NOW)
            .expect("turned away");
        assert_eq!(decision.standing.step, None);
        assert_eq!(
            decision.standing.closed,
            Some(CancellationReason::TIMED_OUT)
        );
        assert!(decision.emit.is_empty());
    }

    #[test]
    fn a_repeated_request_or_one_for_a_closed_order_changes_nothing() {
        let closed = Standing::<&str> {
            step: None,
            closed: Some(CancellationReason::OUT_OF_STOCK),
        };
        for standing in [taken(), closed] {
            let decision = standing.turns_away(Some(NOW - 1), NOW);
            assert_eq!(decision, Some(Decision::unchanged(&standing)));
        }
    }

    #[test]
    fn the_first_reason_to_close_an_order_stands() {
        let cancelled = Decision::unchanged(&taken()).closing(CancellationReason::TIMED_OUT);
        let again = cancelled
            .clone()
            .closing(CancellationReason::SHIPPING_FAILED);
        assert_eq!(again.standing.closed, Some(CancellationReason::TIMED_OUT));
    }
}
