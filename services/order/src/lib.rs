//! Order: accepts orders over HTTP, starts their sagas, ends them (confirmed or cancelled),
//! cancels them at their deadline (`TIMED_OUT`), and follows each cancellation's compensation to
//! the end. Every event of every order goes into its timeline.
//!
//! A library, so that its rules ([`domain`], [`placing`]) are tested without the stack;
//! `main.rs` only runs it.

pub mod deadlines;
pub mod domain;
pub mod http;
pub mod placing;
pub mod reactions;
pub mod store;
pub mod timeline;

use std::time::Duration;

use saga_events::Service;
use saga_runtime::{RuntimeError, ServiceRuntime, env_parse, openapi_route};
use utoipa::OpenApi;

/// The process: [`run`] on a runtime of its own ([`saga_runtime::block_on`] says why it is
/// here and not in `main.rs`).
pub fn main() -> Result<(), RuntimeError> {
    saga_runtime::block_on(run())
}

/// Runs the service until SIGTERM: `ORDER_DEADLINE_SECONDS` (default 30) is how long an order's
/// saga may take before the order is cancelled (`TIMED_OUT`). It has to outlast ordinary
/// failover: a dead consumer is noticed after its 10 s session timeout, and a restart takes a
/// few seconds more.
pub async fn run() -> Result<(), RuntimeError> {
    let deadline = Duration::from_secs(env_parse("ORDER_DEADLINE_SECONDS", 30u64)?);
    let runtime =
        ServiceRuntime::start(Service::Order, 8080, saga_messaging::embedded_migrations!()).await?;
    // `ORDER_PLACED_MAJOR` (default 2): 1 keeps writing OrderPlaced as major 1, for a rollout in
    // which some consumers do not upcast major 1 to 2 yet; switch to 2 once they all do.
    match env_parse("ORDER_PLACED_MAJOR", 2u32)? {
        2 => {}
        1 => runtime
            .codec
            .write_previous_major(saga_events::EventType::OrderPlaced)?,
        other => {
            return Err(RuntimeError::Config(format!(
                "ORDER_PLACED_MAJOR must be 1 or 2, not {other}"
            )));
        }
    }
    let state = http::AppState {
        pool: runtime.pool.clone(),
        outbox: runtime.outbox.clone(),
        deadline,
    };
    tokio::spawn(deadlines::run(
        runtime.pool.clone(),
        runtime.outbox.clone(),
        runtime.health.clone(),
        runtime.shutdown(),
    ));
    let api = http::router(state).merge(openapi_route(http::ApiDoc::openapi()));
    let reactions = reactions::OrderReactions {
        deadline_budget_ms: i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX),
    };
    runtime.run(api, reactions).await
}
