//! Shipping: fulfils reserved orders (allocate, label, pickup against the carrier, as a durable
//! workflow with its own compensation), calls shipments off when an order is cancelled, and never
//! ships an order that was cancelled or ran past its deadline.
//!
//! A library, so that its rules ([`domain`]) are tested without the stack; `main.rs` only runs
//! it.

pub mod carrier;
pub mod domain;
pub mod fulfilment;
pub mod fulfilments;
pub mod http;
pub mod store;
pub mod words;

use std::sync::Arc;

use saga_events::Service;
use saga_participant::Reacting;
use saga_runtime::{RuntimeError, ServiceRuntime, openapi_route};
use utoipa::OpenApi;

/// The process: [`run`] on a runtime of its own ([`saga_runtime::block_on`] says why it is
/// here and not in `main.rs`).
pub fn main() -> Result<(), RuntimeError> {
    saga_runtime::block_on(run())
}

/// Runs the service until SIGTERM: `SHIPPING_COUNTRIES` (comma-separated ISO 3166-1 alpha-2
/// codes, default [`domain::DEFAULT_COUNTRIES`]) are the destinations served.
pub async fn run() -> Result<(), RuntimeError> {
    let countries = std::env::var("SHIPPING_COUNTRIES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| domain::DEFAULT_COUNTRIES.to_owned());
    let destinations = domain::Destinations::parse(&countries)
        .map_err(|e| RuntimeError::Config(format!("SHIPPING_COUNTRIES: {e}")))?;
    let migrator = saga_participant::migrator(saga_workflow::migrator(
        saga_messaging::embedded_migrations!(),
    ));
    let runtime = ServiceRuntime::start(Service::Shipping, 8084, migrator).await?;
    let fulfilling = fulfilments::Fulfilling {
        carrier: Arc::new(carrier::StandIn::new(&runtime.pool)),
        destinations: Arc::new(destinations),
    };
    // No fulfilment sets a timer; the loop keeps the workflow's gauges.
    tokio::spawn(saga_workflow::timers::run(
        fulfilments::Fulfilments,
        runtime.pool.clone(),
        runtime.outbox.clone(),
        runtime.shutdown(),
    ));
    tokio::spawn(saga_workflow::retention::keep_clean(
        fulfilments::Fulfilments,
        runtime.pool.clone(),
        runtime.config.inbox_retention.clone(),
        runtime.shutdown(),
    ));
    tokio::spawn(saga_workflow::steps::run(
        fulfilments::Fulfilments,
        fulfilling,
        runtime.pool.clone(),
        runtime.outbox.clone(),
        runtime.shutdown(),
    ));
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, Reacting(domain::Rules)).await
}
