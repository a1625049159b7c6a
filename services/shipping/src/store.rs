//! The Shipping service's SQL: what it knows of a batch's orders in one query, and every change
//! a batch decided in one statement per kind of change.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use saga_events::{CancellationReason, StockReserved};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Shipment, ShipmentStatus, Standing};

/// A shipment as `GET /shipments/{order_id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ShipmentView {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    /// `SCHEDULED`, `FAILED` or `CANCELLED`.
    pub status: String,
    pub country: String,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn find(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<ShipmentView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, shipment_id, status, country, failure_reason, created_at, updated_at
         FROM shipments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

/// A stored value this code never writes.
fn corrupt(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

type StandingRow = (
    Uuid,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What Shipping knows of each of `orders` (orders it knows nothing of are absent).
pub async fn standings(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Standing>, sqlx::Error> {
    let rows: Vec<StandingRow> = sqlx::query_as(
        "SELECT o.order_id, s.shipment_id, s.status, s.country, s.failure_reason, c.reason
         FROM unnest($1::uuid[]) AS o(order_id)
         LEFT JOIN shipments s ON s.order_id = o.order_id
         LEFT JOIN closed_orders c ON c.order_id = o.order_id
         WHERE s.order_id IS NOT NULL OR c.order_id IS NOT NULL",
    )
    .bind(orders)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(
            |(order, shipment_id, status, country, failure_reason, closed)| {
                let shipment = match (shipment_id, status) {
                    (Some(shipment_id), Some(status)) => Some(Shipment {
                        shipment_id,
                        status: ShipmentStatus::parse(&status)
                            .ok_or_else(|| corrupt(format!("shipment status {status}")))?,
                        country: country.unwrap_or_default(),
                        failure_reason,
                    }),
                    _ => None,
                };
                let closed = closed
                    .map(|r| {
                        CancellationReason::parse(&r).ok_or_else(|| corrupt(format!("reason {r}")))
                    })
                    .transpose()?;
                Ok((order, Standing { shipment, closed }))
            },
        )
        .collect()
}

/// What a batch decided, ready to write.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// New shipments, with the reservation that asked for each.
    pub created: Vec<(Uuid, Shipment, &'a StockReserved)>,
    /// Shipments whose status moved.
    pub moved: Vec<(Uuid, ShipmentStatus)>,
    pub closed: Vec<(Uuid, CancellationReason)>,
}

pub async fn save(conn: &mut PgConnection, changes: &Changes<'_>) -> Result<(), sqlx::Error> {
    if !changes.created.is_empty() {
        let created = &changes.created;
        sqlx::query(
            "INSERT INTO shipments (order_id, shipment_id, status, country, address, items,
                                    failure_reason)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[],
                                  $6::jsonb[], $7::text[])
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(created.iter().map(|(o, _, _)| *o).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|(_, s, _)| s.shipment_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|(_, s, _)| s.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|(_, s, _)| s.country.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|(_, _, r)| Json(&r.shipping_address))
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|(_, _, r)| Json(&r.items))
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|(_, s, _)| s.failure_reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    if !changes.moved.is_empty() {
        sqlx::query(
            "UPDATE shipments s SET status = v.status, updated_at = now()
             FROM unnest($1::uuid[], $2::text[]) AS v(order_id, status)
             WHERE s.order_id = v.order_id",
        )
        .bind(changes.moved.iter().map(|(o, _)| *o).collect::<Vec<_>>())
        .bind(
            changes
                .moved
                .iter()
                .map(|(_, s)| s.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    saga_runtime::closed_orders::record(conn, &changes.closed).await
}
