//! The Payment service's SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

/// A payment as `GET /payments/{order_id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PaymentView {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    /// `AUTHORIZED`, `DECLINED` or `REFUNDED`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub decline_reason: Option<String>,
    pub refund_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct NewPayment<'a> {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub status: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub payment_method: &'a str,
    pub decline_reason: Option<&'a str>,
}

/// Inserts the order's payment; false if the order already has one (one payment per order).
pub async fn insert(conn: &mut PgConnection, payment: NewPayment<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, payment_id, status, amount_cents, currency, payment_method, decline_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(payment.order_id)
    .bind(payment.payment_id)
    .bind(payment.status)
    .bind(payment.amount_cents)
    .bind(payment.currency)
    .bind(payment.payment_method)
    .bind(payment.decline_reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The order's payment, locked until the transaction ends.
pub async fn lock(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<PaymentView>, sqlx::Error> {
    select(conn, order_id, " FOR UPDATE").await
}

async fn select(
    conn: &mut PgConnection,
    order_id: Uuid,
    locking: &str,
) -> Result<Option<PaymentView>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT order_id, payment_id, status, amount_cents, currency, decline_reason, refund_reason,
                created_at, updated_at
         FROM payments WHERE order_id = $1{locking}"
    )))
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

pub async fn mark_refunded(
    conn: &mut PgConnection,
    order_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = 'REFUNDED', refund_reason = $2, updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<PaymentView>, sqlx::Error> {
    select(conn, order_id, "").await
}
