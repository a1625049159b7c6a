//! The HTTP side every service shares: operational routes, request tracing, body limits, and
//! problem documents for anything that goes wrong outside a handler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::producer::{BaseProducer, Producer};
use saga_messaging::{Headers, Health, KafkaSettings, trace};
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{Instrument, info_span};

use crate::problem::Problem;

/// Largest request body accepted; an order with many lines is a few KiB.
const BODY_LIMIT: usize = 64 * 1024;

/// What `/readyz` checks: the service's database and the broker answer, the consumer is in its
/// group, and no partition has been retrying in place for too long.
#[derive(Clone)]
pub struct Readiness {
    pool: PgPool,
    kafka: Arc<BaseProducer>,
    health: Health,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

impl Readiness {
    pub fn new(
        pool: PgPool,
        kafka: &KafkaSettings,
        health: Health,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            pool,
            kafka: Arc::new(kafka.probe_config().create()?),
            health,
        })
    }

    async fn check(&self) -> BTreeMap<&'static str, String> {
        let mut checks = BTreeMap::new();
        let database = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool),
        )
        .await;
        checks.insert(
            "database",
            match database {
                Ok(Ok(_)) => "ok".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            },
        );
        let kafka = self.kafka.clone();
        let broker = tokio::task::spawn_blocking(move || {
            kafka
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
        })
        .await;
        checks.insert(
            "kafka",
            match broker {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            },
        );
        let problems = self.health.problems();
        checks.insert(
            "consumer",
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                problems.join("; ")
            },
        );
        checks
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let checks = readiness.check().await;
    if checks.values().all(|v| v == "ok") {
        axum::Json(checks).into_response()
    } else {
        let detail = checks
            .iter()
            .filter(|(_, v)| *v != "ok")
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Not Ready", detail).into_response()
    }
}

async fn not_found(request: Request) -> Problem {
    Problem::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Continues the caller's trace (W3C `traceparent`) or starts one, runs the request inside that
/// span, records its latency, and answers with the trace id in `trace-id`.
async fn trace_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let mut carrier = Headers::new();
    for name in [trace::TRACEPARENT_HEADER, trace::TRACESTATE_HEADER] {
        if let Some(value) = request.headers().get(name).and_then(|v| v.to_str().ok()) {
            carrier.insert(name, value);
        }
    }
    // Probes and scrapes arrive every few seconds; traces are for the API.
    let operational = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    let span = if operational {
        tracing::Span::none()
    } else {
        info_span!(
            "http",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        )
    };
    trace::continue_trace(&span, &carrier);
    let trace_id = trace::trace_id(&span);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    metrics::histogram!(
        "saga_http_request_seconds",
        "method" => method.to_string(),
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    if !operational && let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert("trace-id", value);
    }
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read: the connection cannot carry another request,
        // and a client must not try to reuse it.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn panic_to_problem(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::internal(&"a request handler panicked").into_response()
}

/// The service's API plus the operational routes, with tracing, a body limit and panic safety.
pub(crate) fn service_router(
    api: Router,
    readiness: Readiness,
    metrics: PrometheusHandle,
) -> Router {
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        );
    api.merge(ops)
        .fallback(not_found)
        .layer(middleware::from_fn(trace_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_to_problem))
}
