//! Payment: charges placed orders, refunds them when the saga compensates, and never charges an
//! order that was cancelled or ran past its deadline.
//!
//! A library, so that its rules ([`domain`]) are tested without the stack; `main.rs` only runs
//! it.

pub mod domain;
pub mod http;
pub mod review;
pub mod reviews;
pub mod store;
pub mod words;

use saga_events::Service;
use saga_participant::Reacting;
use saga_runtime::{RuntimeError, ServiceRuntime, env_parse, openapi_route};
use utoipa::OpenApi;

/// The reviewer token the dev stack uses when `PAYMENT_REVIEWER_TOKEN` is not set.
pub const DEV_REVIEWER_TOKEN: &str = "dev-payment-reviewer";

/// The process: [`run`] on a runtime of its own ([`saga_runtime::block_on`] says why it is
/// here and not in `main.rs`).
pub fn main() -> Result<(), RuntimeError> {
    saga_runtime::block_on(run())
}

/// Runs the service until SIGTERM:
/// - `PAYMENT_AMOUNT_LIMIT_CENTS` (default 1000000): the largest amount authorized;
/// - `PAYMENT_REVIEW_THRESHOLD_CENTS` (default 200000): orders from this amount on (within the
///   limit) go to manual review, as do orders paid with `tok_review`;
/// - `PAYMENT_REVIEW_TIMEOUT_SECONDS` (default 900): a review no one decided by then expires,
///   and the payment is declined;
/// - `PAYMENT_REVIEWER_TOKEN` (default `dev-payment-reviewer`, for development only): the bearer
///   token `POST /reviews/{order_id}/decision` requires.
pub async fn run() -> Result<(), RuntimeError> {
    let review_timeout_seconds: i64 = env_parse("PAYMENT_REVIEW_TIMEOUT_SECONDS", 900)?;
    if review_timeout_seconds <= 0 {
        return Err(RuntimeError::Config(
            "PAYMENT_REVIEW_TIMEOUT_SECONDS must be positive".into(),
        ));
    }
    let rules = domain::Rules {
        amount_limit_cents: env_parse("PAYMENT_AMOUNT_LIMIT_CENTS", 1_000_000)?,
        review_threshold_cents: env_parse("PAYMENT_REVIEW_THRESHOLD_CENTS", 200_000)?,
        review_timeout_ms: review_timeout_seconds.saturating_mul(1000),
    };
    let reviewer_token =
        saga_runtime::auth::token_from_env("PAYMENT_REVIEWER_TOKEN", DEV_REVIEWER_TOKEN);
    let migrator = saga_participant::migrator(saga_workflow::migrator(
        saga_messaging::embedded_migrations!(),
    ));
    let runtime = ServiceRuntime::start(Service::Payment, 8082, migrator).await?;
    tokio::spawn(saga_workflow::timers::run(
        reviews::Reviews,
        runtime.pool.clone(),
        runtime.outbox.clone(),
        runtime.shutdown(),
    ));
    tokio::spawn(saga_workflow::retention::keep_clean(
        reviews::Reviews,
        runtime.pool.clone(),
        runtime.config.inbox_retention.clone(),
        runtime.shutdown(),
    ));
    let review_state = reviews::http::ReviewState {
        pool: runtime.pool.clone(),
        outbox: runtime.outbox.clone(),
    };
    let mut document = http::ApiDoc::openapi();
    document.merge(reviews::http::ApiDoc::openapi());
    let api = http::router(runtime.pool.clone())
        .merge(reviews::http::router(review_state, reviewer_token))
        .merge(openapi_route(document));
    runtime.run(api, Reacting(rules)).await
}
