//! One order's page: its saga live as it happens, the waterfall of its events, its state as of
//! any of them (the time slider), what it still waits for, and its trace.
//!
//! The read side is eventually consistent, and the page says so rather than hiding it: an order
//! whose events the projector has not reached yet is shown as in progress, with how far behind
//! the projection is, never as missing. The live part is a stream of server-sent events: the
//! region is sent again whenever the projection holds more of the order, and the stream ends
//! once the saga has nothing more to hear.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use maud::{Markup, html};
use saga_events::progress::{self, StatusName};
use saga_history::OrderHistory;
use saga_messaging::inspect::dead_letters::{self, DeadLetter};
use saga_runtime::ApiQuery;
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, Section};
use super::orders::form_time;
use super::{Console, ConsoleError, waterfall};
use crate::queries::{self, Logged};

/// How long one live stream runs at most; the page's script reconnects after it.
const LIVE_FOR: Duration = Duration::from_secs(600);
/// The least time between two looks at the database while the projection moves.
const LOOK_EVERY: Duration = Duration::from_millis(100);

fn order_id(text: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(text)
        .map_err(|_| ConsoleError::BadRequest(format!("{text:?} is not an order id (a UUID)")))
}

async fn load(
    console: &Console,
    order: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Vec<Logged>, OrderHistory), sqlx::Error> {
    let log = queries::order_log(&console.pool, order, as_of).await?;
    let history = saga_history::fold(log.iter().map(|l| &l.event));
    Ok((log, history))
}

/// Whether the saga has nothing more to hear: ended, and every undo it owes reported.
fn settled(history: &OrderHistory) -> bool {
    history
        .status()
        .is_some_and(|status| progress::awaiting(status, history.steps).is_empty())
}

#[derive(Debug, Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

/// The order a path names, and the moment its query names (if any).
fn order_at(order: &str, query: &AsOfQuery) -> Result<(Uuid, Option<DateTime<Utc>>), ConsoleError> {
    let moment = form_time("as of", query.as_of.as_deref().unwrap_or(""))?;
    Ok((order_id(order)?, moment))
}

pub async fn page(
    State(console): State<Console>,
    Path(order): Path<String>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<Response, ConsoleError> {
    let (order, as_of) = order_at(&order, &query)?;
    let (log, history) = load(&console, order, None).await?;
    let chosen = match as_of {
        Some(at) => saga_history::fold_as_of(log.iter().map(|l| &l.event), at.timestamp_millis()),
        None => history.clone(),
    };
    let hops = waterfall::hops(&log);
    let moments: Vec<(DateTime<Utc>, &'static str)> = hops
        .iter()
        .map(|hop| (hop.occurred_at, hop.event_type.name()))
        .collect();
    let last = moments.len().saturating_sub(1);
    let shown = as_of.map_or(last, |at| {
        moments.iter().rposition(|(t, _)| *t <= at).unwrap_or(0)
    });
    let labels: Vec<(String, &str)> = moments
        .iter()
        .map(|(t, name)| (layout::rfc3339(*t), *name))
        .collect();
    let trace = hops.iter().find_map(|h| h.trace_id.clone());
    let body = html! {
        div id="live" data-live={ "/console/orders/" (order) "/live" } {
            (live_region(&console, order, &log, &history))
        }
        section aria-labelledby="waits-heading" {
            h2 id="waits-heading" { "Set aside" }
            div data-load={ "/console/orders/" (order) "/set-aside" } {
                p { a href={ "/console/orders/" (order) "/set-aside" } { "Its dead letters, if any" } }
            }
        }
        section aria-labelledby="travel-heading" {
            h2 id="travel-heading" { "Time travel" }
            @if moments.is_empty() {
                p { "Nothing to travel through yet." }
            } @else {
                div class="slider" {
                    label for="as-of" { "State as of event" }
                    input id="as-of" type="range" min="0" max=(last) step="1" value=(shown)
                        data-state={ "/console/orders/" (order) "/state" }
                        data-moments=(serde_json::to_string(&labels).unwrap_or_default())
                        aria-valuetext=(moment_text(&labels, shown));
                    output for="as-of" id="as-of-text" { (moment_text(&labels, shown)) }
                }
                div id="state" aria-live="polite" {
                    (state_panel(&chosen, labels.get(shown).map(|(t, _)| t.as_str())))
                }
                details {
                    summary { "Each moment as a link" }
                    ol {
                        @for (at, name) in &labels {
                            li { a href={ "/console/orders/" (order) "?as_of=" (at) } { "as of " (name) " (" (at) ")" } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="trace-heading" {
            h2 id="trace-heading" { "Trace" }
            @match (&trace, &console.jaeger_ui_url) {
                (None, _) => p { "No trace id on its records." },
                (Some(id), Some(ui)) => p { "Trace " code { (id) } ": " a href={ (ui) "/trace/" (id) } { "open it in Jaeger" } },
                (Some(id), None) => div data-load={ "/console/orders/" (order) "/trace" } {
                    p { "Trace " code { (id) } ". " a href={ "/console/orders/" (order) "/trace" } { "Show its spans" } }
                },
            }
        }
    };
    Ok(layout::respond(layout::page(
        &format!("Order {order}"),
        Section::Orders,
        body,
    )))
}

fn moment_text(moments: &[(String, &str)], shown: usize) -> String {
    moments.get(shown).map_or_else(String::new, |(at, name)| {
        format!("{} of {}: {name} at {at}", shown + 1, moments.len())
    })
}

/// The part of the page that follows the saga: its state now, what it waits for, its events.
fn live_region(console: &Console, order: Uuid, log: &[Logged], history: &OrderHistory) -> Markup {
    let Some(status) = history.status() else {
        let behind = console.progress.behind();
        return html! {
            section aria-labelledby="now-heading" {
                h2 id="now-heading" { "Now" }
                p role="status" {
                    (layout::status_badge("IN PROGRESS")) " "
                    "The read side holds no event of order " code { (order) } " yet: it is "
                    (behind) ". This page follows it as its events arrive."
                }
            }
        };
    };
    let placement = history.placement.as_ref();
    let awaiting = progress::awaiting(status, history.steps);
    html! {
        section aria-labelledby="now-heading" {
            h2 id="now-heading" { "Now" }
            dl class="facts" {
                dt { "Status" }
                dd id="order-status" {
                    span role="status" {
                        (layout::status_badge(status.as_str()))
                        @if let Some(reason) = status.reason() { " " (reason.as_str()) }
                        @if let Some(compensation) = history.compensation() { " · compensation " (compensation.as_str()) }
                    }
                }
                @if let Some(placed) = placement {
                    dt { "Customer" } dd { (placed.customer_id) }
                    dt { "Total" } dd { (layout::money(placed.total_cents, &placed.currency)) }
                    dt { "Placed" } dd { (layout::time(saga_history::projection::store::millis(placed.placed_at_ms))) " UTC" }
                }
                dt { "Waits for" }
                dd {
                    @if awaiting.is_empty() { "nothing: the saga is over" }
                    @for (i, awaited) in awaiting.iter().enumerate() {
                        @if i > 0 { "; " }
                        (awaited.events) " from " (awaited.service.name())
                    }
                }
            }
        }
        section aria-labelledby="saga-heading" {
            h2 id="saga-heading" { "Its saga" }
            (waterfall::render(&waterfall::hops(log)))
        }
    }
}

/// The order's state as the slider shows it.
fn state_panel(history: &OrderHistory, at: Option<&str>) -> Markup {
    let status = history
        .status()
        .map_or(StatusName::Pending.as_str(), |s| s.as_str());
    html! {
        dl class="facts" {
            dt { "As of" } dd { (at.unwrap_or("now")) }
            dt { "Status" } dd class="as-of-status" { (layout::status_badge(status)) }
            dt { "Payment" } dd { (history.payment.as_ref().map_or("—", |p| p.status.as_str())) }
            dt { "Stock" } dd { (history.stock.as_ref().map_or("—", |s| s.status.as_str())) }
            dt { "Shipment" } dd { (history.shipment.as_ref().map_or("—", |s| s.status.as_str())) }
        }
    }
}

/// The order's dead letters at any service, read from the dead-letter topics (the partition
/// its key maps to on each); why not, when the broker does not answer.
async fn letters_of(console: &Console, order: Uuid) -> Result<Vec<DeadLetter>, String> {
    let topics = super::dead_letters::SERVICES
        .iter()
        .map(|s| console.topics.dlq(*s))
        .collect();
    dead_letters::of_order(&console.kafka, topics, order.to_string())
        .await
        .map_err(|e| saga_messaging::error::error_chain(&e))
}

fn set_aside(order: Uuid, letters: &Result<Vec<DeadLetter>, String>) -> Markup {
    match letters {
        Err(error) => {
            html! { p role="alert" { "The dead-letter topics could not be read: " (error) } }
        }
        Ok(letters) if letters.is_empty() => {
            html! { p { "No message of this order is dead-lettered." } }
        }
        Ok(letters) => html! {
            ul {
                @for letter in letters {
                    li {
                        (letter.event_type()) " dead-lettered at " (letter.0.topic) " after "
                        (letter.attempts().unwrap_or(0)) " attempts: " (letter.error())
                    }
                }
            }
            p { a href={ "/console/dead-letters?order=" (order) } { "Redrive them" } }
        },
    }
}

/// The order's dead letters at any service, loaded after the page: they are read from the
/// topics, which takes longer than the page itself.
pub async fn set_aside_fragment(
    State(console): State<Console>,
    Path(order): Path<String>,
) -> Result<Response, ConsoleError> {
    let order = order_id(&order)?;
    let letters = letters_of(&console, order).await;
    Ok(layout::respond(set_aside(order, &letters)))
}

/// The state as of a moment, for the slider.
pub async fn state(
    State(console): State<Console>,
    Path(order): Path<String>,
    ApiQuery(query): ApiQuery<AsOfQuery>,
) -> Result<Response, ConsoleError> {
    let (order, as_of) = order_at(&order, &query)?;
    let (_, history) = load(&console, order, as_of).await?;
    Ok(layout::respond(state_panel(
        &history,
        query.as_of.as_deref(),
    )))
}

struct Following {
    console: Console,
    order: Uuid,
    changes: tokio::sync::watch::Receiver<u64>,
    shown_records: Option<usize>,
    ended: bool,
    since: Instant,
}

/// The live region again each time the projection holds more of the order; `end` once the saga
/// has nothing more to hear.
pub async fn live(
    State(console): State<Console>,
    Path(order): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let order = order_id(&order)?;
    let following = Following {
        changes: console.progress.subscribe(),
        console,
        order,
        shown_records: None,
        ended: false,
        since: Instant::now(),
    };
    let stream = futures::stream::unfold(following, |mut f| async move {
        if f.ended {
            return None;
        }
        loop {
            match load(&f.console, f.order, None).await {
                Ok((log, history)) => {
                    let is_settled = settled(&history);
                    if f.shown_records != Some(log.len()) {
                        f.shown_records = Some(log.len());
                        let region = live_region(&f.console, f.order, &log, &history);
                        let event = Event::default().event("saga").data(region.into_string());
                        return Some((Ok(event), f));
                    }
                    if is_settled {
                        f.ended = true;
                        return Some((Ok(Event::default().event("end").data("settled")), f));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, order = %f.order, "following an order");
                }
            }
            if f.since.elapsed() > LIVE_FOR {
                return None;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), f.changes.changed()).await;
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
