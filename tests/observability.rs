//! What an operator sees of the saga, against what `make up` starts: one order is one trace in
//! Jaeger with every service and every compensation in it, each consumer's span below the
//! producer span of the record it handled; Prometheus scrapes the four services with the alert
//! rules loaded and has every kind of saga metric; and a stopped Jaeger changes nothing for the
//! saga.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::producer::FutureProducer;
use saga_e2e::*;
use saga_events::{EventCodec, EventMetadata, StockReservationFailed, TopicNames};
use saga_messaging::{Headers, KafkaSettings};
use serde_json::Value;
use tokio::sync::Mutex;

/// The tests that read traces and the one that stops Jaeger take turns.
static JAEGER: Mutex<()> = Mutex::const_new(());

fn jaeger_url() -> String {
    std::env::var("JAEGER_URL").unwrap_or_else(|_| "http://127.0.0.1:16686".into())
}

fn prometheus_url() -> String {
    std::env::var("PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:9090".into())
}

fn random_hex(bytes: usize) -> String {
    let mut hex = String::new();
    while hex.len() < bytes * 2 {
        hex.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    hex.truncate(bytes * 2);
    hex
}

/// One span as Jaeger's query API returns it.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    parent: Option<String>,
    service: String,
    operation: String,
    tags: BTreeMap<String, Value>,
}

impl Span {
    fn tag(&self, key: &str) -> Option<String> {
        self.tags.get(key).map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    fn kind(&self) -> String {
        self.tag("span.kind").unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "{} {} [{}] topic={} offset={} event={}",
            self.service,
            self.operation,
            self.kind(),
            self.tag("messaging.destination.name").unwrap_or_default(),
            self.tag("messaging.kafka.offset").unwrap_or_default(),
            self.tag("saga.event_type").unwrap_or_default(),
        )
    }
}

#[derive(Debug, Default)]
struct Trace {
    spans: Vec<Span>,
}

impl Trace {
    fn by_id(&self, id: &str) -> Option<&Span> {
        self.spans.iter().find(|span| span.id == id)
    }

    fn services(&self) -> BTreeSet<&str> {
        self.spans
            .iter()
            .map(|span| span.service.as_str())
            .collect()
    }

    /// The consumer span of `service` handling an `event_type`.
    fn processed(&self, service: &str, event_type: &str) -> Option<&Span> {
        self.spans.iter().find(|span| {
            span.kind() == "consumer"
                && span.service == service
                && span.tag("saga.event_type").as_deref() == Some(event_type)
        })
    }

    /// The producer span of an `event_type` some service published.
    fn published(&self, event_type: &str) -> Option<&Span> {
        self.spans.iter().find(|span| {
            span.kind() == "producer" && span.tag("saga.event_type").as_deref() == Some(event_type)
        })
    }

    /// Every link that is not cause-above-effect: a consumer span whose parent is not the
    /// producer span of the same record, or a producer span whose parent is not the work (an
    /// HTTP request or a transaction) that wrote its outbox row.
    fn breaks(&self) -> Vec<String> {
        let mut breaks = Vec::new();
        for span in &self.spans {
            let parent = span.parent.as_deref().and_then(|id| self.by_id(id));
            match span.kind().as_str() {
                "consumer" => match parent {
                    Some(parent)
                        if parent.kind() == "producer"
                            && parent.tag("messaging.destination.name")
                                == span.tag("messaging.destination.name")
                            && parent.tag("messaging.kafka.offset")
                                == span.tag("messaging.kafka.offset") => {}
                    Some(parent) => breaks.push(format!(
                        "{} has parent {}",
                        span.describe(),
                        parent.describe()
                    )),
                    None => breaks.push(format!("{} has no parent in the trace", span.describe())),
                },
                "producer" => match parent {
                    Some(parent) if matches!(parent.kind().as_str(), "server" | "client") => {}
                    Some(parent) => breaks.push(format!(
                        "{} has parent {}",
                        span.describe(),
                        parent.describe()
                    )),
                    None => breaks.push(format!("{} has no parent in the trace", span.describe())),
                },
                _ => {}
            }
        }
        breaks
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self.spans.iter().map(Span::describe).collect();
        lines.sort();
        format!("{} spans:\n  {}", lines.len(), lines.join("\n  "))
    }
}

async fn fetch_trace(api: &Api, trace_id: &str) -> anyhow::Result<Trace> {
    let url = format!("{}/api/traces/{trace_id}", jaeger_url());
    let response = api.http.get(&url).send().await?;
    if response.status().as_u16() == 404 {
        return Ok(Trace::default());
    }
    let body: Value = response.error_for_status()?.json().await?;
    let Some(trace) = body["data"].as_array().and_then(|traces| traces.first()) else {
        return Ok(Trace::default());
    };
    let services: BTreeMap<&str, &str> = trace["processes"]
        .as_object()
        .context("a trace without processes")?
        .iter()
        .map(|(id, process)| (id.as_str(), process["serviceName"].as_str().unwrap_or("")))
        .collect();
    let mut spans = Vec::new();
    for span in trace["spans"].as_array().context("a trace without spans")? {
        let parent = span["references"].as_array().and_then(|references| {
            references
                .iter()
                .find(|r| r["refType"] == "CHILD_OF")
                .and_then(|r| r["spanID"].as_str())
                .map(str::to_owned)
        });
        let tags = span["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|tag| Some((tag["key"].as_str()?.to_owned(), tag["value"].clone())))
                    .collect()
            })
            .unwrap_or_default();
        spans.push(Span {
            id: span["spanID"].as_str().unwrap_or_default().to_owned(),
            parent,
            service: services
                .get(span["processID"].as_str().unwrap_or_default())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            operation: span["operationName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            tags,
        });
    }
    Ok(Trace { spans })
}

/// Places an order inside a trace of the caller's: returns (order id, trace id, parent span id).
async fn place_traced(api: &Api, body: &Value) -> anyhow::Result<(String, String, String)> {
    let trace_id = random_hex(16);
    let parent_span = random_hex(8);
    let response = api
        .http
        .post(format!("{}/orders", api.order))
        .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let answered_trace = response
        .headers()
        .get("trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    if status.as_u16() != 201 {
        bail!("POST /orders: {status} {text}");
    }
    assert_eq!(
        answered_trace.as_deref(),
        Some(trace_id.as_str()),
        "the API answers with the caller's trace id"
    );
    let created: Value = serde_json::from_str(&text)?;
    let order_id = created["order_id"]
        .as_str()
        .with_context(|| format!("no order_id in {text}"))?
        .to_owned();
    Ok((order_id, trace_id, parent_span))
}

/// Waits until the trace holds every hop in `hops` (service, event type it processed) and
/// every event in `published`, with no break in the chain; returns it.
async fn wait_for_trace(
    api: &Api,
    trace_id: &str,
    hops: &[(&str, &str)],
    published: &[&str],
) -> anyhow::Result<Trace> {
    wait_for(
        &format!("trace {trace_id} in Jaeger"),
        Duration::from_secs(60),
        || async {
            let trace = fetch_trace(api, trace_id).await?;
            let missing: Vec<String> = hops
                .iter()
                .filter(|(service, event)| trace.processed(service, event).is_none())
                .map(|(service, event)| format!("{service} processing {event}"))
                .chain(
                    published
                        .iter()
                        .filter(|event| trace.published(event).is_none())
                        .map(|event| format!("{event} published")),
                )
                .collect();
            let breaks = trace.breaks();
            let seen = format!(
                "missing {missing:?}; breaks {breaks:?}; {}",
                trace.describe()
            );
            Ok((
                (missing.is_empty() && breaks.is_empty()).then_some(trace),
                seen,
            ))
        },
    )
    .await
}

#[tokio::test]
async fn one_order_is_one_trace_across_the_four_services_causes_above_effects() -> anyhow::Result<()>
{
    let _turn = JAEGER.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("traced");
    api.set_stock(&sku, 5).await?;
    let (order_id, trace_id, caller_span) =
        place_traced(&api, &order_body(&[(&sku, 1, 1500)], "GB", "tok_visa")).await?;
    let order = api
        .wait_terminal(&order_id, Duration::from_secs(60))
        .await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");

    // Five hops: OrderPlaced to Payment, PaymentAuthorized to Inventory, StockReserved to
    // Shipping, ShipmentScheduled to Order, and OrderConfirmed back to Order.
    let trace = wait_for_trace(
        &api,
        &trace_id,
        &[
            ("payment", "OrderPlaced"),
            ("inventory", "PaymentAuthorized"),
            ("shipping", "StockReserved"),
            ("order", "ShipmentScheduled"),
            ("order", "OrderConfirmed"),
        ],
        &["OrderConfirmed"],
    )
    .await?;
    let services = trace.services();
    for service in ["order", "payment", "inventory", "shipping"] {
        assert!(
            services.contains(service),
            "{service} in the trace: {}",
            trace.describe()
        );
    }
    // The request is the root, below the caller's own span.
    let request = trace
        .spans
        .iter()
        .find(|span| span.kind() == "server")
        .with_context(|| format!("no HTTP span: {}", trace.describe()))?;
    assert_eq!(request.service, "order");
    assert_eq!(request.operation, "POST /orders");
    assert_eq!(request.parent.as_deref(), Some(caller_span.as_str()));
    assert_eq!(
        request.tag("http.response.status_code").as_deref(),
        Some("201")
    );
    // The first publish hangs below the request; Payment's handling of it below that.
    let placed = trace
        .published("OrderPlaced")
        .with_context(|| format!("OrderPlaced not published: {}", trace.describe()))?;
    assert_eq!(placed.parent.as_deref(), Some(request.id.as_str()));
    assert_eq!(placed.tag("messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        placed.tag("messaging.kafka.message.key").as_deref(),
        Some(order_id.as_str())
    );
    let at_payment = trace
        .processed("payment", "OrderPlaced")
        .context("payment's process span")?;
    assert_eq!(at_payment.parent.as_deref(), Some(placed.id.as_str()));
    assert_eq!(
        at_payment.tag("messaging.consumer.group.name").as_deref(),
        Some("payment-service")
    );
    // The database work of the handling sits inside its process span.
    assert!(
        trace.spans.iter().any(
            |span| span.parent.as_deref() == Some(at_payment.id.as_str())
                && span.tag("db.system.name").as_deref() == Some("postgresql")
        ),
        "a transaction span below payment's process span: {}",
        trace.describe()
    );
    // Shipping's fulfilment is in the order's trace too: one span per step.
    wait_for(
        "the fulfilment's steps in the order's trace",
        Duration::from_secs(30),
        || async {
            let trace = fetch_trace(&api, &trace_id).await?;
            let steps: BTreeSet<String> = trace
                .spans
                .iter()
                .filter(|s| s.service == "shipping" && s.operation == "workflow step")
                .filter_map(|s| s.tag("step"))
                .collect();
            let all = ["allocate", "label", "pickup"]
                .iter()
                .all(|step| steps.contains(*step));
            Ok((all.then_some(()), trace.describe()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_compensation_is_in_the_trace_of_its_order() -> anyhow::Result<()> {
    let _turn = JAEGER.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("traced-out-of-stock");
    api.set_stock(&sku, 0).await?;
    let (order_id, trace_id, _) =
        place_traced(&api, &order_body(&[(&sku, 1, 1500)], "GB", "tok_visa")).await?;
    let order = api
        .wait_terminal(&order_id, Duration::from_secs(60))
        .await?;
    assert_eq!(order["status"], "CANCELLED", "{order}");

    let trace = wait_for_trace(
        &api,
        &trace_id,
        &[
            ("payment", "OrderPlaced"),
            ("inventory", "PaymentAuthorized"),
            ("payment", "StockReservationFailed"),
            ("order", "PaymentRefunded"),
        ],
        &["PaymentRefunded", "OrderCancelled"],
    )
    .await?;
    // The refund is an effect of the failed reservation, written by the handling of it.
    let refund = trace.published("PaymentRefunded").context("the refund")?;
    let handling = refund
        .parent
        .as_deref()
        .and_then(|id| trace.by_id(id))
        .and_then(|transaction| transaction.parent.as_deref())
        .and_then(|id| trace.by_id(id))
        .with_context(|| format!("the refund's cause: {}", trace.describe()))?;
    assert_eq!(handling.service, "payment");
    assert_eq!(
        handling.tag("saga.event_type").as_deref(),
        Some("StockReservationFailed"),
        "{}",
        trace.describe()
    );
    Ok(())
}

#[tokio::test]
async fn a_stopped_jaeger_changes_nothing_for_the_saga() -> anyhow::Result<()> {
    let _turn = JAEGER.lock().await;
    let api = Api::from_env()?;
    let sku = unique_sku("no-jaeger");
    api.set_stock(&sku, 100).await?;
    stack_ok(&["stop", "jaeger"], &[])?;
    let outcome = async {
        let mut orders = Vec::new();
        for _ in 0..10 {
            orders.push(
                api.place(&order_body(&[(&sku, 1, 700)], "GB", "tok_visa"))
                    .await?,
            );
        }
        for order_id in &orders {
            let order = api.wait_terminal(order_id, Duration::from_secs(60)).await?;
            assert_eq!(order["status"], "CONFIRMED", "{order}");
        }
        anyhow::Ok(())
    }
    .await;
    // Jaeger comes back whatever happened, and export resumes on its own.
    stack_ok(&["up"], &[])?;
    outcome?;
    let (order_id, trace_id, _) =
        place_traced(&api, &order_body(&[(&sku, 1, 700)], "GB", "tok_visa")).await?;
    api.wait_terminal(&order_id, Duration::from_secs(60))
        .await?;
    wait_for_trace(
        &api,
        &trace_id,
        &[("payment", "OrderPlaced"), ("order", "ShipmentScheduled")],
        &[],
    )
    .await?;
    Ok(())
}

/// Runs an instant query; returns its result vector.
async fn prometheus_query(api: &Api, query: &str) -> anyhow::Result<Vec<Value>> {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", prometheus_url()),
        &[("query", query)],
    )?;
    let body: Value = api
        .http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// What a metric check is called, its PromQL, and what a sane value is.
type MetricCheck = (&'static str, String, fn(f64) -> bool);

/// The value of a one-element query result.
fn scalar(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn prometheus_scrapes_every_service_with_the_alert_rules_loaded() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    // Targets: the four services, each up.
    wait_for(
        "the four services up in Prometheus",
        Duration::from_secs(60),
        || async {
            let body: Value = api
                .http
                .get(format!("{}/api/v1/targets", prometheus_url()))
                .send()
                .await?
                .json()
                .await?;
            let targets: BTreeMap<String, String> = body["data"]["activeTargets"]
                .as_array()
                .map(|targets| {
                    targets
                        .iter()
                        .map(|t| {
                            (
                                t["labels"]["job"].as_str().unwrap_or("").to_owned(),
                                t["health"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let up = ["order", "payment", "inventory", "shipping", "history"]
                .iter()
                .all(|job| targets.get(*job).map(String::as_str) == Some("up"));
            Ok((up.then_some(()), format!("{targets:?}")))
        },
    )
    .await?;
    // Rules: every group of alerts.yml loaded, every rule healthy.
    let rules_file = std::fs::read_to_string(repo_root().join("deploy/observability/alerts.yml"))?;
    let expected_alerts = rules_file.matches("- alert: ").count();
    let body: Value = api
        .http
        .get(format!("{}/api/v1/rules", prometheus_url()))
        .send()
        .await?
        .json()
        .await?;
    let groups = body["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let loaded: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(loaded.len(), expected_alerts, "rules loaded: {body}");
    for rule in &loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // A few orders (one compensated), and one event Payment refuses: retried, then dead-lettered.
    let sku = unique_sku("metrics");
    api.set_stock(&sku, 2).await?;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(
            api.place(&order_body(&[(&sku, 1, 900)], "GB", "tok_visa"))
                .await?,
        );
    }
    for order_id in &orders {
        api.wait_terminal(order_id, Duration::from_secs(60)).await?;
    }
    let unknown_order = uuid::Uuid::new_v4().to_string();
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;
    let refused = codec
        .encode(
            &StockReservationFailed {
                metadata: EventMetadata::first(&unknown_order, "metrics-test"),
                order_id: unknown_order.clone(),
                unavailable_skus: vec![sku.clone()],
                reason: "an order Payment never saw".into(),
            }
            .into(),
        )
        .await?;
    let producer: FutureProducer = KafkaSettings::new(bootstrap()).producer_config().create()?;
    produce(
        &producer,
        "inventory.events",
        unknown_order.as_bytes(),
        &refused.payload,
        &Headers::new(),
    )
    .await?;

    // Each kind of metric, with a sane value.
    let checks: [MetricCheck; 9] = [
        (
            "consumer lag per topic and partition, back to 0 once the orders are handled",
            r#"max(saga_consumer_lag{job="payment",topic="order.events"})"#.into(),
            |v| v == 0.0,
        ),
        (
            "the outbox backlog, measured from the table, empty once everything is published",
            r#"max(saga_outbox_backlog{job="order"})"#.into(),
            |v| v == 0.0,
        ),
        (
            "outbox rows the broker refused: none",
            r#"max(saga_outbox_refused_rows{job="payment"})"#.into(),
            |v| v == 0.0,
        ),
        (
            "partitions with a lag series",
            r#"count(saga_consumer_lag{job="payment",topic="order.events"})"#.into(),
            |v| v >= 1.0,
        ),
        (
            "median age of events when handled, in seconds",
            r#"histogram_quantile(0.5, sum by (le) (saga_event_age_seconds_bucket{job="inventory",event_type="PaymentAuthorized"}))"#.into(),
            |v| (0.0..60.0).contains(&v),
        ),
        (
            "mean handling time, in seconds",
            r#"sum(saga_event_handling_seconds_sum{job="shipping"}) / sum(saga_event_handling_seconds_count{job="shipping"})"#.into(),
            |v| v > 0.0 && v < 5.0,
        ),
        (
            "mean relay publish latency, in seconds",
            r#"sum(saga_relay_publish_seconds_sum{job="order"}) / sum(saga_relay_publish_seconds_count{job="order"})"#.into(),
            |v| v > 0.0 && v < 5.0,
        ),
        (
            "retries scheduled by service, topic and error kind",
            r#"sum(saga_retries_scheduled_total{service="payment",topic="inventory.events",error_kind="Permanent"})"#.into(),
            |v| v >= 1.0,
        ),
        (
            "dead letters by service, topic and error kind",
            r#"sum(saga_dead_letters_total{service="payment",topic="inventory.events",error_kind="Permanent"})"#.into(),
            |v| v >= 1.0,
        ),
    ];
    for (what, query, sane) in checks {
        wait_for(what, Duration::from_secs(60), || async {
            let result = prometheus_query(&api, &query).await?;
            let value = scalar(&result);
            Ok((
                value.filter(|v| sane(*v)),
                format!("{query} = {value:?} ({result:?})"),
            ))
        })
        .await?;
    }
    Ok(())
}
