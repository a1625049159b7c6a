//! The inbox: every event a service has handled, recorded in the transaction that handled it,
//! so that a redelivered event finds its id here and changes nothing. All of the inbox's SQL is
//! here but the insert, written for batches: one statement answers for every event of a batch.
//! Entries are inserted by [`crate::Outbox::write`], in the statement that writes the same
//! transaction's outbox rows (one round trip for both); they are deleted here, past retention.

use std::pin::Pin;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, FromRow, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Where an arriving event stands for this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Already handled, or already parked: a duplicate.
    Known,
    /// Another message of its order is parked here: it must wait behind it.
    OrderParked,
    /// Nothing stands in the way.
    Clear,
}

impl Standing {
    fn of(known: bool, order_parked: bool) -> Self {
        if known {
            Standing::Known
        } else if order_parked {
            Standing::OrderParked
        } else {
            Standing::Clear
        }
    }
}

/// The standing of each `(event id, order id)`, in the order given, in one round trip. A record
/// without an event id (one that could not be decoded) is only asked about its order.
pub async fn standing(
    conn: &mut PgConnection,
    events: &[(Option<Uuid>, String)],
) -> Result<Vec<Standing>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, orders): (Vec<Option<Uuid>>, Vec<String>) = events.iter().cloned().unzip();
    let rows: Vec<(bool, bool)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT inbox_known, inbox_order_parked FROM ({}) s ORDER BY inbox_n",
        asked("$1", "$2")
    )))
    .bind(&ids)
    .bind(&orders)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(known, order_parked)| Standing::of(known, order_parked))
        .collect())
}

/// [`standing`], and the rows of `query` (a service's read of the batch's orders, whose `$1` is
/// `orders`, a `uuid[]`), in one round trip: a consumer's transaction asks both before anything
/// else, and a round trip saved there is saved for every batch.
///
/// The two are unrelated rows of different columns, so they come as one result by a full join
/// that matches nothing: each row is either one of `query`'s, its columns first and the
/// standing's null, or a standing's with `query`'s columns null.
pub async fn standing_beside<R>(
    conn: &mut PgConnection,
    events: &[(Option<Uuid>, String)],
    query: &str,
    orders: &[Uuid],
) -> Result<(Vec<Standing>, Vec<R>), sqlx::Error>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    if events.is_empty() && orders.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (ids, asked_orders): (Vec<Option<Uuid>>, Vec<String>) = events.iter().cloned().unzip();
    let rows: Vec<Beside<R>> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT q.*, s.inbox_n, s.inbox_known, s.inbox_order_parked
         FROM ({query}) q FULL JOIN ({}) s ON false",
        asked("$2", "$3")
    )))
    .bind(orders)
    .bind(&ids)
    .bind(&asked_orders)
    .fetch_all(conn)
    .await?;
    let mut standings = Vec::with_capacity(events.len());
    let mut read = Vec::with_capacity(rows.len().saturating_sub(events.len()));
    for row in rows {
        match row {
            Beside::Standing(n, standing) => standings.push((n, standing)),
            Beside::Row(row) => read.push(row),
        }
    }
    standings.sort_unstable_by_key(|(n, _)| *n);
    Ok((standings.into_iter().map(|(_, s)| s).collect(), read))
}

/// The standing of each event asked (event ids in the `uuid[]` parameter `ids`, their orders in
/// the `text[]` parameter `orders`): a row each, numbered `inbox_n` in the order asked.
fn asked(ids: &str, orders: &str) -> String {
    format!(
        "SELECT a.n AS inbox_n,
                EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = a.event_id)
                OR EXISTS (SELECT 1 FROM parked p WHERE p.event_id = a.event_id) AS inbox_known,
                EXISTS (SELECT 1 FROM parked p WHERE p.order_id = a.order_id) AS inbox_order_parked
         FROM unnest({ids}::uuid[], {orders}::text[]) WITH ORDINALITY AS a(event_id, order_id, n)"
    )
}

/// A row of [`standing_beside`]: a standing (its place among those asked), or a row of the query.
enum Beside<R> {
    Standing(i64, Standing),
    Row(R),
}

impl<'r, R: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Beside<R> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        match row.try_get::<Option<i64>, _>("inbox_n")? {
            Some(n) => Ok(Beside::Standing(
                n,
                Standing::of(
                    row.try_get("inbox_known")?,
                    row.try_get("inbox_order_parked")?,
                ),
            )),
            None => Ok(Beside::Row(R::from_row(row)?)),
        }
    }
}

/// One handled event, as the inbox records it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The inbox's columns of some entries, as arrays for `unnest`.
pub(crate) struct Columns<'a> {
    pub ids: Vec<Uuid>,
    pub types: Vec<&'static str>,
    pub topics: Vec<&'a str>,
    pub partitions: Vec<i32>,
    pub offsets: Vec<i64>,
}

impl<'a> Columns<'a> {
    pub fn of(entries: &'a [Entry]) -> Self {
        Self {
            ids: entries.iter().map(|e| e.event_id).collect(),
            types: entries.iter().map(|e| e.event_type).collect(),
            topics: entries.iter().map(|e| e.topic.as_str()).collect(),
            partitions: entries.iter().map(|e| e.partition).collect(),
            offsets: entries.iter().map(|e| e.offset).collect(),
        }
    }
}

/// Whether one event is recorded: the retry path's duplicate check.
pub async fn contains(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)")
        .bind(event_id)
        .fetch_one(conn)
        .await
}

/// How long inbox entries are kept, and how they are deleted after.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Entries older than this are deleted (`RETENTION_HOURS`, default 192). An entry has to
    /// outlive every copy of its event that can arrive on its own: a redelivery after a crash
    /// or a rebalance (seconds), a relay's republish (minutes), a retry record (the retry topics
    /// keep 7 days; one more day of margin). The event topics keep every record for the read
    /// side, so a consumer group reset further back than this would meet events the inbox has
    /// forgotten: never reset a service's group past the window.
    pub keep: Duration,
    /// How often the consumer deletes what is past `keep`.
    pub every: Duration,
    /// Rows deleted per statement, so that no cleanup transaction grows large.
    pub batch: i64,
}

/// One round of a cleanup: a delete of at most a batch of rows on the connection it is given,
/// answering how many it deleted.
pub type Round = for<'c> fn(
    &'c mut PgConnection,
    &'c Retention,
    &'static str,
) -> Pin<Box<dyn Future<Output = Result<u64, sqlx::Error>> + Send + 'c>>;

impl Retention {
    /// Runs `round` (one delete of at most [`Retention::batch`] rows past the window, of what
    /// `scope` names) until a round deletes less than a batch; returns the rows deleted in all.
    /// The one batched delete of every cleanup past the window: the inbox's, and the workflows'.
    ///
    /// Each round is a transaction of its own that plans its statement for the values at hand
    /// ([`CUSTOM_PLAN`]). A service's connections otherwise use one generic plan per statement
    /// (`saga_runtime::GENERIC_PLANS`), right for lookups by key but not here: without the
    /// cutoff, Postgres guesses that a third of the table is past it and scans all of it. With
    /// some 630,000 finished fulfilments, Shipping's round read 109,000 pages (850 MiB) to delete
    /// nothing, every minute; planned for its values it reads a few index pages.
    pub async fn in_batches(
        &self,
        conn: &mut PgConnection,
        scope: &'static str,
        round: Round,
    ) -> Result<u64, sqlx::Error> {
        let full = u64::try_from(self.batch.max(1)).unwrap_or(u64::MAX);
        let mut deleted = 0;
        loop {
            let mut tx = conn.begin().await?;
            sqlx::query(CUSTOM_PLAN).execute(&mut *tx).await?;
            let rows = round(&mut tx, self, scope).await?;
            tx.commit().await?;
            deleted += rows;
            if rows < full {
                return Ok(deleted);
            }
        }
    }
}

/// Plans the rest of the transaction's statements for the values they are given, whatever the
/// connection's `plan_cache_mode`.
const CUSTOM_PLAN: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(8 * 24 * 3600),
            every: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

/// Deletes entries past retention, a bounded batch per statement. `SKIP LOCKED` means a row some
/// transaction is using is simply left for the next round: cleanup never waits on, nor blocks,
/// the hot path, and replicas cleaning at once do not get in each other's way. Returns the rows
/// deleted.
pub async fn clean_up(conn: &mut PgConnection, retention: &Retention) -> Result<u64, sqlx::Error> {
    let deleted = retention.in_batches(conn, "inbox", delete_past).await?;
    if deleted > 0 {
        info!(rows = deleted, "deleted inbox entries past retention");
    }
    metrics::counter!("saga_retention_deleted_rows_total").increment(deleted);
    Ok(deleted)
}

/// One round of the inbox's cleanup.
fn delete_past<'c>(
    conn: &'c mut PgConnection,
    retention: &'c Retention,
    _scope: &'static str,
) -> Pin<Box<dyn Future<Output = Result<u64, sqlx::Error>> + Send + 'c>> {
    Box::pin(async move {
        Ok(sqlx::query(
            "DELETE FROM inbox WHERE event_id IN (
                 SELECT event_id FROM inbox
                 WHERE processed_at < now() - make_interval(secs => $1)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(retention.keep.as_secs_f64())
        .bind(retention.batch)
        .execute(conn)
        .await?
        .rows_affected())
    })
}

/// Cleans up every [`Retention::every`] until shutdown; a failed round is logged and tried
/// again at the next.
pub async fn keep_clean(pool: PgPool, retention: Retention, shutdown: CancellationToken) {
    loop {
        let cleaned = match pool.acquire().await {
            Ok(mut conn) => clean_up(&mut conn, &retention).await,
            Err(error) => Err(error),
        };
        if let Err(error) = cleaned {
            warn!(%error, "could not delete inbox entries past retention; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
