//! How Payment reacts: it charges (authorizes) or declines a placed order, and refunds held money
//! when Inventory or Shipping cannot go on.

use saga_events::{
    CancellationReason, EventMetadata, EventType, OrderPlaced, PaymentAuthorized, PaymentDeclined,
    PaymentRefunded, SagaEvent, StockLine,
};
use saga_messaging::{Delivery, HandlerError, Reactions, parse_uuid};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Decision, PaymentStatus};
use crate::store::{self, NewPayment};

pub const PRODUCER: &str = "payment";

#[derive(Debug, Clone)]
pub struct PaymentReactions {
    /// Orders above this amount (minor units) are declined.
    pub amount_limit_cents: i64,
}

impl Reactions for PaymentReactions {
    fn wants(&self, event_type: EventType) -> bool {
        matches!(
            event_type,
            EventType::OrderPlaced | EventType::StockReservationFailed | EventType::ShipmentFailed
        )
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        event: &SagaEvent,
        _delivery: &Delivery,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        match event {
            SagaEvent::OrderPlaced(placed) => self.charge(tx, placed).await,
            SagaEvent::StockReservationFailed(_) => {
                refund(tx, event, CancellationReason::OUT_OF_STOCK).await
            }
            SagaEvent::ShipmentFailed(_) => {
                refund(tx, event, CancellationReason::SHIPPING_FAILED).await
            }
            _ => Ok(Vec::new()),
        }
    }
}

impl PaymentReactions {
    async fn charge(
        &self,
        tx: &mut PgConnection,
        placed: &OrderPlaced,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        let order_id = parse_uuid("order_id", &placed.order_id)?;
        let payment_id = Uuid::now_v7();
        let decision = domain::decide(
            &placed.payment_method,
            placed.total_cents,
            self.amount_limit_cents,
        );
        let (status, decline_reason) = match &decision {
            Decision::Authorize => (PaymentStatus::Authorized, None),
            Decision::Decline(reason) => (PaymentStatus::Declined, Some(reason.as_str())),
        };
        let inserted = store::insert(
            tx,
            NewPayment {
                order_id,
                payment_id,
                status: status.as_str(),
                amount_cents: placed.total_cents,
                currency: &placed.currency,
                payment_method: &placed.payment_method,
                decline_reason,
            },
        )
        .await?;
        if !inserted {
            // The order already has its payment (one per order): never charge twice.
            return Ok(Vec::new());
        }
        let metadata = EventMetadata::caused_by(&placed.metadata, PRODUCER);
        let outcome: SagaEvent = match decision {
            Decision::Authorize => PaymentAuthorized {
                metadata,
                order_id: placed.order_id.clone(),
                payment_id: payment_id.to_string(),
                amount_cents: placed.total_cents,
                currency: placed.currency.clone(),
                items: placed
                    .items
                    .iter()
                    .map(|line| StockLine {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
                shipping_address: placed.shipping_address.clone(),
            }
            .into(),
            Decision::Decline(reason) => PaymentDeclined {
                metadata,
                order_id: placed.order_id.clone(),
                amount_cents: placed.total_cents,
                currency: placed.currency.clone(),
                reason,
            }
            .into(),
        };
        Ok(vec![outcome])
    }
}

async fn refund(
    tx: &mut PgConnection,
    cause: &SagaEvent,
    reason: CancellationReason,
) -> Result<Vec<SagaEvent>, HandlerError> {
    let order_id = parse_uuid("order_id", cause.order_id())?;
    let Some(payment) = store::lock(tx, order_id).await? else {
        return Err(HandlerError::rejected(format!(
            "{} for order {order_id}, which has no payment",
            cause.event_type()
        )));
    };
    let status = PaymentStatus::parse(&payment.status).ok_or_else(|| {
        HandlerError::rejected(format!(
            "payment of {order_id} has an impossible status {}",
            payment.status
        ))
    })?;
    let Some((_, reason)) = domain::refund(status, reason) else {
        return Ok(Vec::new());
    };
    store::mark_refunded(tx, order_id, reason.as_str()).await?;
    Ok(vec![
        PaymentRefunded {
            metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
            order_id: cause.order_id().to_owned(),
            payment_id: payment.payment_id.to_string(),
            amount_cents: payment.amount_cents,
            currency: payment.currency,
            reason,
        }
        .into(),
    ])
}
