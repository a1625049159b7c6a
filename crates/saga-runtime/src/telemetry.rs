//! The process's tracing, installed once at startup: logs filtered by `RUST_LOG`, and an
//! OpenTelemetry layer that gives every span a trace id. Here rather than beside the per-message
//! spans (`saga_messaging::trace`) because only a service process installs a subscriber and an
//! exporter; a tool or a test that handles messages works under whatever is installed.
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, a batch
//! processor exports spans over OTLP/HTTP from a thread of its own: its queue is bounded and drops
//! spans when the collector is away, so exporting never holds up a saga.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// The logs' filter: `RUST_LOG` as `target=level` directives and a default level
/// (`info,saga_messaging=debug`), else `info` with the libraries' chatter turned down. A
/// [`Targets`] filter, not `EnvFilter`: span and field directives are not supported, and the
/// optimised build of the regular-expression engine that only `EnvFilter` needed is gone (about
/// 14 slot-seconds of a release build). A `RUST_LOG` that does not parse is reported on stderr
/// and the default applies.
fn log_filter(configured: Option<&str>) -> Targets {
    let default = || {
        Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("sqlx", LevelFilter::WARN)
            .with_target("rdkafka", LevelFilter::WARN)
            .with_target("tower_http", LevelFilter::WARN)
            .with_target("h2", LevelFilter::WARN)
            .with_target("hyper", LevelFilter::WARN)
    };
    match configured.map(str::parse::<Targets>) {
        Some(Ok(targets)) => targets,
        Some(Err(error)) => {
            eprintln!(
                "RUST_LOG is not a list of target=level directives ({error}); logging at info"
            );
            default()
        }
        None => default(),
    }
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
    let logs = log_filter(std::env::var("RUST_LOG").ok().as_deref());
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_directives_set_levels_by_target_and_anything_else_gets_the_default() {
        let configured = log_filter(Some("warn,saga_messaging=debug"));
        assert!(configured.would_enable("saga_messaging::relay", &Level::DEBUG));
        assert!(!configured.would_enable("order_service", &Level::INFO));

        for unset_or_broken in [None, Some("saga_messaging=loud")] {
            let default = log_filter(unset_or_broken);
            assert!(default.would_enable("order_service", &Level::INFO));
            assert!(!default.would_enable("sqlx::query", &Level::INFO));
            assert!(!default.would_enable("hyper_util::client", &Level::INFO));
            assert!(default.would_enable("rdkafka::client", &Level::WARN));
        }
    }
}
