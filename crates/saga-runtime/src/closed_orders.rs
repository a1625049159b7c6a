//! Orders a service will not act for any more. Payment, Inventory and Shipping each keep a
//! `closed_orders` table (their own migration creates it, in their own database): an order is
//! closed when its `OrderCancelled` arrives, or when a request to act for it arrives past its
//! deadline. A reply that comes after that is never acted on. Each service reads the table as
//! part of its own standing query; writing it is the same everywhere, so it lives here.

use saga_events::CancellationReason;
use sqlx::PgConnection;
use uuid::Uuid;

/// Records orders as closed, in one statement; an order closed before keeps its first reason.
pub async fn record(
    conn: &mut PgConnection,
    closed: &[(Uuid, CancellationReason)],
) -> Result<(), sqlx::Error> {
    if closed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO closed_orders (order_id, reason)
         SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(closed.iter().map(|(order, _)| *order).collect::<Vec<_>>())
    .bind(
        closed
            .iter()
            .map(|(_, reason)| reason.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
