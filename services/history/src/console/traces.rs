//! An order's trace, laid out from Jaeger's query API (`/api/traces/{id}`) where no Jaeger UI is
//! at hand: the native stack's Jaeger answers the API but serves only a placeholder page. Each
//! span is a row on the trace's time axis, with its service, operation and duration.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout;
use super::{Console, ConsoleError};
use crate::queries;

#[derive(Debug, Deserialize)]
struct Answer {
    data: Vec<Trace>,
}

#[derive(Debug, Deserialize)]
struct Trace {
    spans: Vec<Span>,
    processes: HashMap<String, Process>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Span {
    operation_name: String,
    /// Microseconds since the epoch.
    start_time: i64,
    /// Microseconds.
    duration: i64,
    #[serde(rename = "processID")]
    process_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
}

/// A span as the page shows it: from the trace's start, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub service: String,
    pub operation: String,
    pub start_us: i64,
    pub duration_us: i64,
}

fn rows(trace: Trace) -> Vec<Row> {
    let start = trace.spans.iter().map(|s| s.start_time).min().unwrap_or(0);
    let mut rows: Vec<Row> = trace
        .spans
        .into_iter()
        .map(|span| Row {
            service: trace
                .processes
                .get(&span.process_id)
                .map_or_else(|| span.process_id.clone(), |p| p.service_name.clone()),
            operation: span.operation_name,
            start_us: span.start_time - start,
            duration_us: span.duration,
        })
        .collect();
    rows.sort_by_key(|r| (r.start_us, -r.duration_us));
    rows
}

pub async fn fragment(
    State(console): State<Console>,
    Path(order): Path<String>,
) -> Result<Response, ConsoleError> {
    let order = Uuid::parse_str(&order)
        .map_err(|_| ConsoleError::BadRequest(format!("{order:?} is not an order id")))?;
    let log = queries::order_log(&console.pool, order, None).await?;
    let Some(trace_id) = log.iter().find_map(|l| l.trace_id.clone()) else {
        return Ok(layout::respond(
            html! { p { "No trace id on its records." } },
        ));
    };
    let url = format!("{}/api/traces/{trace_id}", console.jaeger_url);
    let fetched = async {
        let response = console.http.get(&url).send().await?.error_for_status()?;
        response.json::<Answer>().await
    }
    .await;
    let shown = match fetched {
        Ok(answer) => match answer.data.into_iter().next() {
            Some(trace) => render(&trace_id, &rows(trace)),
            None => html! { p { "Jaeger holds no span of trace " code { (trace_id) } " (yet)." } },
        },
        Err(error) if error.status() == Some(reqwest::StatusCode::NOT_FOUND) => html! {
            p { "Jaeger holds no span of trace " code { (trace_id) } ": it keeps traces in memory, so a restart forgets them, and spans arrive a few seconds after their hop." }
        },
        Err(error) => html! {
            p role="alert" {
                "Jaeger does not answer at " code { (console.jaeger_url) } " (" (saga_messaging::error::error_chain(&error))
                "): the trace " code { (trace_id) } " cannot be shown."
            }
        },
    };
    Ok(layout::respond(shown))
}

fn render(trace_id: &str, rows: &[Row]) -> Markup {
    let end = rows
        .iter()
        .map(|r| r.start_us + r.duration_us)
        .max()
        .unwrap_or(1)
        .max(1);
    html! {
        table class="spans" {
            caption { "Trace " code { (trace_id) } ": " (rows.len()) " spans over " (layout::millis(end / 1000)) }
            thead { tr {
                th scope="col" { "Service" }
                th scope="col" { "Operation" }
                th scope="col" class="num" { "Starts at" }
                th scope="col" class="num" { "Takes" }
                th scope="col" { span class="visually-hidden" { "On the trace's time axis" } }
            } }
            tbody {
                @for row in rows {
                    tr {
                        td { (row.service) }
                        th scope="row" { (row.operation) }
                        td class="num" { "+" (format!("{:.1}", row.start_us as f64 / 1000.0)) " ms" }
                        td class="num" { (format!("{:.2}", row.duration_us as f64 / 1000.0)) " ms" }
                        td class="bar" {
                            svg viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true" {
                                rect x=(row.start_us * 1000 / end) y="0"
                                    width=((row.duration_us * 1000 / end).max(2)) height="10" {}
                            }
                        }
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
    fn spans_are_laid_out_from_the_traces_start_with_their_services_names()
    -> Result<(), serde_json::Error> {
        let answer: Answer = serde_json::from_str(
            r#"{"data":[{"traceID":"t","spans":[
                {"spanID":"b","operationName":"payment.events process","startTime":1000400,"duration":900,"processID":"p2"},
                {"spanID":"a","operationName":"POST /orders","startTime":1000000,"duration":3000,"processID":"p1"}],
              "processes":{"p1":{"serviceName":"order"},"p2":{"serviceName":"payment"}}}]}"#,
        )?;
        let laid_out = answer.data.into_iter().flat_map(rows).collect::<Vec<_>>();
        assert_eq!(
            laid_out,
            [
                Row {
                    service: "order".into(),
                    operation: "POST /orders".into(),
                    start_us: 0,
                    duration_us: 3000
                },
                Row {
                    service: "payment".into(),
                    operation: "payment.events process".into(),
                    start_us: 400,
                    duration_us: 900
                },
            ]
        );
        Ok(())
    }
}
