//! `sagactl saga`: one order's events across the four topics, causes before effects.

use saga_events::{Service, causal_order};
use saga_messaging::Delivery as RawRecord;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::Value;

use crate::Context;
use crate::output::{emit, record_json};

/// Every record of the four event topics keyed by `order_id`.
pub async fn order_records(context: &Context, order_id: &str) -> anyhow::Result<Vec<RawRecord>> {
    let kafka = context.kafka.clone();
    let topics = context.topics.clone();
    let key = order_id.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<RawRecord>> {
        let reader = PartitionReader::new(&kafka)?;
        let mut records = Vec::new();
        for service in Service::ALL {
            records.extend(reader.records_with_key(&topics.events(service), &key)?);
        }
        Ok(records)
    })
    .await?
}

pub async fn run(context: &Context, order_id: &str) -> anyhow::Result<()> {
    let records = order_records(context, order_id).await?;

    let mut entries = Vec::with_capacity(records.len());
    let mut undecodable = Vec::new();
    for record in &records {
        match context.codec.decode(&record.payload).await {
            Ok(event) => entries.push(Entry {
                event,
                json: record_json(&context.codec, record).await,
            }),
            Err(error) => undecodable.push(format!(
                "{}[{}]@{}: {error}",
                record.topic, record.partition, record.offset
            )),
        }
    }
    let ordered = causal_order(entries);
    if context.json {
        let events: Vec<Value> = ordered.iter().map(|e| e.json.clone()).collect();
        emit(
            serde_json::json!({"order_id": order_id, "events": events, "undecodable": undecodable}),
        )?;
        return Ok(());
    }
    if ordered.is_empty() && undecodable.is_empty() {
        emit(format!("no events for order {order_id}"))?;
        return Ok(());
    }
    emit(format!("order {order_id}: {} events", ordered.len()))?;
    let depth = depths(&ordered);
    for (entry, depth) in ordered.iter().zip(depth) {
        let metadata = entry.event.metadata();
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(metadata.occurred_at)
            .map(|t| t.format("%H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let indented = format!("{}{}", "  ".repeat(depth), entry.event.event_type().name());
        emit(format!(
            "  {when}  {:<10} {indented:<32} {}[{}]@{}",
            metadata.producer,
            entry.json["topic"].as_str().unwrap_or(""),
            entry.json["partition"],
            entry.json["offset"],
        ))?;
    }
    for problem in undecodable {
        emit(format!("  undecodable: {problem}"))?;
    }
    Ok(())
}

struct Entry {
    event: saga_events::SagaEvent,
    json: Value,
}

impl saga_events::CausalEvent for Entry {
    fn event_id(&self) -> &str {
        saga_events::CausalEvent::event_id(&self.event)
    }
    fn causation_id(&self) -> Option<&str> {
        saga_events::CausalEvent::causation_id(&self.event)
    }
    fn occurred_at_millis(&self) -> i64 {
        saga_events::CausalEvent::occurred_at_millis(&self.event)
    }
}

/// How many causes deep each event is, for indentation.
fn depths(ordered: &[Entry]) -> Vec<usize> {
    let mut depth_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    ordered
        .iter()
        .map(|entry| {
            let metadata = entry.event.metadata();
            let depth = metadata
                .causation_id
                .as_deref()
                .and_then(|cause| depth_of.get(cause))
                .map_or(0, |d| d + 1);
            depth_of.insert(metadata.event_id.as_str(), depth);
            depth
        })
        .collect()
}
