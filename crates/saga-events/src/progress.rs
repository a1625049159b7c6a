//! How far one order's saga has come: whether it is pending, confirmed or cancelled, and what the
//! other services reported doing for it and undoing. Order keeps this in its `orders` table and
//! moves it with each event; `sagactl stuck` reads that table. What a saga still waits for, and
//! from whom, is decided here once, so that the service and the tools never disagree about it.

use crate::events::CancellationReason;
use crate::topics::Service;

/// Where an order's saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled(CancellationReason),
}

crate::status_enum! {
    /// How the `status` column names an [`OrderStatus`] (a cancellation's reason has its own).
    pub enum StatusName { Pending => "PENDING", Confirmed => "CONFIRMED", Cancelled => "CANCELLED" }
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => StatusName::Pending,
            OrderStatus::Confirmed => StatusName::Confirmed,
            OrderStatus::Cancelled(_) => StatusName::Cancelled,
        }
        .as_str()
    }

    pub fn reason(self) -> Option<CancellationReason> {
        match self {
            OrderStatus::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }

    /// The status the `status` and `cancellation_reason` columns spell; None for a pair Order
    /// never writes (a pending or confirmed order with a reason, a cancelled one without a known
    /// reason).
    pub fn from_columns(status: &str, reason: Option<&str>) -> Option<Self> {
        let reason = reason.and_then(CancellationReason::parse);
        match (StatusName::parse(status)?, reason) {
            (StatusName::Pending, None) => Some(OrderStatus::Pending),
            (StatusName::Confirmed, None) => Some(OrderStatus::Confirmed),
            (StatusName::Cancelled, Some(reason)) => Some(OrderStatus::Cancelled(reason)),
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

crate::status_enum! {
    /// Where a cancelled order's compensation stands.
    pub enum Compensation {
        /// A step taken is not undone yet (or not reported undone).
        Pending => "PENDING",
        /// Everything the order's history requires is undone.
        Completed => "COMPLETED",
    }
}

/// `None` while the order is pending or once it is confirmed; for a cancelled order, whether
/// every compensation its history requires has been reported.
pub fn compensation(status: OrderStatus, steps: Steps) -> Option<Compensation> {
    matches!(status, OrderStatus::Cancelled(_)).then(|| {
        if awaiting(status, steps).is_empty() {
            Compensation::Completed
        } else {
            Compensation::Pending
        }
    })
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

/// What a saga standing at `status` with `steps` reported waits for: the next step of a pending
/// order, or every undo a cancelled order still owes. Empty once the saga has nothing more to
/// hear.
pub fn awaiting(status: OrderStatus, steps: Steps) -> Vec<Awaited> {
    let s = steps;
    let reason = match status {
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
    // What the reason itself implies was done: a failed shipment means stock was reserved and
    // money held; a refusal of stock means money was held.
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
