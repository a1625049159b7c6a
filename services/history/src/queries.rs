//! What the read side's API reads: one order's log (folded by the handler, as of any moment),
//! pages of orders by keyset, and the whole system as of a moment.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use saga_events::SagaEvent;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use saga_history::projection::store::read_event;

/// One record of an order's log.
#[derive(Debug, Clone)]
pub struct Logged {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    pub written_as: String,
    pub event: SagaEvent,
}

struct LoggedRow {
    topic: String,
    kafka_partition: i32,
    kafka_offset: i64,
    occurred_at: DateTime<Utc>,
    recorded_at: Option<DateTime<Utc>>,
    trace_id: Option<String>,
    written_as: String,
    event_type: String,
    event: serde_json::Value,
}
saga_messaging::from_row!(LoggedRow {
    topic,
    kafka_partition,
    kafka_offset,
    occurred_at,
    recorded_at,
    trace_id,
    written_as,
    event_type,
    event
});

/// The records of `order` whose event had occurred by `as_of` (all of them without one), the
/// first record of a repeated event first.
pub async fn order_log(
    pool: &PgPool,
    order: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<Logged>, sqlx::Error> {
    let rows: Vec<LoggedRow> = sqlx::query_as(
        "SELECT topic, kafka_partition, kafka_offset, occurred_at, recorded_at, trace_id,
                written_as, event_type, event
         FROM event_log
         WHERE order_id = $1 AND ($2::timestamptz IS NULL OR occurred_at <= $2)
         ORDER BY topic, kafka_partition, kafka_offset",
    )
    .bind(order)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Logged {
                event: read_event(&row.event_type, row.event)?,
                topic: row.topic,
                partition: row.kafka_partition,
                offset: row.kafka_offset,
                occurred_at: row.occurred_at,
                recorded_at: row.recorded_at,
                trace_id: row.trace_id,
                written_as: row.written_as,
            })
        })
        .collect()
}

/// Whether the log holds event `event_id` of `order`.
pub async fn holds_event(pool: &PgPool, order: Uuid, event_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM event_log WHERE event_id = $2 AND order_id = $1)",
    )
    .bind(order)
    .bind(event_id)
    .fetch_one(pool)
    .await
}

/// A row of the order list (`order_view`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    pub order_id: Uuid,
    pub customer_id: String,
    pub status: String,
    pub cancellation_reason: Option<String>,
    pub compensation: Option<String>,
    pub currency: String,
    pub total_cents: i64,
    pub placed_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    pub events: i32,
}
saga_messaging::from_row!(OrderSummary {
    order_id,
    customer_id,
    status,
    cancellation_reason,
    compensation,
    currency,
    total_cents,
    placed_at,
    last_event_at,
    events
});

/// Which orders, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer_id: Option<String>,
    pub status: Option<&'static str>,
    /// Cancelled orders with this reason.
    pub reason: Option<&'static str>,
    pub placed_from: Option<DateTime<Utc>>,
    pub placed_to: Option<DateTime<Utc>>,
    /// The last order of the previous page: (placed_at, order_id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// One page of orders, newest first; the next page starts after its last one.
pub async fn orders(pool: &PgPool, filter: &Filter) -> Result<Vec<OrderSummary>, sqlx::Error> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT order_id, customer_id, status, cancellation_reason, compensation, currency,
                total_cents, placed_at, last_event_at, events
         FROM order_view WHERE TRUE",
    );
    if let Some(customer) = &filter.customer_id {
        query
            .push(" AND customer_id = ")
            .push_bind(customer.clone());
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(reason) = filter.reason {
        query.push(" AND cancellation_reason = ").push_bind(reason);
    }
    if let Some(from) = filter.placed_from {
        query.push(" AND placed_at >= ").push_bind(from);
    }
    if let Some(to) = filter.placed_to {
        query.push(" AND placed_at < ").push_bind(to);
    }
    if let Some((placed_at, order_id)) = filter.after {
        query
            .push(" AND (placed_at, order_id) < (")
            .push_bind(placed_at)
            .push(", ")
            .push_bind(order_id)
            .push(")");
    }
    query
        .push(" ORDER BY placed_at DESC, order_id DESC LIMIT ")
        .push_bind(filter.limit);
    query.build_query_as().fetch_all(pool).await
}

/// How many orders are in each status now.
pub async fn status_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM order_view GROUP BY status")
        .fetch_all(pool)
        .await
}

/// A saga that has not ended, folded from its log.
#[derive(Debug, Clone)]
pub struct Unsettled {
    pub order_id: Uuid,
    pub last_event_at: DateTime<Utc>,
    pub history: saga_history::OrderHistory,
}

/// Pending orders, and cancelled ones still owed an undo, with no event since `quiet_since`;
/// the quietest first, at most `limit`.
pub async fn unsettled(
    pool: &PgPool,
    quiet_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Unsettled>, sqlx::Error> {
    let orders: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT order_id, last_event_at FROM order_view
         WHERE (status = 'PENDING' OR compensation = 'PENDING') AND last_event_at <= $1
         ORDER BY last_event_at LIMIT $2",
    )
    .bind(quiet_since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = orders.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT order_id, event_type, event FROM event_log WHERE order_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut events: std::collections::HashMap<Uuid, Vec<SagaEvent>> = Default::default();
    for (order, event_type, event) in rows {
        events
            .entry(order)
            .or_default()
            .push(read_event(&event_type, event)?);
    }
    Ok(orders
        .into_iter()
        .map(|(order_id, last_event_at)| Unsettled {
            order_id,
            last_event_at,
            history: saga_history::fold(events.get(&order_id).into_iter().flatten()),
        })
        .collect())
}

/// The whole system as of a moment: each placed order's state then, summed up.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub orders: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_cancellation_reason: BTreeMap<String, i64>,
    /// Per currency: (authorized, refunded), in cents.
    pub money: BTreeMap<String, (i64, i64)>,
    pub held_units: BTreeMap<String, i64>,
}

/// The latest version of every order at or before `$1`.
const AS_OF: &str = "WITH latest AS (
        SELECT DISTINCT ON (order_id) status, cancellation_reason, currency, authorized_cents,
               refunded_cents, held
        FROM order_versions WHERE valid_from <= $1
        ORDER BY order_id, valid_from DESC)";

/// `sum` (a numeric) as a bigint, held at bigint's ends: sums of forged amounts must not fail
/// the statistics of everyone else's.
fn saturated(sum: &str) -> String {
    format!("LEAST(GREATEST({sum}, -9223372036854775808), 9223372036854775807)::bigint")
}

pub async fn stats(pool: &PgPool, as_of: DateTime<Utc>) -> Result<Stats, sqlx::Error> {
    // Both sums from one snapshot, so that they describe the same moment of the projection.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, Option<String>, String, i64, i64, i64)> =
        sqlx::query_as(AssertSqlSafe(format!(
            "{AS_OF} SELECT status, cancellation_reason, currency, count(*)::bigint,
                        {authorized}, {refunded}
                 FROM latest GROUP BY 1, 2, 3",
            authorized = saturated("sum(authorized_cents)"),
            refunded = saturated("sum(refunded_cents)")
        )))
        .bind(as_of)
        .fetch_all(&mut *tx)
        .await?;
    let held: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "{AS_OF} SELECT h.key, {units}
                 FROM latest, jsonb_each_text(latest.held) AS h
                 GROUP BY h.key HAVING sum(h.value::numeric) <> 0",
        units = saturated("sum(h.value::numeric)")
    )))
    .bind(as_of)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut stats = Stats::default();
    for (status, reason, currency, count, authorized, refunded) in rows {
        stats.orders += count;
        *stats.by_status.entry(status).or_default() += count;
        if let Some(reason) = reason {
            *stats.by_cancellation_reason.entry(reason).or_default() += count;
        }
        let money = stats.money.entry(currency).or_default();
        money.0 = money.0.saturating_add(authorized);
        money.1 = money.1.saturating_add(refunded);
    }
    stats.held_units = held.into_iter().collect();
    Ok(stats)
}
