//! The whole system as of a chosen moment, beside the system now: orders per status and reason,
//! money authorized and refunded, units held per SKU (the read side's `GET /history/stats`).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use saga_runtime::ApiQuery;
use serde::Deserialize;

use super::layout::{self, Section};
use super::orders::form_time;
use super::{Console, ConsoleError};
use crate::queries::{self, Stats};

/// Rows of the units held per SKU.
const SKUS_SHOWN: usize = 100;

#[derive(Debug, Deserialize)]
pub struct SystemQuery {
    #[serde(default)]
    as_of: String,
}

pub async fn page(
    State(console): State<Console>,
    ApiQuery(query): ApiQuery<SystemQuery>,
) -> Result<Response, ConsoleError> {
    let now = Utc::now();
    let then = form_time("as of", &query.as_of)?.unwrap_or(now - chrono::Duration::hours(1));
    let (earlier, current) = tokio::try_join!(
        queries::stats(&console.pool, then),
        queries::stats(&console.pool, now)
    )?;
    let shown_input = then.format("%Y-%m-%dT%H:%M:%S").to_string();
    let body = html! {
        form method="get" action="/console/system" class="filters" aria-label="Moment" {
            div {
                label for="as_of" { "As of (UTC)" }
                input id="as_of" name="as_of" type="datetime-local" step="1" value=(shown_input);
            }
            div { button type="submit" { "Show the system then" } }
        }
        (comparison(then, &earlier, now, &current))
    };
    Ok(layout::respond(layout::page(
        "The system as of a moment",
        Section::System,
        body,
    )))
}

fn comparison(then: DateTime<Utc>, earlier: &Stats, now: DateTime<Utc>, current: &Stats) -> Markup {
    let head = html! {
        thead { tr {
            th scope="col" { "" }
            th scope="col" class="num" { "As of " (layout::time(then)) }
            th scope="col" class="num" { "Now (" (layout::time(now)) ")" }
        } }
    };
    let statuses: BTreeSet<&String> = earlier
        .by_status
        .keys()
        .chain(current.by_status.keys())
        .collect();
    let reasons: BTreeSet<&String> = earlier
        .by_cancellation_reason
        .keys()
        .chain(current.by_cancellation_reason.keys())
        .collect();
    let currencies: BTreeSet<&String> = earlier.money.keys().chain(current.money.keys()).collect();
    let count = |map: &std::collections::BTreeMap<String, i64>, key: &String| {
        map.get(key).copied().unwrap_or(0)
    };
    let every_sku: BTreeSet<&String> = earlier
        .held_units
        .keys()
        .chain(current.held_units.keys())
        .collect();
    // Every SKU ever sold would make a page of thousands of rows (8,400 after one test run,
    // too many to read, and more than a browser's accessibility check gets through in 30 s).
    // The SKUs whose holdings moved most between the two moments come first; the API has all.
    let mut skus: Vec<&String> = every_sku.iter().copied().collect();
    skus.sort_by_key(|sku| {
        std::cmp::Reverse((count(&current.held_units, sku) - count(&earlier.held_units, sku)).abs())
    });
    skus.truncate(SKUS_SHOWN);
    let not_shown = every_sku.len() - skus.len();
    html! {
        table {
            caption { "Orders" }
            (head)
            tbody {
                tr { th scope="row" { "placed" } td class="num" { (earlier.orders) } td class="num" { (current.orders) } }
                @for status in &statuses {
                    tr { th scope="row" { (status) } td class="num" { (count(&earlier.by_status, status)) } td class="num" { (count(&current.by_status, status)) } }
                }
                @for reason in &reasons {
                    tr { th scope="row" { "cancelled: " (reason) } td class="num" { (count(&earlier.by_cancellation_reason, reason)) } td class="num" { (count(&current.by_cancellation_reason, reason)) } }
                }
            }
        }
        table {
            caption { "Money" }
            (head)
            tbody {
                @for currency in &currencies {
                    @let (a0, r0) = earlier.money.get(*currency).copied().unwrap_or((0, 0));
                    @let (a1, r1) = current.money.get(*currency).copied().unwrap_or((0, 0));
                    tr { th scope="row" { "authorized" } td class="num" { (layout::money(a0, currency)) } td class="num" { (layout::money(a1, currency)) } }
                    tr { th scope="row" { "refunded" } td class="num" { (layout::money(r0, currency)) } td class="num" { (layout::money(r1, currency)) } }
                }
            }
        }
        table {
            caption { "Units held per SKU" }
            (head)
            tbody {
                @for sku in &skus {
                    tr { th scope="row" { (sku) } td class="num" { (count(&earlier.held_units, sku)) } td class="num" { (count(&current.held_units, sku)) } }
                }
            }
        }
        @if not_shown > 0 {
            p {
                "The " (SKUS_SHOWN) " SKUs whose holdings moved most are shown; " (not_shown)
                " more are in " code { "GET /history/stats?as_of=" } "."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units held per SKU: 99 SKUs holding `each`, plus `still` (7 units at both moments) and
    /// `mover` (holding `mover`).
    fn held(each: i64, mover: i64) -> Stats {
        let mut held_units: std::collections::BTreeMap<String, i64> =
            (0..99).map(|i| (format!("sku-{i:03}"), each)).collect();
        held_units.insert("still".to_owned(), 7);
        held_units.insert("mover".to_owned(), mover);
        Stats {
            held_units,
            ..Stats::default()
        }
    }

    #[test]
    fn past_a_hundred_skus_the_ones_that_moved_most_are_shown_and_the_rest_counted() {
        // Given 101 SKUs: 99 that moved by one unit, one that moved by 40, one that did not move.
        let (earlier, current) = (held(5, 0), held(6, 40));
        let now = Utc::now();

        // When the page compares the two moments.
        let page = comparison(now - chrono::Duration::hours(1), &earlier, now, &current);
        let page = page.into_string();

        // Then it shows 100 SKUs, the one that moved most among them and the still one not, and
        // says where the one left out is.
        let skus = &page[page.find("Units held per SKU").unwrap_or(0)..];
        assert_eq!(
            skus.matches("<th scope=\"row\">").count(),
            SKUS_SHOWN,
            "{skus}"
        );
        assert!(skus.contains(">mover<"), "{skus}");
        assert!(!skus.contains(">still<"), "{skus}");
        assert!(page.contains("; 1 more are in"), "{page}");
    }
}
