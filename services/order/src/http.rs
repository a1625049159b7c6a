//! Order's HTTP API: place an order, read it, read its saga's timeline.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use saga_events::{Address, EventMetadata, Money, OrderLine, OrderPlaced};
use saga_messaging::Outbox;
use saga_runtime::{ApiJson, FieldError, Problem, path_uuid};
use sqlx::PgPool;
use utoipa::OpenApi;
use uuid::Uuid;

use saga_events::causal_order;

use crate::domain::PRODUCER;
use crate::placing::{self, Email, PlaceOrder};
use crate::store::{self, OrderView};
use crate::timeline::{self, TimelineEntry};

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub outbox: Outbox,
    /// How long an order's saga may take before it is cancelled (`TIMED_OUT`).
    pub deadline: std::time::Duration,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Order service",
        description = "Places orders and follows their saga."
    ),
    paths(place_order, get_order, get_timeline),
    components(schemas(
        PlaceOrder,
        placing::OrderItem,
        placing::ShippingAddress,
        OrderView,
        TimelineEntry,
        Problem,
        FieldError
    ))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{order_id}", get(get_order))
        .route("/orders/{order_id}/timeline", get(get_timeline))
        .with_state(state)
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Accepts an order and starts its saga (`OrderPlaced`). With an `Idempotency-Key`, the same key
/// and body return the same order; the same key with another body is refused.
#[utoipa::path(
    post,
    path = "/orders",
    request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters: the same key and body return the same order", pattern = r"^[\x21-\x7e]{1,255}$", max_length = 255)),
    responses(
        (status = 201, description = "Order accepted, saga started", body = OrderView, headers(
            ("Location" = String, description = "The order's URL"),
            ("Saga-Event-Id" = String, description = "The id of the order's OrderPlaced: pass it as `min_event` to the read side (GET /history/orders/{order_id}) to read your write")
        )),
        (status = 400, description = "Body is not JSON", body = Problem),
        (status = 422, description = "Body breaks a rule, or the key was used with another body", body = Problem),
        (status = 503, description = "A dependency is unavailable", body = Problem)
    )
)]
async fn place_order(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<placing::unchecked::PlaceOrder>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let (request, total_cents) = placing::validate(body).map_err(Problem::invalid)?;
    let order_id = Uuid::now_v7();
    let deadline_at = chrono::Utc::now()
        + chrono::Duration::from_std(app.deadline).unwrap_or(chrono::Duration::MAX);
    let placed = order_placed(order_id, &request, total_cents, deadline_at);
    let placed_event_id = Uuid::parse_str(&placed.metadata.event_id)
        .map_err(|e| Problem::internal(&format!("the new event id is not a UUID: {e}")))?;

    let placed = app.outbox.stage(&[placed.into()]).await?;
    let written = placed.written();
    let new = store::NewOrder {
        order_id,
        order: &request,
        total_cents,
        deadline_at,
        placed_event_id,
    };
    // One statement, outside any transaction: the order, its key and its OrderPlaced.
    let mut conn = app.pool.acquire().await?;
    let Some(stored) = store::place(&mut conn, &new, key.as_deref(), placed).await? else {
        drop(conn);
        // Only a key taken already leaves the order unplaced.
        return match &key {
            Some(key) => replay(&app, key, &request).await,
            None => Err(Problem::internal(&"the order was not stored")),
        };
    };
    app.outbox.wake(&mut conn, written).await;
    drop(conn);

    let view = OrderView::placed(order_id, request, total_cents, &stored);
    Ok(created(view, placed_event_id, false))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Invalid Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// A request whose idempotency key was already used.
async fn replay(app: &AppState, key: &str, request: &PlaceOrder) -> Result<Response, Problem> {
    let mut conn = app.pool.acquire().await?;
    let Some((first_request, order_id)) = store::idempotency_key(&mut conn, key).await? else {
        return Err(Problem::internal(&format!(
            "idempotency key {key} vanished"
        )));
    };
    if &first_request != request {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key reused with a different request",
            format!(
                "Idempotency-Key {key:?} was first used for order {order_id} with another body"
            ),
        ));
    }
    let placed_event_id = store::placed_event_id(&mut conn, order_id)
        .await?
        .ok_or_else(|| Problem::internal(&format!("order {order_id} vanished")))?;
    drop(conn);
    let view = load(app, order_id).await?;
    Ok(created(view, placed_event_id, true))
}

fn order_placed(
    order_id: Uuid,
    request: &PlaceOrder,
    total_cents: i64,
    deadline_at: chrono::DateTime<chrono::Utc>,
) -> OrderPlaced {
    let order_id = order_id.to_string();
    let address = &request.shipping_address;
    OrderPlaced {
        metadata: EventMetadata::first(&order_id, PRODUCER),
        order_id,
        customer_id: request.customer_id.to_string(),
        items: request
            .items
            .iter()
            .map(|item| OrderLine {
                sku: item.sku.to_string(),
                // A Quantity is at most MAX_QUANTITY: it fits.
                quantity: i32::try_from(*item.quantity).unwrap_or(i32::MAX),
                unit_price_cents: *item.unit_price_cents,
            })
            .collect(),
        total: Money {
            amount_minor: total_cents,
            currency: request.currency.to_string(),
        },
        payment_method: request.payment_method.to_string(),
        shipping_address: Address {
            name: address.name.to_string(),
            line1: address.line1.to_string(),
            city: address.city.to_string(),
            postal_code: address.postal_code.to_string(),
            country: address.country.to_string(),
        },
        deadline_at: Some(deadline_at.timestamp_millis()),
        customer_email: request.customer_email.as_ref().map(Email::to_string),
    }
}

/// The header that carries the id of the order's `OrderPlaced`: what a read of the read side
/// can wait for (`min_event`) to see its own write.
const SAGA_EVENT_ID: &str = "saga-event-id";

fn created(view: OrderView, placed_event_id: Uuid, replayed: bool) -> Response {
    let location = format!("/orders/{}", view.order_id);
    let mut response = (StatusCode::CREATED, axum::Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Ok(event_id) = HeaderValue::from_str(&placed_event_id.to_string()) {
        response.headers_mut().insert(SAGA_EVENT_ID, event_id);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn load(app: &AppState, order_id: Uuid) -> Result<OrderView, Problem> {
    let mut conn = app.pool.acquire().await?;
    store::find_order(&mut conn, order_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))
}

/// The order and where its saga stands.
#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    params(("order_id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderView), (status = 404, body = Problem))
)]
async fn get_order(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderView>, Problem> {
    let order_id = path_uuid(&order_id, "order")?;
    Ok(axum::Json(load(&app, order_id).await?))
}

/// Every saga event of the order, across the four topics, causes before effects.
#[utoipa::path(
    get,
    path = "/orders/{order_id}/timeline",
    params(("order_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Vec<TimelineEntry>), (status = 404, body = Problem))
)]
async fn get_timeline(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Vec<TimelineEntry>>, Problem> {
    let order_id = path_uuid(&order_id, "order")?;
    load(&app, order_id).await?;
    let mut conn = app.pool.acquire().await?;
    let entries = timeline::timeline(&mut conn, &order_id.to_string()).await?;
    Ok(axum::Json(causal_order(entries)))
}
