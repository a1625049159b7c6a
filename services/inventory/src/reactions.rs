//! How Inventory reacts: it reserves every line of a paid order or none, and gives reserved units
//! back when shipping fails.

use saga_events::{
    EventMetadata, EventType, PaymentAuthorized, SagaEvent, StockLine, StockReleased,
    StockReservationFailed, StockReserved,
};
use saga_messaging::{Delivery, HandlerError, Reactions, parse_uuid};
use sqlx::PgConnection;

use crate::domain;
use crate::store::{self, ReservedLine};

pub const PRODUCER: &str = "inventory";

#[derive(Debug, Default)]
pub struct InventoryReactions;

impl Reactions for InventoryReactions {
    fn wants(&self, event_type: EventType) -> bool {
        matches!(
            event_type,
            EventType::PaymentAuthorized | EventType::ShipmentFailed
        )
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        event: &SagaEvent,
        _delivery: &Delivery,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        match event {
            SagaEvent::PaymentAuthorized(paid) => reserve(tx, paid).await,
            SagaEvent::ShipmentFailed(_) => release(tx, event).await,
            _ => Ok(Vec::new()),
        }
    }
}

async fn reserve(
    tx: &mut PgConnection,
    paid: &PaymentAuthorized,
) -> Result<Vec<SagaEvent>, HandlerError> {
    let order_id = parse_uuid("order_id", &paid.order_id)?;
    let wanted = domain::merge_lines(
        paid.items
            .iter()
            .map(|l| (l.sku.as_str(), i64::from(l.quantity))),
    );
    let skus: Vec<String> = wanted.keys().cloned().collect();
    let levels = store::lock_levels(tx, &skus).await?;
    let lines: Vec<ReservedLine> = wanted
        .iter()
        .map(|(sku, &quantity)| ReservedLine {
            sku: sku.clone(),
            quantity,
        })
        .collect();
    let metadata = EventMetadata::caused_by(&paid.metadata, PRODUCER);
    match domain::reserve(&wanted, &levels) {
        Ok(after) => {
            if !store::insert_reservation(tx, order_id, "RESERVED", &lines).await? {
                return Ok(Vec::new());
            }
            for (sku, level) in &after {
                store::set_reserved(tx, sku, level.reserved).await?;
            }
            Ok(vec![
                StockReserved {
                    metadata,
                    order_id: paid.order_id.clone(),
                    items: stock_lines(&lines)?,
                    shipping_address: paid.shipping_address.clone(),
                }
                .into(),
            ])
        }
        Err(unavailable) => {
            if !store::insert_reservation(tx, order_id, "FAILED", &lines).await? {
                return Ok(Vec::new());
            }
            let reason = unavailable
                .iter()
                .map(|sku| {
                    let available = levels.get(sku).map(|l| l.available()).unwrap_or(0);
                    format!(
                        "{sku}: {} wanted, {available} available",
                        wanted.get(sku).copied().unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Ok(vec![
                StockReservationFailed {
                    metadata,
                    order_id: paid.order_id.clone(),
                    unavailable_skus: unavailable,
                    reason,
                }
                .into(),
            ])
        }
    }
}

async fn release(tx: &mut PgConnection, cause: &SagaEvent) -> Result<Vec<SagaEvent>, HandlerError> {
    let order_id = parse_uuid("order_id", cause.order_id())?;
    let Some((status, lines)) = store::lock_reservation(tx, order_id).await? else {
        return Err(HandlerError::rejected(format!(
            "{} for order {order_id}, which holds no reservation",
            cause.event_type()
        )));
    };
    if status != "RESERVED" {
        // Never reserved, or already released: nothing to give back.
        return Ok(Vec::new());
    }
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let levels = store::lock_levels(tx, &skus).await?;
    for line in &lines {
        let level = levels.get(&line.sku).ok_or_else(|| {
            HandlerError::rejected(format!("reserved SKU {} no longer exists", line.sku))
        })?;
        store::set_reserved(tx, &line.sku, level.reserved - line.quantity).await?;
    }
    store::mark_released(tx, order_id).await?;
    Ok(vec![
        StockReleased {
            metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
            order_id: cause.order_id().to_owned(),
            items: stock_lines(&lines)?,
        }
        .into(),
    ])
}

fn stock_lines(lines: &[ReservedLine]) -> Result<Vec<StockLine>, HandlerError> {
    lines
        .iter()
        .map(|line| {
            Ok(StockLine {
                sku: line.sku.clone(),
                quantity: i32::try_from(line.quantity).map_err(|_| {
                    HandlerError::rejected(format!(
                        "quantity {} of {} is out of range",
                        line.quantity, line.sku
                    ))
                })?,
            })
        })
        .collect()
}
