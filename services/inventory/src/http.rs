//! Inventory's HTTP API: set and read the units of a SKU.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use saga_runtime::validation::Violations;
use saga_runtime::{ApiJson, FieldError, Problem};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::domain::{Level, MAX_ON_HAND};
use crate::store;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Inventory service",
        description = "Stock per SKU, reserved for paid orders."
    ),
    paths(put_stock, get_stock),
    components(schemas(SetStock, StockView, Problem, FieldError))
)]
pub struct ApiDoc;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/stock/{sku}", get(get_stock).put(put_stock))
        .with_state(pool)
}

/// Body of `PUT /stock/{sku}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStock {
    /// Units physically on hand, 0 to 1000000000; never below what is reserved.
    pub on_hand: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    pub sku: String,
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// `on_hand - reserved`: what new orders can get.
    pub available: i64,
}

fn view(sku: String, level: Level) -> StockView {
    StockView {
        sku,
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available(),
    }
}

/// Sets the units on hand of a SKU, creating it if needed.
#[utoipa::path(
    put,
    path = "/stock/{sku}",
    params(("sku" = String, Path)),
    request_body = SetStock,
    responses(
        (status = 200, body = StockView),
        (status = 409, description = "Below what is reserved", body = Problem),
        (status = 422, body = Problem)
    )
)]
async fn put_stock(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<axum::Json<StockView>, Problem> {
    let mut v = Violations::new();
    v.sku("sku", &sku);
    v.range("on_hand", body.on_hand, 0, MAX_ON_HAND);
    v.into_result().map_err(Problem::invalid)?;
    let mut conn = pool.acquire().await?;
    match store::set_on_hand(&mut conn, &sku, body.on_hand).await? {
        Some(level) => Ok(axum::Json(view(sku, level))),
        None => {
            let reserved = store::level(&mut conn, &sku)
                .await?
                .map(|l| l.reserved)
                .unwrap_or(0);
            Err(Problem::conflict(format!(
                "{sku} has {reserved} units reserved for orders; on_hand cannot go below that"
            )))
        }
    }
}

/// Units of a SKU: on hand, reserved, available.
#[utoipa::path(
    get,
    path = "/stock/{sku}",
    params(("sku" = String, Path)),
    responses(
        (status = 200, body = StockView),
        (status = 404, body = Problem),
        (status = 422, description = "Not a SKU", body = Problem)
    )
)]
async fn get_stock(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
) -> Result<axum::Json<StockView>, Problem> {
    let mut v = Violations::new();
    v.sku("sku", &sku);
    v.into_result().map_err(Problem::invalid)?;
    let mut conn = pool.acquire().await?;
    let level = store::level(&mut conn, &sku)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no stock for SKU {sku}")))?;
    Ok(axum::Json(view(sku, level)))
}
