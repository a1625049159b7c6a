//! The Order service's SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_events::CausalEvent;

use crate::domain::{OrderItem, OrderStatus, PlaceOrder, ShippingAddress};

/// An order as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    pub status: String,
    /// Set when cancelled: `PAYMENT_DECLINED`, `OUT_OF_STOCK` or `SHIPPING_FAILED`.
    pub cancellation_reason: Option<String>,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub currency: String,
    pub total_cents: i64,
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    status: String,
    cancellation_reason: Option<String>,
    customer_id: String,
    items: Json<Vec<OrderItem>>,
    currency: String,
    total_cents: i64,
    payment_method: String,
    shipping_address: Json<ShippingAddress>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OrderView {
    /// An order as it stands the moment it was placed.
    pub fn placed(
        order_id: Uuid,
        request: PlaceOrder,
        total_cents: i64,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            order_id,
            status: OrderStatus::Pending.as_str().to_owned(),
            cancellation_reason: None,
            customer_id: request.customer_id,
            items: request.items,
            currency: request.currency,
            total_cents,
            payment_method: request.payment_method,
            shipping_address: request.shipping_address,
            created_at,
            updated_at: created_at,
        }
    }
}

impl From<OrderRow> for OrderView {
    fn from(row: OrderRow) -> Self {
        Self {
            order_id: row.order_id,
            status: row.status,
            cancellation_reason: row.cancellation_reason,
            customer_id: row.customer_id,
            items: row.items.0,
            currency: row.currency,
            total_cents: row.total_cents,
            payment_method: row.payment_method,
            shipping_address: row.shipping_address.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Inserts a new, pending order; returns when it was created.
pub async fn insert_order(
    conn: &mut PgConnection,
    order_id: Uuid,
    order: &PlaceOrder,
    total_cents: i64,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO orders (order_id, customer_id, status, currency, total_cents, payment_method,
                             items, shipping_address)
         VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7)
         RETURNING created_at",
    )
    .bind(order_id)
    .bind(&order.customer_id)
    .bind(&order.currency)
    .bind(total_cents)
    .bind(&order.payment_method)
    .bind(Json(&order.items))
    .bind(Json(&order.shipping_address))
    .fetch_one(conn)
    .await
}

/// Claims an idempotency key for `order_id`; false if the key was already taken (by a committed
/// request, or one that commits while this waits).
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
    request: &PlaceOrder,
    order_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (idempotency_key, request, order_id) VALUES ($1, $2, $3)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(Json(request))
    .bind(order_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// The request and order an idempotency key was first used for.
pub async fn idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<(PlaceOrder, Uuid)>, sqlx::Error> {
    let row: Option<(Json<PlaceOrder>, Uuid)> =
        sqlx::query_as("SELECT request, order_id FROM idempotency_keys WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(request, order_id)| (request.0, order_id)))
}

pub async fn find_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<OrderView>, sqlx::Error> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT order_id, status, cancellation_reason, customer_id, items, currency, total_cents,
                payment_method, shipping_address, created_at, updated_at
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(OrderView::from))
}

/// The order's status, locked until the transaction ends so that two reports of the same saga
/// cannot both move it.
pub async fn lock_status(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, cancellation_reason FROM orders WHERE order_id = $1 FOR UPDATE")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

pub async fn set_status(
    conn: &mut PgConnection,
    order_id: Uuid,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET status = $2, cancellation_reason = $3, updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(status.reason().map(|r| r.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// One saga event as the timeline shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TimelineEntry {
    pub event_id: String,
    pub event_type: String,
    /// The service that emitted it.
    pub producer: String,
    /// The event this one reacted to.
    pub causation_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub topic: String,
    #[sqlx(rename = "kafka_partition")]
    pub partition: i32,
    #[sqlx(rename = "kafka_offset")]
    pub offset: i64,
    /// W3C trace id the event was written under.
    pub trace_id: Option<String>,
    /// The event's own fields (amounts, reasons, …).
    #[schema(value_type = Object)]
    pub detail: Json<serde_json::Value>,
}

impl CausalEvent for TimelineEntry {
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }
    fn occurred_at_millis(&self) -> i64 {
        self.occurred_at.timestamp_millis()
    }
}

/// A consumed event, as the timeline stores it.
#[derive(Debug)]
pub struct RecordedEvent<'a> {
    pub event_id: Uuid,
    pub order_id: &'a str,
    pub event_type: &'a str,
    pub producer: &'a str,
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub trace_id: Option<&'a str>,
    pub detail: serde_json::Value,
}

/// Records consumed events for the timeline, all in one statement; an event recorded before is
/// left as it is.
pub async fn record_events(
    conn: &mut PgConnection,
    events: &[RecordedEvent<'_>],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&RecordedEvent<'_>) -> String| events.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let causes: Vec<Option<Uuid>> = events.iter().map(|e| e.causation_id).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let partitions: Vec<i32> = events.iter().map(|e| e.partition).collect();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    let traces: Vec<Option<&str>> = events.iter().map(|e| e.trace_id).collect();
    let details: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.detail)).collect();
    sqlx::query(
        "INSERT INTO timeline (event_id, order_id, event_type, producer, causation_id, occurred_at,
                               topic, kafka_partition, kafka_offset, trace_id, detail)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                              $6::timestamptz[], $7::text[], $8::int[], $9::bigint[], $10::text[],
                              $11::jsonb[])
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(column(|e| e.order_id.to_owned()))
    .bind(column(|e| e.event_type.to_owned()))
    .bind(column(|e| e.producer.to_owned()))
    .bind(&causes)
    .bind(&times)
    .bind(column(|e| e.topic.to_owned()))
    .bind(&partitions)
    .bind(&offsets)
    .bind(&traces)
    .bind(&details)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn timeline(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_id::text AS event_id, event_type, producer, causation_id::text AS causation_id,
                occurred_at, topic, kafka_partition, kafka_offset, trace_id, detail
         FROM timeline WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await
}
