//! How Shipping reacts to a batch of events: what it knows of their orders in one query, each
//! reaction decided by the rules in [`crate::domain`], every change written at the end.

use std::collections::HashMap;

use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::{Arrival, Reactions, Refusal};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Destinations, Standing};
use crate::store::{self, Changes};

#[derive(Debug, Clone)]
pub struct ShippingReactions {
    pub destinations: Destinations,
}

impl Reactions for ShippingReactions {
    fn wants(&self, event_type: EventType) -> bool {
        Service::Shipping.reacts_to(event_type)
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
    ) -> Result<Vec<Vec<SagaEvent>>, Refusal> {
        let orders: Vec<Uuid> = events.iter().map(|a| a.order_id).collect();
        let known = store::standings(tx, &orders).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut current: HashMap<Uuid, Standing> = HashMap::new();
        let mut changes = Changes::default();
        let mut emitted = Vec::with_capacity(events.len());
        for (arrival, order) in events.iter().zip(&orders) {
            let standing = current
                .get(order)
                .or_else(|| known.get(order))
                .cloned()
                .unwrap_or_default();
            let decision = domain::react(&standing, arrival.event, &self.destinations, now);
            match (
                &standing.shipment,
                &decision.standing.shipment,
                arrival.event,
            ) {
                (None, Some(created), SagaEvent::StockReserved(reserved)) => {
                    changes.created.push((*order, created.clone(), reserved));
                }
                (Some(before), Some(after), _) if before.status != after.status => {
                    changes.moved.push((*order, after.status));
                }
                _ => {}
            }
            if let (None, Some(reason)) = (standing.closed, decision.standing.closed) {
                changes.closed.push((*order, reason));
            }
            current.insert(*order, decision.standing);
            emitted.push(decision.emit);
        }
        store::save(tx, &changes).await?;
        Ok(emitted)
    }
}
