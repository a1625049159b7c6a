//! What the read side's API answers, and how a folded order becomes its answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use saga_events::progress::StatusName;
use saga_history::{OrderHistory, in_fold_order};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::queries::{Logged, OrderSummary};

/// One order as its events tell it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    pub order_id: Uuid,
    /// PENDING, CONFIRMED or CANCELLED.
    pub status: &'static str,
    pub cancellation_reason: Option<&'static str>,
    /// For a cancelled order: PENDING until every step it took is reported undone, then COMPLETED.
    pub compensation: Option<&'static str>,
    pub customer_id: String,
    pub currency: String,
    pub total_cents: i64,
    pub placed_at: DateTime<Utc>,
    pub payment: Option<PaymentDetail>,
    pub stock: Option<StockDetail>,
    pub shipment: Option<ShipmentDetail>,
    /// Its distinct events, in the order the fold applied them (causes first).
    pub events: Vec<EventRef>,
    /// The moment this state is as of.
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventRef {
    pub event_id: String,
    pub event_type: &'static str,
    pub producer: String,
    pub occurred_at: DateTime<Utc>,
    /// When its record was written to the topic.
    pub recorded_at: Option<DateTime<Utc>>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub trace_id: Option<String>,
    /// The record its writer wrote, e.g. `saga.order.OrderPlaced` (major 1, upcast) or
    /// `saga.order.v2.OrderPlaced`.
    pub written_as: String,
}

/// The payment as Payment last told it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentDetail {
    /// AUTHORIZED, DECLINED or REFUNDED; IN_REVIEW while Payment waits for a reviewer.
    pub status: &'static str,
    pub amount_cents: i64,
    pub reason: Option<String>,
}

/// The stock as Inventory last told it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockDetail {
    /// RESERVED, FAILED or RELEASED.
    pub status: &'static str,
    pub items: Vec<StockItem>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockItem {
    pub sku: String,
    pub quantity: i32,
}

/// The shipment as Shipping last told it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShipmentDetail {
    /// SCHEDULED, FAILED or CANCELLED.
    pub status: &'static str,
    pub shipment_id: Option<String>,
    pub reason: Option<String>,
}

/// The answer for one order: its folded `history`, with the records of `log`.
pub fn detail(
    order: Uuid,
    history: &OrderHistory,
    log: &[Logged],
    as_of: Option<DateTime<Utc>>,
) -> OrderDetail {
    let status = history.status();
    let placement = history
        .placement
        .clone()
        .unwrap_or_else(|| saga_history::Placement {
            customer_id: String::new(),
            currency: String::new(),
            total_cents: 0,
            placed_at_ms: 0,
        });
    let events = in_fold_order(log.iter().map(|l| &l.event))
        .into_iter()
        .filter_map(|event| {
            let id = &event.metadata().event_id;
            let first = log.iter().find(|l| &l.event.metadata().event_id == id)?;
            Some(EventRef {
                event_id: id.clone(),
                event_type: event.event_type().name(),
                producer: event.metadata().producer.clone(),
                occurred_at: first.occurred_at,
                recorded_at: first.recorded_at,
                topic: first.topic.clone(),
                partition: first.partition,
                offset: first.offset,
                trace_id: first.trace_id.clone(),
                written_as: first.written_as.clone(),
            })
        })
        .collect();
    OrderDetail {
        order_id: order,
        status: status.map_or(StatusName::Pending.as_str(), |s| s.as_str()),
        cancellation_reason: status.and_then(|s| s.reason()).map(|r| r.as_str()),
        compensation: history.compensation().map(|c| c.as_str()),
        customer_id: placement.customer_id,
        currency: placement.currency,
        total_cents: placement.total_cents,
        placed_at: saga_history::projection::store::millis(placement.placed_at_ms),
        payment: history.payment.as_ref().map(|p| PaymentDetail {
            status: p.status.as_str(),
            amount_cents: p.amount_cents,
            reason: p.reason.clone(),
        }),
        stock: history.stock.as_ref().map(|s| StockDetail {
            status: s.status.as_str(),
            items: s
                .items
                .iter()
                .map(|(sku, quantity)| StockItem {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
            reason: s.reason.clone(),
        }),
        shipment: history.shipment.as_ref().map(|s| ShipmentDetail {
            status: s.status.as_str(),
            shipment_id: s.shipment_id.clone(),
            reason: s.reason.clone(),
        }),
        events,
        as_of: as_of.unwrap_or_else(Utc::now),
    }
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `after` for the next page; null on the last one.
    pub next: Option<String>,
}

/// The whole system as of a moment.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStats {
    pub as_of: DateTime<Utc>,
    /// Orders placed by then.
    pub orders: i64,
    /// Orders per status then.
    pub by_status: BTreeMap<String, i64>,
    /// Cancelled orders per reason then.
    pub by_cancellation_reason: BTreeMap<String, i64>,
    /// Money authorized and refunded by then, per currency.
    pub money: Vec<MoneyTotals>,
    /// Units held by orders then (reserved and not released), per SKU.
    pub held_units: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MoneyTotals {
    pub currency: String,
    pub authorized_cents: i64,
    pub refunded_cents: i64,
}
