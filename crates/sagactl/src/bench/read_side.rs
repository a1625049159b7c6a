//! The read side under the run's load: how far behind the saga the projection ran, how soon
//! after the last event it held everything, and what a time-travel read, the whole-system
//! statistics and the console's pages cost on the log as it now is. Measured through the history
//! service's own API and `/metrics`; when it is not running, the report says so and nothing else
//! is measured.

use std::time::{Duration, Instant};

use saga_events::EventType;
use serde_json::{Value, json};

use super::load::{Placed, epoch_ms};
use super::stats::Latencies;
use super::watch::Sagas;

/// The projection-lag histogram (record time → commit of its rows) as `/metrics` shows it.
const LAG_BUCKETS: &str = "saga_history_projection_lag_seconds_bucket";

/// Cumulative bucket counts of the lag histogram: (upper bound in seconds, count).
pub type Buckets = Vec<(f64, f64)>;

/// The lag histogram's buckets now; `None` when the read side does not answer.
pub async fn scrape(http: &reqwest::Client, history_url: &str) -> Option<Buckets> {
    let text = http
        .get(format!("{history_url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(buckets(&text))
}

fn buckets(metrics: &str) -> Buckets {
    let mut buckets: Buckets = metrics
        .lines()
        .filter(|line| line.starts_with(LAG_BUCKETS))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `quantile` of what was recorded between two scrapes, in milliseconds, interpolated
/// within its bucket (so as coarse as the buckets are).
fn quantile(before: &Buckets, after: &Buckets, quantile: f64) -> Option<f64> {
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let wanted = quantile * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in deltas {
        if count >= wanted {
            if !bound.is_finite() {
                return Some(lower.0 * 1000.0);
            }
            let share = (wanted - lower.1) / (count - lower.1).max(f64::EPSILON);
            return Some((lower.0 + share * (bound - lower.0)) * 1000.0);
        }
        lower = (bound, count);
    }
    None
}

/// Everything measured on the read side after the run.
pub async fn measure(
    http: &reqwest::Client,
    history_url: &str,
    before: Option<Buckets>,
    placed: &[Placed],
    sagas: &Sagas,
) -> Value {
    let Some(before) = before else {
        return json!({"measured": false, "why": format!("{history_url} did not answer before the run")});
    };
    // How soon after the run's last event the projection held it.
    let caught_up = match placed.iter().max_by_key(|p| p.ended_at_ms) {
        None => Value::Null,
        Some(last) => {
            let events = sagas.events_of(std::slice::from_ref(&last.order_id));
            let ending = events.first().and_then(|events| {
                events.iter().find(|e| {
                    matches!(
                        e.event_type,
                        EventType::OrderConfirmed | EventType::OrderCancelled
                    )
                })
            });
            match ending {
                None => Value::Null,
                Some(ending) => {
                    let url = format!(
                        "{history_url}/history/orders/{}?wait_ms=10000&min_event={}",
                        last.order_id, ending.event_id
                    );
                    let answer = http.get(&url).send().await;
                    let held_at = epoch_ms();
                    json!({
                        "status": answer.map(|a| a.status().as_u16()).ok(),
                        "ms_after_last_event": held_at - last.ended_at_ms as f64,
                    })
                }
            }
        }
    };
    let after = scrape(http, history_url).await.unwrap_or_default();
    // Time travel: each sampled order as of just before its last event. The read side held the
    // run's last event above, so each order is there: none waits, and one that fails counts.
    let step = (placed.len() / 200).max(1);
    let sampled: Vec<&Placed> = placed.iter().step_by(step).take(200).collect();
    let (as_of, as_of_failed) = timed_gets(
        http,
        sampled.iter().map(|one| {
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(one.ended_at_ms - 1)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            format!("{history_url}/history/orders/{}?as_of={at}", one.order_id)
        }),
    )
    .await;
    // The console's pages as a person opens them: each sampled order's page, and the orders list
    // (its first page, and the cancelled ones).
    let (order_pages, order_pages_failed) = timed_gets(
        http,
        sampled
            .iter()
            .map(|one| format!("{history_url}/console/orders/{}", one.order_id)),
    )
    .await;
    let (list_pages, list_pages_failed) = timed_gets(
        http,
        (0..50).map(|i| match i % 2 {
            0 => format!("{history_url}/"),
            _ => format!("{history_url}/?status=CANCELLED"),
        }),
    )
    .await;
    let started = Instant::now();
    let stats = http
        .get(format!("{history_url}/history/stats"))
        .timeout(Duration::from_secs(120))
        .send()
        .await;
    let stats_ms = started.elapsed().as_secs_f64() * 1000.0;
    let orders_in_history = match stats {
        Ok(answer) => answer
            .json::<Value>()
            .await
            .ok()
            .map(|s| s["orders"].clone()),
        Err(_) => None,
    };
    json!({
        "measured": true,
        "projection_lag_ms": {
            "p50": quantile(&before, &after, 0.50),
            "p99": quantile(&before, &after, 0.99),
        },
        "caught_up": caught_up,
        "as_of_ms": as_of.summary(),
        "as_of_failed": as_of_failed,
        "console_order_page_ms": order_pages.summary(),
        "console_orders_page_ms": list_pages.summary(),
        "console_failed": order_pages_failed + list_pages_failed,
        "stats_ms": stats_ms,
        "orders_in_history": orders_in_history,
    })
}

/// Each of `urls` fetched in turn: the latency of those answered with a success, and how many
/// were not.
async fn timed_gets(
    http: &reqwest::Client,
    urls: impl Iterator<Item = String>,
) -> (Latencies, usize) {
    let mut latencies = Latencies::new();
    let mut failed = 0;
    for url in urls {
        let started = Instant::now();
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            latencies.record_ms(started.elapsed().as_secs_f64() * 1000.0);
        } else {
            failed += 1;
        }
    }
    (latencies, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
saga_history_projection_lag_seconds_bucket{le=\"0.005\"} 10
saga_history_projection_lag_seconds_bucket{le=\"0.01\"} 60
saga_history_projection_lag_seconds_bucket{le=\"0.025\"} 100
saga_history_projection_lag_seconds_bucket{le=\"+Inf\"} 100
saga_history_events_total 100
";

    #[test]
    fn quantiles_come_from_what_was_recorded_between_two_scrapes() {
        let after = buckets(METRICS);
        assert_eq!(after.len(), 4);
        let before = vec![
            (0.005, 10.0),
            (0.01, 10.0),
            (0.025, 10.0),
            (f64::INFINITY, 10.0),
        ];
        // 90 recorded since: 50 in (5, 10] ms, 40 in (10, 25] ms.
        let median = quantile(&before, &after, 0.5).unwrap_or_default();
        assert!((median - 9.5).abs() < 0.01, "{median}");
        let p99 = quantile(&before, &after, 0.99).unwrap_or_default();
        assert!(p99 > 24.0 && p99 <= 25.0, "{p99}");
        assert_eq!(
            quantile(&after, &after, 0.5),
            None,
            "nothing recorded between"
        );
    }
}
