//! The fold itself: which events count, in which order, and what each one tells.

use std::cmp::Ordering;

use saga_events::progress::{self, Compensation, OrderStatus, Steps};
use saga_events::{CausalEvent, SagaEvent, StockLine, causal_order};

saga_events::status_enum! {
    /// The order's payment as Payment last told it.
    pub enum PaymentState {
        Authorized => "AUTHORIZED",
        Declined => "DECLINED",
        Refunded => "REFUNDED",
        InReview => "IN_REVIEW",
    }
}

saga_events::status_enum! {
    /// The order's stock as Inventory last told it.
    pub enum StockState {
        Reserved => "RESERVED",
        Refused => "FAILED",
        Released => "RELEASED",
    }
}

saga_events::status_enum! {
    /// The order's shipment as Shipping last told it.
    pub enum ShipmentState {
        Scheduled => "SCHEDULED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
}

/// What `OrderPlaced` said about the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub customer_id: String,
    pub currency: String,
    pub total_cents: i64,
    /// When it was placed: the event's `occurred_at`, epoch milliseconds.
    pub placed_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub status: PaymentState,
    pub amount_cents: i64,
    /// Why it was declined, or what the refund compensated.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockView {
    pub status: StockState,
    /// The lines reserved or released; the SKUs that were missing when it was refused.
    pub items: Vec<(String, i32)>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentView {
    pub status: ShipmentState,
    pub shipment_id: Option<String>,
    pub reason: Option<String>,
}

/// One order as its events tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderHistory {
    /// `None` until its `OrderPlaced` is among the events.
    pub placement: Option<Placement>,
    /// Order's `OrderConfirmed` or `OrderCancelled`: the first one, should there be two.
    pub ending: Option<OrderStatus>,
    /// What the other services reported doing and undoing.
    pub steps: Steps,
    pub payment: Option<PaymentView>,
    pub stock: Option<StockView>,
    pub shipment: Option<ShipmentView>,
    /// The amount Payment authorized, and the amount it refunded (0 where it did not).
    pub authorized_cents: i64,
    pub refunded_cents: i64,
    /// How many distinct events were folded, and the latest `occurred_at` among them.
    pub events: usize,
    pub last_event_at_ms: i64,
}

impl OrderHistory {
    /// `None` for an order not placed yet (as far as its events tell); pending until Order ended
    /// its saga.
    pub fn status(&self) -> Option<OrderStatus> {
        match (self.ending, &self.placement) {
            (Some(ending), Some(_)) => Some(ending),
            (None, Some(_)) => Some(OrderStatus::Pending),
            (_, None) => None,
        }
    }

    /// `None` unless the order was cancelled; then whether every step it took is reported undone.
    pub fn compensation(&self) -> Option<Compensation> {
        progress::compensation(self.status()?, self.steps)
    }

    /// The units the order holds, per SKU: what Inventory reserved for it and did not release.
    pub fn held(&self) -> &[(String, i32)] {
        match &self.stock {
            Some(stock) if stock.status == StockState::Reserved => &stock.items,
            _ => &[],
        }
    }

    fn apply(&mut self, event: &SagaEvent) {
        let at = event.metadata().occurred_at;
        self.events += 1;
        self.last_event_at_ms = self.last_event_at_ms.max(at);
        match event {
            SagaEvent::OrderPlaced(placed) => {
                self.placement.get_or_insert_with(|| Placement {
                    customer_id: placed.customer_id.clone(),
                    currency: placed.total.currency.clone(),
                    total_cents: placed.total.amount_minor,
                    placed_at_ms: at,
                });
            }
            SagaEvent::OrderConfirmed(_) => {
                self.ending.get_or_insert(OrderStatus::Confirmed);
            }
            SagaEvent::OrderCancelled(cancelled) => {
                self.ending
                    .get_or_insert(OrderStatus::Cancelled(cancelled.reason));
            }
            SagaEvent::PaymentAuthorized(authorized) => {
                self.steps.charged = true;
                self.authorized_cents = authorized.amount_cents;
                self.payment = Some(PaymentView {
                    status: PaymentState::Authorized,
                    amount_cents: authorized.amount_cents,
                    reason: None,
                });
            }
            SagaEvent::PaymentReviewRequested(requested) => {
                // Only until the review's outcome is told: its request never overrides it.
                let amount_cents = self.placement.as_ref().map_or(0, |p| p.total_cents);
                self.payment.get_or_insert_with(|| PaymentView {
                    status: PaymentState::InReview,
                    amount_cents,
                    reason: Some(format!(
                        "in manual review until {}",
                        requested.review_deadline_at
                    )),
                });
            }
            SagaEvent::PaymentDeclined(declined) => {
                self.payment = Some(PaymentView {
                    status: PaymentState::Declined,
                    amount_cents: declined.amount_cents,
                    reason: Some(declined.reason.clone()),
                });
            }
            SagaEvent::PaymentRefunded(refunded) => {
                self.steps.refunded = true;
                self.refunded_cents = refunded.amount_cents;
                self.payment = Some(PaymentView {
                    status: PaymentState::Refunded,
                    amount_cents: refunded.amount_cents,
                    reason: Some(refunded.reason.as_str().to_owned()),
                });
            }
            SagaEvent::StockReserved(reserved) => {
                self.steps.reserved = true;
                self.stock = Some(StockView {
                    status: StockState::Reserved,
                    items: lines(&reserved.items),
                    reason: None,
                });
            }
            SagaEvent::StockReservationFailed(failed) => {
                self.stock = Some(StockView {
                    status: StockState::Refused,
                    items: failed
                        .unavailable_skus
                        .iter()
                        .map(|s| (s.clone(), 0))
                        .collect(),
                    reason: Some(failed.reason.clone()),
                });
            }
            SagaEvent::StockReleased(released) => {
                self.steps.released = true;
                self.stock = Some(StockView {
                    status: StockState::Released,
                    items: lines(&released.items),
                    reason: None,
                });
            }
            SagaEvent::ShipmentScheduled(scheduled) => {
                self.steps.shipped = true;
                self.shipment = Some(ShipmentView {
                    status: ShipmentState::Scheduled,
                    shipment_id: Some(scheduled.shipment_id.clone()),
                    reason: None,
                });
            }
            SagaEvent::ShipmentFailed(failed) => {
                self.shipment = Some(ShipmentView {
                    status: ShipmentState::Failed,
                    shipment_id: None,
                    reason: Some(failed.reason.clone()),
                });
            }
            SagaEvent::ShipmentCancelled(cancelled) => {
                self.steps.shipment_cancelled = true;
                self.shipment = Some(ShipmentView {
                    status: ShipmentState::Cancelled,
                    shipment_id: Some(cancelled.shipment_id.clone()),
                    reason: Some(cancelled.reason.as_str().to_owned()),
                });
            }
        }
    }
}

fn lines(items: &[StockLine]) -> Vec<(String, i32)> {
    items.iter().map(|l| (l.sku.clone(), l.quantity)).collect()
}

/// One order's state, from its events in any order, repeats included.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a SagaEvent>) -> OrderHistory {
    let mut history = OrderHistory::default();
    for event in in_fold_order(events) {
        history.apply(event);
    }
    history
}

/// The order's state as of `as_of_ms`: folded from the events that had occurred by then.
pub fn fold_as_of<'a>(
    events: impl IntoIterator<Item = &'a SagaEvent>,
    as_of_ms: i64,
) -> OrderHistory {
    fold(
        events
            .into_iter()
            .filter(|e| e.metadata().occurred_at <= as_of_ms),
    )
}

/// Every moment the order's state changed, with its state from then on: the distinct
/// `occurred_at` of its events, each with [`fold_as_of`] that moment. The last one is [`fold`].
pub fn moments(events: &[SagaEvent]) -> Vec<(i64, OrderHistory)> {
    let mut times: Vec<i64> = events.iter().map(|e| e.metadata().occurred_at).collect();
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .map(|at| (at, fold_as_of(events, at)))
        .collect()
}

/// The distinct events (one per `event_id`) in the order the fold applies them: causes before
/// their effects, the earliest first among the rest. A set of events always comes out in the same
/// order, however it went in; `sagactl replay` prints this order.
pub fn in_fold_order<'a>(events: impl IntoIterator<Item = &'a SagaEvent>) -> Vec<&'a SagaEvent> {
    let mut distinct: Vec<&SagaEvent> = events.into_iter().collect();
    distinct.sort_by(|a, b| by_identity(a, b));
    distinct.dedup_by(|a, b| a.metadata().event_id == b.metadata().event_id);
    let ordered = causal_order(distinct.iter().map(|e| Ref(e)).collect());
    if ordered.len() == distinct.len() {
        return ordered.into_iter().map(|r| r.0).collect();
    }
    // Causes that form a loop (only a forged event can make one) leave their events out of the
    // causal order: they follow the rest, by time and id, rather than being lost.
    let mut placed: Vec<&SagaEvent> = ordered.into_iter().map(|r| r.0).collect();
    let mut rest: Vec<&SagaEvent> = distinct
        .into_iter()
        .filter(|e| {
            !placed
                .iter()
                .any(|p| p.metadata().event_id == e.metadata().event_id)
        })
        .collect();
    rest.sort_by_key(|e| (e.metadata().occurred_at, e.metadata().event_id.clone()));
    placed.extend(rest);
    placed
}

/// Sorts events so that repeats of one `event_id` sit together, the one kept first; two records
/// that claim one id with different content (never written by the saga) are told apart by
/// content, so that which one counts does not depend on arrival.
fn by_identity(a: &SagaEvent, b: &SagaEvent) -> Ordering {
    let (ma, mb) = (a.metadata(), b.metadata());
    ma.event_id
        .cmp(&mb.event_id)
        .then(ma.occurred_at.cmp(&mb.occurred_at))
        .then(a.event_type().cmp(&b.event_type()))
        .then_with(|| {
            if a == b {
                Ordering::Equal
            } else {
                a.to_json().to_string().cmp(&b.to_json().to_string())
            }
        })
}

/// A borrowed event in the causal graph.
struct Ref<'a>(&'a SagaEvent);

impl CausalEvent for Ref<'_> {
    fn event_id(&self) -> &str {
        self.0.event_id()
    }
    fn causation_id(&self) -> Option<&str> {
        self.0.causation_id()
    }
    fn occurred_at_millis(&self) -> i64 {
        self.0.occurred_at_millis()
    }
}
