//! Order service: `POST /orders` starts a saga; Payment's and Shipping's reports end it.

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
        ServiceRuntime::start(Service::Order, 8080, sqlx::migrate!("./migrations")).await?;
    let state = http::AppState {
        pool: runtime.pool.clone(),
        outbox: runtime.outbox.clone(),
    };
    let api = http::router(state).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, reactions::OrderReactions).await?;
    Ok(())
}
