//! Orders a participant will not act for any more. Payment, Inventory and Shipping each keep a
//! `closed_orders` table in their own database (this crate's migration creates it): an order is
//! closed when its `OrderCancelled` arrives, or when a request to act for it arrives past its
//! deadline ([`Standing::turns_away`](crate::Standing::turns_away)). A reply that comes after
//! that is never acted on. Reading and writing the table is the same for every participant, so
//! it is written here, beside the participant's own tables rather than joined into their SQL.

use std::collections::HashMap;

use saga_events::CancellationReason;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::participant::corrupt;

/// Why each of `orders` that is closed was closed (open orders are absent).
pub async fn load(
    conn: &mut PgConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, CancellationReason>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT order_id, reason FROM closed_orders WHERE order_id = ANY($1)")
            .bind(orders)
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(order, reason)| {
            let reason = CancellationReason::parse(&reason)
                .ok_or_else(|| corrupt(format!("reason {reason}")))?;
            Ok((order, reason))
        })
        .collect()
}

/// Records orders as closed, in one statement; an order closed before keeps its first reason.
pub async fn record(
    conn: &mut PgConnection,
    closed: &[(Uuid, CancellationReason)],
) -> sqlx::Result<()> {
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
