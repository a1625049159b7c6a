//! Fault injection: real load over HTTP, a real process broken (kill -9, an immediate Postgres
//! shutdown, a broker or registry restart, offsets rewound, poison on the topics, handlers that
//! fail), recovery, and then `sagactl audit` as the oracle: every order ended or explained, money
//! and stock conserved, nothing done twice.
//!
//! These tests stop and start shared processes, so they run one at a time (`SERIAL`), and in a
//! test binary of their own: cargo runs test binaries one after another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_e2e::*;
use saga_events::{
    Address, EventCodec, EventMetadata, OrderPlaced, PaymentAuthorized, SagaEvent,
    ShipmentScheduled, StockLine, StockReserved, TopicNames,
};
use saga_messaging::KafkaSettings;
use saga_messaging::reader::{PartitionReader, committed_offsets};
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

const SETTLE: Duration = Duration::from_secs(180);

/// Rules the retry and dead-letter tests rely on (only builds with the fault-injection feature
/// honour them): Order fails a PaymentAuthorized of a `fault-twice-` SKU twice, Inventory fails a
/// PaymentAuthorized of a `fault-thrice-` SKU three times (as often as it tries before giving up).
const FAULT_RULES: &str =
    "order:sku=fault-twice-:2:PaymentAuthorized,inventory:sku=fault-thrice-:3:PaymentAuthorized";

/// Places `count` orders (one in ten declined, one in ten to Antarctica, the rest good), at most
/// `concurrency` at a time, each under an Idempotency-Key and retried while the Order service is
/// away, so that a crash never loses nor doubles an order. `placed` counts what got a 201.
async fn load(
    api: Api,
    sku: String,
    count: usize,
    concurrency: usize,
    placed: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let sku = sku.clone();
            let placed = placed.clone();
            async move {
                let (country, method) = match i % 10 {
                    0 => ("GB", "tok_decline"),
                    1 => ("AQ", "tok_visa"),
                    _ => ("DE", "tok_visa"),
                };
                let body = order_body(&[(&sku, 1, 1_000)], country, method);
                let key = uuid::Uuid::new_v4().to_string();
                let id = place_until_accepted(&api, &body, &key).await?;
                placed.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn place_until_accepted(api: &Api, body: &Value, key: &str) -> anyhow::Result<String> {
    wait_for(
        "an order to be accepted",
        Duration::from_secs(150),
        || async {
            let response = api
                .http
                .post(format!("{}/orders", api.order))
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await;
            match response {
                Ok(r) if r.status().as_u16() == 201 => {
                    let created: Value = r.json().await?;
                    Ok((
                        created["order_id"].as_str().map(str::to_owned),
                        String::new(),
                    ))
                }
                Ok(r) => Ok((
                    None,
                    format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                )),
                Err(e) => Ok((None, e.to_string())),
            }
        },
    )
    .await
}

async fn wait_all_terminal(api: &Api, order_ids: &[String]) -> anyhow::Result<()> {
    for order_id in order_ids {
        api.wait_terminal(order_id, SETTLE).await?;
    }
    Ok(())
}

/// The oracle: `sagactl audit` must find no violation once sagas have settled.
fn assert_audit_clean(after: &str) -> anyhow::Result<Value> {
    let (clean, out) = sagactl(&["audit", "--settle", "120", "--json"], true)?;
    let report: Value = serde_json::from_str(out.trim()).unwrap_or(Value::String(out.clone()));
    assert!(clean, "audit after {after} found violations:\n{report:#}");
    Ok(report)
}

/// Runs a load of `count` orders, breaks something once `break_after` of them were accepted,
/// repairs it, and requires every order to end and the audit to pass.
async fn break_mid_load(
    label: &str,
    count: usize,
    break_after: usize,
    fault: &[&str],
) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku(label);
    api.set_stock(&sku, count as i64).await?;
    let placed = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(load(api.clone(), sku, count, 8, placed.clone()));
    wait_for(
        &format!("{break_after} orders accepted"),
        Duration::from_secs(60),
        || async {
            let n = placed.load(Ordering::Relaxed);
            Ok(((n >= break_after).then_some(()), format!("{n} accepted")))
        },
    )
    .await?;
    stack_ok(fault, &[])?;
    stack_ok(&["up"], &[])?;
    let order_ids = running.await??;
    assert_eq!(order_ids.len(), count);
    wait_all_terminal(&api, &order_ids).await?;
    assert_audit_clean(label)?;
    Ok(())
}

#[tokio::test]
async fn kill_dash_nine_of_each_service_mid_load() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    for service in ["payment", "inventory", "shipping", "order"] {
        break_mid_load(&format!("kill-{service}"), 80, 25, &["kill", service]).await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_broker_killed_and_restarted_mid_load() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    break_mid_load("kill-kafka", 80, 25, &["kill", "kafka"]).await
}

#[tokio::test]
async fn postgres_stopped_immediately_and_restarted_mid_load() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    break_mid_load("kill-postgres", 80, 25, &["kill", "postgres"]).await
}

#[tokio::test]
async fn the_registry_restarted_mid_load() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    break_mid_load("kill-registry", 80, 25, &["kill", "registry"]).await
}

#[tokio::test]
async fn rewound_consumer_groups_redo_nothing() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("rewind");
    api.set_stock(&sku, 20).await?;
    let order_ids = load(
        api.clone(),
        sku.clone(),
        20,
        8,
        Arc::new(AtomicUsize::new(0)),
    )
    .await?;
    wait_all_terminal(&api, &order_ids).await?;
    let stock_before = api.stock(&sku).await?;

    // Every service's group goes back to the start of every topic it reads: every event is
    // delivered again.
    let services = ["order", "payment", "inventory", "shipping"];
    for service in services {
        stack_ok(&["stop", service], &[])?;
    }
    for service in services {
        stack_ok(
            &[
                "kafka-consumer-groups",
                "--bootstrap-server",
                &bootstrap(),
                "--group",
                &format!("{service}-service"),
                "--reset-offsets",
                "--to-earliest",
                "--all-topics",
                "--execute",
            ],
            &[],
        )?;
    }
    stack_ok(&["up"], &[])?;

    // Wait until every group has read everything again.
    let kafka = KafkaSettings::new(bootstrap());
    let topics = TopicNames::default();
    wait_for("every group to catch up after the rewind", SETTLE, || {
        let kafka = kafka.clone();
        let topics = topics.clone();
        async move {
            let lag = tokio::task::spawn_blocking(move || total_lag(&kafka, &topics)).await??;
            Ok(((lag == 0).then_some(()), format!("{lag} records behind")))
        }
    })
    .await?;
    assert_eq!(
        api.stock(&sku).await?,
        stock_before,
        "stock changed by redelivery"
    );
    assert_audit_clean("rewinding every consumer group")?;
    Ok(())
}

/// Records the four service groups have not committed yet, over the topics each reads.
fn total_lag(kafka: &KafkaSettings, topics: &TopicNames) -> anyhow::Result<i64> {
    use saga_events::Service::*;
    let reader = PartitionReader::new(kafka)?;
    let reads = [
        (Order, vec![Order, Payment, Inventory, Shipping]),
        (Payment, vec![Order, Inventory, Shipping]),
        (Inventory, vec![Payment, Shipping]),
        (Shipping, vec![Inventory]),
    ];
    let mut lag = 0;
    for (service, sources) in reads {
        let group = format!("{}-service", service.name());
        for source in sources {
            let topic = topics.events(source);
            let partitions: Vec<i32> = (0..reader.partition_count(&topic)?).collect();
            for (partition, committed) in committed_offsets(kafka, &group, &topic, &partitions)? {
                let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
                    reader.consumer(),
                    &topic,
                    partition,
                    Duration::from_secs(10),
                )?;
                lag += (high - committed.unwrap_or(0)).max(0);
            }
        }
    }
    Ok(lag)
}

/// One dead letter as `sagactl dlq list --json` prints it.
fn dead_letters(service: &str) -> anyhow::Result<Vec<Value>> {
    let (_, out) = sagactl(&["dlq", "list", service, "--json"], false)?;
    Ok(serde_json::from_str::<Value>(out.trim())?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn wait_for_dead_letter(
    service: &str,
    key: &str,
    source_topic: &str,
) -> anyhow::Result<Value> {
    wait_for(
        &format!("a dead letter of {key} at {service}"),
        Duration::from_secs(90),
        || async {
            let letters = dead_letters(service)?;
            let found = letters
                .iter()
                .find(|l| {
                    l["order_id"].as_str() == Some(key)
                        && l["source"].as_str().unwrap_or("").starts_with(source_topic)
                })
                .cloned();
            Ok((
                found,
                format!("{} dead letters at {service}", letters.len()),
            ))
        },
    )
    .await
}

#[tokio::test]
async fn poison_lands_in_the_right_dead_letter_topics_and_orders_keep_flowing() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;
    let producer: FutureProducer = KafkaSettings::new(bootstrap()).producer_config().create()?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let address = Address {
        name: "P".into(),
        line1: "1".into(),
        city: "C".into(),
        postal_code: "0".into(),
        country: "GB".into(),
    };
    let lines = vec![StockLine {
        sku: "poison".into(),
        quantity: 1,
    }];
    // A valid event whose order id is not an order id: every service that acts on it fails.
    let impossible = |topic: &str| -> SagaEvent {
        let order_id = format!("poison-{tag}-content-{topic}");
        let metadata = EventMetadata::first(&order_id, "poison");
        match topic {
            "order.events" => OrderPlaced {
                metadata,
                order_id,
                customer_id: "c".into(),
                items: vec![],
                currency: "EUR".into(),
                total_cents: 1,
                payment_method: "tok_visa".into(),
                shipping_address: address.clone(),
            }
            .into(),
            "payment.events" => PaymentAuthorized {
                metadata,
                order_id,
                payment_id: "p".into(),
                amount_cents: 1,
                currency: "EUR".into(),
                items: lines.clone(),
                shipping_address: address.clone(),
            }
            .into(),
            "inventory.events" => StockReserved {
                metadata,
                order_id,
                items: lines.clone(),
                shipping_address: address.clone(),
            }
            .into(),
            _ => ShipmentScheduled {
                metadata,
                order_id,
                shipment_id: "s".into(),
                country: "GB".into(),
            }
            .into(),
        }
    };
    // Who reads each topic, and who acts on its impossible event.
    let readers: BTreeMap<&str, (Vec<&str>, &str)> = BTreeMap::from([
        ("order.events", (vec!["order", "payment"], "payment")),
        ("payment.events", (vec!["order", "inventory"], "inventory")),
        (
            "inventory.events",
            (vec!["order", "payment", "shipping"], "shipping"),
        ),
        (
            "shipping.events",
            (vec!["order", "payment", "inventory"], "order"),
        ),
    ]);
    for topic in readers.keys() {
        let random: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
        let unknown_schema = vec![0, 0x7f, 0xff, 0xff, 0x02, 1, 2, 3, 4];
        let valid = codec.encode(&impossible(topic)).await?;
        for (kind, payload) in [
            ("bytes", random),
            ("schema", unknown_schema),
            ("content", valid.payload.clone()),
        ] {
            let key = if kind == "content" {
                valid.key.clone()
            } else {
                format!("poison-{tag}-{kind}-{topic}")
            };
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
    }

    for (topic, (consumers, acting)) in &readers {
        for service in consumers {
            for kind in ["bytes", "schema"] {
                let letter =
                    wait_for_dead_letter(service, &format!("poison-{tag}-{kind}-{topic}"), topic)
                        .await?;
                assert_eq!(letter["error_kind"], "Undecodable", "{letter}");
                assert_eq!(
                    letter["attempts"], 1,
                    "undecodable goes straight to the DLQ: {letter}"
                );
            }
        }
        let letter =
            wait_for_dead_letter(acting, &format!("poison-{tag}-content-{topic}"), topic).await?;
        assert_eq!(letter["error_kind"], "Permanent", "{letter}");
        assert_eq!(letter["attempts"], 3, "retried before giving up: {letter}");
        assert!(
            letter["error"]
                .as_str()
                .unwrap_or("")
                .contains("not a UUID"),
            "{letter}"
        );
        assert!(
            !letter["first_failure"].as_str().unwrap_or("").is_empty(),
            "{letter}"
        );
    }

    // The partitions kept flowing: a new order completes.
    let api = Api::from_env()?;
    let sku = unique_sku("after-poison");
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;
    assert_eq!(
        api.wait_terminal(&order_id, SETTLE).await?["status"],
        "CONFIRMED"
    );
    assert_audit_clean("poison messages")?;
    Ok(())
}

/// Restarts Order and Inventory with the fault rules (other services keep running).
fn with_fault_rules() -> anyhow::Result<()> {
    for service in ["order", "inventory"] {
        stack_ok(&["stop", service], &[])?;
    }
    stack_ok(&["up"], &[("FAULT_INJECTION", FAULT_RULES)])?;
    Ok(())
}

#[tokio::test]
async fn a_handler_failing_twice_completes_through_the_retry_topic_in_order() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    with_fault_rules()?;
    let api = Api::from_env()?;
    let sku = format!(
        "fault-twice-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;
    let order = api.wait_terminal(&order_id, SETTLE).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");

    // Order failed PaymentAuthorized twice: two records on order.retry, attempts 1 and 2.
    wait_for(
        "both retry records of the order",
        Duration::from_secs(30),
        || {
            let order_id = order_id.clone();
            async move {
                let attempts =
                    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
                        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
                        Ok(reader
                            .records_with_key("order.retry", &order_id)?
                            .into_iter()
                            .map(|r| {
                                r.headers
                                    .get("saga-attempts")
                                    .unwrap_or_default()
                                    .to_owned()
                            })
                            .collect())
                    })
                    .await??;
                Ok((
                    (attempts == ["1", "2"]).then_some(()),
                    format!("attempts {attempts:?}"),
                ))
            }
        },
    )
    .await?;

    // The later events of the order waited behind it at Order: they were handled after it.
    let handled = orders_inbox(&order_id).await?;
    let position = |t: &str| handled.iter().position(|h| h == t);
    let authorized = position("PaymentAuthorized").expect("handled");
    for later in ["StockReserved", "ShipmentScheduled", "OrderConfirmed"] {
        let at = position(later).unwrap_or_else(|| panic!("{later} never handled: {handled:?}"));
        assert!(
            at > authorized,
            "{later} overtook the retried PaymentAuthorized: {handled:?}"
        );
    }
    assert_audit_clean("a handler failing twice")?;
    Ok(())
}

/// Event types the Order service handled for `order_id`, in the order it handled them.
async fn orders_inbox(order_id: &str) -> anyhow::Result<Vec<String>> {
    let pool = sqlx_pool("postgres://orders:orders@127.0.0.1:5432/orders").await?;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT i.event_type FROM inbox i JOIN timeline t ON t.event_id = i.event_id
         WHERE t.order_id = $1 ORDER BY i.processed_at",
    )
    .bind(order_id)
    .fetch_all(&pool)
    .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

async fn sqlx_pool(url: &str) -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?)
}

#[tokio::test]
async fn a_handler_failing_for_good_is_dead_lettered_and_a_redrive_completes_the_saga()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_fault_rules()?;
    let api = Api::from_env()?;
    let sku = format!(
        "fault-thrice-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;

    let letter = wait_for_dead_letter("inventory", &order_id, "payment.events").await?;
    assert_eq!(letter["event_type"], "PaymentAuthorized");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(
        api.order(&order_id).await?.expect("order")["status"],
        "PENDING"
    );

    // The audit explains the pending order instead of calling it a violation.
    let (_, out) = sagactl(&["audit", "--json"], true)?;
    let report: Value = serde_json::from_str(out.trim())?;
    let explained = report["explained"].to_string();
    assert!(
        explained.contains(&order_id) && explained.contains("inventory"),
        "{report:#}"
    );
    assert!(
        !report["violations"].to_string().contains(&order_id),
        "{report:#}"
    );

    // `show` decodes it with its writer schema.
    let id = letter["id"].as_str().unwrap_or_default();
    let (_, shown) = sagactl(&["dlq", "show", "inventory", id, "--json"], false)?;
    let shown: Value = serde_json::from_str(shown.trim())?;
    assert_eq!(shown["value"]["order_id"], order_id.as_str());
    assert_eq!(shown["headers"]["saga-source-topic"], "payment.events");

    // A dry run changes nothing; the redrive (the fault has been used up: lifted) ends the saga.
    let (_, dry) = sagactl(
        &[
            "dlq",
            "redrive",
            "inventory",
            "--order",
            &order_id,
            "--dry-run",
            "--json",
        ],
        false,
    )?;
    assert!(dry.contains(&order_id), "{dry}");
    assert_eq!(
        api.order(&order_id).await?.expect("order")["status"],
        "PENDING"
    );
    sagactl(
        &["dlq", "redrive", "inventory", "--order", &order_id],
        false,
    )?;
    let order = api.wait_terminal(&order_id, SETTLE).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(api.stock(&sku).await?.expect("stock")["reserved"], 1);
    assert_audit_clean("a dead letter and its redrive")?;
    Ok(())
}
