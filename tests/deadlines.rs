//! Deadlines and late replies, end to end: a service that does not answer makes the order time
//! out (`TIMED_OUT`) at its deadline, what was done before is undone, what the service does when
//! it comes back is too late to count, and a compensation that cannot finish is named by
//! `sagactl stuck` until a redrive completes it.
//!
//! The Order service runs here with a short deadline (`ORDER_DEADLINE_SECONDS`); like the fault
//! tests, these stop and start shared processes, so they run one at a time in a binary of their
//! own, and put the stack back as they found it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use saga_e2e::*;
use saga_events::Service;
use saga_messaging::inspect::reader::PartitionReader;
use saga_messaging::{KafkaSettings, headers};
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The deadline these tests give orders: longer than a healthy saga takes on a loaded debug
/// build, short enough to wait for.
const SHORT_DEADLINE: &str = "6";

/// Runs the body with Order on the short deadline, then puts Order back on its default and
/// every stopped service back up, whatever the body did.
async fn with_short_deadline<F, Fut>(body: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    restart("order", &[("ORDER_DEADLINE_SECONDS", SHORT_DEADLINE)])?;
    let outcome = body().await;
    let restored = stack_ok(&["up"], &[]).and_then(|_| restart("order", &[]));
    outcome.and(restored)
}

fn field<'a>(value: &'a Option<Value>, name: &str) -> &'a str {
    value.as_ref().and_then(|v| v[name].as_str()).unwrap_or("")
}

/// Waits until `probe`'s JSON has `name` equal to `expected`.
async fn wait_field<F, Fut>(
    what: &str,
    name: &str,
    expected: &str,
    probe: F,
) -> anyhow::Result<Value>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<Value>>>,
{
    wait_for(what, SETTLE, || async {
        let value = probe().await?;
        let seen = format!("{value:?}");
        let matched = field(&value, name) == expected;
        Ok((matched.then_some(value).flatten(), seen))
    })
    .await
}

/// Asserts the order was cancelled at its deadline, and waits until everything it did was undone
/// (its compensation COMPLETED: every service that acted for it has answered the cancel).
async fn assert_timed_out_and_compensated(api: &Api, order: &Value) -> anyhow::Result<Value> {
    assert_eq!(order["status"], "CANCELLED", "{order:#}");
    assert_eq!(order["cancellation_reason"], "TIMED_OUT", "{order:#}");
    let order_id = order["order_id"].as_str().unwrap_or_default();
    let compensated = wait_compensated(api, order_id).await?;
    assert_eq!(compensated["status"], "CANCELLED", "{compensated:#}");
    assert_eq!(
        compensated["cancellation_reason"], "TIMED_OUT",
        "{compensated:#}"
    );
    Ok(compensated)
}

async fn wait_compensated(api: &Api, order_id: &str) -> anyhow::Result<Value> {
    wait_field(
        &format!("order {order_id}'s compensation to complete"),
        "compensation",
        "COMPLETED",
        || api.order(order_id),
    )
    .await
}

/// How many `OrderCancelled` events of the order are on `order.events`.
async fn cancellations_on_the_topic(order_id: &str) -> anyhow::Result<usize> {
    let key = order_id.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
        Ok(reader
            .records_with_key("order.events", &key)?
            .iter()
            .filter(|r| r.headers.get(headers::EVENT_TYPE) == Some("OrderCancelled"))
            .count())
    })
    .await?
}

#[tokio::test]
async fn payment_down_times_the_order_out_and_its_late_order_placed_never_charges()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_short_deadline(|| async {
        let api = Api::from_env()?;
        let sku = unique_sku("deadline-payment");
        api.set_stock(&sku, 5).await?;
        stack_ok(&["stop", "payment"], &[])?;
        let order_id = api
            .place(&order_body(&[(&sku, 1, 700)], "DE", "tok_visa"))
            .await?;
        let order = api.wait_terminal(&order_id, SETTLE).await?;
        assert_timed_out_and_compensated(&api, &order).await?;
        assert_eq!(
            order["compensation"], "COMPLETED",
            "nothing was done: {order:#}"
        );

        stack_ok(&["up"], &[])?;
        wait_caught_up(Service::Payment).await?;
        assert_eq!(
            api.payment(&order_id).await?,
            None,
            "the OrderPlaced Payment heard after the cancel charged"
        );
        let stock = api.stock(&sku).await?;
        assert_eq!(
            stock.as_ref().map(|s| &s["reserved"]),
            Some(&Value::from(0))
        );
        assert_audit_clean("a late OrderPlaced")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn inventory_down_after_the_charge_refunds_and_its_late_reply_reserves_nothing()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_short_deadline(|| async {
        let api = Api::from_env()?;
        let sku = unique_sku("deadline-inventory");
        api.set_stock(&sku, 5).await?;
        let stock_before = api.stock(&sku).await?;
        stack_ok(&["stop", "inventory"], &[])?;
        let order_id = api
            .place(&order_body(&[(&sku, 2, 450)], "DE", "tok_visa"))
            .await?;
        wait_field("the charge", "status", "AUTHORIZED", || {
            api.payment(&order_id)
        })
        .await?;
        let order = api.wait_terminal(&order_id, SETTLE).await?;
        assert_timed_out_and_compensated(&api, &order).await?;
        wait_field("the refund", "status", "REFUNDED", || {
            api.payment(&order_id)
        })
        .await?;
        wait_compensated(&api, &order_id).await?;

        stack_ok(&["up"], &[])?;
        wait_caught_up(Service::Inventory).await?;
        assert_eq!(
            api.stock(&sku).await?,
            stock_before,
            "the PaymentAuthorized Inventory heard after the cancel reserved stock"
        );
        assert_audit_clean("a late PaymentAuthorized")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn shipping_down_after_the_reservation_undoes_both_and_ships_nothing() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_short_deadline(|| async {
        let api = Api::from_env()?;
        let sku = unique_sku("deadline-shipping");
        api.set_stock(&sku, 5).await?;
        let stock_before = api.stock(&sku).await?;
        stack_ok(&["stop", "shipping"], &[])?;
        let order_id = api
            .place(&order_body(&[(&sku, 1, 900)], "DE", "tok_visa"))
            .await?;
        let order = api.wait_terminal(&order_id, SETTLE).await?;
        assert_timed_out_and_compensated(&api, &order).await?;
        wait_field("the refund", "status", "REFUNDED", || {
            api.payment(&order_id)
        })
        .await?;
        let order = wait_compensated(&api, &order_id).await?;
        assert_eq!(order["status"], "CANCELLED", "{order:#}");
        assert_eq!(api.stock(&sku).await?, stock_before, "stock not released");

        stack_ok(&["up"], &[])?;
        wait_caught_up(Service::Shipping).await?;
        let shipment = api.shipment(&order_id).await?;
        assert!(
            matches!(field(&shipment, "status"), "" | "CANCELLED"),
            "a shipment of a timed-out order is live: {shipment:?}"
        );
        // Shipping's late answer, if any, reached Order and left the compensation complete.
        wait_caught_up(Service::Order).await?;
        let order = api.order(&order_id).await?;
        assert_eq!(field(&order, "compensation"), "COMPLETED", "{order:?}");
        assert_audit_clean("a late StockReserved")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_deadline_that_passes_while_order_is_down_fires_once_when_it_is_back()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_short_deadline(|| async {
        let api = Api::from_env()?;
        let sku = unique_sku("deadline-order-down");
        api.set_stock(&sku, 5).await?;
        // Nothing answers while Order is away.
        stack_ok(&["stop", "payment"], &[])?;
        let order_id = api
            .place(&order_body(&[(&sku, 1, 300)], "DE", "tok_visa"))
            .await?;
        stack_ok(&["kill", "order"], &[])?;
        let seconds: u64 = SHORT_DEADLINE.parse()?;
        wait_for(
            "the order's deadline to pass while Order is down",
            Duration::from_secs(seconds * 3),
            || async {
                Ok((
                    deadline_passed(&order_id).await?.then_some(()),
                    String::new(),
                ))
            },
        )
        .await?;
        stack_ok(&["up"], &[("ORDER_DEADLINE_SECONDS", SHORT_DEADLINE)])?;
        let order = api.wait_terminal(&order_id, SETTLE).await?;
        assert_timed_out_and_compensated(&api, &order).await?;
        stack_ok(&["up"], &[])?;
        wait_caught_up(Service::Payment).await?;
        wait_caught_up(Service::Order).await?;
        assert_eq!(
            cancellations_on_the_topic(&order_id).await?,
            1,
            "the deadline fired other than once"
        );
        assert_eq!(
            api.payment(&order_id).await?,
            None,
            "charged after the cancel"
        );
        assert_audit_clean("a deadline passed while Order was down")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_reply_parked_at_order_before_the_deadline_is_not_beaten_by_it() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("deadline-parked-reply");
    api.set_stock(&sku, 5).await?;
    // Every ShipmentScheduled fails at Order for good (its three attempts): the reply reached
    // Order in time, and waits there as a dead letter for an operator.
    restart(
        "order",
        &[
            ("ORDER_DEADLINE_SECONDS", SHORT_DEADLINE),
            ("FAULT_INJECTION", "order:order=:3:ShipmentScheduled"),
        ],
    )?;
    let outcome = async {
        let order_id = api
            .place(&order_body(&[(&sku, 1, 400)], "DE", "tok_visa"))
            .await?;
        wait_for_dead_letter("order", &order_id, "shipping.events").await?;
        // A second order, placed after the first's reply was dead-lettered, that nothing answers:
        // once it has timed out, the scanner has passed the first order's deadline too.
        stack_ok(&["stop", "payment"], &[])?;
        let control = api
            .place(&order_body(&[(&sku, 1, 400)], "DE", "tok_visa"))
            .await?;
        let timed_out = api.wait_terminal(&control, SETTLE).await?;
        assert_timed_out_and_compensated(&api, &timed_out).await?;
        let order = api.order(&order_id).await?;
        assert_eq!(
            field(&order, "status"),
            "PENDING",
            "the deadline beat a reply parked at Order: {order:?}"
        );
        stack_ok(&["up"], &[])?;
        // The cause lifted, the redriven reply decides the order.
        restart("order", &[("ORDER_DEADLINE_SECONDS", SHORT_DEADLINE)])?;
        sagactl(&["dlq", "redrive", "order", "--order", &order_id], false)?;
        let order = api.wait_terminal(&order_id, SETTLE).await?;
        assert_eq!(order["status"], "CONFIRMED", "{order:#}");
        assert_audit_clean("a reply parked at Order past its deadline")?;
        anyhow::Ok(())
    }
    .await;
    let restored = stack_ok(&["up"], &[]).and_then(|_| restart("order", &[]));
    outcome.and(restored)
}

/// Whether the order's deadline, as Order stored it, is in the past (on the database's clock).
async fn deadline_passed(order_id: &str) -> anyhow::Result<bool> {
    let db = service_db("orders").await?;
    let passed: Option<bool> =
        sqlx::query_scalar("SELECT deadline_at < now() FROM orders WHERE order_id = $1::uuid")
            .bind(order_id)
            .fetch_optional(&db)
            .await?;
    db.close().await;
    Ok(passed.unwrap_or(false))
}

#[tokio::test]
async fn a_dead_lettered_release_keeps_the_compensation_pending_and_named_until_redriven()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("stuck-release");
    api.set_stock(&sku, 5).await?;
    let stock_before = api.stock(&sku).await?;
    // Shipping is held back until Inventory is set to fail this order's release for good.
    stack_ok(&["stop", "shipping"], &[])?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 500)], "AQ", "tok_visa"))
        .await?;
    wait_for("the reservation", SETTLE, || async {
        let stock = api.stock(&sku).await?;
        let reserved = stock.as_ref().and_then(|s| s["reserved"].as_i64());
        Ok(((reserved == Some(1)).then_some(()), format!("{stock:?}")))
    })
    .await?;
    // Inventory releases on ShipmentFailed or on the OrderCancelled that follows, whichever it
    // handles first (they travel on different topics): both fail, three times.
    let rule = format!(
        "inventory:order={order_id}:3:ShipmentFailed,inventory:order={order_id}:3:OrderCancelled"
    );
    restart("inventory", &[("FAULT_INJECTION", rule.as_str())])?;
    stack_ok(&["up"], &[])?;

    let order = api.wait_terminal(&order_id, SETTLE).await?;
    assert_eq!(order["cancellation_reason"], "SHIPPING_FAILED", "{order:#}");
    wait_for_dead_letter_where("inventory", &order_id, |l| {
        l["order_id"] == order_id.as_str()
    })
    .await?;
    wait_field("the refund", "status", "REFUNDED", || {
        api.payment(&order_id)
    })
    .await?;
    let order = api.order(&order_id).await?;
    assert_eq!(field(&order, "compensation"), "PENDING", "{order:?}");

    let (_, out) = sagactl(&["stuck", "--older-than", "0s", "--json"], false)?;
    let stuck: Value = serde_json::from_str(out.trim())?;
    let listed = stuck["stuck"]
        .as_array()
        .and_then(|sagas| sagas.iter().find(|s| s["order_id"] == order_id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(listed["phase"], "compensating", "{stuck:#}");
    assert_eq!(
        listed["awaiting"],
        serde_json::json!([{"service": "inventory", "events": "StockReleased"}]),
        "{stuck:#}"
    );
    let parked = listed["parked"].as_array().cloned().unwrap_or_default();
    assert!(
        parked
            .iter()
            .any(|p| p["service"] == "inventory" && p["status"] == "DEAD"),
        "stuck does not name the dead letter: {stuck:#}"
    );

    // The cause fixed (the rule lifted), a redrive completes the compensation; the release's
    // other trigger, waiting behind the dead letter, then changes nothing.
    restart("inventory", &[])?;
    sagactl(
        &["dlq", "redrive", "inventory", "--order", &order_id],
        false,
    )?;
    let order = wait_compensated(&api, &order_id).await?;
    assert_eq!(order["cancellation_reason"], "SHIPPING_FAILED", "{order:#}");
    assert_eq!(api.stock(&sku).await?, stock_before, "stock not released");
    assert_audit_clean("a redriven release")?;
    Ok(())
}

#[tokio::test]
async fn mixed_orders_with_a_service_bounced_past_their_deadlines_all_end_and_audit_clean()
-> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    with_short_deadline(|| async {
        let api = Api::from_env()?;
        let sku = unique_sku("deadline-mixed");
        let count = 300;
        api.set_stock(&sku, count as i64 / 2).await?;
        let placed = Arc::new(AtomicUsize::new(0));
        let load = {
            let api = Api::from_env()?;
            let sku = sku.clone();
            let placed = placed.clone();
            tokio::spawn(async move {
                futures::stream::iter(0..count)
                    .map(|i| {
                        let (country, method) = match i % 10 {
                            0 => ("GB", "tok_decline"),
                            1 => ("AQ", "tok_visa"),
                            _ => ("DE", "tok_visa"),
                        };
                        let body = order_body(&[(&sku, 1, 1_000)], country, method);
                        let api = &api;
                        let placed = placed.clone();
                        async move {
                            let id = api.place(&body).await;
                            placed.fetch_add(1, Ordering::Relaxed);
                            id
                        }
                    })
                    .buffer_unordered(8)
                    .collect::<Vec<_>>()
                    .await
            })
        };
        wait_for("a third of the orders placed", SETTLE, || async {
            let n = placed.load(Ordering::Relaxed);
            Ok(((n >= count / 3).then_some(()), format!("{n} placed")))
        })
        .await?;
        // Inventory away for longer than a deadline: the orders it would have answered time
        // out, and it answers them late when it is back.
        stack_ok(&["stop", "inventory"], &[])?;
        let seconds: u64 = SHORT_DEADLINE.parse()?;
        let cancelled_meanwhile = wait_for(
            "an order to time out while Inventory is away",
            Duration::from_secs(seconds * 10),
            || async {
                let timed_out = timed_out_orders(&sku).await?;
                let seen = format!("{} timed out", timed_out.len());
                Ok(((!timed_out.is_empty()).then_some(timed_out), seen))
            },
        )
        .await?;
        stack_ok(&["up"], &[])?;
        let order_ids: Vec<String> = load.await?.into_iter().collect::<anyhow::Result<_>>()?;
        assert_placed_once_each(&order_ids, count, &sku).await?;
        for order_id in &order_ids {
            let order = api.wait_terminal(order_id, SETTLE).await?;
            if order["status"] == "CANCELLED" {
                wait_compensated(&api, order_id).await?;
            }
        }
        // Inventory's late answers to the orders that timed out while it was away changed
        // nothing: each is still cancelled at its deadline, with nothing held.
        for order_id in &cancelled_meanwhile {
            let order = api.order(order_id).await?;
            assert_eq!(
                field(&order, "cancellation_reason"),
                "TIMED_OUT",
                "{order:?}"
            );
            assert_eq!(field(&order, "compensation"), "COMPLETED", "{order:?}");
        }
        assert_audit_clean("orders timing out under load")?;
        Ok(())
    })
    .await
}

/// The orders of `sku` Order cancelled at their deadline.
async fn timed_out_orders(sku: &str) -> anyhow::Result<Vec<String>> {
    let db = service_db("orders").await?;
    let ids = sqlx::query_scalar(
        "SELECT order_id::text FROM orders
         WHERE cancellation_reason = 'TIMED_OUT' AND items @> jsonb_build_array(jsonb_build_object('sku', $1::text))",
    )
    .bind(sku)
    .fetch_all(&db)
    .await?;
    db.close().await;
    Ok(ids)
}
