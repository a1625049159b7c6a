//! The Payment service's SQL: what it knows of a batch's orders in one query, and every change
//! a batch decided in one statement per table.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use saga_events::CancellationReason;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Payment, PaymentStatus, Standing};

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
    /// Where the receipt goes: the e-mail the customer gave with the order, if any.
    pub receipt_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn find(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<PaymentView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, payment_id, status, amount_cents, currency, decline_reason, refund_reason,
                receipt_email, created_at, updated_at
         FROM payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

#[derive(sqlx::FromRow)]
struct StandingRow {
    order_id: Uuid,
    payment_id: Option<Uuid>,
    status: Option<String>,
    amount_cents: Option<i64>,
    currency: Option<String>,
    payment_method: Option<String>,
    decline_reason: Option<String>,
    refund_reason: Option<String>,
    receipt_email: Option<String>,
    closed: Option<String>,
}

/// A stored value this code never writes.
fn corrupt(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

impl StandingRow {
    fn into_standing(self) -> Result<Standing, sqlx::Error> {
        let reason = |text: Option<String>| -> Result<Option<CancellationReason>, sqlx::Error> {
            text.map(|t| {
                CancellationReason::parse(&t).ok_or_else(|| corrupt(format!("reason {t}")))
            })
            .transpose()
        };
        let payment = match (self.payment_id, self.status) {
            (Some(payment_id), Some(status)) => Some(Payment {
                payment_id,
                status: PaymentStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("payment status {status}")))?,
                amount_cents: self.amount_cents.unwrap_or(0),
                currency: self.currency.unwrap_or_default(),
                payment_method: self.payment_method.unwrap_or_default(),
                decline_reason: self.decline_reason,
                refund_reason: reason(self.refund_reason)?,
                receipt_email: self.receipt_email,
            }),
            _ => None,
        };
        Ok(Standing {
            payment,
            closed: reason(self.closed)?,
        })
    }
}

/// What Payment knows of each of `orders` (orders it knows nothing of are absent).
pub async fn standings(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Standing>, sqlx::Error> {
    let rows: Vec<StandingRow> = sqlx::query_as(
        "SELECT o.order_id, p.payment_id, p.status, p.amount_cents, p.currency, p.payment_method,
                p.decline_reason, p.refund_reason, p.receipt_email, c.reason AS closed
         FROM unnest($1::uuid[]) AS o(order_id)
         LEFT JOIN payments p ON p.order_id = o.order_id
         LEFT JOIN closed_orders c ON c.order_id = o.order_id
         WHERE p.order_id IS NOT NULL OR c.order_id IS NOT NULL",
    )
    .bind(orders)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| Ok((row.order_id, row.into_standing()?)))
        .collect()
}

/// Writes the standings a batch changed.
pub async fn save(
    conn: &mut PgConnection,
    changed: &[(Uuid, Standing)],
) -> Result<(), sqlx::Error> {
    let payments: Vec<(Uuid, &Payment)> = changed
        .iter()
        .filter_map(|(order, s)| s.payment.as_ref().map(|p| (*order, p)))
        .collect();
    if !payments.is_empty() {
        let column = |f: fn(&Payment) -> Option<String>| {
            payments.iter().map(|(_, p)| f(p)).collect::<Vec<_>>()
        };
        sqlx::query(
            "INSERT INTO payments (order_id, payment_id, status, amount_cents, currency,
                                   payment_method, decline_reason, refund_reason, receipt_email)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[])
             ON CONFLICT (order_id) DO UPDATE
                 SET status = EXCLUDED.status, refund_reason = EXCLUDED.refund_reason,
                     updated_at = now()",
        )
        .bind(payments.iter().map(|(o, _)| *o).collect::<Vec<_>>())
        .bind(
            payments
                .iter()
                .map(|(_, p)| p.payment_id)
                .collect::<Vec<_>>(),
        )
        .bind(column(|p| Some(p.status.as_str().to_owned())))
        .bind(
            payments
                .iter()
                .map(|(_, p)| p.amount_cents)
                .collect::<Vec<_>>(),
        )
        .bind(column(|p| Some(p.currency.clone())))
        .bind(column(|p| Some(p.payment_method.clone())))
        .bind(column(|p| p.decline_reason.clone()))
        .bind(column(|p| p.refund_reason.map(|r| r.as_str().to_owned())))
        .bind(column(|p| p.receipt_email.clone()))
        .execute(&mut *conn)
        .await?;
    }
    let closed: Vec<(Uuid, CancellationReason)> = changed
        .iter()
        .filter_map(|(order, s)| s.closed.map(|r| (*order, r)))
        .collect();
    saga_runtime::closed_orders::record(conn, &closed).await
}
