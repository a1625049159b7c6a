//! The timeline: every saga event of every order, from all four topics, recorded as Order
//! consumes them (what `GET /orders/{id}/timeline` shows). A projection: events nothing waits on
//! are recorded in batches, so an event can show up here a little after the saga moved on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_events::CausalEvent;
use saga_messaging::Deferred;

/// One saga event as the timeline shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub event_id: String,
    pub event_type: String,
    /// The service that emitted it.
    pub producer: String,
    /// The event this one reacted to.
    pub causation_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// W3C trace id the event was written under.
    pub trace_id: Option<String>,
    /// The record its producer wrote, e.g. `saga.order.OrderPlaced` (major 1, shown upcast) or
    /// `saga.order.v2.OrderPlaced`; `null` for events recorded before this was kept.
    pub schema: Option<String>,
    /// The event's own fields (amounts, reasons, …).
    #[schema(value_type = Object)]
    pub detail: Json<serde_json::Value>,
}
saga_messaging::from_row!(TimelineEntry { event_id, event_type, producer, causation_id, occurred_at, topic, partition = "kafka_partition", offset = "kafka_offset", trace_id, schema, detail });

impl CausalEvent for TimelineEntry {
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }
    fn occurred_at_millis(&self) -> i64 {
        self.occurred_at.timestamp_millis()
    }
}

/// A consumed event, as the timeline stores it.
#[derive(Debug)]
pub struct RecordedEvent<'a> {
    pub event_id: Uuid,
    pub order_id: &'a str,
    pub event_type: &'a str,
    pub producer: &'a str,
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub trace_id: Option<&'a str>,
    pub schema: &'a str,
    pub detail: serde_json::Value,
}

/// Records consumed events for the timeline, all in one statement (the consumer's last of the
/// batch carries it); an event recorded before is left as it is.
pub fn record_events<'a>(events: Vec<RecordedEvent<'a>>) -> Option<Deferred> {
    if events.is_empty() {
        return None;
    }
    let text = |f: fn(&RecordedEvent<'a>) -> &'a str| {
        events.iter().map(|e| f(e).to_owned()).collect::<Vec<_>>()
    };
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let orders = text(|e| e.order_id);
    let types = text(|e| e.event_type);
    let producers = text(|e| e.producer);
    let causes: Vec<Option<Uuid>> = events.iter().map(|e| e.causation_id).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let topics = text(|e| e.topic);
    let partitions: Vec<i32> = events.iter().map(|e| e.partition).collect();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    let traces: Vec<Option<String>> = events
        .iter()
        .map(|e| e.trace_id.map(str::to_owned))
        .collect();
    let schemas = text(|e| e.schema);
    let details: Vec<Json<serde_json::Value>> =
        events.into_iter().map(|e| Json(e.detail)).collect();
    Some(Deferred::new(
        "INSERT INTO timeline (event_id, order_id, event_type, producer, causation_id, occurred_at,
                               topic, kafka_partition, kafka_offset, trace_id, detail, schema)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                              $6::timestamptz[], $7::text[], $8::int[], $9::bigint[], $10::text[],
                              $11::jsonb[], $12::text[])
         ON CONFLICT (event_id) DO NOTHING",
        move |query| {
            query
                .bind(ids)
                .bind(orders)
                .bind(types)
                .bind(producers)
                .bind(causes)
                .bind(times)
                .bind(topics)
                .bind(partitions)
                .bind(offsets)
                .bind(traces)
                .bind(details)
                .bind(schemas)
        },
    ))
}

pub async fn timeline(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_id::text AS event_id, event_type, producer, causation_id::text AS causation_id,
                occurred_at, topic, kafka_partition, kafka_offset, trace_id, schema, detail
         FROM timeline WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await
}
