//! The order deadline: a pending order whose deadline passed is cancelled, `TIMED_OUT`.
//!
//! One scanner per replica, and nothing per order: it sleeps until the earliest deadline of the
//! pending orders (at most a second, so that orders placed meanwhile are seen), then cancels
//! every order that is due, a batch per transaction. Deadlines live in the `orders` table, so a
//! deadline that passed while Order was down fires when it comes back. Replicas share the work:
//! rows another transaction holds are skipped (`FOR UPDATE SKIP LOCKED`). A time-out never races
//! the report that would have ended the saga: an order whose events are being handled right now
//! (its advisory lock is taken) is left for the next round, and so is an order with a message
//! parked at Order (a reply that failed and waits for its retry, or for an operator's redrive as
//! a dead letter): the reply reached Order in time, and decides the order once it is settled.
//!
//! The same loop keeps the stuck-saga gauges current: pending orders, the age of the oldest,
//! cancelled orders whose compensation is not complete.

use std::time::Duration;

use saga_messaging::{Backoff, HandlerError, Health, Outbox, parking};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain;
use crate::store;

/// Orders timed out per transaction.
const BATCH: i64 = 200;
/// The longest the scanner sleeps: orders placed meanwhile may be due sooner than any it saw.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);
const SHORTEST_SLEEP: Duration = Duration::from_millis(50);

/// Runs until `shutdown`. While `health` says a batch of this process's consumer is retried in
/// place (the database, broker or registry away), nothing is timed out: the replies in it
/// arrived, and are applied first.
pub async fn run(pool: PgPool, outbox: Outbox, health: Health, shutdown: CancellationToken) {
    let mut backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(5));
    let mut gauges_at = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        if health.is_retrying_in_place() {
            tokio::select! {
                _ = tokio::time::sleep(SHORTEST_SLEEP) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        match time_out_due(&pool, &outbox).await {
            Ok(timed_out) => {
                backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(5));
                if timed_out as i64 >= BATCH {
                    continue;
                }
            }
            Err(error) => {
                warn!(error = %error.reason(), "order deadlines could not be checked");
                if !backoff.wait(shutdown.cancelled()).await {
                    return;
                }
                continue;
            }
        }
        if gauges_at.elapsed() >= Duration::from_secs(5) {
            if let Err(error) = report(&pool).await {
                warn!(error = %error.reason(), "unfinished sagas could not be counted");
            }
            gauges_at = tokio::time::Instant::now();
        }
        // Never less than a moment: an order that is due but locked (its saga is being moved
        // right now) must not make this loop spin.
        let sleep = match next_due(&pool).await {
            Ok(Some(due)) => due.clamp(SHORTEST_SLEEP, LONGEST_SLEEP),
            Ok(None) | Err(_) => LONGEST_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn next_due(pool: &PgPool) -> Result<Option<Duration>, HandlerError> {
    let mut conn = pool.acquire().await?;
    Ok(store::next_deadline(&mut conn)
        .await?
        .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)))
}

/// Cancels the pending orders that are due; returns how many.
async fn time_out_due(pool: &PgPool, outbox: &Outbox) -> Result<usize, HandlerError> {
    let mut tx = pool.begin().await?;
    let due = store::due(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut locked = Vec::with_capacity(due.len());
    for order in &due {
        if parking::try_lock_order(&mut tx, order.order_id).await? {
            locked.push(order);
        }
    }
    // Asked under the orders' locks, so that a reply parked by a transaction that committed a
    // moment ago is seen: a reply that reached Order in time is never beaten by its deadline.
    let ids: Vec<_> = locked.iter().map(|order| order.order_id).collect();
    let waiting_on_a_reply = parking::orders_with_parked(&mut tx, &ids).await?;
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for order in locked {
        if waiting_on_a_reply.contains(&order.order_id) {
            continue;
        }
        let placed = order
            .placed_event_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        let decision = domain::time_out(&order.state, &order.order_id.to_string(), &placed);
        changed.push((order.order_id, decision.state));
        events.extend(decision.emit);
    }
    store::save_states(&mut tx, &changed).await?;
    let written = outbox.append(&mut tx, &events).await?;
    outbox.commit(tx, written).await?;
    if !changed.is_empty() {
        metrics::counter!("saga_orders_timed_out_total").increment(changed.len() as u64);
        info!(
            orders = changed.len(),
            "cancelled orders past their deadline"
        );
    }
    Ok(changed.len())
}

async fn report(pool: &PgPool) -> Result<(), HandlerError> {
    let mut conn = pool.acquire().await?;
    let (pending, oldest, compensating) = store::unfinished(&mut conn).await?;
    metrics::gauge!("saga_orders_pending").set(pending as f64);
    metrics::gauge!("saga_oldest_pending_order_seconds").set(oldest);
    metrics::gauge!("saga_compensations_pending").set(compensating as f64);
    Ok(())
}
