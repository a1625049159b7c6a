//! End to end: the read side (`history`, port 8085) as `make up` runs it, projecting the orders
//! these tests place. Each saga path as of just before and just after each of its events; the
//! whole system as of a moment between two events; orders by customer and status, page by page;
//! reading one's own write, and the answer while the projection is held back; a poison record
//! dead-lettered while the projection goes on; and a kill -9 mid-load after which every view
//! still agrees with its events.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::join_all;
use saga_e2e::*;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::{Value, json};
use tokio::sync::RwLock;

/// The test that kills the read side takes this exclusively; the others share it.
static STACK: RwLock<()> = RwLock::const_new(());

const DEADLINE: Duration = Duration::from_secs(90);

/// Places an order; returns its id and the `Saga-Event-Id` of its `OrderPlaced`.
async fn place(api: &Api, body: &Value) -> anyhow::Result<(String, String)> {
    let response = api
        .http
        .post(format!("{}/orders", api.order))
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let event_id = response
        .headers()
        .get("saga-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    if status.as_u16() != 201 {
        bail!("POST /orders: {status} {text}");
    }
    let created: Value = serde_json::from_str(&text)?;
    let order_id = created["order_id"]
        .as_str()
        .with_context(|| format!("no order_id in {text}"))?
        .to_owned();
    Ok((order_id, event_id.context("no Saga-Event-Id header")?))
}

fn time_of(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = value
        .as_str()
        .with_context(|| format!("not a time: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

fn query_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn event_ids(body: &Value) -> BTreeSet<String> {
    body["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the order right after placing it: the read waits for its own write.
async fn read_own_write(api: &Api, order_id: &str, event_id: &str) -> anyhow::Result<()> {
    let (code, body) = api
        .history_order(order_id, &format!("wait_ms=10000&min_event={event_id}"))
        .await?;
    assert_eq!(
        code, 200,
        "reading {order_id} right after placing it: {body}"
    );
    assert!(
        event_ids(&body).contains(event_id),
        "the answer holds the OrderPlaced it waited for: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn every_path_as_of_just_before_and_just_after_each_of_its_events() -> anyhow::Result<()> {
    let _shared = STACK.read().await;
    let api = Api::from_env()?;
    let mut placed = Vec::new();
    for path in &PATHS {
        let sku = unique_sku(&format!("hist-{}", path.name));
        api.set_stock(&sku, path.stock).await?;
        let (order_id, event_id) = place(
            &api,
            &order_body(&[(&sku, 2, 1_500)], path.country, path.payment_method),
        )
        .await?;
        read_own_write(&api, &order_id, &event_id).await?;
        placed.push((path, order_id));
    }
    for (path, order_id) in &placed {
        let order = api.wait_terminal(order_id, DEADLINE).await?;
        assert_eq!(order["status"], path.status, "{}: {order}", path.name);
        let now = api.wait_history(order_id, path.status, DEADLINE).await?;
        assert_eq!(
            now["cancellation_reason"].as_str(),
            path.reason,
            "{}: {now}",
            path.name
        );
        assert_eq!(now["total_cents"], 3_000, "{}: {now}", path.name);
        assert_eq!(now["customer_id"], "cust-e2e", "{}", path.name);
        let events = now["events"].as_array().cloned().unwrap_or_default();
        assert!(events.len() >= 2, "{}: {now}", path.name);
        for event in &events {
            let id = event["event_id"].as_str().unwrap_or_default();
            let kind = event["event_type"].as_str().unwrap_or_default();
            let at = time_of(&event["occurred_at"])?;
            let before_at = query_time(at - chrono::Duration::milliseconds(1));
            let (code, before) = api
                .history_order(order_id, &format!("as_of={before_at}"))
                .await?;
            if kind == "OrderPlaced" {
                assert_eq!(code, 404, "{}: before it was placed: {before}", path.name);
                continue;
            }
            assert_eq!(code, 200, "{}: just before {kind}: {before}", path.name);
            assert!(
                !event_ids(&before).contains(id),
                "{}: just before {kind} it is not there: {before}",
                path.name
            );
            let (code, after) = api
                .history_order(order_id, &format!("as_of={}", query_time(at)))
                .await?;
            assert_eq!(code, 200, "{}: just after {kind}: {after}", path.name);
            assert!(
                event_ids(&after).contains(id),
                "{}: as of {kind} it is there: {after}",
                path.name
            );
            if matches!(kind, "OrderConfirmed" | "OrderCancelled") {
                assert_eq!(
                    before["status"], "PENDING",
                    "{}: just before Order ended it",
                    path.name
                );
                assert_eq!(
                    after["status"], path.status,
                    "{}: as Order ended it",
                    path.name
                );
            }
        }
    }
    Ok(())
}

async fn stats_as_of(api: &Api, at: DateTime<Utc>) -> anyhow::Result<Value> {
    let url = format!("{}/history/stats?as_of={}", api.history, query_time(at));
    api.get_json(&url)
        .await?
        .with_context(|| format!("GET {url}: 404"))
}

/// The time of the order's event of `kind` on the read side.
fn event_time(order: &Value, kind: &str) -> anyhow::Result<DateTime<Utc>> {
    let event = order["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event_type"] == kind))
        .with_context(|| format!("no {kind} in {order}"))?;
    time_of(&event["occurred_at"])
}

#[tokio::test]
async fn the_whole_system_as_of_a_moment_between_two_events() -> anyhow::Result<()> {
    let _shared = STACK.read().await;
    let api = Api::from_env()?;
    // Units held per SKU single out this test's orders among everyone else's.
    let kept = unique_sku("hist-held");
    let released = unique_sku("hist-released");
    api.set_stock(&kept, 5).await?;
    api.set_stock(&released, 5).await?;
    let (confirmed, _) = place(&api, &order_body(&[(&kept, 2, 700)], "GB", "tok_visa")).await?;
    let (failed, _) = place(&api, &order_body(&[(&released, 3, 700)], "AQ", "tok_visa")).await?;
    let confirmed = api.wait_history(&confirmed, "CONFIRMED", DEADLINE).await?;
    let failed = api.wait_history(&failed, "CANCELLED", DEADLINE).await?;

    let reserved_at = event_time(&confirmed, "StockReserved")?;
    let before = stats_as_of(&api, reserved_at - chrono::Duration::milliseconds(1)).await?;
    assert!(
        before["held_units"].get(&kept).is_none(),
        "nothing held just before the reservation: {before}"
    );
    let after = stats_as_of(&api, reserved_at).await?;
    assert_eq!(
        after["held_units"][&kept], 2,
        "held as of the reservation: {after}"
    );

    let reserved_at = event_time(&failed, "StockReserved")?;
    let released_at = event_time(&failed, "StockReleased")?;
    let between = stats_as_of(&api, reserved_at).await?;
    assert_eq!(
        between["held_units"][&released], 3,
        "held between: {between}"
    );
    let later = stats_as_of(&api, released_at).await?;
    assert!(
        later["held_units"].get(&released).is_none(),
        "released as of the release: {later}"
    );

    // Each moment's figures agree with themselves.
    for stats in [&before, &after, &between, &later] {
        let by_status: i64 = stats["by_status"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(-1);
        assert_eq!(Some(by_status), stats["orders"].as_i64(), "{stats}");
        let by_reason: i64 = stats["by_cancellation_reason"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(-1);
        assert_eq!(
            Some(by_reason),
            stats["by_status"]["CANCELLED"].as_i64(),
            "{stats}"
        );
    }
    assert!(
        after["orders"].as_i64() >= before["orders"].as_i64(),
        "orders placed by a later moment include the earlier ones"
    );
    Ok(())
}

async fn page(api: &Api, query: &str) -> anyhow::Result<(u16, Value)> {
    let response = api
        .http
        .get(format!("{}/history/orders?{query}", api.history))
        .send()
        .await?;
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await?;
    if code != 200 {
        assert_eq!(content_type, "application/problem+json", "{query}: {body}");
    }
    Ok((code, body))
}

#[tokio::test]
async fn orders_by_customer_and_status_page_by_page() -> anyhow::Result<()> {
    let _shared = STACK.read().await;
    let api = Api::from_env()?;
    let customer = format!("hist-cust-{}", uuid::Uuid::new_v4().simple());
    let sku = unique_sku("hist-pages");
    api.set_stock(&sku, 50).await?;
    let mut placed = Vec::new();
    for method in [
        "tok_visa",
        "tok_decline",
        "tok_visa",
        "tok_decline",
        "tok_visa",
    ] {
        let mut body = order_body(&[(&sku, 1, 900)], "GB", method);
        body["customer_id"] = json!(customer);
        let (order_id, _) = place(&api, &body).await?;
        let status = if method == "tok_visa" {
            "CONFIRMED"
        } else {
            "CANCELLED"
        };
        placed.push((order_id, status));
    }
    for (order_id, status) in &placed {
        api.wait_history(order_id, status, DEADLINE).await?;
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for expected in [2, 2, 1] {
        let mut query = format!("customer_id={customer}&limit=2");
        if let Some(cursor) = &after {
            query.push_str(&format!("&after={cursor}"));
        }
        let (code, body) = page(&api, &query).await?;
        assert_eq!(code, 200, "{body}");
        let orders = body["orders"].as_array().cloned().unwrap_or_default();
        assert_eq!(orders.len(), expected, "a page of {expected}: {body}");
        seen.extend(orders);
        after = body["next"].as_str().map(str::to_owned);
    }
    assert!(after.is_none(), "the last page says so");
    let ids: BTreeSet<&str> = seen.iter().filter_map(|o| o["order_id"].as_str()).collect();
    let expected: BTreeSet<&str> = placed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, expected, "every order once, across the pages");
    let times: Vec<DateTime<Utc>> = seen
        .iter()
        .map(|o| time_of(&o["placed_at"]))
        .collect::<anyhow::Result<_>>()?;
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    let (_, confirmed) = page(&api, &format!("customer_id={customer}&status=CONFIRMED")).await?;
    assert_eq!(
        confirmed["orders"].as_array().map(Vec::len),
        Some(3),
        "{confirmed}"
    );
    let oldest = times.last().copied().context("no orders")?;
    let (_, none) = page(
        &api,
        &format!("customer_id={customer}&placed_to={}", query_time(oldest)),
    )
    .await?;
    assert_eq!(
        none["orders"].as_array().map(Vec::len),
        Some(0),
        "placed_to is exclusive"
    );
    let (_, all) = page(
        &api,
        &format!("customer_id={customer}&placed_from={}", query_time(oldest)),
    )
    .await?;
    assert_eq!(
        all["orders"].as_array().map(Vec::len),
        Some(5),
        "placed_from is inclusive"
    );

    for bad in [
        "status=SHIPPED",
        "limit=0",
        "after=yesterday",
        "placed_from=noon",
    ] {
        let (code, body) = page(&api, bad).await?;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn a_read_waits_for_its_write_and_says_how_far_behind_the_projection_is() -> anyhow::Result<()>
{
    let _shared = STACK.read().await;
    let api = Api::from_env()?;
    let sku = unique_sku("hist-ryw");
    api.set_stock(&sku, 5).await?;
    let projection = HeldProjection::hold().await?;
    let held = async {
        let (order_id, event_id) =
            place(&api, &order_body(&[(&sku, 1, 500)], "GB", "tok_visa")).await?;
        let (code, body) = api
            .history_order(&order_id, &format!("wait_ms=1500&min_event={event_id}"))
            .await?;
        Ok::<_, anyhow::Error>((order_id, event_id, code, body))
    }
    .await;
    projection.release().await?;
    let (order_id, event_id, code, body) = held?;
    assert_eq!(code, 503, "not projected while held back: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("records behind"),
        "the answer says how far behind: {body}"
    );
    read_own_write(&api, &order_id, &event_id).await?;

    let (code, body) = api
        .history_order(&uuid::Uuid::new_v4().to_string(), "wait_ms=3000")
        .await?;
    assert_eq!(
        code, 404,
        "an order no one placed, once the projection has caught up: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_poison_record_goes_to_the_dead_letter_topic_and_the_projection_goes_on()
-> anyhow::Result<()> {
    let _shared = STACK.read().await;
    let api = Api::from_env()?;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let key = format!("hist-poison-{}", uuid::Uuid::new_v4());
    let landed = produce(
        &producer,
        "order.events",
        key.as_bytes(),
        b"not an event",
        &saga_messaging::Headers::new(),
    )
    .await?;
    let letter = wait_for("the poison in history.dlq", DEADLINE, || async {
        let reader = PartitionReader::new(&saga_messaging::KafkaSettings::new(bootstrap()))?;
        let letters = reader.records_with_key("history.dlq", &key)?;
        let seen = format!("{} letters with the key", letters.len());
        Ok((letters.into_iter().next(), seen))
    })
    .await?;
    assert_eq!(letter.payload, b"not an event", "the bytes, as they were");
    assert_eq!(letter.headers.get("saga-service"), Some("history"));
    assert!(
        letter
            .headers
            .get("saga-error")
            .is_some_and(|e| e.contains("cannot decode")),
        "the reason: {:?}",
        letter.headers.get("saga-error")
    );
    // An order whose OrderPlaced travels the same partition is projected after it.
    let order = an_order_on_partition(&api, landed.partition).await?;
    let order_id = order["order_id"].as_str().context("order id")?;
    api.wait_history(order_id, "CONFIRMED", DEADLINE).await?;
    Ok(())
}

#[tokio::test]
async fn after_a_kill_9_mid_load_every_view_agrees_with_its_events() -> anyhow::Result<()> {
    let _alone = STACK.write().await;
    let api = Api::from_env()?;
    let customer = format!("hist-kill-{}", uuid::Uuid::new_v4().simple());
    let sku = unique_sku("hist-kill");
    api.set_stock(&sku, 1_000).await?;
    let orders = join_all((0..40).map(|i| {
        let api = api.clone();
        let mut body = order_body(
            &[(&sku, 1, 400)],
            if i % 5 == 0 { "AQ" } else { "GB" },
            if i % 4 == 0 {
                "tok_decline"
            } else {
                "tok_visa"
            },
        );
        body["customer_id"] = json!(customer);
        async move {
            if i == 20 {
                stack_blocking(&["kill", "history"], &[]).await?;
            }
            place(&api, &body).await
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    stack_blocking(&["up"], &[]).await?;

    for (order_id, _) in &orders {
        let order = api.wait_terminal(order_id, DEADLINE).await?;
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        let shown = api.wait_history(order_id, &status, DEADLINE).await?;
        assert_eq!(
            shown["cancellation_reason"], order["cancellation_reason"],
            "{order_id}: {shown}"
        );
    }
    // The list (the order_view table) agrees with each order folded from its log.
    let (_, listed) = page(&api, &format!("customer_id={customer}&limit=100")).await?;
    let listed = listed["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), orders.len(), "every order listed once");
    for summary in &listed {
        let order_id = summary["order_id"].as_str().unwrap_or_default();
        let (_, folded) = api.history_order(order_id, "").await?;
        for field in [
            "status",
            "cancellation_reason",
            "compensation",
            "total_cents",
        ] {
            assert_eq!(
                summary[field], folded[field],
                "{order_id} {field}: {summary} vs {folded}"
            );
        }
        assert_eq!(
            summary["events"].as_u64(),
            folded["events"].as_array().map(|e| e.len() as u64),
            "{order_id}: {summary} vs {folded}"
        );
    }
    Ok(())
}
