//! Shipping's HTTP API: read an order's shipment.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use saga_runtime::{Problem, path_uuid};
use sqlx::PgPool;
use utoipa::OpenApi;

use crate::store::{self, ShipmentView};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Shipping service",
        description = "Schedules shipments for reserved orders."
    ),
    paths(get_shipment),
    components(schemas(ShipmentView, Problem))
)]
pub struct ApiDoc;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/shipments/{order_id}", get(get_shipment))
        .with_state(pool)
}

/// The shipment of an order.
#[utoipa::path(
    get,
    path = "/shipments/{order_id}",
    params(("order_id" = String, Path, format = Uuid)),
    responses((status = 200, body = ShipmentView), (status = 404, body = Problem))
)]
async fn get_shipment(
    State(pool): State<PgPool>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<ShipmentView>, Problem> {
    let order_id = path_uuid(&order_id, "shipment for order")?;
    let mut conn = pool.acquire().await?;
    store::find(&mut conn, order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no shipment for order {order_id}")))
}
