//! The Inventory service's SQL: what it knows of a batch's orders and the stock of their SKUs,
//! each in one query, and every change a batch decided in one statement per table.

use std::collections::HashMap;

use saga_events::CancellationReason;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{Level, Levels, Reservation, ReservationStatus, ReservedLine, Standing};

/// A stored value this code never writes.
fn corrupt(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

/// One order's row of [`standings`]: its reservation's status and lines, and why it closed.
type StandingRow = (
    Uuid,
    Option<String>,
    Option<Json<Vec<ReservedLine>>>,
    Option<String>,
);

/// What Inventory knows of each of `orders` (orders it knows nothing of are absent).
pub async fn standings(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Standing>, sqlx::Error> {
    let rows: Vec<StandingRow> = sqlx::query_as(
        "SELECT o.order_id, r.status, r.items, c.reason
             FROM unnest($1::uuid[]) AS o(order_id)
             LEFT JOIN reservations r ON r.order_id = o.order_id
             LEFT JOIN closed_orders c ON c.order_id = o.order_id
             WHERE r.order_id IS NOT NULL OR c.order_id IS NOT NULL",
    )
    .bind(orders)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(order, status, items, closed)| {
            let reservation = match (status, items) {
                (Some(status), Some(items)) => Some(Reservation {
                    status: ReservationStatus::parse(&status)
                        .ok_or_else(|| corrupt(format!("reservation status {status}")))?,
                    lines: items.0,
                }),
                _ => None,
            };
            let closed = closed
                .map(|r| {
                    CancellationReason::parse(&r).ok_or_else(|| corrupt(format!("reason {r}")))
                })
                .transpose()?;
            Ok((
                order,
                Standing {
                    reservation,
                    closed,
                },
            ))
        })
        .collect()
}

/// Stock of `skus`, locked until the transaction ends, in SKU order: every transaction locks in
/// the same order, so concurrent ones queue instead of deadlocking.
pub async fn lock_levels(conn: &mut PgConnection, skus: &[String]) -> Result<Levels, sqlx::Error> {
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

/// Writes the standings and stock levels a batch changed.
pub async fn save(
    conn: &mut PgConnection,
    changed: &[(Uuid, Standing)],
    levels: &[(String, Level)],
) -> Result<(), sqlx::Error> {
    let reservations: Vec<(Uuid, &Reservation)> = changed
        .iter()
        .filter_map(|(order, s)| s.reservation.as_ref().map(|r| (*order, r)))
        .collect();
    if !reservations.is_empty() {
        sqlx::query(
            "INSERT INTO reservations (order_id, status, items)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])
             ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now()",
        )
        .bind(reservations.iter().map(|(o, _)| *o).collect::<Vec<_>>())
        .bind(
            reservations
                .iter()
                .map(|(_, r)| r.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            reservations
                .iter()
                .map(|(_, r)| Json(&r.lines))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    if !levels.is_empty() {
        sqlx::query(
            "UPDATE stock s SET reserved = v.reserved, updated_at = now()
             FROM unnest($1::text[], $2::bigint[]) AS v(sku, reserved) WHERE s.sku = v.sku",
        )
        .bind(
            levels
                .iter()
                .map(|(sku, _)| sku.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(levels.iter().map(|(_, l)| l.reserved).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let closed: Vec<(Uuid, CancellationReason)> = changed
        .iter()
        .filter_map(|(order, s)| s.closed.map(|r| (*order, r)))
        .collect();
    saga_runtime::closed_orders::record(conn, &closed).await
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
