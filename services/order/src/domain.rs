//! Where an order's saga stands, and how each event moves it, without I/O.
//!
//! Order ends the saga: `ShipmentScheduled` confirms a pending order; `PaymentDeclined`, or a
//! `PaymentRefunded` after a failed step, cancels it; its deadline passing cancels it
//! (`TIMED_OUT`). Once an order has ended, later events change no status, but they still tell
//! what was done and undone: every step taken (charged, reserved, shipped) must be compensated
//! (refunded, released, called off) before the cancellation's compensation is complete.

pub use saga_events::progress::{self, Awaited, Compensation, OrderStatus, StatusName, Steps};
use saga_events::{
    CancellationReason, EventMetadata, OrderCancelled, OrderConfirmed, PaymentReviewRequested,
    SagaEvent,
};

pub const PRODUCER: &str = "order";

/// An order's saga as Order knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub steps: Steps,
}

impl OrderState {
    pub fn placed() -> Self {
        Self {
            status: OrderStatus::Pending,
            steps: Steps::default(),
        }
    }

    /// `None` while the order is pending or once it is confirmed; for a cancelled order,
    /// whether every compensation its history requires has been reported.
    pub fn compensation(&self) -> Option<Compensation> {
        progress::compensation(self.status, self.steps)
    }

    /// What the saga waits for: the next step of a pending order, or every undo a cancelled
    /// order still owes. Empty once the saga has nothing more to hear.
    pub fn awaiting(&self) -> Vec<Awaited> {
        progress::awaiting(self.status, self.steps)
    }
}

/// The order's state after an event, and what Order tells the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: OrderState,
    pub emit: Vec<SagaEvent>,
}

/// Decides Order's reaction to `event` for an order in `state`.
pub fn react(state: &OrderState, event: &SagaEvent) -> Decision {
    let mut next = *state;
    let mut ends = None;
    match event {
        SagaEvent::PaymentAuthorized(_) => next.steps.charged = true,
        SagaEvent::PaymentDeclined(_) => {
            ends = Some(OrderStatus::Cancelled(CancellationReason::PAYMENT_DECLINED));
        }
        SagaEvent::PaymentRefunded(refund) => {
            next.steps.refunded = true;
            ends = Some(OrderStatus::Cancelled(refund.reason));
        }
        SagaEvent::StockReserved(_) => next.steps.reserved = true,
        SagaEvent::StockReleased(_) => next.steps.released = true,
        SagaEvent::ShipmentScheduled(_) => {
            next.steps.shipped = true;
            ends = Some(OrderStatus::Confirmed);
        }
        SagaEvent::ShipmentCancelled(_) => next.steps.shipment_cancelled = true,
        _ => {}
    }
    let mut emit = Vec::new();
    // A saga ends once: a late or repeated report changes no status.
    if let Some(end) = ends
        && state.status == OrderStatus::Pending
    {
        next.status = end;
        emit.push(ending(end, event.metadata(), event.order_id()));
    }
    Decision { state: next, emit }
}

/// The order's deadline once Payment opened a review of its payment: past the review's own
/// deadline by the time the saga was given when it was placed (`budget_ms`), so that a review
/// never times the saga out and an approved order has the rest of its saga ahead of it. `None`
/// for an order that is not pending any more: nothing waits on a deadline.
pub fn deadline_after_review(
    state: &OrderState,
    requested: &PaymentReviewRequested,
    budget_ms: i64,
) -> Option<i64> {
    (state.status == OrderStatus::Pending).then(|| requested.saga_deadline_at(budget_ms))
}

/// The deadline of a pending order passed: it is cancelled, `TIMED_OUT`, caused by the
/// `OrderPlaced` no one answered in time (`placed_event_id`).
pub fn time_out(state: &OrderState, order_id: &str, placed_event_id: &str) -> Decision {
    if state.status != OrderStatus::Pending {
        return Decision {
            state: *state,
            emit: Vec::new(),
        };
    }
    let status = OrderStatus::Cancelled(CancellationReason::TIMED_OUT);
    let placed = EventMetadata {
        event_id: placed_event_id.to_owned(),
        occurred_at: 0,
        correlation_id: order_id.to_owned(),
        causation_id: None,
        producer: PRODUCER.to_owned(),
    };
    Decision {
        state: OrderState {
            status,
            steps: state.steps,
        },
        emit: vec![ending(status, &placed, order_id)],
    }
}

fn ending(status: OrderStatus, cause: &EventMetadata, order_id: &str) -> SagaEvent {
    let metadata = EventMetadata::caused_by(cause, PRODUCER);
    let order_id = order_id.to_owned();
    match status {
        OrderStatus::Cancelled(reason) => OrderCancelled {
            metadata,
            order_id,
            reason,
        }
        .into(),
        _ => OrderConfirmed { metadata, order_id }.into(),
    }
}

#[cfg(test)]
mod tests;
