//! Inventory service: reserves stock for paid orders, releases it when shipping fails.

mod domain;
mod http;
mod reactions;
mod store;

use saga_events::Service;
use saga_runtime::{ServiceRuntime, openapi_route};
use utoipa::OpenApi;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime =
        ServiceRuntime::start(Service::Inventory, 8083, sqlx::migrate!("./migrations")).await?;
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, reactions::InventoryReactions).await?;
    Ok(())
}
