//! Stuck sagas: pending orders, and cancelled ones still owed an undo, whose last event is older
//! than a threshold; for each, what it waits for and from which service (Order's rule, in
//! [`saga_events::progress`], applied to the read side's fold), and its dead letters.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use maud::html;
use saga_events::progress;
use saga_messaging::inspect::dead_letters;
use saga_runtime::ApiQuery;
use serde::Deserialize;

use super::dead_letters::SERVICES;
use super::layout::{self, Section};
use super::{Console, ConsoleError};
use crate::queries;

/// Most sagas listed.
const LISTED: i64 = 200;

#[derive(Debug, Deserialize)]
pub struct StuckQuery {
    /// Seconds without an event; default 10.
    older_than: Option<String>,
}

pub async fn page(
    State(console): State<Console>,
    ApiQuery(query): ApiQuery<StuckQuery>,
) -> Result<Response, ConsoleError> {
    let quiet: f64 = match query.older_than.as_deref().map(str::trim) {
        None | Some("") => 10.0,
        Some(text) => text
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                ConsoleError::BadRequest("older than must be a number of seconds".into())
            })?,
    };
    let quiet_since = Utc::now() - chrono::Duration::milliseconds((quiet * 1000.0) as i64);
    let sagas = queries::unsettled(&console.pool, quiet_since, LISTED).await?;
    let topics = SERVICES.iter().map(|s| console.topics.dlq(*s)).collect();
    let letters = dead_letters::read(&console.kafka, topics).await;
    let mut letters_of: HashMap<String, Vec<String>> = HashMap::new();
    if let Ok(letters) = &letters {
        for letter in letters {
            if let Some(order) = letter.order() {
                letters_of
                    .entry(order.to_owned())
                    .or_default()
                    .push(format!("{} at {}", letter.event_type(), letter.0.topic));
            }
        }
    }
    let now = Utc::now();
    let body = html! {
        form method="get" action="/console/stuck" class="filters" aria-label="Threshold" {
            div {
                label for="older_than" { "Quiet for at least (seconds)" }
                input id="older_than" name="older_than" type="number" min="0" step="any" value=(quiet);
            }
            div { button type="submit" { "Show stuck sagas" } }
        }
        @if let Err(error) = &letters {
            p role="alert" { "The dead-letter topics could not be read: " (saga_messaging::error::error_chain(error)) }
        }
        @if sagas.is_empty() {
            p { "No saga has been quiet that long without ending." }
        } @else {
            table {
                caption { "Sagas quiet for " (layout::seconds(quiet)) " or more, longest first" }
                thead { tr {
                    th scope="col" { "Order" }
                    th scope="col" { "Status" }
                    th scope="col" class="num" { "Quiet for" }
                    th scope="col" { "Waits for" }
                    th scope="col" { "Dead letters" }
                } }
                tbody {
                    @for saga in &sagas {
                        @let status = saga.history.status();
                        tr {
                            td { a href={ "/console/orders/" (saga.order_id) } { code { (saga.order_id) } } }
                            td {
                                @if let Some(status) = status {
                                    (layout::status_badge(status.as_str()))
                                    @if let Some(reason) = status.reason() { " " (reason.as_str()) }
                                }
                            }
                            td class="num" { (layout::seconds((now - saga.last_event_at).num_milliseconds() as f64 / 1000.0)) }
                            td {
                                @if let Some(status) = status {
                                    @for (i, awaited) in progress::awaiting(status, saga.history.steps).iter().enumerate() {
                                        @if i > 0 { "; " }
                                        (awaited.events) " from " strong { (awaited.service.name()) }
                                    }
                                }
                            }
                            td {
                                @match letters_of.get(&saga.order_id.to_string()) {
                                    Some(found) => a href={ "/console/dead-letters?order=" (saga.order_id) } { (found.join("; ")) },
                                    None => "none",
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::respond(layout::page(
        "Stuck sagas",
        Section::Stuck,
        body,
    )))
}
