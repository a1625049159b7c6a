//! `sagactl bench`: a load of orders through the running services, reported, never asserted.
//!
//! Each order's latency runs from the moment its `POST /orders` was sent to the moment its
//! terminal event (`OrderConfirmed`/`OrderCancelled`) occurred, as the timeline records it; the
//! client only polls to learn that the order ended.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Context;
use crate::output::emit;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Orders in flight at once (placed and not yet ended).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Order service base URL.
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:8080")]
    pub order_url: String,
    /// Inventory service base URL (the benchmark stocks a SKU of its own).
    #[arg(long, env = "INVENTORY_URL", default_value = "http://127.0.0.1:8083")]
    pub inventory_url: String,
    /// Give up on an order that has not ended after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

struct Outcome {
    status: String,
    post_ms: f64,
    saga_ms: f64,
    ended_at_ms: f64,
}

pub async fn run(context: &Context, args: BenchArgs) -> anyhow::Result<()> {
    if args.orders == 0 || args.concurrency == 0 {
        bail!("--orders and --concurrency must be at least 1");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let sku = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let stocked = http
        .put(format!("{}/stock/{sku}", args.inventory_url))
        .json(&json!({ "on_hand": args.orders }))
        .send()
        .await
        .context("stocking the benchmark SKU")?;
    if !stocked.status().is_success() {
        bail!("PUT /stock/{sku}: {}", stocked.status());
    }

    let started_at_ms = epoch_ms();
    let started = Instant::now();
    let ended = Arc::new(AtomicUsize::new(0));
    let progress = tokio::spawn(show_progress(ended.clone(), args.orders));
    let outcomes: Vec<anyhow::Result<Outcome>> = futures::stream::iter(0..args.orders)
        .map(|_| {
            let http = http.clone();
            let order_url = args.order_url.clone();
            let sku = sku.clone();
            let ended = ended.clone();
            let timeout = Duration::from_secs(args.timeout);
            async move {
                let outcome = one_order(&http, &order_url, &sku, timeout).await;
                ended.fetch_add(1, Ordering::Relaxed);
                outcome
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    progress.abort();
    let wall = started.elapsed();

    let mut failures = Vec::new();
    let mut done = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(outcome) => done.push(outcome),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    let last_end = done
        .iter()
        .map(|o| o.ended_at_ms)
        .fold(started_at_ms, f64::max);
    let span_s = ((last_end - started_at_ms) / 1000.0).max(f64::EPSILON);
    let mut saga: Vec<f64> = done.iter().map(|o| o.saga_ms).collect();
    let mut post: Vec<f64> = done.iter().map(|o| o.post_ms).collect();
    saga.sort_by(f64::total_cmp);
    post.sort_by(f64::total_cmp);
    let confirmed = done.iter().filter(|o| o.status == "CONFIRMED").count();
    let report = json!({
        "orders": args.orders,
        "concurrency": args.concurrency,
        "completed": done.len(),
        "confirmed": confirmed,
        "cancelled": done.len() - confirmed,
        "failed": failures.len(),
        "seconds": span_s,
        "client_wall_seconds": wall.as_secs_f64(),
        "sagas_per_second": done.len() as f64 / span_s,
        "saga_ms": percentiles(&saga),
        "post_ms": percentiles(&post),
        "failures": failures.iter().take(10).collect::<Vec<_>>(),
    });
    if context.json {
        return emit(report);
    }
    emit(format!(
        "orders {} at concurrency {}: {} completed ({} confirmed, {} cancelled), {} failed",
        args.orders,
        args.concurrency,
        done.len(),
        confirmed,
        done.len() - confirmed,
        failures.len()
    ))?;
    emit(format!(
        "throughput      {:.1} sagas/s ({:.1} s from first POST to last terminal event)",
        report["sagas_per_second"].as_f64().unwrap_or(0.0),
        span_s
    ))?;
    for (label, key) in [("POST → terminal", "saga_ms"), ("POST /orders", "post_ms")] {
        let p = &report[key];
        emit(format!(
            "{label:<15} p50 {:.0} ms · p90 {:.0} ms · p99 {:.0} ms · max {:.0} ms",
            p["p50"].as_f64().unwrap_or(0.0),
            p["p90"].as_f64().unwrap_or(0.0),
            p["p99"].as_f64().unwrap_or(0.0),
            p["max"].as_f64().unwrap_or(0.0)
        ))?;
    }
    for failure in failures.iter().take(5) {
        emit(format!("failure: {failure}"))?;
    }
    Ok(())
}

async fn one_order(
    http: &reqwest::Client,
    order_url: &str,
    sku: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let body = json!({
        "customer_id": "bench",
        "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 1_000}],
        "currency": "EUR",
        "payment_method": "tok_visa",
        "shipping_address": {"name": "Bench", "line1": "1 Load St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    });
    let sent_at_ms = epoch_ms();
    let sent = Instant::now();
    let response = http
        .post(format!("{order_url}/orders"))
        .json(&body)
        .send()
        .await?;
    let post_ms = sent.elapsed().as_secs_f64() * 1000.0;
    if response.status().as_u16() != 201 {
        bail!(
            "POST /orders: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let order_id = response.json::<Value>().await?["order_id"]
        .as_str()
        .map(str::to_owned)
        .context("no order_id")?;
    let deadline = Instant::now() + timeout;
    loop {
        let order: Value = http
            .get(format!("{order_url}/orders/{order_id}"))
            .send()
            .await?
            .json()
            .await?;
        let status = order["status"].as_str().unwrap_or("").to_owned();
        if status == "CONFIRMED" || status == "CANCELLED" {
            let timeline: Value = http
                .get(format!("{order_url}/orders/{order_id}/timeline"))
                .send()
                .await?
                .json()
                .await?;
            let ended_at_ms = timeline
                .as_array()
                .and_then(|events| {
                    events.iter().find(|e| {
                        matches!(
                            e["event_type"].as_str(),
                            Some("OrderConfirmed" | "OrderCancelled")
                        )
                    })
                })
                .and_then(|e| e["occurred_at"].as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis() as f64)
                .unwrap_or_else(epoch_ms);
            return Ok(Outcome {
                status,
                post_ms,
                saga_ms: (ended_at_ms - sent_at_ms).max(0.0),
                ended_at_ms,
            });
        }
        if Instant::now() > deadline {
            bail!("order {order_id} still {status} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn percentiles(sorted: &[f64]) -> Value {
    let at = |q: f64| -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)})
}

/// A one-line progress bar on stderr, when stderr is a terminal.
async fn show_progress(ended: Arc<AtomicUsize>, total: usize) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    loop {
        let n = ended.load(Ordering::Relaxed);
        let width = 40;
        let filled = n * width / total.max(1);
        eprint!(
            "\r[{}{}] {n}/{total} sagas ended",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if n >= total {
            eprintln!();
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
