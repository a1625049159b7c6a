//! How Order reacts to the saga: it records every event of every order for the timeline, and
//! ends the saga when Payment or Shipping report how it went.

use chrono::{DateTime, Utc};
use saga_events::{EventMetadata, EventType, OrderCancelled, OrderConfirmed, SagaEvent};
use saga_messaging::{Delivery, HandlerError, Reactions, headers, parse_uuid, trace};
use sqlx::PgConnection;

use crate::domain::{OrderStatus, SagaOutcome, next_status};
use crate::store::{self, RecordedEvent};

pub const PRODUCER: &str = "order";

#[derive(Debug, Default)]
pub struct OrderReactions;

impl Reactions for OrderReactions {
    fn wants(&self, _event_type: EventType) -> bool {
        // Every event of every order goes into the timeline.
        true
    }

    /// Only the reports that end the saga are waited on; the rest feed the timeline.
    fn is_urgent(&self, event_type: EventType) -> bool {
        matches!(
            event_type,
            EventType::ShipmentScheduled | EventType::PaymentDeclined | EventType::PaymentRefunded
        )
    }

    /// The timeline records every event of the transaction in one statement.
    async fn prepare(
        &self,
        tx: &mut PgConnection,
        events: &[(&SagaEvent, &Delivery)],
    ) -> Result<(), HandlerError> {
        let recorded = events
            .iter()
            .map(|(event, delivery)| recorded(event, delivery))
            .collect::<Result<Vec<_>, _>>()?;
        store::record_events(tx, &recorded).await?;
        Ok(())
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        event: &SagaEvent,
        _delivery: &Delivery,
    ) -> Result<Vec<SagaEvent>, HandlerError> {
        let outcome = match event {
            SagaEvent::ShipmentScheduled(_) => SagaOutcome::ShipmentScheduled,
            SagaEvent::PaymentDeclined(_) => SagaOutcome::PaymentDeclined,
            SagaEvent::PaymentRefunded(refund) => SagaOutcome::PaymentRefunded(refund.reason),
            _ => return Ok(Vec::new()),
        };
        end_saga(tx, event, outcome).await
    }
}

/// How the timeline stores `event`.
fn recorded<'a>(
    event: &'a SagaEvent,
    delivery: &'a Delivery,
) -> Result<RecordedEvent<'a>, HandlerError> {
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
        detail,
    })
}

async fn end_saga(
    tx: &mut PgConnection,
    event: &SagaEvent,
    outcome: SagaOutcome,
) -> Result<Vec<SagaEvent>, HandlerError> {
    let order_id = parse_uuid("order_id", event.order_id())?;
    let Some((status, reason)) = store::lock_status(tx, order_id).await? else {
        return Err(HandlerError::rejected(format!("unknown order {order_id}")));
    };
    let current = OrderStatus::from_columns(&status, reason.as_deref()).ok_or_else(|| {
        HandlerError::rejected(format!(
            "order {order_id} has an impossible status {status}"
        ))
    })?;
    let Some(next) = next_status(current, outcome) else {
        return Ok(Vec::new());
    };
    store::set_status(tx, order_id, next).await?;
    let metadata = EventMetadata::caused_by(event.metadata(), PRODUCER);
    let order_id = event.order_id().to_owned();
    let ended = match next {
        OrderStatus::Confirmed => OrderConfirmed { metadata, order_id }.into(),
        OrderStatus::Cancelled(reason) => OrderCancelled {
            metadata,
            order_id,
            reason,
        }
        .into(),
        OrderStatus::Pending => return Ok(Vec::new()),
    };
    Ok(vec![ended])
}
