//! How Payment reacts to a batch of events: what it knows of their orders in one query, each
//! reaction decided by the rules in [`crate::domain`], every change written at the end.

use std::collections::HashMap;

use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::{Arrival, HandlerError, Reactions, Refusal};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Rules, Standing};
use crate::store;

#[derive(Debug, Clone)]
pub struct PaymentReactions {
    pub rules: Rules,
}

impl Reactions for PaymentReactions {
    fn wants(&self, event_type: EventType) -> bool {
        Service::Payment.reacts_to(event_type)
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
        let mut emitted = Vec::with_capacity(events.len());
        for (index, (arrival, order)) in events.iter().zip(&orders).enumerate() {
            let standing = current
                .get(order)
                .or_else(|| known.get(order))
                .cloned()
                .unwrap_or_default();
            let decision = domain::react(&standing, arrival.event, self.rules, now)
                .map_err(|refused| Refusal::at(index, HandlerError::rejected(refused.0)))?;
            if decision.standing != standing {
                current.insert(*order, decision.standing);
            }
            emitted.push(decision.emit);
        }
        let changed: Vec<(Uuid, Standing)> = current.into_iter().collect();
        store::save(tx, &changed).await?;
        Ok(emitted)
    }
}
