//! Inventory: reserves stock for paid orders, gives it back when shipping fails or the order is
//! cancelled, and never reserves for an order that was cancelled or ran past its deadline.
//!
//! A library, so that its rules ([`domain`]) are tested without the stack; `main.rs` only runs
//! it.

pub mod domain;
pub mod http;
pub mod store;

use saga_events::Service;
use saga_participant::Reacting;
use saga_runtime::{RuntimeError, ServiceRuntime, openapi_route};
use utoipa::OpenApi;

/// The operator token `make up` and the dev overlay use; a deployment sets its own.
pub const DEV_ADMIN_TOKEN: &str = "dev-inventory-admin";

/// The process: [`run`] on a runtime of its own ([`saga_runtime::block_on`] says why it is
/// here and not in `main.rs`).
pub fn main() -> Result<(), RuntimeError> {
    saga_runtime::block_on(run())
}

/// Runs the service until SIGTERM. `INVENTORY_ADMIN_TOKEN` (default `dev-inventory-admin`, for
/// development only) is the bearer token `PUT /stock/{sku}` requires.
pub async fn run() -> Result<(), RuntimeError> {
    let migrator = saga_participant::migrator(saga_messaging::embedded_migrations!());
    let runtime = ServiceRuntime::start(Service::Inventory, 8083, migrator).await?;
    let admin_token = saga_runtime::auth::token_from_env("INVENTORY_ADMIN_TOKEN", DEV_ADMIN_TOKEN);
    let api = http::router(runtime.pool.clone(), admin_token)
        .merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, Reacting(domain::Rules)).await
}
