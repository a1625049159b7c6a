//! Orders a participant will not act for any more. Payment, Inventory and Shipping each keep a
//! `closed_orders` table in their own database (this crate's migration creates it): an order is
//! closed when its `OrderCancelled` arrives, or when a request to act for it arrives past its
//! deadline ([`Standing::turns_away`](crate::Standing::turns_away)). A reply that comes after
//! that is never acted on. Reading and writing the table is the same for every participant, so
//! it is written here once: the read wraps each participant's own query ([`joined`]), so that a
//! batch learns both in one round trip, and the write goes in the batch's last statement.

use saga_events::CancellationReason;
use saga_messaging::Deferred;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::participant::corrupt;

/// `load`, a participant's query for its own rows of the orders in `$1` (each row naming its
/// `order_id`), joined with which of those orders are closed: what the participant knows of a
/// batch's orders in one round trip. An order closed before the participant acted for it has a
/// row with no step of its own ([`Known::own`] is `None`).
pub fn joined(load: &str) -> String {
    format!(
        "SELECT own.*, own.order_id IS NOT NULL AS own_present,
                closed.order_id AS closed_order, closed.reason AS closed_reason
         FROM ({load}) own
         FULL JOIN (SELECT order_id, reason FROM closed_orders WHERE order_id = ANY($1)) closed
           ON closed.order_id = own.order_id"
    )
}

/// A row of [`joined`]: the participant's own row of an order, if it has one, and why the order
/// is closed, if it is. Its own row's columns come first, so a row read by position (a tuple)
/// reads them as [`joined`]'s `load` returned them.
#[derive(Debug)]
pub struct Known<R> {
    pub own: Option<R>,
    pub closed: Option<(Uuid, CancellationReason)>,
}

impl<'r, R: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Known<R> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let own_present: bool = row.try_get("own_present")?;
        let own = if own_present {
            Some(R::from_row(row)?)
        } else {
            None
        };
        let order: Option<Uuid> = row.try_get("closed_order")?;
        let reason: Option<String> = row.try_get("closed_reason")?;
        let closed = match (order, reason) {
            (Some(order), Some(reason)) => {
                let reason = CancellationReason::parse(&reason)
                    .ok_or_else(|| corrupt(format!("reason {reason}")))?;
                Some((order, reason))
            }
            _ => None,
        };
        Ok(Self { own, closed })
    }
}

/// Records orders as closed, in one statement (the consumer's last of the batch carries it);
/// an order closed before keeps its first reason.
pub fn recorded(closed: &[(Uuid, CancellationReason)]) -> Option<Deferred> {
    if closed.is_empty() {
        return None;
    }
    let orders: Vec<Uuid> = closed.iter().map(|(order, _)| *order).collect();
    let reasons: Vec<&'static str> = closed.iter().map(|(_, reason)| reason.as_str()).collect();
    Some(Deferred::new(
        "INSERT INTO closed_orders (order_id, reason)
         SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT (order_id) DO NOTHING",
        move |query| query.bind(orders).bind(reasons),
    ))
}
