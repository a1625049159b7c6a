//! Placing the orders: closed loop (a fixed number in flight) or open loop (on a fixed schedule,
//! latency counted from when each order was due, so that a slow system cannot flatter itself by
//! placing fewer orders: no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::watch::Sagas;

/// What became of one order.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order_id: String,
    pub post_ms: f64,
    /// From sending the POST (closed loop) or from when the order was due (open loop) to the
    /// saga's last event.
    pub saga_ms: f64,
    pub confirmed: bool,
    pub ended_at_ms: i64,
}

/// Everything an order needs to be placed and followed.
#[derive(Debug, Clone)]
pub struct Placer {
    pub http: reqwest::Client,
    pub order_url: String,
    pub sku: String,
    pub sagas: Sagas,
    pub timeout: Duration,
    pub ended: Arc<AtomicUsize>,
}

impl Placer {
    fn body(&self) -> Value {
        json!({
            "customer_id": "bench",
            "items": [{"sku": self.sku, "quantity": 1, "unit_price_cents": 1_000}],
            "currency": "EUR",
            "payment_method": "tok_visa",
            "shipping_address": {"name": "Bench", "line1": "1 Load St", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"}
        })
    }

    /// Places one order and waits for its saga to end. `due_ms` is when an open loop meant to
    /// send it.
    pub async fn one(&self, due_ms: Option<f64>) -> anyhow::Result<Placed> {
        let sent_ms = epoch_ms();
        let sent = Instant::now();
        let response = self
            .http
            .post(format!("{}/orders", self.order_url))
            .json(&self.body())
            .send()
            .await?;
        let post_ms = sent.elapsed().as_secs_f64() * 1000.0;
        if response.status().as_u16() != 201 {
            bail!(
                "POST /orders: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let order_id = response.json::<Value>().await?["order_id"]
            .as_str()
            .map(str::to_owned)
            .context("the answer has no order_id")?;
        let ending = tokio::time::timeout(self.timeout, self.sagas.ending(&order_id))
            .await
            .map_err(|_| anyhow::anyhow!("order {order_id} did not end within {:?}", self.timeout))?
            .context("the topic watcher stopped")?;
        self.ended.fetch_add(1, Ordering::Relaxed);
        let from = due_ms.unwrap_or(sent_ms);
        Ok(Placed {
            order_id,
            post_ms,
            saga_ms: (ending.occurred_at_ms as f64 - from).max(0.0),
            confirmed: ending.confirmed,
            ended_at_ms: ending.occurred_at_ms,
        })
    }
}

/// `orders` orders with at most `concurrency` sagas in flight.
pub async fn closed_loop(
    placer: &Placer,
    orders: usize,
    concurrency: usize,
) -> Vec<anyhow::Result<Placed>> {
    futures::stream::iter(0..orders)
        .map(|_| placer.one(None))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// `rate` orders per second for `duration`, each sent when due whatever the others are doing
/// (up to `max_in_flight` at once, so that a stalled system cannot exhaust the machine).
pub async fn open_loop(
    placer: &Placer,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> Vec<anyhow::Result<Placed>> {
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let start = tokio::time::Instant::now();
    let start_ms = epoch_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let due_ms = start_ms + interval.as_secs_f64() * 1000.0 * i as f64;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let placer = placer.clone();
        tasks.spawn(async move {
            let placed = placer.one(Some(due_ms)).await;
            drop(slot);
            placed
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(anyhow::Error::from).and_then(|r| r));
    }
    results
}

pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
