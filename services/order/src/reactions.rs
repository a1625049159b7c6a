//! How Order reacts to a batch of events: the sagas of their orders are read in the consumer's
//! first query, all the events go into the timeline in one statement, and the sagas are moved
//! by [`crate::domain::react`] and written back in one statement. Both statements are deferred
//! to the consumer's last of the batch, which writes the inbox and the outbox.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::{
    Arrival, DeferredWrites, HandlerError, Reactions, Refusal, headers, inbox, parse_uuid, trace,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, OrderState};
use crate::store;
use crate::timeline::{self, RecordedEvent};

#[derive(Debug, Default)]
pub struct OrderReactions {
    /// The time a saga is given when its order is placed (`ORDER_DEADLINE_SECONDS`), in ms: an
    /// order in review gets it again after the review's deadline.
    pub deadline_budget_ms: i64,
}

/// Where the sagas of a batch's orders stand, as [`store::standing_and_states`] reads them.
type States = HashMap<Uuid, OrderState>;

impl Reactions for OrderReactions {
    type Loaded = States;

    fn wants(&self, event_type: EventType) -> bool {
        Service::Order.reacts_to(event_type)
    }

    /// Only the reports that end a pending saga are waited on; the rest feed the timeline and
    /// the compensation tracking.
    fn is_urgent(&self, event_type: EventType) -> bool {
        ends_a_saga(event_type)
    }

    async fn load(
        &self,
        tx: &mut PgConnection,
        questions: &[(Option<Uuid>, String)],
        orders: &[Uuid],
    ) -> Result<(Vec<inbox::Standing>, States), sqlx::Error> {
        store::standing_and_states(tx, questions, orders).await
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
        mut states: States,
        deferred: &mut DeferredWrites,
    ) -> Result<Vec<Vec<SagaEvent>>, Refusal> {
        let recorded = events
            .iter()
            .enumerate()
            .map(|(i, a)| recorded(a).map_err(|e| Refusal::at(i, e)))
            .collect::<Result<Vec<_>, Refusal>>()?;
        deferred.extend(timeline::record_events(recorded));

        let orders: Vec<Uuid> = events.iter().map(|a| a.order_id).collect();
        let mut changed: HashMap<Uuid, OrderState> = HashMap::new();
        let mut extended = Vec::new();
        let mut emitted = Vec::with_capacity(events.len());
        for (index, (arrival, order)) in events.iter().zip(&orders).enumerate() {
            let Some(state) = states.get(order).copied() else {
                if ends_a_saga(arrival.event.event_type()) {
                    return Err(Refusal::at(
                        index,
                        HandlerError::rejected(format!(
                            "{} for order {order}, which Order never accepted",
                            arrival.event.event_type()
                        )),
                    ));
                }
                // Only recorded: an event of an order this service does not know.
                emitted.push(Vec::new());
                continue;
            };
            if let SagaEvent::PaymentReviewRequested(requested) = arrival.event
                && let Some(deadline) =
                    domain::deadline_after_review(&state, requested, self.deadline_budget_ms)
            {
                extended.push((*order, deadline));
            }
            let decision = domain::react(&state, arrival.event);
            if decision.state != state {
                states.insert(*order, decision.state);
                changed.insert(*order, decision.state);
            }
            emitted.push(decision.emit);
        }
        let changed: Vec<(Uuid, OrderState)> = changed.into_iter().collect();
        // Run now: the batch's last statement carries the states' update, and one statement
        // cannot update the same row twice.
        store::extend_deadlines(tx, &extended).await?;
        deferred.extend(store::states_written(&changed));
        Ok(emitted)
    }
}

/// The reports that end a pending saga.
fn ends_a_saga(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::ShipmentScheduled | EventType::PaymentDeclined | EventType::PaymentRefunded
    )
}

/// How the timeline stores `event`.
fn recorded<'a>(arrival: &Arrival<'a>) -> Result<RecordedEvent<'a>, HandlerError> {
    let (event, delivery) = (arrival.event, arrival.delivery);
    let metadata = event.metadata();
    let mut detail = event.to_json();
    if let Some(fields) = detail.as_object_mut() {
        fields.remove("metadata");
    }
    let trace_id = delivery
        .headers
        .get(headers::TRACEPARENT)
        .and_then(trace::trace_id_of_traceparent);
    Ok(RecordedEvent {
        event_id: parse_uuid("event_id", &metadata.event_id)?,
        order_id: event.order_id(),
        event_type: event.event_type().name(),
        producer: &metadata.producer,
        causation_id: metadata
            .causation_id
            .as_deref()
            .map(|c| parse_uuid("causation_id", c))
            .transpose()?,
        occurred_at: DateTime::<Utc>::from_timestamp_millis(metadata.occurred_at)
            .unwrap_or_default(),
        topic: &delivery.topic,
        partition: delivery.partition,
        offset: delivery.offset,
        trace_id,
        schema: arrival.written_as,
        detail,
    })
}
