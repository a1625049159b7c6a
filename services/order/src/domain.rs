//! Where an order's saga stands, and how each event moves it, without I/O.
//!
//! Order ends the saga: `ShipmentScheduled` confirms a pending order; `PaymentDeclined`, or a
//! `PaymentRefunded` after a failed step, cancels it; its deadline passing cancels it
//! (`TIMED_OUT`). Once an order has ended, later events change no status, but they still tell
//! what was done and undone: every step taken (charged, reserved, shipped) must be compensated
//! (refunded, released, called off) before the cancellation's compensation is complete.

use saga_events::{
    CancellationReason, EventMetadata, OrderCancelled, OrderConfirmed, SagaEvent, Service,
};

pub const PRODUCER: &str = "order";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled(CancellationReason),
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Cancelled(_) => "CANCELLED",
        }
    }

    pub fn reason(self) -> Option<CancellationReason> {
        match self {
            OrderStatus::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }

    pub fn from_columns(status: &str, reason: Option<&str>) -> Option<Self> {
        match (status, reason.and_then(CancellationReason::parse)) {
            ("PENDING", None) => Some(OrderStatus::Pending),
            ("CONFIRMED", None) => Some(OrderStatus::Confirmed),
            ("CANCELLED", Some(reason)) => Some(OrderStatus::Cancelled(reason)),
            _ => None,
        }
    }
}

/// What the other services reported doing for the order (and undoing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steps {
    pub charged: bool,
    pub refunded: bool,
    pub reserved: bool,
    pub released: bool,
    pub shipped: bool,
    pub shipment_cancelled: bool,
}

/// Where a cancelled order's compensation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    /// A step taken is not undone yet (or not reported undone).
    Pending,
    /// Everything the order's history requires is undone.
    Completed,
}

impl Compensation {
    pub fn as_str(self) -> &'static str {
        match self {
            Compensation::Pending => "PENDING",
            Compensation::Completed => "COMPLETED",
        }
    }
}

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
        matches!(self.status, OrderStatus::Cancelled(_)).then(|| {
            if self.awaiting().is_empty() {
                Compensation::Completed
            } else {
                Compensation::Pending
            }
        })
    }

    /// What the saga waits for: the next step of a pending order, or every undo a cancelled
    /// order still owes. Empty once the saga has nothing more to hear.
    pub fn awaiting(&self) -> Vec<Awaited> {
        let s = self.steps;
        let reason = match self.status {
            OrderStatus::Confirmed => return Vec::new(),
            OrderStatus::Pending => {
                let next = if !s.charged {
                    Awaited::new(Service::Payment, "PaymentAuthorized or PaymentDeclined")
                } else if !s.reserved {
                    Awaited::new(
                        Service::Inventory,
                        "StockReserved or StockReservationFailed",
                    )
                } else {
                    Awaited::new(Service::Shipping, "ShipmentScheduled or ShipmentFailed")
                };
                return vec![next];
            }
            OrderStatus::Cancelled(reason) => reason,
        };
        // What the reason itself implies was done: a failed shipment means stock was reserved
        // and money held; a refusal of stock means money was held.
        let held_money = matches!(
            reason,
            CancellationReason::SHIPPING_FAILED | CancellationReason::OUT_OF_STOCK
        );
        let held_stock = reason == CancellationReason::SHIPPING_FAILED;
        let mut owed = Vec::new();
        if (s.charged || held_money) && !s.refunded {
            owed.push(Awaited::new(Service::Payment, "PaymentRefunded"));
        }
        if (s.reserved || held_stock) && !s.released {
            owed.push(Awaited::new(Service::Inventory, "StockReleased"));
        }
        if s.shipped && !s.shipment_cancelled {
            owed.push(Awaited::new(Service::Shipping, "ShipmentCancelled"));
        }
        owed
    }
}

/// A report the saga waits for, and the service that owes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awaited {
    pub service: Service,
    /// The event (or events) that would answer.
    pub events: &'static str,
}

impl Awaited {
    fn new(service: Service, events: &'static str) -> Self {
        Self { service, events }
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
mod tests {
    use saga_events::{
        EventType, PaymentAuthorized, PaymentDeclined, PaymentRefunded, ShipmentCancelled,
        ShipmentScheduled, StockReleased, StockReserved,
    };

    use super::*;

    const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000004";

    fn meta() -> EventMetadata {
        EventMetadata::first(ORDER, "test")
    }

    fn authorized() -> SagaEvent {
        PaymentAuthorized {
            metadata: meta(),
            order_id: ORDER.into(),
            payment_id: "p".into(),
            amount_cents: 1,
            currency: "EUR".into(),
            items: vec![],
            shipping_address: saga_events::Address {
                name: "A".into(),
                line1: "1".into(),
                city: "C".into(),
                postal_code: "0".into(),
                country: "GB".into(),
            },
            deadline_at: None,
        }
        .into()
    }

    fn declined() -> SagaEvent {
        PaymentDeclined {
            metadata: meta(),
            order_id: ORDER.into(),
            amount_cents: 1,
            currency: "EUR".into(),
            reason: "card declined".into(),
        }
        .into()
    }

    fn refunded(reason: CancellationReason) -> SagaEvent {
        PaymentRefunded {
            metadata: meta(),
            order_id: ORDER.into(),
            payment_id: "p".into(),
            amount_cents: 1,
            currency: "EUR".into(),
            reason,
        }
        .into()
    }

    fn reserved() -> SagaEvent {
        StockReserved {
            metadata: meta(),
            order_id: ORDER.into(),
            items: vec![],
            shipping_address: saga_events::Address {
                name: "A".into(),
                line1: "1".into(),
                city: "C".into(),
                postal_code: "0".into(),
                country: "GB".into(),
            },
            deadline_at: None,
        }
        .into()
    }

    fn released() -> SagaEvent {
        StockReleased {
            metadata: meta(),
            order_id: ORDER.into(),
            items: vec![],
        }
        .into()
    }

    fn scheduled() -> SagaEvent {
        ShipmentScheduled {
            metadata: meta(),
            order_id: ORDER.into(),
            shipment_id: "s".into(),
            country: "GB".into(),
        }
        .into()
    }

    fn called_off() -> SagaEvent {
        ShipmentCancelled {
            metadata: meta(),
            order_id: ORDER.into(),
            shipment_id: "s".into(),
            reason: CancellationReason::TIMED_OUT,
        }
        .into()
    }

    /// Given the events so far, the state they leave.
    fn given(events: &[SagaEvent]) -> OrderState {
        events.iter().fold(OrderState::placed(), |state, event| {
            react(&state, event).state
        })
    }

    fn emitted(decision: &Decision) -> Vec<EventType> {
        decision.emit.iter().map(SagaEvent::event_type).collect()
    }

    fn timed_out(state: &OrderState) -> Decision {
        time_out(state, ORDER, "5b0e2a4e-0000-4000-8000-000000000001")
    }

    #[test]
    fn a_scheduled_shipment_confirms_the_order() {
        let decision = react(&given(&[authorized(), reserved()]), &scheduled());
        assert_eq!(decision.state.status, OrderStatus::Confirmed);
        assert_eq!(emitted(&decision), [EventType::OrderConfirmed]);
        assert_eq!(decision.state.compensation(), None);
    }

    #[test]
    fn a_declined_payment_cancels_with_nothing_to_undo() {
        let decision = react(&OrderState::placed(), &declined());
        assert_eq!(
            decision.state.status,
            OrderStatus::Cancelled(CancellationReason::PAYMENT_DECLINED)
        );
        assert_eq!(emitted(&decision), [EventType::OrderCancelled]);
        assert_eq!(decision.state.compensation(), Some(Compensation::Completed));
    }

    #[test]
    fn out_of_stock_ends_when_the_money_is_back() {
        let state = given(&[authorized(), refunded(CancellationReason::OUT_OF_STOCK)]);
        assert_eq!(
            state.status,
            OrderStatus::Cancelled(CancellationReason::OUT_OF_STOCK)
        );
        assert_eq!(state.compensation(), Some(Compensation::Completed));
    }

    #[test]
    fn a_failed_shipment_is_compensated_only_once_stock_and_money_are_both_back() {
        // The refund can arrive before Order even saw the reservation (other topic).
        let refunded_first = given(&[authorized(), refunded(CancellationReason::SHIPPING_FAILED)]);
        assert_eq!(refunded_first.compensation(), Some(Compensation::Pending));
        let done = react(&refunded_first, &released()).state;
        assert_eq!(done.compensation(), Some(Compensation::Completed));
    }

    #[test]
    fn a_pending_order_times_out_once() {
        let decision = timed_out(&given(&[authorized()]));
        assert_eq!(
            decision.state.status,
            OrderStatus::Cancelled(CancellationReason::TIMED_OUT)
        );
        assert_eq!(emitted(&decision), [EventType::OrderCancelled]);
        let SagaEvent::OrderCancelled(cancelled) = &decision.emit[0] else {
            panic!("not a cancellation");
        };
        assert_eq!(
            cancelled.metadata.causation_id.as_deref(),
            Some("5b0e2a4e-0000-4000-8000-000000000001"),
            "caused by the OrderPlaced nobody answered in time"
        );
        assert!(timed_out(&decision.state).emit.is_empty());
        assert!(
            timed_out(&given(&[scheduled()])).emit.is_empty(),
            "confirmed"
        );
    }

    #[test]
    fn after_a_time_out_late_replies_change_no_status_but_what_is_owed() {
        let cancelled = timed_out(&OrderState::placed()).state;
        assert_eq!(cancelled.compensation(), Some(Compensation::Completed));
        let charged_late = react(&cancelled, &authorized());
        assert!(charged_late.emit.is_empty());
        assert_eq!(charged_late.state.status, cancelled.status);
        assert_eq!(
            charged_late.state.compensation(),
            Some(Compensation::Pending)
        );
        let shipped_late = react(&charged_late.state, &scheduled());
        assert!(
            shipped_late.emit.is_empty(),
            "a cancelled order is never confirmed"
        );
        let undone = [refunded(CancellationReason::TIMED_OUT), called_off()]
            .iter()
            .fold(shipped_late.state, |state, event| {
                react(&state, event).state
            });
        assert_eq!(undone.compensation(), Some(Compensation::Completed));
    }

    #[test]
    fn a_confirmed_order_ignores_late_reports() {
        let confirmed = given(&[scheduled()]);
        for late in [declined(), refunded(CancellationReason::SHIPPING_FAILED)] {
            let decision = react(&confirmed, &late);
            assert_eq!(decision.state.status, OrderStatus::Confirmed);
            assert!(decision.emit.is_empty());
        }
    }

    fn awaited(state: &OrderState) -> Vec<(Service, &'static str)> {
        state
            .awaiting()
            .into_iter()
            .map(|a| (a.service, a.events))
            .collect()
    }

    #[test]
    fn a_pending_order_waits_for_its_next_step() {
        let placed = OrderState::placed();
        assert_eq!(awaited(&placed)[0].0, Service::Payment);
        assert_eq!(awaited(&given(&[authorized()]))[0].0, Service::Inventory);
        assert_eq!(
            awaited(&given(&[authorized(), reserved()]))[0].0,
            Service::Shipping
        );
        assert!(awaited(&given(&[authorized(), reserved(), scheduled()])).is_empty());
    }

    #[test]
    fn a_cancelled_order_waits_for_every_undo_it_is_owed() {
        let late = [authorized(), reserved(), scheduled()]
            .iter()
            .fold(timed_out(&OrderState::placed()).state, |state, event| {
                react(&state, event).state
            });
        assert_eq!(
            awaited(&late),
            [
                (Service::Payment, "PaymentRefunded"),
                (Service::Inventory, "StockReleased"),
                (Service::Shipping, "ShipmentCancelled"),
            ]
        );
        let shipping_failed = given(&[authorized(), refunded(CancellationReason::SHIPPING_FAILED)]);
        assert_eq!(
            awaited(&shipping_failed),
            [(Service::Inventory, "StockReleased")]
        );
    }

    #[test]
    fn status_columns_round_trip() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled(CancellationReason::TIMED_OUT),
        ] {
            let reason = status.reason().map(|r| r.as_str());
            assert_eq!(
                OrderStatus::from_columns(status.as_str(), reason),
                Some(status)
            );
        }
        assert_eq!(OrderStatus::from_columns("CANCELLED", None), None);
    }
}
