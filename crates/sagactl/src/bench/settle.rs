//! Waiting for a quiet database before a run, and saying how much data the run met.
//!
//! Each run adds tens of thousands of orders, and autovacuum then works through tables of a
//! million rows for minutes. A run started meanwhile is charged for that maintenance: the
//! one-order run that follows the overloaded open loop measured 52–65 CPU-ms per saga, mostly
//! vacuum. So a run first waits, up to a limit, until no autovacuum worker is left, and the
//! report says how long it waited, whether it got quiet, and how many orders were stored: two
//! figures are comparable only on comparable data.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::databases::Databases;

/// How often the wait looks again.
const POLL: Duration = Duration::from_millis(500);

/// Looks in a row without a worker it takes to call the database quiet: autovacuum's launcher
/// starts the next worker within its naptime, so one empty look is not enough.
const QUIET_LOOKS: u32 = 4;

/// Waits until no autovacuum worker has run for [`QUIET_LOOKS`] looks in a row, or `longest`
/// has passed; returns what the report says about it.
pub async fn quiet(databases: &Databases, longest: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut quiet_looks = 0;
    while quiet_looks < QUIET_LOOKS && started.elapsed() < longest {
        if vacuuming(&databases.orders).await? == 0 {
            quiet_looks += 1;
        } else {
            quiet_looks = 0;
        }
        tokio::time::sleep(POLL).await;
    }
    let stored: f32 = sqlx::query_scalar(
        "SELECT coalesce(max(reltuples), 0) FROM pg_class WHERE relname = 'orders'",
    )
    .fetch_one(&databases.orders)
    .await?;
    Ok(json!({
        "waited_seconds": started.elapsed().as_secs_f64(),
        "quiet": quiet_looks >= QUIET_LOOKS,
        "orders_stored": stored.max(0.0).round() as i64,
    }))
}

/// Autovacuum workers running now, in any of the cluster's databases.
async fn vacuuming(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
    )
    .fetch_one(pool)
    .await
}
