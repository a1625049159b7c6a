//! Given what a participant knows of an order, when an event arrives, then…: the scaffolding of
//! the participants' rule tests, written once. No I/O: a scenario runs the participant's pure
//! [`Participant::decide`] at a fixed clock, so that deadlines are tested without waiting.
//!
//! ```text
//! const PAYMENT: Stage<Rules> = Stage::new(Rules { amount_limit_cents: 10_000 }, NOW);
//! let decision = PAYMENT.given(Standing::default()).when(placed)?;
//! ```

use std::borrow::Borrow;

use saga_events::{
    Address, CancellationReason, EventMetadata, EventType, OrderCancelled, SagaEvent,
    ShipmentFailed,
};

use crate::participant::Participant;
use crate::standing::{Decision, Refused, Standing};

/// A participant's rules at a fixed `now_ms`: where the scenarios of a test module play.
#[derive(Debug, Clone, Copy)]
pub struct Stage<P> {
    participant: P,
    now_ms: i64,
}

impl<P: Participant> Stage<P> {
    pub const fn new(participant: P, now_ms: i64) -> Self {
        Self {
            participant,
            now_ms,
        }
    }

    /// Given the order stands as `standing`…
    pub fn given(&self, standing: impl Borrow<Standing<P::Step>>) -> Scenario<'_, P> {
        Scenario {
            stage: self,
            standing: standing.borrow().clone(),
        }
    }

    /// Where `events` leave an order standing as `standing`: how a test reaches the standing it
    /// starts from. Panics if one of them is refused: that is a broken setup, not a finding.
    pub fn when_all(&self, standing: Standing<P::Step>, events: &[SagaEvent]) -> Standing<P::Step> {
        events.iter().fold(standing, |standing, event| {
            match self.given(standing).when(event.clone()) {
                Ok(decision) => decision.standing,
                Err(refused) => panic!("{} refused: {refused}", event.event_type()),
            }
        })
    }
}

/// An order's standing on a [`Stage`], waiting for its event.
#[derive(Debug)]
pub struct Scenario<'s, P: Participant> {
    stage: &'s Stage<P>,
    standing: Standing<P::Step>,
}

impl<P: Participant> Scenario<'_, P> {
    /// …when `event` arrives, then this is decided (with a batch context of its own: Payment's
    /// and Shipping's are `()`).
    pub fn when(self, event: SagaEvent) -> Result<Decision<P::Step>, Refused> {
        self.when_with(&mut P::Context::default(), event)
    }

    /// …and the batch's context is `context` (Inventory's stock), when `event` arrives, then
    /// this is decided, and `context` changed as the rules changed it.
    pub fn when_with(
        self,
        context: &mut P::Context,
        event: SagaEvent,
    ) -> Result<Decision<P::Step>, Refused> {
        let stage = self.stage;
        stage
            .participant
            .decide(&self.standing, &event, context, stage.now_ms)
    }
}

/// What a decision tells the saga, by event type.
pub fn emitted<S>(decision: &Decision<S>) -> Vec<EventType> {
    decision.emit.iter().map(SagaEvent::event_type).collect()
}

/// An address in `country`, for the events of a scenario that carry one.
pub fn address(country: &str) -> Address {
    Address {
        name: "A".into(),
        line1: "1".into(),
        city: "C".into(),
        postal_code: "0".into(),
        country: country.into(),
    }
}

/// Order cancels `order` for `reason`.
pub fn cancelled(order: &str, reason: CancellationReason) -> SagaEvent {
    OrderCancelled {
        metadata: EventMetadata::first(order, "order"),
        order_id: order.into(),
        reason,
    }
    .into()
}

/// Shipping fails `order`'s shipment (a destination it does not serve).
pub fn shipment_failed(order: &str) -> SagaEvent {
    ShipmentFailed {
        metadata: EventMetadata::first(order, "shipping"),
        order_id: order.into(),
        reason: "AQ".into(),
    }
    .into()
}
