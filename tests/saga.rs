//! End to end: the four services started by `make up`, driven over HTTP, checked in all four
//! services and on the topics. Every test uses SKUs of its own, so they run side by side.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_e2e::*;
use saga_events::{EventCodec, EventType, SagaEvent, TopicNames};
use serde_json::Value;

const SAGA_DEADLINE: Duration = Duration::from_secs(60);

fn codec() -> anyhow::Result<EventCodec> {
    Ok(EventCodec::new(&registry_url(), TopicNames::default())?)
}

/// Waits until the order's events on the topics reach `count`, and returns them.
async fn wait_for_events(
    codec: &EventCodec,
    order_id: &str,
    count: usize,
) -> anyhow::Result<Vec<SeenEvent>> {
    wait_for(
        &format!("{count} events of order {order_id} on the topics"),
        SAGA_DEADLINE,
        || async {
            let seen = events_on_topics(codec, order_id).await?;
            let types: Vec<_> = seen.iter().map(|e| e.event.event_type()).collect();
            Ok(((seen.len() >= count).then_some(seen), format!("{types:?}")))
        },
    )
    .await
}

fn types_of(seen: &[SeenEvent]) -> Vec<EventType> {
    seen.iter().map(|e| e.event.event_type()).collect()
}

/// Asserts the order's events are exactly `expected` (as a set: topics interleave), that each is
/// caused by the event named next to it, and that all share the order's correlation id.
fn assert_saga(seen: &[SeenEvent], expected: &[(EventType, Option<EventType>)]) {
    let mut got = types_of(seen);
    got.sort();
    let mut want: Vec<EventType> = expected.iter().map(|(t, _)| *t).collect();
    want.sort();
    assert_eq!(got, want, "events of the order on the topics");
    let by_id: BTreeMap<&str, EventType> = seen
        .iter()
        .map(|e| (e.event.metadata().event_id.as_str(), e.event.event_type()))
        .collect();
    for (event_type, cause) in expected {
        let event = seen
            .iter()
            .find(|e| e.event.event_type() == *event_type)
            .map(|e| &e.event);
        let Some(event) = event else { continue };
        let caused_by = event
            .metadata()
            .causation_id
            .as_deref()
            .and_then(|id| by_id.get(id).copied());
        assert_eq!(caused_by, *cause, "cause of {event_type}");
        assert_eq!(event.metadata().correlation_id, event.order_id());
    }
    for e in seen {
        assert_eq!(e.key, e.event.order_id(), "records are keyed by order id");
        assert_eq!(
            e.topic,
            format!("{}.events", e.event.event_type().publisher().name()),
            "{} on the wrong topic",
            e.event.event_type()
        );
    }
}

fn assert_timeline_matches(timeline: &Value, seen: &[SeenEvent]) {
    let entries = timeline.as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), seen.len(), "timeline: {timeline}");
    let position: BTreeMap<String, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e["event_id"].as_str().map(|id| (id.to_owned(), i)))
        .collect();
    for entry in &entries {
        if let Some(cause) = entry["causation_id"].as_str() {
            let (Some(me), Some(parent)) = (
                entry["event_id"].as_str().and_then(|id| position.get(id)),
                position.get(cause),
            ) else {
                panic!("timeline entry with unknown cause: {entry}");
            };
            assert!(
                parent < me,
                "timeline lists an effect before its cause: {timeline}"
            );
        }
    }
}

#[tokio::test]
async fn happy_path_confirms_and_every_service_agrees() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let (mug, pot) = (unique_sku("mug"), unique_sku("pot"));
    api.set_stock(&mug, 10).await?;
    api.set_stock(&pot, 3).await?;
    let order_id = api
        .place(&order_body(
            &[(&mug, 2, 1_250), (&pot, 1, 3_999)],
            "GB",
            "tok_visa",
        ))
        .await?;

    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(order["cancellation_reason"], Value::Null);
    assert_eq!(order["total_cents"], 6_499);

    let payment = api.payment(&order_id).await?.expect("a payment");
    assert_eq!(payment["status"], "AUTHORIZED");
    assert_eq!(payment["amount_cents"], 6_499);
    let mug_stock = api.stock(&mug).await?.expect("stock");
    assert_eq!(
        (
            mug_stock["on_hand"].as_i64(),
            mug_stock["reserved"].as_i64(),
            mug_stock["available"].as_i64()
        ),
        (Some(10), Some(2), Some(8))
    );
    let pot_stock = api.stock(&pot).await?.expect("stock");
    assert_eq!(pot_stock["reserved"], 1);
    let shipment = api.shipment(&order_id).await?.expect("a shipment");
    assert_eq!(shipment["status"], "SCHEDULED");
    assert_eq!(shipment["country"], "GB");

    use EventType::*;
    let seen = wait_for_events(&codec, &order_id, 5).await?;
    assert_saga(
        &seen,
        &[
            (OrderPlaced, None),
            (PaymentAuthorized, Some(OrderPlaced)),
            (StockReserved, Some(PaymentAuthorized)),
            (ShipmentScheduled, Some(StockReserved)),
            (OrderConfirmed, Some(ShipmentScheduled)),
        ],
    );
    let timeline = wait_for(
        "the timeline to hold all 5 events",
        SAGA_DEADLINE,
        || async {
            let timeline = api.timeline(&order_id).await?.unwrap_or_default();
            let n = timeline.as_array().map_or(0, Vec::len);
            Ok(((n == 5).then(|| timeline.clone()), timeline.to_string()))
        },
    )
    .await?;
    assert_timeline_matches(&timeline, &seen);
    assert_eq!(timeline[0]["event_type"], "OrderPlaced");
    assert_eq!(timeline[4]["event_type"], "OrderConfirmed");
    Ok(())
}

#[tokio::test]
async fn a_declined_payment_cancels_without_touching_stock() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let sku = unique_sku("declined");
    api.set_stock(&sku, 5).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 500)], "GB", "tok_decline"))
        .await?;

    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancellation_reason"], "PAYMENT_DECLINED");
    assert_eq!(
        api.payment(&order_id).await?.expect("payment")["status"],
        "DECLINED"
    );
    assert_eq!(api.stock(&sku).await?.expect("stock")["reserved"], 0);
    assert_eq!(
        api.shipment(&order_id).await?,
        None,
        "no shipment for a declined order"
    );

    use EventType::*;
    let seen = wait_for_events(&codec, &order_id, 3).await?;
    assert_saga(
        &seen,
        &[
            (OrderPlaced, None),
            (PaymentDeclined, Some(OrderPlaced)),
            (OrderCancelled, Some(PaymentDeclined)),
        ],
    );
    Ok(())
}

#[tokio::test]
async fn an_order_above_the_limit_is_declined() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("limit");
    api.set_stock(&sku, 5).await?;
    // The default limit is 1,000,000 cents.
    let order_id = api
        .place(&order_body(&[(&sku, 2, 600_000)], "GB", "tok_visa"))
        .await?;
    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["cancellation_reason"], "PAYMENT_DECLINED", "{order}");
    Ok(())
}

#[tokio::test]
async fn out_of_stock_refunds_and_cancels() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let (plenty, scarce) = (unique_sku("plenty"), unique_sku("scarce"));
    api.set_stock(&plenty, 10).await?;
    api.set_stock(&scarce, 1).await?;
    let order_id = api
        .place(&order_body(
            &[(&plenty, 1, 100), (&scarce, 2, 100)],
            "GB",
            "tok_visa",
        ))
        .await?;

    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancellation_reason"], "OUT_OF_STOCK");
    let payment = api.payment(&order_id).await?.expect("payment");
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(payment["refund_reason"], "OUT_OF_STOCK");
    // All lines or none: the line that was available was not reserved either.
    assert_eq!(api.stock(&plenty).await?.expect("stock")["reserved"], 0);
    assert_eq!(api.stock(&scarce).await?.expect("stock")["reserved"], 0);
    assert_eq!(api.shipment(&order_id).await?, None);

    use EventType::*;
    let seen = wait_for_events(&codec, &order_id, 5).await?;
    assert_saga(
        &seen,
        &[
            (OrderPlaced, None),
            (PaymentAuthorized, Some(OrderPlaced)),
            (StockReservationFailed, Some(PaymentAuthorized)),
            (PaymentRefunded, Some(StockReservationFailed)),
            (OrderCancelled, Some(PaymentRefunded)),
        ],
    );
    let failed = seen.iter().find_map(|e| match &e.event {
        SagaEvent::StockReservationFailed(f) => Some(f.clone()),
        _ => None,
    });
    assert_eq!(
        failed.map(|f| f.unavailable_skus),
        Some(vec![scarce.clone()])
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_shipment_releases_stock_refunds_and_cancels() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let sku = unique_sku("antarctica");
    api.set_stock(&sku, 4).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 3, 2_000)], "AQ", "tok_visa"))
        .await?;

    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(order["cancellation_reason"], "SHIPPING_FAILED");
    let shipment = api.shipment(&order_id).await?.expect("a shipment record");
    assert_eq!(shipment["status"], "FAILED");

    use EventType::*;
    let seen = wait_for_events(&codec, &order_id, 7).await?;
    assert_saga(
        &seen,
        &[
            (OrderPlaced, None),
            (PaymentAuthorized, Some(OrderPlaced)),
            (StockReserved, Some(PaymentAuthorized)),
            (ShipmentFailed, Some(StockReserved)),
            (StockReleased, Some(ShipmentFailed)),
            (PaymentRefunded, Some(ShipmentFailed)),
            (OrderCancelled, Some(PaymentRefunded)),
        ],
    );
    let payment = api.payment(&order_id).await?.expect("payment");
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(payment["refund_reason"], "SHIPPING_FAILED");
    let stock = api.stock(&sku).await?.expect("stock");
    assert_eq!(
        (stock["reserved"].as_i64(), stock["available"].as_i64()),
        (Some(0), Some(4)),
        "{stock}"
    );
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_order_and_refuses_another_body() -> anyhow::Result<()>
{
    let api = Api::from_env()?;
    let sku = unique_sku("idem");
    api.set_stock(&sku, 5).await?;
    let key = format!("key-{}", uuid::Uuid::new_v4());
    let body = order_body(&[(&sku, 1, 700)], "GB", "tok_visa");
    let post = |body: Value| {
        let api = api.clone();
        let key = key.clone();
        async move {
            api.http
                .post(format!("{}/orders", api.order))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
        }
    };

    let first = post(body.clone()).await?;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await?;
    let replay = post(body.clone()).await?;
    assert_eq!(replay.status(), 201);
    let replay: Value = replay.json().await?;
    assert_eq!(
        first["order_id"], replay["order_id"],
        "same key, same body: same order"
    );

    let mut changed = body.clone();
    changed["items"][0]["quantity"] = 2.into();
    let refused = post(changed).await?;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        refused.headers()["content-type"].to_str()?,
        "application/problem+json"
    );
    let problem: Value = refused.json().await?;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Idempotency-Key"),
        "{problem}"
    );

    // Only one order was placed: one payment, one unit reserved.
    let order_id = first["order_id"].as_str().unwrap_or_default().to_owned();
    let order = api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(api.stock(&sku).await?.expect("stock")["reserved"], 1);
    Ok(())
}

#[tokio::test]
async fn two_hundred_orders_for_the_last_fifty_units_never_oversell() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("last50");
    api.set_stock(&sku, 50).await?;
    let placing = (0..200).map(|_| {
        let api = api.clone();
        let body = order_body(&[(&sku, 1, 1_000)], "GB", "tok_visa");
        async move { api.place(&body).await }
    });
    let order_ids: Vec<String> = join_all(placing)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let mut confirmed = 0;
    let mut out_of_stock = Vec::new();
    for order_id in &order_ids {
        let order = api
            .wait_terminal(order_id, Duration::from_secs(180))
            .await?;
        match (
            order["status"].as_str(),
            order["cancellation_reason"].as_str(),
        ) {
            (Some("CONFIRMED"), _) => confirmed += 1,
            (Some("CANCELLED"), Some("OUT_OF_STOCK")) => out_of_stock.push(order_id.clone()),
            other => panic!("order {order_id} ended as {other:?}: {order}"),
        }
    }
    assert_eq!(confirmed, 50, "exactly the stock on hand is sold");
    assert_eq!(out_of_stock.len(), 150);
    for order_id in &out_of_stock {
        let payment = api.payment(order_id).await?.expect("payment");
        assert_eq!(payment["status"], "REFUNDED", "order {order_id}: {payment}");
    }
    let stock = api.stock(&sku).await?.expect("stock");
    assert_eq!(
        (
            stock["on_hand"].as_i64(),
            stock["reserved"].as_i64(),
            stock["available"].as_i64()
        ),
        (Some(50), Some(50), Some(0)),
        "{stock}"
    );
    Ok(())
}

#[tokio::test]
async fn an_event_delivered_twice_changes_nothing() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let sku = unique_sku("twice");
    api.set_stock(&sku, 5).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 2, 900)], "GB", "tok_visa"))
        .await?;
    assert_eq!(
        api.wait_terminal(&order_id, SAGA_DEADLINE).await?["status"],
        "CONFIRMED"
    );
    let before = wait_for_events(&codec, &order_id, 5).await?;
    let payment_before = api.payment(&order_id).await?;

    // Produce the exact same bytes (key, payload, headers) again: OrderPlaced reaches Payment
    // twice, PaymentAuthorized reaches Inventory twice.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let mut copies = Vec::new();
    for original in before.iter().filter(|e| {
        matches!(
            e.event.event_type(),
            EventType::OrderPlaced | EventType::PaymentAuthorized
        )
    }) {
        let headers = original
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            });
        let (partition, offset) = producer
            .send(
                FutureRecord::to(&original.topic)
                    .partition(original.partition)
                    .key(&original.key)
                    .payload(&original.payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .map(|d| (d.partition, d.offset))?;
        let group = match original.event.event_type() {
            EventType::OrderPlaced => "payment-service",
            _ => "inventory-service",
        };
        copies.push((group, original.topic.clone(), partition, offset));
    }
    assert_eq!(copies.len(), 2);

    // Each copy is handled once its consumer group has committed past it.
    for (group, topic, partition, offset) in &copies {
        wait_for(
            &format!("{group} to get past {topic}[{partition}]@{offset}"),
            SAGA_DEADLINE,
            || async {
                let committed = committed_offset(group, topic, *partition)?;
                Ok((
                    committed.filter(|c| c > offset),
                    format!("committed {committed:?}"),
                ))
            },
        )
        .await?;
    }
    let after = events_on_topics(&codec, &order_id).await?;
    let mut produced_after: Vec<_> = types_of(&after);
    produced_after.sort();
    let mut expected: Vec<_> = types_of(&before);
    expected.extend([EventType::OrderPlaced, EventType::PaymentAuthorized]);
    expected.sort();
    assert_eq!(
        produced_after, expected,
        "only the two copies were added: no new reaction"
    );
    assert_eq!(
        api.payment(&order_id).await?,
        payment_before,
        "not charged twice"
    );
    assert_eq!(
        api.stock(&sku).await?.expect("stock")["reserved"],
        2,
        "not reserved twice"
    );
    Ok(())
}

#[tokio::test]
async fn every_event_of_an_order_carries_the_trace_of_its_http_request() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = codec()?;
    let sku = unique_sku("trace");
    api.set_stock(&sku, 5).await?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let response = api
        .http
        .post(format!("{}/orders", api.order))
        .header("traceparent", &traceparent)
        .json(&order_body(&[(&sku, 1, 100)], "AQ", "tok_visa"))
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["trace-id"].to_str()?, trace_id);
    let order_id = response.json::<Value>().await?["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The shipping-failed path: every service reacts, including both compensations.
    let seen = wait_for_events(&codec, &order_id, 7).await?;
    for event in &seen {
        let carried = event
            .headers
            .get("traceparent")
            .and_then(|tp| saga_messaging::trace::trace_id_of_traceparent(tp))
            .unwrap_or("none");
        assert_eq!(
            carried,
            trace_id,
            "{} carries another trace",
            event.event.event_type()
        );
    }
    Ok(())
}

/// `OrderPlaced` v3 carries the customer's e-mail: Order keeps it and Payment, which knows v3,
/// sends the receipt there. Orders without one go through as before.
#[tokio::test]
async fn the_customers_email_travels_to_the_payment_receipt() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("email");
    api.set_stock(&sku, 5).await?;
    let mut body = order_body(&[(&sku, 1, 1200)], "GB", "tok_visa");
    body["customer_email"] = Value::from("ada@example.org");
    let with_email = api.place(&body).await?;
    let without_email = api
        .place(&order_body(&[(&sku, 1, 1200)], "GB", "tok_visa"))
        .await?;
    for order_id in [&with_email, &without_email] {
        let order = api.wait_terminal(order_id, Duration::from_secs(60)).await?;
        assert_eq!(order["status"], "CONFIRMED", "{order}");
    }
    let order = api.order(&with_email).await?.context("the order")?;
    assert_eq!(order["customer_email"], "ada@example.org", "{order}");
    let payment = api.payment(&with_email).await?.context("its payment")?;
    assert_eq!(payment["receipt_email"], "ada@example.org", "{payment}");
    let payment = api.payment(&without_email).await?.context("its payment")?;
    assert_eq!(payment["receipt_email"], Value::Null, "{payment}");
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_problem_documents() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let post = |body: String| {
        let api = api.clone();
        async move {
            api.http
                .post(format!("{}/orders", api.order))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    };
    let cases = [
        ("{not json".to_owned(), 400, ""),
        (r#"{"customer_id":"c"}"#.to_owned(), 422, "missing field"),
        (
            order_body(&[("SKU-1", 0, 100)], "GB", "tok_visa").to_string(),
            422,
            "items[0].quantity",
        ),
        (
            order_body(&[("SKU-1", 1, -1)], "Great Britain", "tok_visa").to_string(),
            422,
            "shipping_address.country",
        ),
        ("x".repeat(200_000), 413, ""),
        (
            {
                let mut body = order_body(&[("SKU-1", 1, 100)], "GB", "tok_visa");
                body["customer_id"] = Value::from("nul\u{0}here");
                body.to_string()
            },
            422,
            "customer_id",
        ),
        (
            {
                let mut body = order_body(&[("SKU-1", 1, 100)], "GB", "tok_visa");
                body["customer_email"] = Value::from("ada at example.org");
                body.to_string()
            },
            422,
            "customer_email",
        ),
    ];
    for (body, status, mentions) in cases {
        let response = post(body).await?;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"].to_str()?,
            "application/problem+json"
        );
        let problem: Value = response.json().await?;
        assert_eq!(problem["status"], status);
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(mentions),
            "{problem}"
        );
    }
    for url in [
        format!("{}/orders/{}", api.order, uuid::Uuid::new_v4()),
        format!("{}/orders/not-an-id", api.order),
        format!("{}/payments/{}", api.payment, uuid::Uuid::new_v4()),
        format!("{}/shipments/{}", api.shipping, uuid::Uuid::new_v4()),
        format!("{}/stock/{}", api.inventory, unique_sku("nothing")),
    ] {
        let response = api.http.get(&url).send().await?;
        assert_eq!(response.status(), 404, "{url}");
        assert_eq!(
            response.headers()["content-type"].to_str()?,
            "application/problem+json"
        );
    }
    // A path segment Postgres could not store is refused at the door, naming it.
    let response = api
        .http
        .get(format!("{}/stock/abc%00def", api.inventory))
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await?;
    assert!(problem.to_string().contains("\"sku\""), "{problem}");
    let below = unique_sku("below");
    api.set_stock(&below, 2).await?;
    let order_id = api
        .place(&order_body(&[(&below, 2, 100)], "GB", "tok_visa"))
        .await?;
    api.wait_terminal(&order_id, SAGA_DEADLINE).await?;
    let refused = api
        .http
        .put(format!("{}/stock/{below}", api.inventory))
        .bearer_auth(admin_token())
        .json(&serde_json::json!({"on_hand": 1}))
        .send()
        .await?;
    assert_eq!(
        refused.status(),
        409,
        "on hand cannot drop below the 2 reserved units"
    );

    // Setting stock is an operator action: no token, or another one, is a 401 that changes
    // nothing.
    for token in [None, Some("not-the-token")] {
        let mut request = api
            .http
            .put(format!("{}/stock/{below}", api.inventory))
            .json(&serde_json::json!({"on_hand": 1000}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 401, "token {token:?}");
        assert_eq!(response.headers()["www-authenticate"].to_str()?, "Bearer");
        assert_eq!(
            response.headers()["content-type"].to_str()?,
            "application/problem+json"
        );
    }
    let stock = api.stock(&below).await?;
    assert_eq!(stock.as_ref().map(|s| &s["on_hand"]), Some(&Value::from(2)));
    Ok(())
}
