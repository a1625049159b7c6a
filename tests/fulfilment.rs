//! Shipping's fulfilment, end to end: allocate → label → pickup against the stand-in carrier,
//! whose rules by postal code drive every path through the saga (`LABEL-FAIL`, `PICKUP-FAIL`,
//! `FLAKY`, a destination not served), the label voided before a refused pickup fails the
//! shipment, retries that keep the same label, and a kill -9 between label and pickup that makes
//! no second label and still ends the saga.
//!
//! The first test runs on the stack as `make up` starts it; the second kills Shipping, so the two
//! never run at once.

use std::time::Duration;

use saga_e2e::*;
use serde_json::Value;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Places an order shipped to `postal_code` in `country`; returns its id.
async fn place_to(
    api: &Api,
    sku: &str,
    postal_code: &str,
    country: &str,
) -> anyhow::Result<String> {
    let mut body = order_body(&[(sku, 1, 900)], country, "tok_visa");
    body["shipping_address"]["postal_code"] = Value::from(postal_code);
    api.place(&body).await
}

/// The steps of the order's shipment, as `(step, outcome, detail)`.
fn steps(shipment: &Value) -> Vec<(String, String, String)> {
    shipment["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    let text = |f: &str| s[f].as_str().unwrap_or_default().to_owned();
                    (text("step"), text("outcome"), text("detail"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn step_names(shipment: &Value) -> Vec<String> {
    steps(shipment)
        .into_iter()
        .map(|(step, outcome, _)| format!("{step} {outcome}"))
        .collect()
}

/// The stand-in carrier's record of one call: how often it was asked, and what it answered.
async fn carrier_call(order_id: &str, step: &str) -> anyhow::Result<Option<(i32, Option<Value>)>> {
    let db = service_db("shipping").await?;
    Ok(sqlx::query_as(
        "SELECT attempts, answer FROM standin_carrier_calls WHERE idempotency_key = $1",
    )
    .bind(format!("fulfilment:{order_id}:{step}"))
    .fetch_optional(&db)
    .await?)
}

async fn assert_ended(
    api: &Api,
    order_id: &str,
    status: &str,
    reason: Option<&str>,
) -> anyhow::Result<Value> {
    let order = api.wait_terminal(order_id, SETTLE).await?;
    assert_eq!(
        (
            order["status"].as_str(),
            order["cancellation_reason"].as_str()
        ),
        (Some(status), reason),
        "{order}"
    );
    if status == "CANCELLED" {
        wait_for(
            &format!("the compensation of {order_id}"),
            SETTLE,
            || async {
                let order = api.order(order_id).await?.unwrap_or_default();
                let done = order["compensation"] == "COMPLETED";
                Ok((done.then_some(()), order.to_string()))
            },
        )
        .await?;
    }
    let shipment = api.shipment(order_id).await?.unwrap_or_default();
    Ok(shipment)
}

#[tokio::test]
async fn each_carrier_rule_drives_its_path_through_the_saga() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("fulfilment");
    api.set_stock(&sku, 20).await?;

    let shipped = place_to(&api, &sku, "N1 9GU", "GB").await?;
    let no_label = place_to(&api, &sku, "LABEL-FAIL", "GB").await?;
    let no_pickup = place_to(&api, &sku, "PICKUP-FAIL", "GB").await?;
    let flaky = place_to(&api, &sku, "FLAKY", "GB").await?;
    let not_served = place_to(&api, &sku, "N1 9GU", "AQ").await?;
    let slow = place_to(&api, &sku, "PICKUP-SLOW", "GB").await?;

    // While the carrier books the slow pickup, the shipment shows it is being fulfilled and
    // what is done.
    wait_for(
        "a shipment FULFILLING with its label done",
        Duration::from_secs(60),
        || async {
            let shipment = api.shipment(&slow).await?;
            let seen = shipment.as_ref().map(|s| {
                (
                    s["status"] == "FULFILLING",
                    step_names(s).contains(&"label DONE".to_owned()),
                )
            });
            Ok((
                (seen == Some((true, true))).then_some(()),
                format!("{shipment:?}"),
            ))
        },
    )
    .await?;

    let shipment = assert_ended(&api, &shipped, "CONFIRMED", None).await?;
    assert_eq!(shipment["status"], "SCHEDULED", "{shipment}");
    assert_eq!(
        step_names(&shipment),
        ["allocate DONE", "label DONE", "pickup DONE"]
    );

    let shipment = assert_ended(&api, &no_label, "CANCELLED", Some("SHIPPING_FAILED")).await?;
    assert_eq!(shipment["status"], "FAILED", "{shipment}");
    assert_eq!(step_names(&shipment), ["allocate DONE", "label FAILED"]);

    let shipment = assert_ended(&api, &no_pickup, "CANCELLED", Some("SHIPPING_FAILED")).await?;
    assert_eq!(shipment["status"], "FAILED", "{shipment}");
    assert_eq!(
        step_names(&shipment),
        [
            "allocate DONE",
            "label DONE",
            "pickup FAILED",
            "void_label DONE"
        ],
        "the label is voided before the shipment fails"
    );
    assert!(
        shipment["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("pickup")),
        "{shipment}"
    );

    let shipment = assert_ended(&api, &flaky, "CONFIRMED", None).await?;
    let label = steps(&shipment)
        .into_iter()
        .find(|(step, _, _)| step == "label")
        .map(|(_, _, detail)| detail)
        .unwrap_or_default();
    let (attempts, answer) = carrier_call(&flaky, "label").await?.unwrap_or((0, None));
    assert_eq!(attempts, 3, "FLAKY fails twice, then works");
    assert_eq!(
        answer.as_ref().and_then(|a| a["id"].as_str()),
        Some(label.as_str()),
        "the label the shipment holds is the one label the carrier made"
    );

    let shipment = assert_ended(&api, &not_served, "CANCELLED", Some("SHIPPING_FAILED")).await?;
    assert_eq!(step_names(&shipment), ["allocate FAILED"]);

    assert_ended(&api, &slow, "CONFIRMED", None).await?;
    assert_audit_clean("every carrier rule")?;
    Ok(())
}

#[tokio::test]
async fn a_kill_9_between_label_and_pickup_makes_no_second_label() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("fulfilment-kill");
    api.set_stock(&sku, 5).await?;
    // The carrier takes 1 s to book this pickup: Shipping is killed while it waits.
    let order_id = place_to(&api, &sku, "PICKUP-SLOW", "GB").await?;
    let label = wait_for(
        "the label, with the pickup not booked yet",
        Duration::from_secs(60),
        || async {
            let shipment = api.shipment(&order_id).await?;
            let label = shipment.as_ref().and_then(|s| {
                let steps = steps(s);
                let label = steps.iter().find(|(step, _, _)| step == "label")?.2.clone();
                (!steps.iter().any(|(step, _, _)| step == "pickup")).then_some(label)
            });
            Ok((label, format!("{shipment:?}")))
        },
    )
    .await?;
    let killed = stack_ok(&["kill", "shipping"], &[]);
    let restarted = stack_ok(&["up"], &[]);
    killed?;
    restarted?;
    let shipment = assert_ended(&api, &order_id, "CONFIRMED", None).await?;
    let labels: Vec<String> = steps(&shipment)
        .into_iter()
        .filter(|(step, _, _)| step == "label")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(labels, [label], "{shipment}");
    let (attempts, _) = carrier_call(&order_id, "label").await?.unwrap_or((0, None));
    assert_eq!(attempts, 1, "the label was asked for again after the kill");
    assert_audit_clean("Shipping killed between label and pickup")?;
    Ok(())
}
