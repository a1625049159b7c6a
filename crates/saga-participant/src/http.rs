//! `GET /<steps>/{order_id}`: the step a participant took for an order, as its API shows it.
//! Payment (`/payments/{order_id}`) and Shipping (`/shipments/{order_id}`) answer it alike: a
//! path that is not a UUID names nothing that exists, and neither does an order without a step,
//! so both are a 404 problem naming what is missing. [`by_order_api!`](crate::by_order_api)
//! declares such a service's whole API (routes and OpenAPI document) from what is its own.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use saga_runtime::path_uuid;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool};

/// The answer to anything that goes wrong, for [`by_order_api!`](crate::by_order_api) to name.
pub use saga_runtime::Problem;

/// The route `GET {path}` (whose one parameter is `{order_id}`), answering with the row `find`
/// (a query whose `$1` is the order id) returns for the order, or with a 404
/// "no {noun} {order_id}".
pub fn by_order<V>(path: &str, noun: &'static str, find: &'static str) -> Router<PgPool>
where
    V: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin + 'static,
{
    let handler = move |State(pool): State<PgPool>, Path(order_id): Path<String>| {
        answer::<V>(pool, order_id, noun, find)
    };
    Router::new().route(path, get(handler))
}

async fn answer<V>(
    pool: PgPool,
    order_id: String,
    noun: &str,
    find: &'static str,
) -> Result<Json<V>, Problem>
where
    V: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let order_id = path_uuid(&order_id, noun)?;
    sqlx::query_as(find)
        .bind(order_id)
        .fetch_optional(&pool)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no {noun} {order_id}")))
}

/// Declares the HTTP API of a participant that serves only its step by order: `ApiDoc`, the
/// service's OpenAPI document (utoipa's, titled and described as given), and
/// `router(pool: PgPool) -> Router`, serving [`by_order`] on the documented path. The operation
/// is documented under the given name and doc comment, answering 200 with the view (read by the
/// given query) or 404 with a [`Problem`]. The service needs `axum`, `sqlx` and `utoipa` among its
/// dependencies.
///
/// ```text
/// saga_participant::by_order_api! {
///     title: "Payment service",
///     description: "Authorizes, declines and refunds order payments.",
///     /// The payment of an order.
///     get_payment("/payments/{order_id}") -> PaymentView = store::FIND, else "payment for order"
/// }
/// ```
#[macro_export]
macro_rules! by_order_api {
    (
        title: $title:tt,
        description: $description:tt,
        $(#[doc = $doc:tt])*
        $operation:ident($path:tt) -> $view:ident = $find:expr, else $noun:tt $(,)?
    ) => {
        use $crate::http::Problem;

        #[derive(Debug, ::utoipa::OpenApi)]
        #[openapi(
            info(title = $title, description = $description),
            paths($operation),
            components(schemas($view, Problem))
        )]
        pub struct ApiDoc;

        pub fn router(pool: ::sqlx::PgPool) -> ::axum::Router {
            $crate::http::by_order::<$view>($path, $noun, $find).with_state(pool)
        }

        $(#[doc = $doc])*
        #[::utoipa::path(
            get,
            path = $path,
            params(("order_id" = String, Path, format = Uuid)),
            responses((status = 200, body = $view), (status = 404, body = Problem))
        )]
        #[expect(dead_code, reason = "documents the route `router` serves")]
        fn $operation() {}
    };
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use serde::Serialize;
    use tower::ServiceExt;
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Serialize)]
    struct ThingView {
        order_id: Uuid,
    }
    saga_messaging::from_row!(ThingView { order_id });

    #[tokio::test]
    async fn a_path_that_is_not_a_uuid_names_nothing() -> Result<(), Box<dyn std::error::Error>> {
        // Never connected: a path that is not a UUID is answered before any query.
        let pool = PgPool::connect_lazy("postgres://nobody@localhost/nothing")?;
        let app = by_order::<ThingView>("/things/{order_id}", "thing for order", "SELECT $1")
            .with_state(pool);
        let request = Request::get("/things/not-a-uuid").body(Body::empty())?;
        let response = app.oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 64 * 1024).await?)?;
        assert_eq!(body["detail"], "no thing for order not-a-uuid");
        Ok(())
    }
}
