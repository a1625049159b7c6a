//! Payment: charges placed orders, refunds them when the saga compensates, and never charges an
//! order that was cancelled or ran past its deadline.
//!
//! A library, so that its rules ([`domain`]) are tested without the stack; `main.rs` only runs
//! it.

pub mod domain;
pub mod http;
pub mod store;

use saga_events::Service;
use saga_participant::Reacting;
use saga_runtime::{RuntimeError, ServiceRuntime, env_parse, openapi_route};
use utoipa::OpenApi;

/// Runs the service until SIGTERM: `PAYMENT_AMOUNT_LIMIT_CENTS` (default 1000000) is the
/// largest amount authorized.
pub async fn run() -> Result<(), RuntimeError> {
    let rules = domain::Rules {
        amount_limit_cents: env_parse("PAYMENT_AMOUNT_LIMIT_CENTS", 1_000_000)?,
    };
    let migrator = saga_participant::migrator(sqlx::migrate!("./migrations"));
    let runtime = ServiceRuntime::start(Service::Payment, 8082, migrator).await?;
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, Reacting(rules)).await
}
