//! Tracing setup and W3C trace context across HTTP and Kafka.
//!
//! Spans get real OpenTelemetry trace and span ids even when nothing exports them, so the ids in
//! Kafka headers tie one order's HTTP request, reactions and compensations into one trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::headers::Headers;

/// HTTP header names of W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Keeps the tracer provider alive; dropping it flushes and shuts it down.
#[derive(Debug)]
pub struct TracingGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber: human-readable logs filtered by `RUST_LOG` (default `info`)
/// and an OpenTelemetry layer that gives every span a trace id.
pub fn init(service: &'static str) -> TracingGuard {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,rdkafka=warn,tower_http=warn,h2=warn,hyper=warn")
    });
    // Another subscriber may already be installed (tests run several services in one process).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        )
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init();
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
    context_headers(&tracing::Span::current())
}

/// `traceparent` (and `tracestate`) of `span`.
pub fn context_headers(span: &tracing::Span) -> Headers {
    let mut headers = Headers::new();
    TraceContextPropagator::new()
        .inject_context(&span.context(), &mut HeaderInjector(&mut headers));
    headers
}

/// The remote parent named by `traceparent` in `headers`, if any.
pub fn parent_from_headers(headers: &Headers) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes `span` a child of the context carried in `headers`. Must be called before the span is
/// first entered, or the span keeps its own trace.
pub fn continue_trace(span: &tracing::Span, headers: &Headers) {
    let parent = parent_from_headers(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The 32-hex-digit trace id of `span`.
pub fn trace_id(span: &tracing::Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}

/// The trace id inside a `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_of_traceparent(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32).then_some(id)
}
