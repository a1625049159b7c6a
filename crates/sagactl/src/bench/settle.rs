//! Waiting for a quiet database before a run, and saying how much data the run met.
//!
//! Each run adds tens of thousands of orders, and autovacuum then works through tables of a
//! million rows for minutes. A run started meanwhile is charged for that maintenance. So a run
//! first waits, up to a limit, until no autovacuum worker is left, and the report says how long
//! it waited, whether it got quiet, and about how many orders were stored: two figures compare
//! only on comparable data.
//!
//! The workers show in `pg_stat_activity` only to a role with `pg_read_all_stats` (the local
//! stack grants it to the tests' role, `saga_test`, whose database the ceilings use too). Where
//! they are hidden, the run does not wait, and says why.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::databases::Databases;

/// How often the wait looks again.
const POLL: Duration = Duration::from_millis(500);

/// Looks in a row without a worker it takes to call the database quiet: autovacuum's launcher
/// starts the next worker within its naptime, so one empty look is not enough.
const QUIET_LOOKS: u32 = 4;

/// Waits until no autovacuum worker has run for [`QUIET_LOOKS`] looks in a row, or `longest`
/// has passed; `stats_url` is a database whose role may see the workers. Returns what the
/// report says about it.
pub async fn quiet(
    databases: &Databases,
    stats_url: &str,
    longest: Duration,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let stats = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(stats_url)
        .await?;
    let mut quiet_looks = 0;
    let mut hidden = false;
    while quiet_looks < QUIET_LOOKS && started.elapsed() < longest {
        let (vacuuming, unseen): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE backend_type = 'autovacuum worker'),
                    count(*) FILTER (WHERE backend_type IS NULL)
             FROM pg_stat_activity",
        )
        .fetch_one(&stats)
        .await?;
        if unseen > 0 {
            hidden = true;
            break;
        }
        quiet_looks = if vacuuming == 0 { quiet_looks + 1 } else { 0 };
        tokio::time::sleep(POLL).await;
    }
    stats.close().await;
    let stored: f32 = sqlx::query_scalar(
        "SELECT coalesce(max(reltuples), 0) FROM pg_class WHERE relname = 'orders'",
    )
    .fetch_one(&databases.orders)
    .await?;
    Ok(json!({
        "waited_seconds": started.elapsed().as_secs_f64(),
        // Unknown (null) where the workers are hidden from this role.
        "quiet": (!hidden).then_some(quiet_looks >= QUIET_LOOKS),
        "why_unknown": hidden.then_some("this role cannot see autovacuum's workers: grant it pg_read_all_stats"),
        "orders_stored": stored.max(0.0).round() as i64,
    }))
}
