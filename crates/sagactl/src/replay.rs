//! `sagactl replay <order_id>`: who did what, when. One order's records across the four topics,
//! each with where it sits (topic, partition, offset), when it was written and when its event
//! occurred, and its trace id, in the order the read side folds them (causes first), with the
//! order's state after each: the exact sequence behind the state the read side shows.

use saga_events::SagaEvent;
use saga_history::{OrderHistory, fold, in_fold_order};
use saga_messaging::Delivery;
use saga_messaging::trace;
use serde_json::{Value, json};

use crate::Context;
use crate::output::emit;

/// One record of the order.
struct Record {
    delivery: Delivery,
    event: SagaEvent,
    written_as: String,
}

pub async fn run(context: &Context, order_id: &str) -> anyhow::Result<()> {
    let deliveries = crate::saga::order_records(context, order_id).await?;
    let mut records = Vec::with_capacity(deliveries.len());
    let mut undecodable = Vec::new();
    for delivery in deliveries {
        match context.codec.decode_written(&delivery.payload).await {
            Ok(decoded) => records.push(Record {
                event: decoded.event,
                written_as: decoded.written_as.to_string(),
                delivery,
            }),
            Err(error) => undecodable.push(format!("{delivery}: {error}")),
        }
    }
    let ordered = in_fold_order(records.iter().map(|r| &r.event));
    let mut steps = Vec::with_capacity(ordered.len());
    for (index, event) in ordered.iter().enumerate() {
        let id = &event.metadata().event_id;
        let copies: Vec<&Record> = records
            .iter()
            .filter(|r| &r.event.metadata().event_id == id)
            .collect();
        let state = fold(ordered[..=index].iter().copied());
        steps.push((copies, state));
    }
    if context.json {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(copies, state)| {
                json!({
                    "event": copies.first().map(|r| r.event.to_json()),
                    "event_type": copies.first().map(|r| r.event.event_type().name()),
                    "records": copies.iter().map(|r| record_json(r)).collect::<Vec<_>>(),
                    "state": state_json(state),
                })
            })
            .collect();
        emit(json!({"order_id": order_id, "steps": steps, "undecodable": undecodable}))?;
        return Ok(());
    }
    if steps.is_empty() && undecodable.is_empty() {
        emit(format!("no events for order {order_id}"))?;
        return Ok(());
    }
    emit(format!(
        "order {order_id}: {} events in {} records",
        steps.len(),
        records.len()
    ))?;
    for (number, (copies, state)) in steps.iter().enumerate() {
        let Some(first) = copies.first() else {
            continue;
        };
        let metadata = first.event.metadata();
        emit(format!(
            "{:>3}. {:<24} by {:<9} occurred {}  ({})",
            number + 1,
            first.event.event_type().name(),
            metadata.producer,
            time(Some(metadata.occurred_at)),
            first.written_as,
        ))?;
        for copy in copies {
            emit(format!(
                "     {:<28} written {}  trace {}",
                copy.delivery.to_string(),
                time(copy.delivery.timestamp_millis),
                trace_id(&copy.delivery).unwrap_or("-"),
            ))?;
        }
        if copies.len() > 1 {
            emit(format!(
                "     ({} records of one event: counted once)",
                copies.len()
            ))?;
        }
        emit(format!("     → {}", describe(state)))?;
    }
    for problem in undecodable {
        emit(format!("  undecodable: {problem}"))?;
    }
    Ok(())
}

fn trace_id(delivery: &Delivery) -> Option<&str> {
    delivery
        .headers
        .get(trace::TRACEPARENT_HEADER)
        .and_then(trace::trace_id_of_traceparent)
}

fn time(millis: Option<i64>) -> String {
    millis
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn record_json(record: &Record) -> Value {
    json!({
        "topic": record.delivery.topic,
        "partition": record.delivery.partition,
        "offset": record.delivery.offset,
        "recorded_at_ms": record.delivery.timestamp_millis,
        "occurred_at_ms": record.event.metadata().occurred_at,
        "trace_id": trace_id(&record.delivery),
        "written_as": record.written_as,
    })
}

fn state_json(state: &OrderHistory) -> Value {
    let status = state.status();
    json!({
        "status": status.map(|s| s.as_str()),
        "cancellation_reason": status.and_then(|s| s.reason()).map(|r| r.as_str()),
        "compensation": state.compensation().map(|c| c.as_str()),
        "payment": state.payment.as_ref().map(|p| p.status.as_str()),
        "stock": state.stock.as_ref().map(|s| s.status.as_str()),
        "shipment": state.shipment.as_ref().map(|s| s.status.as_str()),
    })
}

/// The state in one line: `CANCELLED (TIMED_OUT), compensation PENDING; payment REFUNDED, …`.
fn describe(state: &OrderHistory) -> String {
    let status = match state.status() {
        None => "not placed yet".to_owned(),
        Some(status) => match status.reason() {
            Some(reason) => format!("{} ({})", status.as_str(), reason.as_str()),
            None => status.as_str().to_owned(),
        },
    };
    let compensation = state
        .compensation()
        .map(|c| format!(", compensation {}", c.as_str()))
        .unwrap_or_default();
    format!(
        "{status}{compensation}; payment {}, stock {}, shipment {}",
        state.payment.as_ref().map_or("-", |p| p.status.as_str()),
        state.stock.as_ref().map_or("-", |s| s.status.as_str()),
        state.shipment.as_ref().map_or("-", |s| s.status.as_str()),
    )
}
