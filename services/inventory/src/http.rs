//! Inventory's HTTP API: set and read the units of a SKU. Setting them is an operator action:
//! `PUT /stock/{sku}` needs `Authorization: Bearer <INVENTORY_ADMIN_TOKEN>`.

use axum::Router;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, put};
use saga_runtime::auth::{BearerGuard, require_bearer};
use saga_runtime::validation::{Sku, Violations};
use saga_runtime::{ApiJson, FieldError, Problem};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::domain::{Level, MAX_ON_HAND};
use crate::store;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Inventory service",
        description = "Stock per SKU, reserved for paid orders."
    ),
    paths(put_stock, get_stock),
    components(schemas(SetStock, StockView, Problem, FieldError)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// The `admin_token` security scheme `PUT /stock/{sku}` names.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        saga_runtime::auth::bearer_scheme(openapi, "admin_token");
    }
}

/// The API; `PUT /stock/{sku}` admits `admin_token` only.
pub fn router(pool: PgPool, admin_token: String) -> Router {
    let admin = BearerGuard::new(
        admin_token,
        "setting stock is an operator action: send Authorization: Bearer <INVENTORY_ADMIN_TOKEN>",
    );
    Router::new()
        .route(
            "/stock/{sku}",
            get(get_stock).merge(put(
                put_stock.layer(from_fn_with_state(admin, require_bearer))
            )),
        )
        .with_state(pool)
}

/// Body of `PUT /stock/{sku}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStock {
    #[schema(schema_with = OnHand::schema)]
    #[serde(deserialize_with = "saga_runtime::validation::integer")]
    pub on_hand: i64,
}

saga_runtime::field_types! {
    /// What `PUT /stock/{sku}` may set.
    pub type OnHand = Bounded<OnHandField>(BoundedRule {
        min: 0,
        max: MAX_ON_HAND,
        example: 10,
        description: "Units physically on hand, {min} to {max}; never below what is reserved.",
    });
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
    params(("sku" = String, Path, description = "Letters, digits, `-`, `_` and `.`", pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)),
    request_body = SetStock,
    security(("admin_token" = [])),
    responses(
        (status = 200, body = StockView),
        (status = 401, description = "No or another bearer token", body = Problem),
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
    let sku = v.check("sku", Sku::parse(sku));
    let on_hand = v.check("on_hand", OnHand::parse(body.on_hand));
    let (sku, on_hand) = v.finish(sku.zip(on_hand)).map_err(Problem::invalid)?;
    let mut conn = pool.acquire().await?;
    match store::set_on_hand(&mut conn, &sku, *on_hand).await? {
        Some(level) => Ok(axum::Json(view(sku.into_inner(), level))),
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
    params(("sku" = String, Path, description = "Letters, digits, `-`, `_` and `.`", pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)),
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
    let sku = v.check("sku", Sku::parse(sku));
    let sku = v.finish(sku).map_err(Problem::invalid)?;
    let mut conn = pool.acquire().await?;
    let level = store::level(&mut conn, &sku)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no stock for SKU {sku}")))?;
    Ok(axum::Json(view(sku.into_inner(), level)))
}
