//! The console: web pages for the people who run the saga, served by the read side at `/`.
//!
//! Everything it shows comes from what the read side already holds (the event log and its
//! views), from the topics (dead letters), and from the services' own APIs (Payment's reviews,
//! Jaeger's traces); it owns no table. Pages are rendered on the server, and the one script
//! (`assets/console.js`, no framework, nothing fetched from elsewhere) only makes the live parts
//! live: a placed order's saga as it happens, counts that refresh, the time slider. Without it
//! every page still reads and every action still works.
//!
//! Actions (redriving dead letters, deciding reviews) take a token typed into the page for each
//! action. The console keeps no token: the operator's is compared and dropped, the reviewer's is
//! passed on to Payment, which decides. Neither is logged nor put into a URL. Every action is a
//! POST that must carry the page's CSRF value ([`csrf`]).

mod csrf;
mod dead_letters;
mod layout;
mod order;
mod orders;
mod reviews;
mod stuck;
mod system;
mod traces;
mod waterfall;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use saga_events::{EventCodec, TopicNames};
use saga_messaging::KafkaSettings;
use saga_runtime::auth::TokenCheck;
use sqlx::PgPool;
use thiserror::Error;

use crate::progress::Progress;

/// Where the console finds what it does not hold itself.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `PAYMENT_URL`, default `http://127.0.0.1:8082`: the reviews API.
    pub payment_url: String,
    /// `JAEGER_URL`, default `http://127.0.0.1:16686`: Jaeger's query API, for a trace's spans.
    pub jaeger_url: String,
    /// `JAEGER_UI_URL`, unset by default: where a real Jaeger UI serves traces (Compose has one).
    /// Without it the order page lays the trace's spans out itself: the native stack's Jaeger
    /// serves only a placeholder page.
    pub jaeger_ui_url: Option<String>,
    /// `CONSOLE_OPERATOR_TOKEN`, default `dev-console-operator` (with a warning): what a redrive
    /// from the console requires.
    pub operator_token: String,
}

impl ConsoleConfig {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            payment_url: var("PAYMENT_URL", "http://127.0.0.1:8082"),
            jaeger_url: var("JAEGER_URL", "http://127.0.0.1:16686"),
            jaeger_ui_url: std::env::var("JAEGER_UI_URL")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            operator_token: saga_runtime::auth::token_from_env(
                "CONSOLE_OPERATOR_TOKEN",
                "dev-console-operator",
            ),
        }
    }
}

/// What every console handler reads from.
#[derive(Debug, Clone)]
pub struct Console {
    pub pool: PgPool,
    pub progress: Progress,
    pub kafka: KafkaSettings,
    pub topics: TopicNames,
    pub codec: EventCodec,
    pub http: reqwest::Client,
    pub payment_url: Arc<str>,
    pub jaeger_url: Arc<str>,
    pub jaeger_ui_url: Option<Arc<str>>,
    pub operator: TokenCheck,
}

impl Console {
    pub fn new(
        config: ConsoleConfig,
        pool: PgPool,
        progress: Progress,
        kafka: KafkaSettings,
        topics: TopicNames,
        codec: EventCodec,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Self {
            pool,
            progress,
            kafka,
            topics,
            codec,
            http,
            payment_url: config.payment_url.trim_end_matches('/').into(),
            jaeger_url: config.jaeger_url.trim_end_matches('/').into(),
            jaeger_ui_url: config.jaeger_ui_url.map(|u| u.trim_end_matches('/').into()),
            operator: TokenCheck::new(config.operator_token),
        })
    }
}

pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(orders::page))
        .route("/console/counts", get(orders::counts))
        .route("/console/orders/{order_id}", get(order::page))
        .route("/console/orders/{order_id}/live", get(order::live))
        .route("/console/orders/{order_id}/state", get(order::state))
        .route("/console/orders/{order_id}/trace", get(traces::fragment))
        .route(
            "/console/orders/{order_id}/set-aside",
            get(order::set_aside_fragment),
        )
        .route("/console/stuck", get(stuck::page))
        .route("/console/dead-letters", get(dead_letters::page))
        .route("/console/dead-letters/redrive", post(dead_letters::redrive))
        .route("/console/reviews", get(reviews::page))
        .route("/console/reviews/decision", post(reviews::decide))
        .route("/console/system", get(system::page))
        .route("/console/assets/console.css", get(layout::stylesheet))
        .route("/console/assets/console.js", get(layout::script))
        .layer(axum::middleware::from_fn(csrf::issue))
        .with_state(console)
}

/// What stops a page from being shown.
#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("the read side's database")]
    Database(#[from] sqlx::Error),
    #[error("the dead-letter topics")]
    DeadLetters(#[from] saga_messaging::inspect::dead_letters::DeadLetterError),
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Database(_) | Self::DeadLetters(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::warn!(error = %saga_messaging::error::error_chain(&self), "a console page failed");
        }
        let detail = saga_messaging::error::error_chain(&self);
        let body = layout::page(
            "Something went wrong",
            layout::Section::None,
            maud::html! {
                p role="alert" { (detail) }
                p { "Reload the page to try again." }
            },
        );
        let mut response = layout::respond(body);
        *response.status_mut() = status;
        response
    }
}
