//! Inventory: reserves stock for paid orders, gives it back when shipping fails or the order is
//! cancelled, and never reserves for an order that was cancelled or ran past its deadline.
//!
//! A library, so that its rules ([`domain`]) are tested without the stack; `main.rs` only runs
//! it.

pub mod domain;
pub mod http;
pub mod reactions;
pub mod store;

use saga_events::Service;
use saga_runtime::{RuntimeError, ServiceRuntime, openapi_route};
use utoipa::OpenApi;

/// Runs the service until SIGTERM.
pub async fn run() -> Result<(), RuntimeError> {
    let runtime =
        ServiceRuntime::start(Service::Inventory, 8083, sqlx::migrate!("./migrations")).await?;
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, reactions::InventoryReactions).await
}
