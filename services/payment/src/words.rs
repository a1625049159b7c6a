//! The words Payment's rules and its review share: who Payment is on the saga's events, the
//! statuses of a payment, and the stock lines an authorization asks Inventory for. Their own
//! module, so that the review's rules and the payment's rules need not import each other.

use saga_events::{OrderLine, StockLine};

pub const PRODUCER: &str = "payment";

saga_events::status_enum! {
    pub enum PaymentStatus {
        Authorized => "AUTHORIZED",
        Declined => "DECLINED",
        Refunded => "REFUNDED",
        InReview => "IN_REVIEW",
    }
}

/// What to reserve: one line per SKU, so that an order listing a SKU on two lines (at two
/// prices, say) reserves their sum once.
pub fn stock_lines(items: &[OrderLine]) -> Vec<StockLine> {
    let mut lines: Vec<StockLine> = Vec::with_capacity(items.len());
    for item in items {
        match lines.iter_mut().find(|line| line.sku == item.sku) {
            Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
            None => lines.push(StockLine {
                sku: item.sku.clone(),
                quantity: item.quantity,
            }),
        }
    }
    lines
}
