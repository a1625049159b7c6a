//! Order's rules, given/when/then: every saga path, late replies and the deadline.

use saga_events::{
    EventType, PaymentAuthorized, PaymentDeclined, PaymentRefunded, Service, ShipmentCancelled,
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

#[test]
fn a_review_moves_a_pending_orders_deadline_past_its_own_by_the_sagas_budget() {
    let requested = PaymentReviewRequested {
        metadata: meta(),
        order_id: ORDER.into(),
        review_deadline_at: 1_000_000,
    };
    let pending = OrderState::placed();
    assert_eq!(
        deadline_after_review(&pending, &requested, 30_000),
        Some(1_030_000)
    );
    // A review changes nothing of an order that has ended (cancelled at its first deadline,
    // say): there is no deadline left to move.
    let ended = react(&pending, &declined()).state;
    assert_eq!(deadline_after_review(&ended, &requested, 30_000), None);
    // The review request itself moves no status.
    assert_eq!(react(&pending, &requested.into()).state, pending);
}
