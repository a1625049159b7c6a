//! W3C trace context across HTTP and Kafka, and the spans of the messaging path: what each
//! message carries and records. Installing the subscriber and the exporter is the process's
//! business, done once at startup by `saga-runtime`; the spans here are recorded by whichever
//! subscriber is installed, if any.
//!
//! Spans get real OpenTelemetry trace and span ids even when nothing exports them, so the ids in
//! Kafka headers tie one order's HTTP request, reactions and compensations into one trace.
//!
//! Every hop of a saga is one link of a chain, following the OpenTelemetry messaging
//! conventions: the relay's producer span ([`publish_span`]) is a child of the context its outbox
//! row was written under and is what the record's `traceparent` names; the consumer's process
//! span ([`process_span`]) is a child of that, and holds the transaction span
//! ([`transaction_span`]) of the database work, under whose context the events it emits are
//! written. Causes sit above their effects, across every service.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::{Span, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::delivery::Delivery;
use crate::headers::{self, Headers};

/// HTTP header names of W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; leave it out of every record.
        if !value.is_empty() {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(key, _)| key).collect()
    }
}

/// `traceparent` (and `tracestate`) of the current span, ready to travel in Kafka headers.
pub fn current_context_headers() -> Headers {
    context_headers(&Span::current())
}

/// `traceparent` (and `tracestate`) of `span`.
pub fn context_headers(span: &Span) -> Headers {
    let mut headers = Headers::new();
    TraceContextPropagator::new()
        .inject_context(&span.context(), &mut HeaderInjector(&mut headers));
    headers
}

/// The context of `span` to send onward, or the `traceparent` and `tracestate` of `fallback`
/// when `span` has none (no subscriber records spans, as in some tests): a record never loses the
/// trace it belongs to.
pub fn context_or(span: &Span, fallback: &Headers) -> Headers {
    let context = context_headers(span);
    if context.get(TRACEPARENT_HEADER).is_some() {
        return context;
    }
    let mut carried = Headers::new();
    for name in [TRACEPARENT_HEADER, TRACESTATE_HEADER] {
        if let Some(value) = fallback.get(name) {
            carried.insert(name, value);
        }
    }
    carried
}

/// The remote parent named by `traceparent` in `headers`, if any.
pub fn parent_from_headers(headers: &Headers) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes `span` a child of the context carried in `headers`. Must be called before the span is
/// first entered, or the span keeps its own trace.
pub fn continue_trace(span: &Span, headers: &Headers) {
    let parent = parent_from_headers(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The 32-hex-digit trace id of `span`.
pub fn trace_id(span: &Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}

/// The trace id inside a `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of_traceparent(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32).then_some(id)
}

/// A record key as a span attribute: text when it is text (the saga keys by order id).
fn key_attribute(key: Option<&[u8]>) -> &str {
    key.and_then(|key| std::str::from_utf8(key).ok())
        .unwrap_or_default()
}

/// The producer span of one record the relay sends, a child of the context its outbox row was
/// written under (`row_headers`). The record must carry this span's context instead
/// ([`context_headers`]), so that its consumers hang below the send. Record the offset the
/// broker gave it with [`published_at`]; the span ends when dropped.
pub fn publish_span(
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    row_headers: &Headers,
) -> Span {
    let span = info_span!(
        "publish",
        otel.name = %format_args!("{topic} publish"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        messaging.destination.partition.id = %partition,
        messaging.kafka.message.key = key_attribute(key),
        messaging.kafka.offset = Empty,
        saga.event_type = row_headers.get(headers::EVENT_TYPE).unwrap_or_default(),
        messaging.message.id = row_headers.get(headers::EVENT_ID).unwrap_or_default(),
    );
    continue_trace(&span, row_headers);
    span
}

/// Marks a producer span with where the broker put its record.
pub fn published_at(span: &Span, offset: i64) {
    span.record("messaging.kafka.offset", offset);
}

/// The process span of one consumed record, a child of the producer span its `traceparent`
/// names. Record what became of it with [`processed`]; the span ends when dropped.
pub fn process_span(group: &str, delivery: &Delivery, event_type: &str, order_id: &str) -> Span {
    let span = info_span!(
        "process",
        otel.name = %format_args!("{} process", delivery.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = delivery.topic.as_str(),
        messaging.destination.partition.id = %delivery.partition,
        messaging.kafka.offset = delivery.offset,
        messaging.kafka.message.key = key_attribute(delivery.key.as_deref()),
        messaging.consumer.group.name = group,
        messaging.message.id = delivery.headers.get(headers::EVENT_ID).unwrap_or_default(),
        saga.event_type = event_type,
        saga.order_id = order_id,
        saga.outcome = Empty,
    );
    continue_trace(&span, &delivery.headers);
    span
}

/// Marks a process span with what became of its record (`applied`, `duplicate`, …).
pub fn processed(span: &Span, outcome: &str) {
    span.record("saga.outcome", outcome);
}

/// The database work of handling a record: the transaction its reaction, inbox entry and
/// outbox rows commit in (shared by the records of one batch, `batch_size` of them).
pub fn transaction_span(process: &Span, batch_size: usize) -> Span {
    info_span!(
        parent: process,
        "transaction",
        otel.name = "postgres transaction",
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = "transaction",
        saga.batch.size = batch_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_read_out_of_a_traceparent() {
        assert_eq!(
            trace_id_of_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of_traceparent("00-short-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of_traceparent(""), None);
    }
}
