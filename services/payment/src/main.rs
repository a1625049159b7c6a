//! Payment service: charges placed orders, refunds them when the saga compensates.

mod domain;
mod http;
mod reactions;
mod store;

use saga_events::Service;
use saga_runtime::{ServiceRuntime, env_parse, openapi_route};
use utoipa::OpenApi;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime =
        ServiceRuntime::start(Service::Payment, 8082, sqlx::migrate!("./migrations")).await?;
    let reactions = reactions::PaymentReactions {
        amount_limit_cents: env_parse("PAYMENT_AMOUNT_LIMIT_CENTS", 1_000_000)?,
    };
    let api = http::router(runtime.pool.clone()).merge(openapi_route(http::ApiDoc::openapi()));
    runtime.run(api, reactions).await?;
    Ok(())
}
