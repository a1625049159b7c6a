//! How Inventory reacts to a batch of events: what it knows of their orders and the stock of
//! every SKU they touch (locked in SKU order) in two queries, each reaction decided by the rules
//! in [`crate::domain`], every change written at the end.

use std::collections::{BTreeSet, HashMap};

use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::{Arrival, HandlerError, Reactions, Refusal};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Standing};
use crate::store;

#[derive(Debug, Default)]
pub struct InventoryReactions;

impl Reactions for InventoryReactions {
    fn wants(&self, event_type: EventType) -> bool {
        Service::Inventory.reacts_to(event_type)
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
    ) -> Result<Vec<Vec<SagaEvent>>, Refusal> {
        let orders: Vec<Uuid> = events.iter().map(|a| a.order_id).collect();
        let known = store::standings(tx, &orders).await?;
        // Every SKU the batch may touch: what payments ask for, what reservations hold.
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for arrival in events {
            if let SagaEvent::PaymentAuthorized(paid) = arrival.event {
                skus.extend(paid.items.iter().map(|line| line.sku.clone()));
            }
        }
        for standing in known.values() {
            if let Some(reservation) = &standing.reservation {
                skus.extend(reservation.lines.iter().map(|line| line.sku.clone()));
            }
        }
        let skus: Vec<String> = skus.into_iter().collect();
        let mut levels = store::lock_levels(tx, &skus).await?;
        let before = levels.clone();

        let now = chrono::Utc::now().timestamp_millis();
        let mut current: HashMap<Uuid, Standing> = HashMap::new();
        let mut emitted = Vec::with_capacity(events.len());
        for (index, (arrival, order)) in events.iter().zip(&orders).enumerate() {
            let standing = current
                .get(order)
                .or_else(|| known.get(order))
                .cloned()
                .unwrap_or_default();
            let decision = domain::react(&standing, arrival.event, &mut levels, now)
                .map_err(|refused| Refusal::at(index, HandlerError::rejected(refused.0)))?;
            if decision.standing != standing {
                current.insert(*order, decision.standing);
            }
            emitted.push(decision.emit);
        }
        let changed: Vec<(Uuid, Standing)> = current.into_iter().collect();
        let moved: Vec<(String, domain::Level)> = levels
            .into_iter()
            .filter(|(sku, level)| before.get(sku) != Some(level))
            .collect();
        store::save(tx, &changed, &moved).await?;
        Ok(emitted)
    }
}
