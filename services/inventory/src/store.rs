//! The Inventory service's SQL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::Level;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub quantity: i64,
}

/// Levels of `skus`, locked in SKU order (the same order for every transaction, so concurrent
/// reservations queue instead of deadlocking).
pub async fn lock_levels(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<BTreeMap<String, Level>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT sku, on_hand, reserved FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sku, on_hand, reserved)| (sku, Level { on_hand, reserved }))
        .collect())
}

pub async fn set_reserved(
    conn: &mut PgConnection,
    sku: &str,
    reserved: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stock SET reserved = $2, updated_at = now() WHERE sku = $1")
        .bind(sku)
        .bind(reserved)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the order's reservation; false if it already has one (the order was handled).
pub async fn insert_reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
    status: &str,
    items: &[ReservedLine],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO reservations (order_id, status, items) VALUES ($1, $2, $3)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(status)
    .bind(Json(items))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn lock_reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<(String, Vec<ReservedLine>)>, sqlx::Error> {
    let row: Option<(String, Json<Vec<ReservedLine>>)> =
        sqlx::query_as("SELECT status, items FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(status, items)| (status, items.0)))
}

pub async fn mark_released(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reservations SET status = 'RELEASED', updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets on hand unless that would drop below what is reserved; None if it would.
pub async fn set_on_hand(
    conn: &mut PgConnection,
    sku: &str,
    on_hand: i64,
) -> Result<Option<Level>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "INSERT INTO stock (sku, on_hand) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now()
             WHERE stock.reserved <= EXCLUDED.on_hand
         RETURNING on_hand, reserved",
    )
    .bind(sku)
    .bind(on_hand)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(on_hand, reserved)| Level { on_hand, reserved }))
}

pub async fn level(conn: &mut PgConnection, sku: &str) -> Result<Option<Level>, sqlx::Error> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT on_hand, reserved FROM stock WHERE sku = $1")
            .bind(sku)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(on_hand, reserved)| Level { on_hand, reserved }))
}
