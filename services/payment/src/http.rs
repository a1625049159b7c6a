//! Payment's HTTP API: read an order's payment.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use saga_runtime::{Problem, path_uuid};
use sqlx::PgPool;
use utoipa::OpenApi;

use crate::store::{self, PaymentView};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Payment service",
        description = "Authorizes, declines and refunds order payments."
    ),
    paths(get_payment),
    components(schemas(PaymentView, Problem))
)]
pub struct ApiDoc;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/payments/{order_id}", get(get_payment))
        .with_state(pool)
}

/// The payment of an order.
#[utoipa::path(
    get,
    path = "/payments/{order_id}",
    params(("order_id" = String, Path, format = Uuid)),
    responses((status = 200, body = PaymentView), (status = 404, body = Problem))
)]
async fn get_payment(
    State(pool): State<PgPool>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<PaymentView>, Problem> {
    let order_id = path_uuid(&order_id, "payment for order")?;
    let mut conn = pool.acquire().await?;
    store::find(&mut conn, order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no payment for order {order_id}")))
}
