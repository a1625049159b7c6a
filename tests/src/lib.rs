//! Helpers for the black-box tests: where the checkout and the stack are, how to drive the stack
//! script, the services' HTTP APIs, and what is on the topics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use saga_events::{EventCodec, SagaEvent, Service};
use saga_messaging::Delivery as RawRecord;
use saga_messaging::KafkaSettings;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::{Value, json};

/// The checkout's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Output of one stack command, kept whole so that a failing test can show it.
#[derive(Debug)]
pub struct StackRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl StackRun {
    fn from_output(output: Output) -> Self {
        Self {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for StackRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Runs `deploy/local/stack.sh <command>` and waits for it (it has its own deadlines). The
/// services are already built by `make test`, so the stack does not rebuild them.
pub fn stack(command: &str) -> anyhow::Result<StackRun> {
    stack_with(&[command], &[])
}

/// `deploy/local/stack.sh <args…>` with extra environment (e.g. `FAULT_INJECTION` for the
/// services it starts); fails unless it succeeds.
pub fn stack_ok(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<StackRun> {
    let run = stack_with(args, env)?;
    if !run.success {
        bail!("stack.sh {}:\n{run}", args.join(" "));
    }
    Ok(run)
}

fn stack_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<StackRun> {
    let output = Command::new(repo_root().join("deploy/local/stack.sh"))
        .args(args)
        .env("SAGA_SKIP_BUILD", "1")
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .output()?;
    Ok(StackRun::from_output(output))
}

/// [`stack_ok`] off the runtime's threads: the stack script waits (for readiness, for a process
/// to stop), and a test's runtime keeps serving its other tasks meanwhile.
pub async fn stack_blocking(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        stack_ok(&args, &env).map(|_| ())
    })
    .await?
}

/// Restarts `service` with `env` added (and nothing else changed).
pub fn restart(service: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    stack_ok(&["stop", service], &[])?;
    stack_ok(&["up"], env)?;
    Ok(())
}

/// Runs the `sagactl` binary `make test` built; returns its stdout, failing on a non-zero exit
/// unless `allow_failure`.
pub fn sagactl(args: &[&str], allow_failure: bool) -> anyhow::Result<(bool, String)> {
    let binary = std::env::var_os("SAGACTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/sagactl"));
    let output = Command::new(&binary)
        .args(args)
        .output()
        .with_context(|| format!("running {} (cargo build -p sagactl)", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && !allow_failure {
        bail!(
            "sagactl {} failed:\n{stdout}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((output.status.success(), stdout))
}

/// Polls `probe` until it returns `Some`, or fails after `deadline` showing the last thing it saw.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Option<T>, String)>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let last_seen = match probe().await {
            Ok((Some(value), _)) => return Ok(value),
            Ok((None, seen)) => seen,
            Err(error) => format!("error: {error:#}"),
        };
        if tokio::time::Instant::now() >= until {
            bail!("timed out after {deadline:?} waiting for {what}; last saw: {last_seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The four services' HTTP APIs.
/// The operator token `PUT /stock/{sku}` requires: `INVENTORY_ADMIN_TOKEN`, or `make up`'s dev
/// default.
pub fn admin_token() -> String {
    std::env::var("INVENTORY_ADMIN_TOKEN").unwrap_or_else(|_| "dev-inventory-admin".into())
}

#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub order: String,
    pub payment: String,
    pub inventory: String,
    pub shipping: String,
    /// The read side.
    pub history: String,
}

fn service_url(var: &str, port: u16) -> String {
    std::env::var(var).unwrap_or_else(|_| format!("http://127.0.0.1:{port}"))
}

impl Api {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()?,
            order: service_url("ORDER_URL", 8080),
            payment: service_url("PAYMENT_URL", 8082),
            inventory: service_url("INVENTORY_URL", 8083),
            shipping: service_url("SHIPPING_URL", 8084),
            history: service_url("HISTORY_URL", 8085),
        })
    }

    pub async fn set_stock(&self, sku: &str, on_hand: i64) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}/stock/{sku}", self.inventory))
            .bearer_auth(admin_token())
            .json(&json!({ "on_hand": on_hand }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "PUT /stock/{sku}: {} {}",
                response.status(),
                response.text().await?
            );
        }
        Ok(())
    }

    /// `GET` that answers `Some(json)` on 200 and `None` on 404.
    pub async fn get_json(&self, url: &str) -> anyhow::Result<Option<Value>> {
        let response = self.http.get(url).send().await?;
        match response.status().as_u16() {
            200 => Ok(Some(response.json().await?)),
            404 => Ok(None),
            status => bail!("GET {url}: {status} {}", response.text().await?),
        }
    }

    pub async fn order(&self, order_id: &str) -> anyhow::Result<Option<Value>> {
        self.get_json(&format!("{}/orders/{order_id}", self.order))
            .await
    }

    pub async fn timeline(&self, order_id: &str) -> anyhow::Result<Option<Value>> {
        self.get_json(&format!("{}/orders/{order_id}/timeline", self.order))
            .await
    }

    pub async fn payment(&self, order_id: &str) -> anyhow::Result<Option<Value>> {
        self.get_json(&format!("{}/payments/{order_id}", self.payment))
            .await
    }

    pub async fn stock(&self, sku: &str) -> anyhow::Result<Option<Value>> {
        self.get_json(&format!("{}/stock/{sku}", self.inventory))
            .await
    }

    pub async fn shipment(&self, order_id: &str) -> anyhow::Result<Option<Value>> {
        self.get_json(&format!("{}/shipments/{order_id}", self.shipping))
            .await
    }

    /// Places an order; returns its id (fails unless the answer is 201).
    pub async fn place(&self, body: &Value) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/orders", self.order))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if status.as_u16() != 201 {
            bail!("POST /orders: {status} {text}");
        }
        let created: Value = serde_json::from_str(&text)?;
        created["order_id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no order_id in {text}"))
    }

    /// The read side's `GET /history/orders/{order_id}` with `query` (e.g. `as_of=…`): the status
    /// and the body (a problem document unless 200).
    pub async fn history_order(&self, order_id: &str, query: &str) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/history/orders/{order_id}?{query}", self.history);
        let response = self.http.get(&url).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// Waits until the read side shows the order with `status` (and, once cancelled, its
    /// compensation COMPLETED) and returns it.
    pub async fn wait_history(
        &self,
        order_id: &str,
        status: &str,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        wait_for(
            &format!("the read side to show order {order_id} {status}"),
            deadline,
            || async {
                let (code, body) = self.history_order(order_id, "").await?;
                let done = code == 200
                    && body["status"] == status
                    && (status != "CANCELLED" || body["compensation"] == "COMPLETED");
                Ok((done.then(|| body.clone()), format!("{code} {body}")))
            },
        )
        .await
    }

    /// Waits until the order is CONFIRMED or CANCELLED and returns it.
    pub async fn wait_terminal(&self, order_id: &str, deadline: Duration) -> anyhow::Result<Value> {
        wait_for(&format!("order {order_id} to end"), deadline, || async {
            let order = self.order(order_id).await?;
            let status = order
                .as_ref()
                .and_then(|o| o["status"].as_str())
                .unwrap_or("")
                .to_owned();
            let done = matches!(status.as_str(), "CONFIRMED" | "CANCELLED");
            let seen = format!("{order:?}");
            Ok((done.then_some(order).flatten(), seen))
        })
        .await
    }
}

/// A unique SKU for one test, so that tests running side by side never share stock.
pub fn unique_sku(label: &str) -> String {
    format!(
        "e2e-{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A valid order body: `lines` of (sku, quantity, unit price), shipped to `country`.
pub fn order_body(lines: &[(&str, i64, i64)], country: &str, payment_method: &str) -> Value {
    json!({
        "customer_id": "cust-e2e",
        "items": lines.iter().map(|(sku, quantity, price)| json!({
            "sku": sku, "quantity": quantity, "unit_price_cents": price
        })).collect::<Vec<_>>(),
        "currency": "EUR",
        "payment_method": payment_method,
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London",
            "postal_code": "N1 9GU", "country": country
        }
    })
}

/// One record of an order found on a topic.
#[derive(Debug, Clone)]
pub struct SeenEvent {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub event: SagaEvent,
}

/// Reads every record keyed by `order_id` on the four event topics (only the partition the key
/// maps to) and decodes them through the registry, in topic then offset order.
pub async fn events_on_topics(
    codec: &EventCodec,
    order_id: &str,
) -> anyhow::Result<Vec<SeenEvent>> {
    let topics = codec.topics().clone();
    let key = order_id.to_owned();
    let raw = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<RawRecord>> {
        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
        let mut records = Vec::new();
        for service in Service::ALL {
            records.extend(reader.records_with_key(&topics.events(service), &key)?);
        }
        Ok(records)
    })
    .await??;
    let mut seen = Vec::with_capacity(raw.len());
    for record in raw {
        let event = codec.decode(&record.payload).await.with_context(|| {
            format!(
                "{}[{}]@{} does not decode",
                record.topic, record.partition, record.offset
            )
        })?;
        let key = record.key_str().unwrap_or_default().to_owned();
        seen.push(SeenEvent {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            key,
            headers: record.headers.to_text_map(),
            payload: record.payload,
            event,
        });
    }
    Ok(seen)
}

/// The offset a consumer group has committed on one partition (None if nothing yet).
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
    Ok(saga_messaging::inspect::reader::committed_offset(
        &KafkaSettings::new(bootstrap()),
        group,
        topic,
        partition,
    )?)
}

/// How long the fault and poison tests give sagas to settle after something broke.
pub const SETTLE: Duration = Duration::from_secs(180);

/// The oracle: `sagactl audit` must find no violation once sagas have settled.
pub fn assert_audit_clean(after: &str) -> anyhow::Result<Value> {
    let (clean, out) = sagactl(&["audit", "--settle", "120", "--json"], true)?;
    let report: Value = serde_json::from_str(out.trim()).unwrap_or(Value::String(out.clone()));
    assert!(clean, "audit after {after} found violations:\n{report:#}");
    Ok(report)
}

/// Every dead letter of a service as `sagactl dlq list --json` prints them.
pub fn dead_letters(service: &str) -> anyhow::Result<Vec<Value>> {
    let (_, out) = sagactl(&["dlq", "list", service, "--json"], false)?;
    Ok(serde_json::from_str::<Value>(out.trim())?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Waits for a dead letter at `service` that `matches`.
pub async fn wait_for_dead_letter_where(
    service: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_for(
        &format!("a dead letter of {what} at {service}"),
        Duration::from_secs(90),
        || async {
            let letters = dead_letters(service)?;
            let found = letters.iter().find(|l| matches(l)).cloned();
            Ok((
                found,
                format!("{} dead letters at {service}", letters.len()),
            ))
        },
    )
    .await
}

/// Waits for the dead letter at `service` of the record keyed `key` that came from
/// `source_topic`.
pub async fn wait_for_dead_letter(
    service: &str,
    key: &str,
    source_topic: &str,
) -> anyhow::Result<Value> {
    wait_for_dead_letter_where(service, key, |l| {
        l["order_id"].as_str() == Some(key)
            && l["source"].as_str().unwrap_or("").starts_with(source_topic)
    })
    .await
}

/// A connection to one service's database (`orders`, `payments`, `inventory`, `shipping`) as its
/// own role: for checks no API answers, such as what a service holds parked.
pub async fn service_db(database: &str) -> anyhow::Result<sqlx::PgPool> {
    let port = std::env::var("PGPORT").unwrap_or_else(|_| "5432".into());
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!(
            "postgres://{database}:{database}@127.0.0.1:{port}/{database}"
        ))
        .await?)
}

/// The read side's projection held back, as `sagactl history rebuild` holds it while it
/// compares: the projector waits at its next batch until [`HeldProjection::release`].
#[derive(Debug)]
pub struct HeldProjection {
    holder: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

impl HeldProjection {
    pub async fn hold() -> anyhow::Result<Self> {
        let mut holder = service_db("history").await?.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(saga_history::projection::store::PROJECTION_LOCK)
            .execute(&mut *holder)
            .await?;
        Ok(Self { holder })
    }

    pub async fn release(mut self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(saga_history::projection::store::PROJECTION_LOCK)
            .execute(&mut *self.holder)
            .await?;
        Ok(())
    }
}

/// A new order id whose records land on `partition` of a topic with `partitions` partitions.
pub fn order_id_on_partition(partition: i32, partitions: i32) -> uuid::Uuid {
    loop {
        let id = uuid::Uuid::new_v4();
        if saga_messaging::kafka::partition_for(id.to_string().as_bytes(), partitions) == partition
        {
            return id;
        }
    }
}

/// Places orders until one lands on `partition` of the event topics, and waits for it to end.
pub async fn an_order_on_partition(api: &Api, partition: i32) -> anyhow::Result<Value> {
    let sku = unique_sku("same-partition");
    api.set_stock(&sku, 50).await?;
    for _ in 0..50 {
        let order_id = api
            .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
            .await?;
        if saga_messaging::kafka::partition_for(order_id.as_bytes(), 6) == partition {
            return api.wait_terminal(&order_id, SETTLE).await;
        }
    }
    anyhow::bail!("no order landed on partition {partition} in 50 tries")
}

/// Records `service`'s consumer group has not committed yet, over the event topics it reads.
pub fn group_lag(service: Service) -> anyhow::Result<i64> {
    let kafka = KafkaSettings::new(bootstrap());
    let topics = saga_events::TopicNames::default();
    let reader = PartitionReader::new(&kafka)?;
    let group = format!("{}-service", service.name());
    let mut lag = 0;
    for &source in service.consumes() {
        let topic = topics.events(source);
        let partitions: Vec<i32> = (0..reader.partition_count(&topic)?).collect();
        for (partition, committed) in
            saga_messaging::inspect::reader::committed_offsets(&kafka, &group, &topic, &partitions)?
        {
            let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
                reader.consumer(),
                &topic,
                partition,
                Duration::from_secs(10),
            )?;
            lag += (high - committed.unwrap_or(0)).max(0);
        }
    }
    Ok(lag)
}

/// Records the four service groups have not committed yet.
pub fn total_lag() -> anyhow::Result<i64> {
    Service::ALL.into_iter().map(group_lag).sum()
}

/// Waits until `service` has consumed everything on the topics it reads.
pub async fn wait_caught_up(service: Service) -> anyhow::Result<()> {
    wait_for(
        &format!("{} to consume everything", service.name()),
        Duration::from_secs(90),
        || async move {
            let lag = tokio::task::spawn_blocking(move || group_lag(service)).await??;
            Ok(((lag == 0).then_some(()), format!("lag {lag}")))
        },
    )
    .await
}

/// Where a produced record landed.
#[derive(Debug, Clone, Copy)]
pub struct Landed {
    pub partition: i32,
    pub offset: i64,
}

/// Produces one record straight to `topic`, as a misbehaving (or foreign) producer would.
pub async fn produce(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &saga_messaging::Headers,
) -> anyhow::Result<Landed> {
    let delivered = producer
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers.to_kafka()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(Landed {
        partition: delivered.partition,
        offset: delivered.offset,
    })
}

/// Posts `body` under the Idempotency-Key `key` until an Order replica answers 201, trying the
/// `order_urls` in turn (from `first`): a crash or a kill of a replica loses nor doubles nothing.
pub async fn place_until_accepted(
    api: &Api,
    order_urls: &[String],
    first: usize,
    body: &Value,
    key: &str,
) -> anyhow::Result<String> {
    let attempt = std::sync::atomic::AtomicUsize::new(first);
    wait_for(
        "an order to be accepted",
        Duration::from_secs(150),
        || async {
            let turn = attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let base = &order_urls[turn % order_urls.len().max(1)];
            let response = api
                .http
                .post(format!("{base}/orders"))
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

/// Waits until `counter` (orders a background load got accepted) reaches `count`.
pub async fn wait_counted(
    counter: &std::sync::atomic::AtomicUsize,
    count: usize,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{count} orders accepted"),
        Duration::from_secs(120),
        || async {
            let n = counter.load(std::sync::atomic::Ordering::Relaxed);
            Ok(((n >= count).then_some(()), format!("{n} accepted")))
        },
    )
    .await
}

/// Every partition still flows: a new order of a SKU of its own is confirmed.
pub async fn assert_a_new_order_confirms(api: &Api, label: &str) -> anyhow::Result<()> {
    let sku = unique_sku(label);
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;
    let order = api.wait_terminal(&order_id, SETTLE).await?;
    assert_eq!(order["status"], "CONFIRMED", "after {label}: {order}");
    Ok(())
}

/// The end offsets of every partition of `topic`: what a command that must change nothing on it
/// is checked against.
pub fn end_offsets(topic: &str) -> anyhow::Result<Vec<i64>> {
    let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
    (0..reader.partition_count(topic)?)
        .map(|partition| Ok(reader.watermarks(topic, partition)?.1))
        .collect()
}

/// How many orders Order holds with a line of `sku`: an order a retried request placed twice
/// would count twice.
pub async fn orders_with_sku(sku: &str) -> anyhow::Result<i64> {
    let db = service_db("orders").await?;
    let count = sqlx::query_scalar(
        "SELECT count(*) FROM orders
         WHERE items @> jsonb_build_array(jsonb_build_object('sku', $1::text))",
    )
    .bind(sku)
    .fetch_one(&db)
    .await?;
    db.close().await;
    Ok(count)
}

/// Requires `order_ids` to be `count` distinct orders, each held once by Order.
pub async fn assert_placed_once_each(
    order_ids: &[String],
    count: usize,
    sku: &str,
) -> anyhow::Result<()> {
    let distinct: std::collections::HashSet<&String> = order_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        count,
        "{count} requests did not make {count} distinct orders"
    );
    assert_eq!(
        orders_with_sku(sku).await?,
        i64::try_from(count)?,
        "Order holds other than one order per request of {sku}"
    );
    Ok(())
}

/// One saga path: the order to place and how it must end.
#[derive(Debug)]
pub struct Path {
    pub name: &'static str,
    pub country: &'static str,
    pub payment_method: &'static str,
    pub stock: i64,
    pub status: &'static str,
    pub reason: Option<&'static str>,
}

/// One order of each path of the saga.
pub const PATHS: [Path; 4] = [
    Path {
        name: "happy",
        country: "GB",
        payment_method: "tok_visa",
        stock: 5,
        status: "CONFIRMED",
        reason: None,
    },
    Path {
        name: "declined",
        country: "GB",
        payment_method: "tok_decline",
        stock: 5,
        status: "CANCELLED",
        reason: Some("PAYMENT_DECLINED"),
    },
    Path {
        name: "out-of-stock",
        country: "GB",
        payment_method: "tok_visa",
        stock: 0,
        status: "CANCELLED",
        reason: Some("OUT_OF_STOCK"),
    },
    Path {
        name: "shipping-failed",
        country: "AQ",
        payment_method: "tok_visa",
        stock: 5,
        status: "CANCELLED",
        reason: Some("SHIPPING_FAILED"),
    },
];
