//! The Shipping service's SQL.

use chrono::{DateTime, Utc};
use saga_events::{Address, StockLine};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

/// A shipment as `GET /shipments/{order_id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ShipmentView {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    /// `SCHEDULED` or `FAILED`.
    pub status: String,
    pub country: String,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct NewShipment<'a> {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    pub status: &'a str,
    pub address: &'a Address,
    pub items: &'a [StockLine],
    pub failure_reason: Option<&'a str>,
}

/// Records the order's shipment; false if it already has one.
pub async fn insert(
    conn: &mut PgConnection,
    shipment: NewShipment<'_>,
) -> Result<bool, sqlx::Error> {
    let items: Vec<(String, i32)> = shipment
        .items
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    let address = serde_json::json!({
        "name": shipment.address.name,
        "line1": shipment.address.line1,
        "city": shipment.address.city,
        "postal_code": shipment.address.postal_code,
        "country": shipment.address.country,
    });
    let inserted = sqlx::query(
        "INSERT INTO shipments (order_id, shipment_id, status, country, address, items, failure_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(shipment.order_id)
    .bind(shipment.shipment_id)
    .bind(shipment.status)
    .bind(&shipment.address.country)
    .bind(Json(address))
    .bind(Json(items))
    .bind(shipment.failure_reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn find(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<ShipmentView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, shipment_id, status, country, failure_reason, created_at
         FROM shipments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await
}
