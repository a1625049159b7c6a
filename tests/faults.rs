//! Fault injection: real load over HTTP, a real process broken (kill -9, an immediate Postgres
//! shutdown, a broker or registry restart, offsets rewound, poison on the topics, handlers that
//! fail), recovery, and then `sagactl audit` as the oracle: every order ended or explained, money
//! and stock conserved, nothing done twice.
//!
//! These tests stop and start shared processes, so they run one at a time (`SERIAL`), and in a
//! test binary of their own: cargo runs test binaries one after another.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use saga_e2e::*;
use saga_messaging::KafkaSettings;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Rules the retry and dead-letter tests rely on (only builds with the fault-injection feature
/// honour them): Order fails a PaymentAuthorized of a `fault-twice-` SKU twice, Inventory fails a
/// PaymentAuthorized of a `fault-thrice-` SKU three times (as often as it tries before giving up),
/// Payment panics once on an OrderPlaced of a `panic-` SKU.
const FAULT_RULES: &str = "order:sku=fault-twice-:2:PaymentAuthorized,\
     inventory:sku=fault-thrice-:3:PaymentAuthorized,\
     payment:sku=panic-:1:OrderPlaced:panic";

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
                let id =
                    place_until_accepted(&api, std::slice::from_ref(&api.order), 0, &body, &key)
                        .await?;
                placed.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn wait_all_terminal(api: &Api, order_ids: &[String]) -> anyhow::Result<()> {
    for order_id in order_ids {
        api.wait_terminal(order_id, SETTLE).await?;
    }
    Ok(())
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
    let running = tokio::spawn(load(api.clone(), sku.clone(), count, 8, placed.clone()));
    wait_counted(&placed, break_after).await?;
    stack_ok(fault, &[])?;
    stack_ok(&["up"], &[])?;
    let order_ids = running.await??;
    assert_placed_once_each(&order_ids, count, &sku).await?;
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
    wait_for(
        "every group to catch up after the rewind",
        SETTLE,
        || async {
            let lag = tokio::task::spawn_blocking(total_lag).await??;
            Ok(((lag == 0).then_some(()), format!("{lag} records behind")))
        },
    )
    .await?;
    assert_eq!(
        api.stock(&sku).await?,
        stock_before,
        "stock changed by redelivery"
    );
    assert_audit_clean("rewinding every consumer group")?;
    Ok(())
}

/// Restarts the services the fault rules name (Shipping keeps running). Order gets a deadline
/// long enough that a saga held by a dead letter waits for its redrive instead of timing out
/// (`tests/deadlines.rs` covers the timeouts).
fn with_fault_rules() -> anyhow::Result<()> {
    for service in ["order", "inventory", "payment"] {
        stack_ok(&["stop", service], &[])?;
    }
    stack_ok(
        &["up"],
        &[
            ("FAULT_INJECTION", FAULT_RULES),
            ("ORDER_DEADLINE_SECONDS", "600"),
        ],
    )?;
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
    let pool = service_db("orders").await?;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT i.event_type FROM inbox i JOIN timeline t ON t.event_id = i.event_id
         WHERE t.order_id = $1 ORDER BY i.processed_at",
    )
    .bind(order_id)
    .fetch_all(&pool)
    .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
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

    // A dry run changes nothing (nothing is produced to the retry topic); the redrive (the fault
    // has been used up: lifted) ends the saga.
    let retry_before = end_offsets("inventory.retry")?;
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
        end_offsets("inventory.retry")?,
        retry_before,
        "a dry run produced to the retry topic"
    );
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

/// A reaction that panics fails its event, not its partition: the event is retried (and here
/// succeeds), and the partition goes on with later orders.
#[tokio::test]
async fn a_panicking_reaction_is_retried_and_its_partition_keeps_flowing() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_fault_rules()?;
    let api = Api::from_env()?;
    let sku = format!("panic-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;
    let order = api.wait_terminal(&order_id, SETTLE).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let key = order_id.clone();
    let retries = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
        Ok(reader
            .records_with_key("payment.retry", &key)?
            .iter()
            .map(|r| r.headers.get("saga-error").unwrap_or_default().to_owned())
            .collect())
    })
    .await??;
    assert!(
        retries.len() == 1 && retries[0].contains("panicked"),
        "the panic was one failed attempt, retried: {retries:?}"
    );
    let partition = saga_messaging::kafka::partition_for(order_id.as_bytes(), 6);
    let later = an_order_on_partition(&api, partition).await?;
    assert_eq!(later["status"], "CONFIRMED", "{later}");
    assert_audit_clean("a panicking reaction")?;
    Ok(())
}

/// The value of `name` (an unlabelled gauge) on a service's `/metrics`.
async fn gauge(api: &Api, base: &str, name: &str) -> anyhow::Result<Option<f64>> {
    let text = api
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    }))
}

/// While the broker is away, the outbox's gauges keep counting: what `SagaOutboxStale` and
/// `SagaOutboxBacklog` fire on must not freeze precisely when nothing can be published.
#[tokio::test]
async fn the_outbox_gauges_keep_counting_while_the_broker_is_away() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("broker-away-gauges");
    api.set_stock(&sku, 5).await?;
    stack_ok(&["kill", "kafka"], &[])?;
    let outcome = async {
        // Order accepts the order: its OrderPlaced waits in the outbox.
        let order_id = api
            .place(&order_body(&[(&sku, 1, 300)], "GB", "tok_visa"))
            .await?;
        wait_for(
            "Order's outbox gauges to show the row waiting",
            Duration::from_secs(60),
            || async {
                let backlog = gauge(&api, &api.order, "saga_outbox_backlog").await?;
                let oldest =
                    gauge(&api, &api.order, "saga_outbox_oldest_unpublished_seconds").await?;
                let waiting = backlog.is_some_and(|b| b >= 1.0) && oldest.is_some_and(|o| o >= 5.0);
                Ok((
                    waiting.then_some(()),
                    format!("backlog {backlog:?}, oldest {oldest:?}"),
                ))
            },
        )
        .await?;
        anyhow::Ok(order_id)
    }
    .await;
    stack_ok(&["up"], &[])?;
    let order_id = outcome?;
    // Confirmed, or (the broker was away for much of its 30 s) timed out and compensated: the
    // audit below holds it to either.
    api.wait_terminal(&order_id, SETTLE).await?;
    wait_for("the gauges back to 0", Duration::from_secs(60), || async {
        let backlog = gauge(&api, &api.order, "saga_outbox_backlog").await?;
        Ok((
            (backlog == Some(0.0)).then_some(()),
            format!("backlog {backlog:?}"),
        ))
    })
    .await?;
    assert_audit_clean("the broker away while orders were placed")?;
    Ok(())
}
