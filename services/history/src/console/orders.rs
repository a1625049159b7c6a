//! The orders page (`/`): every order the read side holds, newest first, filtered by status,
//! cancellation reason, customer and placement time, a page at a time by keyset (the same query
//! and indexes as `GET /history/orders`), with counts per status that refresh while it is open.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use saga_events::CancellationReason;
use saga_events::progress::StatusName;
use saga_runtime::ApiQuery;
use serde::Deserialize;

use super::layout::{self, Section};
use super::{Console, ConsoleError};
use crate::http::cursor;
use crate::queries::{self, Filter};

/// Rows per page.
const PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct OrdersQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    placed_from: String,
    #[serde(default)]
    placed_to: String,
    after: Option<String>,
}

/// A moment typed into a form: RFC 3339, or a browser's `datetime-local` (read as UTC).
pub fn form_time(name: &str, text: &str) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| Some(naive.and_utc()))
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "{name} must be a time such as 2026-12-06T09:30 (UTC) or an RFC 3339 time"
            ))
        })
}

pub async fn page(
    State(console): State<Console>,
    ApiQuery(query): ApiQuery<OrdersQuery>,
) -> Result<Response, ConsoleError> {
    let status = StatusName::ALL
        .iter()
        .find(|s| s.as_str() == query.status)
        .map(|s| s.as_str());
    let reason = CancellationReason::ALL
        .iter()
        .find(|r| r.as_str() == query.reason)
        .map(|r| r.as_str());
    let filter = Filter {
        customer_id: Some(query.customer.trim().replace('\0', "\u{FFFD}"))
            .filter(|c| !c.is_empty()),
        status,
        reason,
        placed_from: form_time("placed from", &query.placed_from)?,
        placed_to: form_time("placed to", &query.placed_to)?,
        after: query
            .after
            .as_deref()
            .map(cursor)
            .transpose()
            .map_err(|problem| ConsoleError::BadRequest(problem.detail))?,
        limit: PAGE + 1,
    };
    let (mut rows, counts) = tokio::try_join!(
        queries::orders(&console.pool, &filter),
        queries::status_counts(&console.pool)
    )?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let next = more.then(|| rows.last()).flatten().map(|last| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &query.status),
            ("reason", &query.reason),
            ("customer", &query.customer),
            ("placed_from", &query.placed_from),
            ("placed_to", &query.placed_to),
        ] {
            if !value.is_empty() {
                link.append_pair(name, value);
            }
        }
        link.append_pair(
            "after",
            &format!("{}_{}", last.placed_at.timestamp_micros(), last.order_id),
        );
        format!("/?{}", link.finish())
    });
    let body = html! {
        (counts_section(&counts))
        form method="get" action="/" class="filters" aria-label="Filter orders" {
            (choice("status", "Status", StatusName::ALL.iter().map(|s| s.as_str()), &query.status))
            (choice(
                "reason",
                "Cancellation reason",
                CancellationReason::ALL.iter().map(|r| r.as_str()),
                &query.reason,
            ))
            div {
                label for="customer" { "Customer" }
                input id="customer" name="customer" type="text" value=(query.customer) autocomplete="off";
            }
            div {
                label for="placed_from" { "Placed from (UTC)" }
                input id="placed_from" name="placed_from" type="datetime-local" step="1" value=(query.placed_from);
            }
            div {
                label for="placed_to" { "Placed before (UTC)" }
                input id="placed_to" name="placed_to" type="datetime-local" step="1" value=(query.placed_to);
            }
            div { button type="submit" { "Show orders" } }
        }
        @if rows.is_empty() {
            p { "No order matches." }
        } @else {
            table {
                caption { "Orders, newest first" }
                thead { tr {
                    th scope="col" { "Order" }
                    th scope="col" { "Status" }
                    th scope="col" { "Customer" }
                    th scope="col" class="num" { "Total" }
                    th scope="col" { "Placed (UTC)" }
                    th scope="col" { "Last event (UTC)" }
                    th scope="col" class="num" { "Events" }
                } }
                tbody {
                    @for row in &rows {
                        tr {
                            td { a href={ "/console/orders/" (row.order_id) } { code { (row.order_id) } } }
                            td {
                                (layout::status_badge(&row.status))
                                @if let Some(reason) = &row.cancellation_reason { " " (reason) }
                                @if row.compensation.as_deref() == Some("PENDING") { " (compensating)" }
                            }
                            td { (row.customer_id) }
                            td class="num" { (layout::money(row.total_cents, &row.currency)) }
                            td { (layout::time(row.placed_at)) }
                            td { (layout::time(row.last_event_at)) }
                            td class="num" { (row.events) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a href=(next) rel="next" { "Older orders" } }
        }
    };
    Ok(layout::respond(layout::page(
        "Orders",
        Section::Orders,
        body,
    )))
}

/// A labelled drop-down of `options` (and "any"), `chosen` selected.
fn choice<'a>(
    name: &str,
    label: &str,
    options: impl Iterator<Item = &'a str>,
    chosen: &str,
) -> Markup {
    html! {
        div {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { "any" }
                @for option in options {
                    option value=(option) selected[chosen == option] { (option) }
                }
            }
        }
    }
}

/// The live counts alone, for the page's script to refresh.
pub async fn counts(State(console): State<Console>) -> Result<Response, ConsoleError> {
    let counts = queries::status_counts(&console.pool).await?;
    Ok(layout::respond(counts_list(&counts)))
}

fn counts_section(counts: &[(String, i64)]) -> Markup {
    html! {
        section aria-labelledby="counts-heading" {
            h2 id="counts-heading" { "Orders per status" }
            div id="counts" data-refresh="/console/counts" data-every="2000" aria-live="polite" {
                (counts_list(counts))
            }
        }
    }
}

fn counts_list(counts: &[(String, i64)]) -> Markup {
    html! {
        ul class="counts" {
            @for status in StatusName::ALL {
                @let count = counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
                li {
                    a href={ "/?status=" (status.as_str()) } {
                        span class="count" { (count) } " " (status.as_str())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browsers_local_time_is_read_as_utc_and_rfc_3339_as_itself() -> Result<(), ConsoleError> {
        let local = form_time("t", "2026-12-06T09:30")?.map(|t| t.to_rfc3339());
        assert_eq!(local.as_deref(), Some("2026-12-06T09:30:00+00:00"));
        let offset = form_time("t", "2026-12-06T10:30:00+01:00")?.map(|t| t.to_rfc3339());
        assert_eq!(offset.as_deref(), Some("2026-12-06T09:30:00+00:00"));
        assert!(form_time("t", "  ")?.is_none());
        Ok(())
    }

    #[test]
    fn a_time_that_is_not_one_is_a_clear_refusal() {
        let refused = form_time("placed from", "yesterday");
        assert!(
            matches!(refused, Err(ConsoleError::BadRequest(detail)) if detail.contains("placed from"))
        );
    }
}
