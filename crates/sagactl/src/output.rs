//! Turning records into what the operator reads.

use chrono::{DateTime, Utc};
use saga_events::EventCodec;
use saga_messaging::Delivery as RawRecord;
use serde_json::{Value, json};

/// A record as JSON: where it is, its key and headers, and its value decoded with the writer's
/// schema (or why it could not be).
pub async fn record_json(codec: &EventCodec, record: &RawRecord) -> Value {
    let (event_type, record_name, value, error) = match codec.decode_json(&record.payload).await {
        Ok((name, value)) => (
            Value::String(short_name(&name).to_owned()),
            Value::String(name),
            value,
            Value::Null,
        ),
        Err(e) => (
            Value::Null,
            Value::Null,
            Value::Null,
            Value::String(e.to_string()),
        ),
    };
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_millis.and_then(DateTime::<Utc>::from_timestamp_millis),
        "key": record.key.as_deref().map(String::from_utf8_lossy),
        "headers": record.headers.to_text_map(),
        "event_type": event_type,
        // The writer's record: its namespace says the major (`saga.order.v2.OrderPlaced`).
        "record": record_name,
        "value": value,
        "decode_error": error,
    })
}

/// `saga.order.OrderPlaced` → `OrderPlaced`.
pub fn short_name(full_name: &str) -> &str {
    full_name.rsplit('.').next().unwrap_or(full_name)
}

/// One line for a person: coordinates, key, type, then the value compactly.
pub fn record_line(record: &Value) -> String {
    let value = if record["decode_error"].is_null() {
        record["value"].to_string()
    } else {
        format!(
            "<undecodable: {}>",
            record["decode_error"].as_str().unwrap_or("")
        )
    };
    format!(
        "{}[{}]@{} key={} {} ({}) {}",
        record["topic"].as_str().unwrap_or(""),
        record["partition"],
        record["offset"],
        record["key"].as_str().unwrap_or("-"),
        record["event_type"].as_str().unwrap_or("?"),
        record["record"].as_str().unwrap_or("?"),
        value
    )
}

/// Writes one line to stdout. A closed pipe (`sagactl … | head`) ends the program quietly, as
/// command-line tools do, instead of failing.
pub fn emit(line: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        result => Ok(result?),
    }
}
