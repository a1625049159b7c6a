//! The fold, given/when/then: every saga path, late replies, repeats, and every interleaving.

use saga_events::progress::{Compensation, OrderStatus};
use saga_events::{
    Address, CancellationReason, EventMetadata, Money, OrderCancelled, OrderConfirmed, OrderLine,
    OrderPlaced, PaymentAuthorized, PaymentDeclined, PaymentRefunded, SagaEvent, ShipmentCancelled,
    ShipmentFailed, ShipmentScheduled, StockLine, StockReleased, StockReservationFailed,
    StockReserved,
};

use super::*;

const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000020";
const PLACED_AT: i64 = 1_700_000_000_000;

/// One order's saga as its services would write it: each event caused by the one before (unless
/// told otherwise), 5 ms apart.
struct Saga {
    events: Vec<SagaEvent>,
}

fn address() -> Address {
    Address {
        name: "Ada".into(),
        line1: "1 Loop Road".into(),
        city: "Leeds".into(),
        postal_code: "LS1".into(),
        country: "GB".into(),
    }
}

fn stock() -> Vec<StockLine> {
    vec![StockLine {
        sku: "SKU-1".into(),
        quantity: 2,
    }]
}

impl Saga {
    fn placed() -> Self {
        let mut metadata = EventMetadata::first(ORDER, "order");
        metadata.occurred_at = PLACED_AT;
        let placed = OrderPlaced {
            metadata,
            order_id: ORDER.into(),
            customer_id: "cust-1".into(),
            items: vec![OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_cents: 500,
            }],
            total: Money {
                amount_minor: 1_000,
                currency: "EUR".into(),
            },
            payment_method: "tok_visa".into(),
            shipping_address: address(),
            deadline_at: None,
            customer_email: None,
        };
        Saga {
            events: vec![placed.into()],
        }
    }

    fn last(&self) -> &EventMetadata {
        self.events[self.events.len() - 1].metadata()
    }

    fn meta(&self, producer: &str) -> EventMetadata {
        let mut metadata = EventMetadata::caused_by(self.last(), producer);
        metadata.occurred_at = self.last().occurred_at + 5;
        metadata
    }

    fn then(mut self, make: impl FnOnce(EventMetadata) -> SagaEvent, producer: &str) -> Self {
        let event = make(self.meta(producer));
        self.events.push(event);
        self
    }

    fn authorized(self) -> Self {
        self.then(
            |metadata| {
                PaymentAuthorized {
                    metadata,
                    order_id: ORDER.into(),
                    payment_id: "pay-1".into(),
                    amount_cents: 1_000,
                    currency: "EUR".into(),
                    items: stock(),
                    shipping_address: address(),
                    deadline_at: None,
                }
                .into()
            },
            "payment",
        )
    }

    fn declined(self) -> Self {
        self.then(
            |metadata| {
                PaymentDeclined {
                    metadata,
                    order_id: ORDER.into(),
                    amount_cents: 1_000,
                    currency: "EUR".into(),
                    reason: "card declined".into(),
                }
                .into()
            },
            "payment",
        )
    }

    fn refunded(self, reason: CancellationReason) -> Self {
        self.then(
            |metadata| {
                PaymentRefunded {
                    metadata,
                    order_id: ORDER.into(),
                    payment_id: "pay-1".into(),
                    amount_cents: 1_000,
                    currency: "EUR".into(),
                    reason,
                }
                .into()
            },
            "payment",
        )
    }

    fn reserved(self) -> Self {
        self.then(
            |metadata| {
                StockReserved {
                    metadata,
                    order_id: ORDER.into(),
                    items: stock(),
                    shipping_address: address(),
                    deadline_at: None,
                }
                .into()
            },
            "inventory",
        )
    }

    fn out_of_stock(self) -> Self {
        self.then(
            |metadata| {
                StockReservationFailed {
                    metadata,
                    order_id: ORDER.into(),
                    unavailable_skus: vec!["SKU-1".into()],
                    reason: "not enough stock".into(),
                }
                .into()
            },
            "inventory",
        )
    }

    fn released(self) -> Self {
        self.then(
            |metadata| {
                StockReleased {
                    metadata,
                    order_id: ORDER.into(),
                    items: stock(),
                }
                .into()
            },
            "inventory",
        )
    }

    fn scheduled(self) -> Self {
        self.then(
            |metadata| {
                ShipmentScheduled {
                    metadata,
                    order_id: ORDER.into(),
                    shipment_id: "ship-1".into(),
                    country: "GB".into(),
                }
                .into()
            },
            "shipping",
        )
    }

    fn shipment_failed(self) -> Self {
        self.then(
            |metadata| {
                ShipmentFailed {
                    metadata,
                    order_id: ORDER.into(),
                    reason: "no carrier".into(),
                }
                .into()
            },
            "shipping",
        )
    }

    fn shipment_cancelled(self) -> Self {
        self.then(
            |metadata| {
                ShipmentCancelled {
                    metadata,
                    order_id: ORDER.into(),
                    shipment_id: "ship-1".into(),
                    reason: CancellationReason::TIMED_OUT,
                }
                .into()
            },
            "shipping",
        )
    }

    fn confirmed(self) -> Self {
        self.then(
            |metadata| {
                OrderConfirmed {
                    metadata,
                    order_id: ORDER.into(),
                }
                .into()
            },
            "order",
        )
    }

    fn cancelled(self, reason: CancellationReason) -> Self {
        self.then(
            |metadata| {
                OrderCancelled {
                    metadata,
                    order_id: ORDER.into(),
                    reason,
                }
                .into()
            },
            "order",
        )
    }

    fn folded(&self) -> OrderHistory {
        fold(&self.events)
    }
}

#[test]
fn a_placed_order_is_pending_with_what_it_was_placed_with() {
    let history = Saga::placed().folded();
    assert_eq!(history.status(), Some(OrderStatus::Pending));
    let placement = history.placement.as_ref().expect("placed");
    assert_eq!(
        (placement.customer_id.as_str(), placement.total_cents),
        ("cust-1", 1_000)
    );
    assert_eq!(placement.placed_at_ms, PLACED_AT);
    assert_eq!(history.compensation(), None);
    assert!(history.payment.is_none() && history.stock.is_none() && history.shipment.is_none());
}

#[test]
fn the_happy_path_confirms_and_holds_the_stock() {
    let history = Saga::placed()
        .authorized()
        .reserved()
        .scheduled()
        .confirmed()
        .folded();
    assert_eq!(history.status(), Some(OrderStatus::Confirmed));
    assert_eq!(history.compensation(), None);
    assert_eq!(
        history.payment.as_ref().map(|p| p.status),
        Some(PaymentState::Authorized)
    );
    assert_eq!(history.authorized_cents, 1_000);
    assert_eq!(history.held(), [("SKU-1".to_owned(), 2)]);
    assert_eq!(
        history.shipment.as_ref().map(|s| s.status),
        Some(ShipmentState::Scheduled)
    );
    assert_eq!(history.events, 5);
}

#[test]
fn a_declined_payment_cancels_with_nothing_to_undo() {
    let history = Saga::placed()
        .declined()
        .cancelled(CancellationReason::PAYMENT_DECLINED)
        .folded();
    assert_eq!(
        history.status(),
        Some(OrderStatus::Cancelled(CancellationReason::PAYMENT_DECLINED))
    );
    assert_eq!(history.compensation(), Some(Compensation::Completed));
    let payment = history.payment.expect("payment");
    assert_eq!(payment.status, PaymentState::Declined);
    assert_eq!(payment.reason.as_deref(), Some("card declined"));
    assert_eq!(history.authorized_cents, 0);
}

#[test]
fn out_of_stock_refunds_and_cancels() {
    let history = Saga::placed()
        .authorized()
        .out_of_stock()
        .refunded(CancellationReason::OUT_OF_STOCK)
        .cancelled(CancellationReason::OUT_OF_STOCK)
        .folded();
    assert_eq!(
        history.status(),
        Some(OrderStatus::Cancelled(CancellationReason::OUT_OF_STOCK))
    );
    assert_eq!(history.compensation(), Some(Compensation::Completed));
    assert_eq!(
        (history.authorized_cents, history.refunded_cents),
        (1_000, 1_000)
    );
    assert_eq!(
        history.stock.as_ref().map(|s| s.status),
        Some(StockState::Refused)
    );
    assert!(history.held().is_empty());
}

#[test]
fn a_failed_shipment_releases_refunds_and_cancels() {
    let failed = Saga::placed()
        .authorized()
        .reserved()
        .shipment_failed()
        .released()
        .refunded(CancellationReason::SHIPPING_FAILED)
        .cancelled(CancellationReason::SHIPPING_FAILED);
    let history = failed.folded();
    assert_eq!(
        history.status(),
        Some(OrderStatus::Cancelled(CancellationReason::SHIPPING_FAILED))
    );
    assert_eq!(history.compensation(), Some(Compensation::Completed));
    assert_eq!(
        history.stock.as_ref().map(|s| s.status),
        Some(StockState::Released)
    );
    assert_eq!(
        history.shipment.as_ref().map(|s| s.status),
        Some(ShipmentState::Failed)
    );
}

#[test]
fn a_timed_out_order_owes_its_undos_until_they_are_reported() {
    let cancelled = Saga::placed()
        .authorized()
        .reserved()
        .scheduled()
        .cancelled(CancellationReason::TIMED_OUT);
    let history = cancelled.folded();
    assert_eq!(
        history.status(),
        Some(OrderStatus::Cancelled(CancellationReason::TIMED_OUT)),
        "the shipment came, but Order timed the order out first: its word is the status"
    );
    assert_eq!(history.compensation(), Some(Compensation::Pending));
    let undone = cancelled
        .refunded(CancellationReason::TIMED_OUT)
        .released()
        .shipment_cancelled()
        .folded();
    assert_eq!(undone.compensation(), Some(Compensation::Completed));
    assert_eq!(
        undone.payment.as_ref().map(|p| p.status),
        Some(PaymentState::Refunded)
    );
    assert!(undone.held().is_empty());
}

#[test]
fn a_reply_after_the_cancel_counts_for_what_was_done_not_for_the_status() {
    let late = Saga::placed()
        .cancelled(CancellationReason::TIMED_OUT)
        .authorized();
    let history = late.folded();
    assert_eq!(
        history.status(),
        Some(OrderStatus::Cancelled(CancellationReason::TIMED_OUT))
    );
    assert_eq!(
        history.compensation(),
        Some(Compensation::Pending),
        "the late charge must still be refunded"
    );
    let refunded = late.refunded(CancellationReason::TIMED_OUT).folded();
    assert_eq!(refunded.compensation(), Some(Compensation::Completed));
}

#[test]
fn repeats_of_an_event_count_once() {
    let saga = Saga::placed().authorized().reserved();
    let mut repeated = saga.events.clone();
    repeated.extend(saga.events.iter().cloned());
    repeated.push(saga.events[1].clone());
    assert_eq!(fold(&repeated), saga.folded());
    assert_eq!(fold(&repeated).events, 3);
}

#[test]
fn events_without_their_placement_are_not_an_order_yet() {
    let saga = Saga::placed().authorized();
    let history = fold(&saga.events[1..]);
    assert_eq!(history.status(), None);
    assert_eq!(history.compensation(), None);
    assert_eq!(
        history.payment.as_ref().map(|p| p.status),
        Some(PaymentState::Authorized)
    );
}

/// Every ordering of `events` (Heap's algorithm).
fn permutations(events: &[SagaEvent]) -> Vec<Vec<SagaEvent>> {
    fn heap(k: usize, items: &mut Vec<SagaEvent>, out: &mut Vec<Vec<SagaEvent>>) {
        if k <= 1 {
            out.push(items.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, items, out);
            let swap = if k.is_multiple_of(2) { i } else { 0 };
            items.swap(swap, k - 1);
        }
    }
    let mut items = events.to_vec();
    let mut out = Vec::new();
    heap(items.len(), &mut items, &mut out);
    out
}

#[test]
fn every_interleaving_of_every_path_folds_to_the_same_state() {
    let paths = [
        Saga::placed()
            .authorized()
            .reserved()
            .scheduled()
            .confirmed(),
        Saga::placed()
            .declined()
            .cancelled(CancellationReason::PAYMENT_DECLINED),
        Saga::placed()
            .authorized()
            .out_of_stock()
            .refunded(CancellationReason::OUT_OF_STOCK)
            .cancelled(CancellationReason::OUT_OF_STOCK),
        Saga::placed()
            .authorized()
            .reserved()
            .shipment_failed()
            .released()
            .refunded(CancellationReason::SHIPPING_FAILED)
            .cancelled(CancellationReason::SHIPPING_FAILED),
        Saga::placed()
            .authorized()
            .reserved()
            .cancelled(CancellationReason::TIMED_OUT)
            .scheduled()
            .refunded(CancellationReason::TIMED_OUT),
    ];
    for path in paths {
        let expected = path.folded();
        let orderings = permutations(&path.events);
        assert_eq!(orderings.len(), (1..=path.events.len()).product::<usize>());
        for ordering in orderings {
            assert_eq!(
                fold(&ordering),
                expected,
                "arrived as {:?}",
                ordering.iter().map(|e| e.event_type()).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn a_cause_stamped_later_than_its_effect_still_comes_first() {
    // Clocks of two hosts disagree: Payment's reply carries an earlier time than the placement.
    let mut saga = Saga::placed().authorized().declined();
    if let SagaEvent::PaymentDeclined(declined) = &mut saga.events[2] {
        declined.metadata.occurred_at = PLACED_AT - 1_000;
    }
    let order: Vec<_> = in_fold_order(&saga.events)
        .into_iter()
        .map(|e| e.event_type())
        .collect();
    assert_eq!(order.first(), Some(&saga_events::EventType::OrderPlaced));
    assert_eq!(order.last(), Some(&saga_events::EventType::PaymentDeclined));
}

#[test]
fn events_whose_causes_loop_are_folded_not_dropped() {
    let mut saga = Saga::placed().authorized().reserved();
    let reserved_id = saga.events[2].metadata().event_id.clone();
    if let SagaEvent::PaymentAuthorized(authorized) = &mut saga.events[1] {
        authorized.metadata.causation_id = Some(reserved_id);
    }
    let history = saga.folded();
    assert_eq!(history.events, 3);
    assert!(history.steps.charged && history.steps.reserved);
}

#[test]
fn as_of_a_moment_folds_what_had_occurred_by_then() {
    let saga = Saga::placed()
        .authorized()
        .reserved()
        .scheduled()
        .confirmed();
    let before_placement = fold_as_of(&saga.events, PLACED_AT - 1);
    assert_eq!(before_placement.status(), None);
    let after_payment = fold_as_of(&saga.events, PLACED_AT + 5);
    assert_eq!(after_payment.status(), Some(OrderStatus::Pending));
    assert!(after_payment.steps.charged && !after_payment.steps.reserved);
    let moments = moments(&saga.events);
    assert_eq!(moments.len(), 5);
    assert_eq!(moments[0].0, PLACED_AT);
    assert_eq!(moments[4].1, saga.folded());
}
