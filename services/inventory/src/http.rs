//! Inventory's HTTP API: set and read the units of a SKU. Setting them is an operator action:
//! `PUT /stock/{sku}` needs `Authorization: Bearer <INVENTORY_ADMIN_TOKEN>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, put};
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
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The bearer token operator routes require.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

/// Never prints the token itself.
impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`, compared in time that does
    /// not depend on where a guess goes wrong.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let expected = self.0.as_bytes();
        let given = given.trim().as_bytes();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Result<Response, Problem> {
    if !token.admits(request.headers()) {
        return Err(Problem::unauthorized(
            "setting stock is an operator action: send Authorization: Bearer <INVENTORY_ADMIN_TOKEN>",
        ));
    }
    Ok(next.run(request).await)
}

pub fn router(pool: PgPool, admin: AdminToken) -> Router {
    Router::new()
        .route(
            "/stock/{sku}",
            get(get_stock).merge(put(
                put_stock.layer(from_fn_with_state(admin, require_admin))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert(axum::http::header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        let token = AdminToken::new("dev-inventory-admin");
        assert!(token.admits(&with_authorization("Bearer dev-inventory-admin")));
        for refused in [
            "",
            "dev-inventory-admin",
            "Bearer dev-inventory-admi",
            "Bearer dev-inventory-admin2",
            "Basic dev-inventory-admin",
        ] {
            assert!(!token.admits(&with_authorization(refused)), "{refused:?}");
        }
        assert!(!token.admits(&HeaderMap::new()));
    }
}
