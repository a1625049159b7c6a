//! Payment's manual review, end to end: a risky order waits for a reviewer before it is charged,
//! and ends with exactly one outcome whatever races it: approve (the saga goes on), reject or
//! expiry (declined), and the reviewer API's rules (401 without the token, 409 on a different
//! decision, 200 on the same one again). Reviews and their timers survive kill -9, a timer due
//! while Payment was down fires once when it is back, and a review outlives the order's own
//! deadline without timing it out.
//!
//! The first test runs on the stack as `make up` starts it (a 900 s review timeout: it decides
//! every review it opens). The second restarts Order and Payment with short timeouts and kills
//! Payment, so the two never run at once, and it puts the stack back as it found it.

use std::time::Duration;

use saga_e2e::*;
use saga_messaging::KafkaSettings;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::{Value, json};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The review timeout and order deadline of the second test: a review outlives the order's
/// first deadline, and still expires soon enough to wait for. After a review expires, the saga
/// has the order's deadline again to finish: long enough for Payment to restart (a few seconds
/// on a debug build) and fire the expiry it missed while it was down.
const SHORT_REVIEW: &str = "14";
const SHORT_DEADLINE: &str = "10";

fn reviewer_token() -> String {
    std::env::var("PAYMENT_REVIEWER_TOKEN").unwrap_or_else(|_| "dev-payment-reviewer".into())
}

/// `POST /reviews/{order_id}/decision` with `token` (none: no header): the status and the body.
async fn decide(
    api: &Api,
    order_id: &str,
    decision: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = api
        .http
        .post(format!("{}/reviews/{order_id}/decision", api.payment))
        .json(&json!({"decision": decision, "reviewer": "e2e reviewer", "note": "checked"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn review(api: &Api, order_id: &str) -> anyhow::Result<Option<Value>> {
    api.get_json(&format!("{}/reviews/{order_id}", api.payment))
        .await
}

/// Places an order that goes to review (paid with `tok_review`) and waits until its review is
/// open; returns the order id and the review.
async fn place_for_review(api: &Api, sku: &str) -> anyhow::Result<(String, Value)> {
    let order_id = api
        .place(&order_body(&[(sku, 1, 1_500)], "GB", "tok_review"))
        .await?;
    let open = wait_for(
        &format!("the review of order {order_id} to open"),
        Duration::from_secs(60),
        || async {
            let review = review(api, &order_id).await?;
            let open = review.as_ref().is_some_and(|r| r["status"] == "OPEN");
            Ok((
                open.then(|| review.clone()).flatten(),
                format!("{review:?}"),
            ))
        },
    )
    .await?;
    Ok((order_id, open))
}

/// The payment events of the order on `payment.events`, by type name.
async fn payment_events(order_id: &str) -> anyhow::Result<Vec<String>> {
    let key = order_id.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
        Ok(reader
            .records_with_key("payment.events", &key)?
            .iter()
            .filter_map(|r| r.headers.get(saga_messaging::headers::EVENT_TYPE))
            .map(str::to_owned)
            .collect())
    })
    .await?
}

fn outcomes(events: &[String]) -> usize {
    events
        .iter()
        .filter(|e| *e == "PaymentAuthorized" || *e == "PaymentDeclined")
        .count()
}

/// Milliseconds since the epoch of an RFC 3339 time in `value[field]`.
fn millis(value: &Value, field: &str) -> anyhow::Result<i64> {
    let text = value[field].as_str().unwrap_or_default();
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| anyhow::anyhow!("{field} {text:?} in {value}: {e}"))?
        .timestamp_millis())
}

async fn until(at_ms: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis((at_ms - now) as u64)).await;
    }
}

#[tokio::test]
async fn a_reviewer_approves_or_rejects_once_and_the_saga_follows() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("review");
    api.set_stock(&sku, 10).await?;

    let (approved, opened) = place_for_review(&api, &sku).await?;
    let (rejected, _) = place_for_review(&api, &sku).await?;
    let (raced, _) = place_for_review(&api, &sku).await?;

    // Waiting for a reviewer: nothing charged, the order pending past its first deadline.
    assert_eq!(
        api.payment(&approved).await?.map(|p| p["status"].clone()),
        Some(json!("IN_REVIEW"))
    );
    let order = api.order(&approved).await?.unwrap_or_default();
    assert_eq!(order["status"], "PENDING", "{order}");
    assert!(
        millis(&order, "deadline_at")? > millis(&opened, "deadline_at")?,
        "Order moved the deadline past the review's: {order} {opened}"
    );
    let inbox = api
        .get_json(&format!("{}/reviews?status=OPEN&limit=1000", api.payment))
        .await?
        .unwrap_or_default();
    let listed: Vec<&str> = inbox["reviews"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["order_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        listed.contains(&approved.as_str()),
        "not in the inbox: {inbox}"
    );
    let ages: Vec<f64> = inbox["reviews"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["age_seconds"].as_f64()).collect())
        .unwrap_or_default();
    assert!(
        ages.windows(2).all(|w| w[0] >= w[1]),
        "oldest first: {inbox}"
    );

    // What an operator sees: the review, waiting for a reviewer.
    let (_, listed) = sagactl(
        &["workflows", "--waiting", "--json", "--limit", "100000"],
        false,
    )?;
    assert!(
        listed.contains(&approved),
        "sagactl workflows --waiting: {listed}"
    );

    // Only a reviewer decides.
    let (status, body) = decide(&api, &approved, "APPROVE", None).await?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = decide(&api, &approved, "APPROVE", Some("not-the-token")).await?;
    assert_eq!(status, 401, "{body}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (status, body) = decide(&api, &unknown, "APPROVE", Some(&reviewer_token())).await?;
    assert_eq!(status, 404, "{body}");

    let token = reviewer_token();
    let (status, body) = decide(&api, &approved, "APPROVE", Some(&token)).await?;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("APPROVED")),
        "{body}"
    );
    let (status, body) = decide(&api, &approved, "APPROVE", Some(&token)).await?;
    assert_eq!(status, 200, "the same decision again: {body}");
    let (status, body) = decide(&api, &approved, "REJECT", Some(&token)).await?;
    assert_eq!(status, 409, "another decision after the first: {body}");

    let (status, body) = decide(&api, &rejected, "REJECT", Some(&token)).await?;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("REJECTED")),
        "{body}"
    );

    // Two reviewers at once: one decision wins, the other is told so.
    let (approve, reject) = tokio::join!(
        decide(&api, &raced, "APPROVE", Some(&token)),
        decide(&api, &raced, "REJECT", Some(&token)),
    );
    let mut answers = [approve?.0, reject?.0];
    answers.sort_unstable();
    assert_eq!(answers, [200, 409], "one decision wins");

    let confirmed = api.wait_terminal(&approved, SETTLE).await?;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    assert_eq!(
        api.payment(&approved).await?.map(|p| p["status"].clone()),
        Some(json!("AUTHORIZED"))
    );
    let declined = api.wait_terminal(&rejected, SETTLE).await?;
    assert_eq!(
        (
            declined["status"].as_str(),
            declined["cancellation_reason"].as_str()
        ),
        (Some("CANCELLED"), Some("PAYMENT_DECLINED")),
        "{declined}"
    );
    let payment = api.payment(&rejected).await?.unwrap_or_default();
    assert_eq!(payment["status"], "DECLINED", "{payment}");
    assert!(
        payment["decline_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected in review"),
        "{payment}"
    );
    api.wait_terminal(&raced, SETTLE).await?;
    for order in [&approved, &rejected, &raced] {
        let events = payment_events(order).await?;
        assert_eq!(outcomes(&events), 1, "one outcome for {order}: {events:?}");
        assert_eq!(
            events
                .iter()
                .filter(|e| *e == "PaymentReviewRequested")
                .count(),
            1,
            "{events:?}"
        );
    }
    assert_audit_clean("reviews approved, rejected and raced")?;
    Ok(())
}

#[tokio::test]
async fn reviews_outlive_the_order_deadline_and_kill_9_and_expire_once() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let short = [
        ("PAYMENT_REVIEW_TIMEOUT_SECONDS", SHORT_REVIEW),
        ("ORDER_DEADLINE_SECONDS", SHORT_DEADLINE),
    ];
    stack_ok(&["stop", "payment"], &[])?;
    stack_ok(&["stop", "order"], &[])?;
    stack_ok(&["up"], &short)?;
    let outcome = short_reviews(&short).await;
    let restored = stack_ok(&["up"], &[])
        .and_then(|_| stack_ok(&["stop", "payment"], &[]))
        .and_then(|_| stack_ok(&["stop", "order"], &[]))
        .and_then(|_| stack_ok(&["up"], &[]));
    outcome.and(restored).map(|_| ())
}

async fn short_reviews(short: &[(&str, &str)]) -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("review-short");
    api.set_stock(&sku, 10).await?;
    let token = reviewer_token();
    let deadline_ms: i64 = SHORT_DEADLINE.parse::<i64>()? * 1000;

    // Open across a kill -9, decided after the order's first deadline passed.
    let (approved, opened) = place_for_review(&api, &sku).await?;
    let (raced, raced_review) = place_for_review(&api, &sku).await?;
    stack_ok(&["kill", "payment"], &[])?;
    stack_ok(&["up"], short)?;
    until(millis(&opened, "opened_at")? + deadline_ms + 500).await;
    let order = api.order(&approved).await?.unwrap_or_default();
    assert_eq!(
        order["status"], "PENDING",
        "a review timed the order out: {order}"
    );
    let (status, body) = decide(&api, &approved, "APPROVE", Some(&token)).await?;
    assert_eq!(status, 200, "the review did not survive the kill: {body}");

    // A decision at the very moment the review expires: one outcome, whichever wins.
    until(millis(&raced_review, "deadline_at")?).await;
    let (status, body) = decide(&api, &raced, "APPROVE", Some(&token)).await?;
    assert!(status == 200 || status == 409, "{status} {body}");
    let raced_end = api.wait_terminal(&raced, SETTLE).await?;
    let expected = if status == 200 {
        "CONFIRMED"
    } else {
        "CANCELLED"
    };
    assert_eq!(
        raced_end["status"], expected,
        "answered {status} {body}, ended {raced_end}"
    );

    // A timer due while Payment is down fires once, when it is back.
    let (expired, expiring) = place_for_review(&api, &sku).await?;
    stack_ok(&["kill", "payment"], &[])?;
    until(millis(&expiring, "deadline_at")? + 500).await;
    stack_ok(&["up"], short)?;
    let ended = api.wait_terminal(&expired, SETTLE).await?;
    assert_eq!(
        (
            ended["status"].as_str(),
            ended["cancellation_reason"].as_str()
        ),
        (Some("CANCELLED"), Some("PAYMENT_DECLINED")),
        "{ended}"
    );
    let payment = api.payment(&expired).await?.unwrap_or_default();
    assert!(
        payment["decline_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{payment}"
    );
    let (status, body) = decide(&api, &expired, "APPROVE", Some(&token)).await?;
    assert_eq!(status, 409, "a decision after the expiry: {body}");

    let confirmed = api.wait_terminal(&approved, SETTLE).await?;
    assert_eq!(confirmed["status"], "CONFIRMED", "{confirmed}");
    for order in [&approved, &raced, &expired] {
        let events = payment_events(order).await?;
        assert_eq!(outcomes(&events), 1, "one outcome for {order}: {events:?}");
    }
    // The approval cancelled the expiry timer, whose time has long come: it never fired.
    until(millis(&opened, "deadline_at")? + 500).await;
    let payments = service_db("payments").await?;
    let timer: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT status, fired_at FROM workflow_timers
         WHERE workflow = 'payment_review' AND instance_id = $1::uuid",
    )
    .bind(&approved)
    .fetch_optional(&payments)
    .await?;
    assert_eq!(
        timer,
        Some(("CANCELLED".to_owned(), None)),
        "the approved review's timer"
    );

    cancelled_in_review(&api, &sku, short).await?;
    assert_audit_clean("reviews across kill -9, expiry and cancellation")?;
    Ok(())
}

/// An order cancelled while its review is open: its review closes and nothing is charged.
/// Order times an order out when its deadline passes before it heard of the review (it was down
/// when Payment opened it, and its deadline scanner starts before its consumer has caught up).
/// Should its consumer hear of the review first after all, the deadline moves past the review's
/// and the order is approved to end it; the setup is tried again, three times at most.
async fn cancelled_in_review(api: &Api, sku: &str, short: &[(&str, &str)]) -> anyhow::Result<()> {
    let token = reviewer_token();
    let deadline_ms: i64 = SHORT_DEADLINE.parse::<i64>()? * 1000;
    for attempt in 1..=3 {
        stack_ok(&["stop", "payment"], &[])?;
        let order_id = api
            .place(&order_body(&[(sku, 1, 1_500)], "GB", "tok_review"))
            .await?;
        let placed_at = chrono::Utc::now().timestamp_millis();
        stack_ok(&["kill", "order"], &[])?;
        // Payment alone: it opens the review while Order is away.
        stack_ok(&["scale", "payment", "1"], short)?;
        wait_for("the review to open", Duration::from_secs(60), || async {
            let review = review(api, &order_id).await?;
            let open = review.as_ref().is_some_and(|r| r["status"] == "OPEN");
            Ok((open.then_some(()), format!("{review:?}")))
        })
        .await?;
        until(placed_at + deadline_ms + 500).await;
        stack_ok(&["up"], short)?;
        // Timed out at once, or not at all: had Order heard of the review, the order would wait
        // for its expiry.
        let timed_out = wait_for(
            "the order timed out when Order came back",
            Duration::from_secs(10),
            || async {
                let order = api.order(&order_id).await?.unwrap_or_default();
                let done = order["status"] == "CANCELLED";
                Ok((done.then(|| order.clone()), order.to_string()))
            },
        )
        .await;
        let order = match timed_out {
            Ok(order) => order,
            Err(_) if attempt < 3 => {
                println!("attempt {attempt}: Order heard of the review before its deadline passed");
                decide(api, &order_id, "APPROVE", Some(&token)).await?;
                api.wait_terminal(&order_id, SETTLE).await?;
                continue;
            }
            Err(error) => return Err(error),
        };
        assert_eq!(
            (
                order["status"].as_str(),
                order["cancellation_reason"].as_str()
            ),
            (Some("CANCELLED"), Some("TIMED_OUT")),
            "{order}"
        );
        let closed = wait_for("the review closed", Duration::from_secs(60), || async {
            let review = review(api, &order_id).await?;
            let closed = review.as_ref().is_some_and(|r| r["status"] == "CANCELLED");
            Ok((
                closed.then(|| review.clone()).flatten(),
                format!("{review:?}"),
            ))
        })
        .await?;
        let payment = api.payment(&order_id).await?.unwrap_or_default();
        assert_eq!(
            payment["status"], "DECLINED",
            "nothing charged: {payment} {closed}"
        );
        let events = payment_events(&order_id).await?;
        assert_eq!(outcomes(&events), 0, "no charge told: {events:?}");
        let (status, body) = decide(api, &order_id, "APPROVE", Some(&token)).await?;
        assert_eq!(status, 409, "a decision after the cancellation: {body}");
        return Ok(());
    }
    Ok(())
}
