//! Shipping service: schedules shipments for reserved orders.

mod domain;
mod http;
mod reactions;
mod store;

use anyhow::Context;
use saga_events::Service;
use saga_runtime::{ServiceRuntime, openapi_route};
use utoipa::OpenApi;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let countries = std::env::var("SHIPPING_COUNTRIES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| domain::DEFAULT_COUNTRIES.to_owned());
    let destinations = domain::Destinations::parse(&countries)
        .map_err(anyhow::Error::msg)
        .context("SHIPPING_COUNTRIES")?;
    let runtime =
        ServiceRuntime::start(Service::Shipping, 8084, sqlx::migrate!("./migrations")).await?;
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime
        .run(api, reactions::ShippingReactions { destinations })
        .await?;
    Ok(())
}
