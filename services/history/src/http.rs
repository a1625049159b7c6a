//! The read side's API: one order's history as of any moment, orders by customer, status and
//! time, and the whole system as of a moment. Reads may wait for the projection to reach a write
//! (`wait_ms`, `min_event`); what it has not reached in time is a problem answer saying how far
//! behind it is, never a stale body.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use saga_events::progress::StatusName;
use saga_runtime::{ApiQuery, Problem, path_uuid};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::progress::Progress;
use crate::queries::{self, Filter, OrderSummary};
use crate::views::{
    EventRef, MoneyTotals, OrderDetail, OrderPage, PaymentDetail, ShipmentDetail, StockDetail,
    StockItem, SystemStats, detail,
};

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub progress: Progress,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "History service",
        description = "The read side: every saga event in a log, orders as of any moment, and queries across orders."
    ),
    paths(get_order, list_orders, get_stats),
    components(schemas(
        OrderDetail,
        EventRef,
        PaymentDetail,
        StockDetail,
        StockItem,
        ShipmentDetail,
        OrderPage,
        OrderSummary,
        SystemStats,
        MoneyTotals,
        Problem
    ))
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/history/orders", get(list_orders))
        .route("/history/orders/{order_id}", get(get_order))
        .route("/history/stats", get(get_stats))
        .with_state(state)
}

/// Longest a read may wait for the projection.
const MAX_WAIT_MS: u64 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// RFC 3339: the order as it stood then (folded from the events that had occurred by then).
    #[param(format = DateTime)]
    as_of: Option<String>,
    /// 0 to 10000: how long to wait for the projection to hold the order (and `min_event`).
    /// Without `min_event`, an order still missing once the projection has caught up with the
    /// topics is a 404 before the time is up; to read your own write, pass `min_event`.
    #[param(minimum = 0, maximum = 10000)]
    wait_ms: Option<u64>,
    /// An event id (such as `POST /orders`' `Saga-Event-Id`) the answer must include.
    min_event: Option<String>,
}

/// One order's history: its state now, or `as_of` a moment. With `wait_ms`, waits for the read
/// side to hold the order (and the event `min_event`).
#[utoipa::path(
    get,
    path = "/history/orders/{order_id}",
    params(("order_id" = String, Path, format = Uuid), OrderQuery),
    responses(
        (status = 200, body = OrderDetail),
        (status = 400, description = "A parameter is malformed", body = Problem),
        (status = 404, description = "No such order (or not placed by `as_of`; or, with `min_event`, no such event of it on the topics once the projection has read them all)", body = Problem),
        (status = 503, description = "The projection is behind the topics and has not reached the order (or `min_event`) within `wait_ms`; the detail says how far behind it is", body = Problem,
            headers(("Retry-After" = String, description = "Seconds to wait before asking again")))
    )
)]
async fn get_order(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<Response, Problem> {
    let order = path_uuid(&order_id, "order")?;
    let as_of = query
        .as_of
        .as_deref()
        .map(|t| moment("as_of", t))
        .transpose()?;
    let wait = match query.wait_ms {
        Some(ms) if ms > MAX_WAIT_MS => {
            return Err(bad_request(format!("wait_ms must be 0 to {MAX_WAIT_MS}")));
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let min_event = query
        .min_event
        .as_deref()
        .map(|e| e.replace('\0', "\u{FFFD}"));
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    let mut changes = app.progress.subscribe();
    let arrived = app.progress.fetches();
    loop {
        changes.mark_unchanged();
        // Noted before the query: if the projection had already caught up with the topics as
        // they were after this read arrived, what the query finds is all there is.
        let settled = app.progress.fetches() > arrived && app.progress.behind().records == 0;
        let log = queries::order_log(&app.pool, order, as_of).await?;
        let holds_min_event = match &min_event {
            None => true,
            Some(event) => queries::holds_event(&app.pool, order, event).await?,
        };
        let history = saga_history::fold(log.iter().map(|l| &l.event));
        if history.status().is_some() && holds_min_event {
            return Ok(Json(detail(order, &history, &log, as_of)).into_response());
        }
        if wait.is_none() || (settled && min_event.is_none()) {
            return Err(not_found(order, as_of));
        }
        if tokio::time::Instant::now() >= deadline {
            let behind = app.progress.behind();
            let what = match &min_event {
                Some(event) => format!("event {event} of order {order}"),
                None => format!("order {order}"),
            };
            if behind.records == 0 {
                // Nothing left to project (as of the last look at the topics): it is not there.
                return Err(match (&min_event, history.status()) {
                    (Some(_), Some(_)) => {
                        Problem::not_found(format!("no {what} on the event topics"))
                    }
                    _ => not_found(order, as_of),
                });
            }
            let problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not Projected Yet",
                format!(
                    "the read side has not projected {what} within {} ms: it is {behind}; retry, or wait longer",
                    wait.unwrap_or_default().as_millis()
                ),
            );
            return Ok(([(header::RETRY_AFTER, "1")], problem).into_response());
        }
        // Look again after the next batch or watermark fetch, or at the deadline.
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

fn not_found(order: Uuid, as_of: Option<DateTime<Utc>>) -> Problem {
    match as_of {
        Some(at) => Problem::not_found(format!(
            "order {order} had not been placed by {}",
            rfc3339(at)
        )),
        None => Problem::not_found(format!("no order {order}")),
    }
}

/// The statuses an order can be listed by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusFilter {
    Pending,
    Confirmed,
    Cancelled,
}

impl From<StatusFilter> for StatusName {
    fn from(status: StatusFilter) -> Self {
        match status {
            StatusFilter::Pending => StatusName::Pending,
            StatusFilter::Confirmed => StatusName::Confirmed,
            StatusFilter::Cancelled => StatusName::Cancelled,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    customer_id: Option<String>,
    #[param(inline)]
    status: Option<StatusFilter>,
    /// RFC 3339: orders placed at or after.
    #[param(format = DateTime)]
    placed_from: Option<String>,
    /// RFC 3339: orders placed before.
    #[param(format = DateTime)]
    placed_to: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(
        pattern = r"^-?[0-9]{1,18}_([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    after: Option<String>,
}

/// Orders by customer, status and placement time, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/history/orders",
    params(ListQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "A parameter is malformed", body = Problem)
    )
)]
async fn list_orders(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad_request("limit must be 1 to 500"));
    }
    let status = query.status.map(|s| StatusName::from(s).as_str());
    let filter = Filter {
        customer_id: query.customer_id.map(|c| c.replace('\0', "\u{FFFD}")),
        status,
        reason: None,
        placed_from: query
            .placed_from
            .as_deref()
            .map(|t| moment("placed_from", t))
            .transpose()?,
        placed_to: query
            .placed_to
            .as_deref()
            .map(|t| moment("placed_to", t))
            .transpose()?,
        after: query.after.as_deref().map(cursor).transpose()?,
        limit: limit + 1,
    };
    let mut rows = queries::orders(&app.pool, &filter).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|last| format!("{}_{}", last.placed_at.timestamp_micros(), last.order_id));
    Ok(Json(OrderPage { orders: rows, next }))
}

/// Postgres' earliest timestamp (4713 BC), in microseconds since 1970: no order is older, so a
/// cursor before it pages past everything, as it does from there.
const EARLIEST_MICROS: i64 = -210_866_803_200_000_000;

/// A page's `next`, read back: (placed_at, order_id) of the last order of the page before.
pub(crate) fn cursor(text: &str) -> Result<(DateTime<Utc>, Uuid), Problem> {
    let invalid = || bad_request("after must be the `next` of a previous page");
    let (micros, order) = text.split_once('_').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let at = DateTime::from_timestamp_micros(micros.max(EARLIEST_MICROS)).ok_or_else(invalid)?;
    let order = Uuid::parse_str(order).map_err(|_| invalid())?;
    Ok((at, order))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// RFC 3339; default now.
    #[param(format = DateTime)]
    as_of: Option<String>,
}

/// The whole system as of a moment: orders per status and cancellation reason, money authorized
/// and refunded, units held per SKU.
#[utoipa::path(
    get,
    path = "/history/stats",
    params(StatsQuery),
    responses(
        (status = 200, body = SystemStats),
        (status = 400, description = "A parameter is malformed", body = Problem)
    )
)]
async fn get_stats(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<SystemStats>, Problem> {
    let as_of = match query.as_of.as_deref() {
        Some(text) => moment("as_of", text)?,
        None => Utc::now(),
    };
    let stats = queries::stats(&app.pool, as_of).await?;
    let mut by_status: BTreeMap<String, i64> = StatusName::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    by_status.extend(stats.by_status);
    Ok(Json(SystemStats {
        as_of,
        orders: stats.orders,
        by_status,
        by_cancellation_reason: stats.by_cancellation_reason,
        money: stats
            .money
            .into_iter()
            .map(|(currency, (authorized, refunded))| MoneyTotals {
                currency,
                authorized_cents: authorized,
                refunded_cents: refunded,
            })
            .collect(),
        held_units: stats.held_units,
    }))
}

fn moment(name: &str, text: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad_request(format!("{name} must be an RFC 3339 time: {e}")))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_the_page_end_it_was_made_from() -> Result<(), Problem> {
        let order = Uuid::from_u128(7);
        let at = DateTime::from_timestamp_micros(1_764_950_400_123_456).unwrap_or_default();
        let made = format!("{}_{order}", at.timestamp_micros());
        assert_eq!(cursor(&made)?, (at, order));
        Ok(())
    }

    #[test]
    fn a_cursor_older_than_postgres_can_store_pages_from_its_earliest_time() -> Result<(), Problem>
    {
        let (at, _) = cursor("-875784352140442072_12EE2C1aEE6dA9d6DC0aa0dc904c2D6C")?;
        assert_eq!(at.timestamp_micros(), EARLIEST_MICROS);
        Ok(())
    }

    #[test]
    fn what_is_not_a_cursor_is_refused() {
        for text in [
            "",
            "yesterday",
            "12_not-a-uuid",
            "x_00000000000000000000000000000007",
        ] {
            assert!(cursor(text).is_err(), "{text}");
        }
    }
}
