//! The Inventory service's SQL: its reservations and the stock of their SKUs, each batch's in
//! one query each, and every change a batch decided in one statement per table; and the stock
//! operators set and read. What is the same for every participant (closed orders, the batch
//! itself) is `saga_participant`'s.

use std::collections::BTreeSet;

use saga_events::SagaEvent;
use saga_messaging::{Arrival, Deferred, DeferredWrites};
use saga_participant::{Changes, Ledger, Standings, column, corrupt};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{Level, Levels, Reservation, ReservationStatus, ReservedLine, Rules};

/// A reservation as [`Rules::LOAD`] reads it: the order, its status and its lines.
pub type ReservationRow = (Uuid, String, Json<Vec<ReservedLine>>);

impl Ledger for Rules {
    const LOAD: &str = "SELECT order_id, status, items FROM reservations WHERE order_id = ANY($1)";
    type Row = ReservationRow;

    fn read((order, status, items): ReservationRow) -> Result<(Uuid, Reservation), sqlx::Error> {
        let status = ReservationStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("reservation status {status}")))?;
        let lines = items.0;
        Ok((order, Reservation { status, lines }))
    }

    /// The stock of every SKU the batch may touch, locked: what payments ask for, and what
    /// reservations hold.
    async fn prepare(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
        known: &Standings<Reservation>,
    ) -> Result<Levels, sqlx::Error> {
        let mut skus: BTreeSet<String> = BTreeSet::new();
        for arrival in events {
            if let SagaEvent::PaymentAuthorized(paid) = arrival.event {
                skus.extend(paid.items.iter().map(|line| line.sku.clone()));
            }
        }
        for standing in known.values() {
            if let Some(reservation) = &standing.step {
                skus.extend(reservation.lines.iter().map(|line| line.sku.clone()));
            }
        }
        let skus: Vec<String> = skus.into_iter().collect();
        lock_levels(tx, &skus).await
    }

    /// Writes the reservations and stock levels a batch changed, in one statement each, both
    /// carried by the consumer's last statement of the batch.
    async fn save(
        &self,
        _tx: &mut PgConnection,
        batch: &Changes<'_, Self>,
        deferred: &mut DeferredWrites,
    ) -> sqlx::Result<()> {
        let reservations = &batch.steps;
        if !reservations.is_empty() {
            let orders = column(reservations, |c| c.order_id);
            let statuses = column(reservations, |c| c.step.status.as_str());
            let lines = column(reservations, |c| Json(c.step.lines.clone()));
            deferred.push(Deferred::new(
                "INSERT INTO reservations (order_id, status, items)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])
                 ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now()",
                move |query| query.bind(orders).bind(statuses).bind(lines),
            ));
        }
        let (skus, reserved): (Vec<String>, Vec<i64>) = batch
            .decided
            .iter()
            .filter(|(sku, level)| batch.prepared.get(*sku) != Some(*level))
            .map(|(sku, level)| (sku.clone(), level.reserved))
            .unzip();
        if !skus.is_empty() {
            deferred.push(Deferred::new(
                "UPDATE stock s SET reserved = v.reserved, updated_at = now()
                 FROM unnest($1::text[], $2::bigint[]) AS v(sku, reserved) WHERE s.sku = v.sku",
                move |query| query.bind(skus).bind(reserved),
            ));
        }
        Ok(())
    }
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
