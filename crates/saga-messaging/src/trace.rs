//! Tracing setup, W3C trace context across HTTP and Kafka, and the spans of the messaging path.
//!
//! Spans get real OpenTelemetry trace and span ids even when nothing exports them, so the ids in
//! Kafka headers tie one order's HTTP request, reactions and compensations into one trace. When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, a batch
//! processor exports them over OTLP/HTTP from a thread of its own: its queue is bounded and drops
//! spans when the collector is away, so exporting never holds up a saga.
//!
//! Every hop of a saga is one link of a chain, following the OpenTelemetry messaging
//! conventions: the relay's producer span ([`publish_span`]) is a child of the context its outbox
//! row was written under and is what the record's `traceparent` names; the consumer's process
//! span ([`process_span`]) is a child of that, and holds the transaction span
//! ([`transaction_span`]) of the database work, under whose context the events it emits are
//! written. Causes sit above their effects, across every service.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::Empty;
use tracing::{Span, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::delivery::Delivery;
use crate::headers::{self, Headers};

/// HTTP header names of W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Keeps the tracer provider alive; dropping it flushes what is queued and shuts it down.
#[derive(Debug)]
pub struct TracingGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Whether the standard OTLP variables name a collector to export to.
fn otlp_endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// Installs the global subscriber: human-readable logs filtered by `RUST_LOG` (default `info`)
/// and an OpenTelemetry layer that gives every span a trace id, exported over OTLP when an
/// endpoint is configured. The service name is `OTEL_SERVICE_NAME`, else `service`; the sampler
/// is `OTEL_TRACES_SAMPLER` (and `OTEL_TRACES_SAMPLER_ARG`), else every trace.
pub fn init(service: &'static str) -> TracingGuard {
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    let mut export_error = None;
    if otlp_endpoint_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => provider = provider.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error),
        }
    }
    let provider = provider.build();
    let tracer = provider.tracer(service);
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,rdkafka=warn,tower_http=warn,h2=warn,hyper=warn")
    });
    // Spans go to the tracer whatever RUST_LOG says: quieter logs must not break traces. The
    // HTTP and database libraries' own spans would bury the saga's.
    let spans = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("sqlx", LevelFilter::WARN)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF);
    // Another subscriber may already be installed (tests run several services in one process).
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_filter(logs),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans),
        )
        .try_init();
    if let Some(error) = export_error {
        tracing::warn!(%error, "OTLP export is configured but could not be set up; spans are not exported");
    }
    TracingGuard { provider }
}

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
