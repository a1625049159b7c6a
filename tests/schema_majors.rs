//! A breaking change done right, end to end: `OrderPlaced` major 1 (`saga.order.OrderPlaced`,
//! `currency` and `total_cents`) and major 2 (`saga.order.v2.OrderPlaced`, `total: Money`) side by
//! side on `order.events`, as during a rollout (`ORDER_PLACED_MAJOR=1`) and after it. Every saga
//! path ends alike for both; the timeline and `sagactl tail` say which major each record came
//! as; the read side folds both alike; and a major-1 dead letter redriven after the switch to
//! major 2 completes its saga.

use std::time::Duration;

use anyhow::Context as _;
use saga_e2e::*;
use serde_json::Value;
use tokio::sync::Mutex;

/// These tests restart services; they take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

const SAGA_DEADLINE: Duration = Duration::from_secs(60);
const MAJOR_1: &str = "saga.order.OrderPlaced";
const MAJOR_2: &str = "saga.order.v2.OrderPlaced";

/// Runs `body` with Order writing major 1, then puts Order (and anything `body` stopped or
/// reconfigured) back as `make up` runs it, whatever happened.
async fn during_rollout<F, Fut, T>(body: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    // Orders placed meanwhile get a deadline longer than the restarts and operator steps that
    // follow them (reading a dead-letter topic grows with what earlier tests left there): a
    // deadline passing is not what these tests are about.
    restart(
        "order",
        &[
            ("ORDER_PLACED_MAJOR", "1"),
            ("ORDER_DEADLINE_SECONDS", "300"),
        ],
    )?;
    let outcome = body().await;
    let restored = restart("order", &[]).and_then(|_| stack_ok(&["up"], &[]).map(|_| ()));
    let value = outcome?;
    restored?;
    Ok(value)
}

/// The record Order wrote for the order's `OrderPlaced`, as `sagactl tail` shows it.
fn placed_record(order_id: &str) -> anyhow::Result<Value> {
    let (_, out) = sagactl(
        &[
            "tail",
            "order.events",
            "--from-beginning",
            "--order",
            order_id,
            "--idle-exit",
            "2",
            "--json",
        ],
        false,
    )?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["event_type"] == "OrderPlaced")
        .with_context(|| format!("no OrderPlaced of {order_id} on order.events: {out}"))
}

/// The record name the timeline keeps for the order's `OrderPlaced`.
async fn timeline_schema(api: &Api, order_id: &str) -> anyhow::Result<Value> {
    wait_for(
        &format!("OrderPlaced of {order_id} in its timeline"),
        SAGA_DEADLINE,
        || async {
            let timeline = api.timeline(order_id).await?.unwrap_or(Value::Null);
            let placed = timeline
                .as_array()
                .and_then(|entries| entries.iter().find(|e| e["event_type"] == "OrderPlaced"))
                .map(|entry| entry["schema"].clone());
            Ok((placed, timeline.to_string()))
        },
    )
    .await
}

/// Places one order of every path; returns (path index, order id).
async fn place_every_path(api: &Api, label: &str) -> anyhow::Result<Vec<(usize, String)>> {
    let mut placed = Vec::new();
    for (index, path) in PATHS.iter().enumerate() {
        let sku = unique_sku(&format!("{label}-{}", path.name));
        api.set_stock(&sku, path.stock).await?;
        let order_id = api
            .place(&order_body(
                &[(&sku, 2, 1_500)],
                path.country,
                path.payment_method,
            ))
            .await?;
        placed.push((index, order_id));
    }
    Ok(placed)
}

#[tokio::test]
async fn a_topic_holding_both_majors_runs_every_saga_path_alike() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let api = Api::from_env()?;
    let major_1 = during_rollout(|| place_every_path(&api, "major-1")).await?;
    let major_2 = place_every_path(&api, "major-2").await?;

    for (orders, record) in [(&major_1, MAJOR_1), (&major_2, MAJOR_2)] {
        for (index, order_id) in orders.iter() {
            let path = &PATHS[*index];
            let order = api.wait_terminal(order_id, SAGA_DEADLINE).await?;
            assert_eq!(
                order["status"], path.status,
                "{} as {record}: {order}",
                path.name
            );
            assert_eq!(
                order["cancellation_reason"].as_str(),
                path.reason,
                "{} as {record}: {order}",
                path.name
            );
            let payment = api.payment(order_id).await?.context("a payment")?;
            assert_eq!(payment["amount_cents"], 3_000, "{} as {record}", path.name);
            assert_eq!(payment["currency"], "EUR", "{} as {record}", path.name);
            // What was written, and what the timeline says it was written as.
            assert_eq!(placed_record(order_id)?["record"], record, "{}", path.name);
            assert_eq!(
                timeline_schema(&api, order_id).await?,
                record,
                "{}",
                path.name
            );
            // The read side folds a major-1 OrderPlaced like a major-2 one.
            let history = api
                .wait_history(order_id, path.status, SAGA_DEADLINE)
                .await?;
            assert_eq!(history["total_cents"], 3_000, "{} as {record}", path.name);
            assert_eq!(history["currency"], "EUR", "{} as {record}", path.name);
            assert_eq!(
                history["cancellation_reason"].as_str(),
                path.reason,
                "{} as {record}: {history}",
                path.name
            );
            let placed = history["events"]
                .as_array()
                .and_then(|events| events.iter().find(|e| e["event_type"] == "OrderPlaced"))
                .with_context(|| format!("no OrderPlaced in {history}"))?;
            assert_eq!(placed["written_as"], record, "{}", path.name);
        }
    }
    assert_audit_clean("sagas of both majors of OrderPlaced")?;
    Ok(())
}

#[tokio::test]
async fn a_major_1_dead_letter_redriven_after_the_switch_completes() -> anyhow::Result<()> {
    let _turn = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("major-1-dlq");
    api.set_stock(&sku, 5).await?;
    let rule = format!("payment:sku={sku}:1000:OrderPlaced");
    let order_id = during_rollout(|| async {
        restart("payment", &[("FAULT_INJECTION", rule.as_str())])?;
        let order_id = api
            .place(&order_body(&[(&sku, 1, 900)], "GB", "tok_visa"))
            .await?;
        wait_for_dead_letter_where("payment", &order_id, |letter| {
            letter["order_id"] == order_id.as_str()
        })
        .await?;
        anyhow::Ok(order_id)
    })
    .await?;

    // The switch done (Order writes major 2) and the cause fixed: the major-1 dead letter is
    // redriven and upcast like any record of that major.
    restart("payment", &[])?;
    let letters = dead_letters("payment")?;
    let letter = letters
        .iter()
        .find(|l| l["order_id"] == order_id.as_str())
        .context("the dead letter")?;
    let id = letter["id"].as_str().context("its id")?;
    let (_, shown) = sagactl(&["dlq", "show", "payment", id, "--json"], false)?;
    let shown: Value = serde_json::from_str(shown.trim())?;
    assert_eq!(shown["writer_schema"], MAJOR_1, "{shown}");
    sagactl(&["dlq", "redrive", "payment", "--order", &order_id], false)?;
    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_audit_clean("a major-1 dead letter redriven after the switch")?;
    Ok(())
}
