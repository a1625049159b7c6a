//! Kafka header names the saga writes next to every event.

/// W3C trace context of the span that wrote the event.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// Short event type name (`OrderPlaced`), so tools can filter without decoding.
pub const EVENT_TYPE: &str = "event-type";
/// The event's `event_id`, the consumers' idempotency key.
pub const EVENT_ID: &str = "event-id";
/// Id of the outbox row the record was published from; the relay reads it back after a crash
/// to learn what already reached the broker.
pub const OUTBOX_ID: &str = "outbox-id";

/// Added to records on `<service>.retry` and `<service>.dlq`.
pub const ATTEMPTS: &str = "saga-attempts";
pub const NOT_BEFORE: &str = "saga-not-before";
pub const SERVICE: &str = "saga-service";
pub const SOURCE_TOPIC: &str = "saga-source-topic";
pub const SOURCE_PARTITION: &str = "saga-source-partition";
pub const SOURCE_OFFSET: &str = "saga-source-offset";
pub const SOURCE_TIMESTAMP: &str = "saga-source-timestamp";
pub const ERROR_KIND: &str = "saga-error-kind";
pub const ERROR: &str = "saga-error";
pub const FIRST_FAILURE: &str = "saga-first-failure";
pub const LAST_FAILURE: &str = "saga-last-failure";
/// Added by `sagactl dlq redrive`: when, from which dead letter, by whom.
pub const REDRIVEN_AT: &str = "saga-redriven-at";
pub const REDRIVEN_FROM: &str = "saga-redriven-from";
pub const REDRIVEN_BY: &str = "saga-redriven-by";

use std::collections::BTreeMap;

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Text headers of a record, in a form that is easy to store (JSONB) and compare.
pub fn to_map<H: Headers>(headers: Option<&H>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(headers) = headers {
        for header in headers.iter() {
            if let Some(value) = header.value {
                map.insert(
                    header.key.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            }
        }
    }
    map
}

pub fn from_map(map: &BTreeMap<String, String>) -> OwnedHeaders {
    map.iter().fold(
        OwnedHeaders::new_with_capacity(map.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
}
