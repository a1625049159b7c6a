//! How Shipping reacts: a reserved order gets a shipment, or fails if its destination is not
//! served (which sends the saga into compensation).

use saga_events::{
    EventMetadata, EventType, SagaEvent, ShipmentFailed, ShipmentScheduled, StockReserved,
};
use saga_messaging::{Delivery, HandlerError, Reactions, parse_uuid};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Destinations;
use crate::store::{self, NewShipment};

pub const PRODUCER: &str = "shipping";

#[derive(Debug, Clone)]
pub struct ShippingReactions {
    pub destinations: Destinations,
}

impl Reactions for ShippingReactions {
    fn wants(&self, event_type: EventType) -> bool {
        event_type == EventType::StockReserved
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        event: &SagaEvent,
        _delivery: &Delivery,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        match event {
            SagaEvent::StockReserved(reserved) => self.schedule(tx, reserved).await,
            _ => Ok(Vec::new()),
        }
    }
}

impl ShippingReactions {
    async fn schedule(
        &self,
        tx: &mut PgConnection,
        reserved: &StockReserved,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        let order_id = parse_uuid("order_id", &reserved.order_id)?;
        let shipment_id = Uuid::now_v7();
        let country = &reserved.shipping_address.country;
        let refusal = self.destinations.refusal(country);
        let inserted = store::insert(
            tx,
            NewShipment {
                order_id,
                shipment_id,
                status: if refusal.is_some() {
                    "FAILED"
                } else {
                    "SCHEDULED"
                },
                address: &reserved.shipping_address,
                items: &reserved.items,
                failure_reason: refusal.as_deref(),
            },
        )
        .await?;
        if !inserted {
            return Ok(Vec::new());
        }
        let metadata = EventMetadata::caused_by(&reserved.metadata, PRODUCER);
        let order_id = reserved.order_id.clone();
        Ok(vec![match refusal {
            None => ShipmentScheduled {
                metadata,
                order_id,
                shipment_id: shipment_id.to_string(),
                country: country.clone(),
            }
            .into(),
            Some(reason) => ShipmentFailed {
                metadata,
                order_id,
                reason,
            }
            .into(),
        }])
    }
}
