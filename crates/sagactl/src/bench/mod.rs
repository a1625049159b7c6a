//! `sagactl bench`: a load of orders through the running services, reported, never asserted.
//!
//! - **Closed loop** (`--concurrency`): a fixed number of sagas in flight; finds the peak rate.
//! - **Open loop** (`--rate N --duration S`): orders placed on a fixed schedule, latency counted
//!   from when each was due, so a system that slows down cannot hide it by placing fewer orders.
//!
//! Latency is POST → terminal event, by the terminal event's own clock, in HDR histograms; the
//! client never polls the API, it watches the event topics ([`watch`]). The report also says
//! where the time goes (each hop's outbox wait and reaction), where the CPU goes (each stack
//! process, from `/proc`), and, with `--ceilings`, what Kafka alone and Postgres alone can do on
//! this machine, measured in the same run, so the saga's rate reads as a share of the box.

mod broker;
mod ceilings;
mod cpu;
mod load;
mod read_side;
mod report;
mod settle;
mod stats;
mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use saga_events::Service;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::databases::{DatabaseArgs, Databases};
use load::Placer;
use stats::Latencies;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Closed loop: orders to place.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Closed loop: sagas in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: orders per second, placed on a fixed schedule (instead of --orders).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: how long to keep placing orders, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Orders placed (and not measured) before the run, so that it starts warm.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Before the run, wait up to this many seconds for autovacuum to finish what earlier runs
    /// left it (0: start at once). The report says how long it waited and whether it got quiet.
    #[arg(long, default_value_t = 300)]
    pub settle: u64,
    /// Also measure Kafka's and Postgres' own ceilings on this machine (about 30 s).
    #[arg(long)]
    pub ceilings: bool,
    /// Write the report to `<dir>/<date>-<sha>.json` as well.
    #[arg(long, value_name = "DIR")]
    pub save: Option<std::path::PathBuf>,
    /// Order service base URL.
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:8080")]
    pub order_url: String,
    /// The read side's base URL: its projection lag, catch-up and reads are reported too.
    #[arg(long, env = "HISTORY_URL", default_value = "http://127.0.0.1:8085")]
    pub history_url: String,
    /// Inventory service base URL (the benchmark stocks a SKU of its own).
    #[arg(long, env = "INVENTORY_URL", default_value = "http://127.0.0.1:8083")]
    pub inventory_url: String,
    /// Payment service base URL (its `/metrics` say what it asked the broker).
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:8082")]
    pub payment_url: String,
    /// Shipping service base URL (its `/metrics` say what it asked the broker).
    #[arg(long, env = "SHIPPING_URL", default_value = "http://127.0.0.1:8084")]
    pub shipping_url: String,
    /// Inventory's operator token, for stocking that SKU.
    #[arg(
        long,
        env = "INVENTORY_ADMIN_TOKEN",
        default_value = "dev-inventory-admin",
        hide_env_values = true
    )]
    pub admin_token: String,
    /// Give up on an order that has not ended after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Database for Postgres' ceiling (pgbench works in a schema of its own there); its role also
    /// looks for autovacuum's workers before the run (it needs `pg_read_all_stats`).
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://saga_test:saga_test@127.0.0.1:5432/saga_test"
    )]
    pub ceiling_db: String,
    #[command(flatten)]
    pub databases: DatabaseArgs,
}

/// Counters read before and after the run, to turn totals into per-saga figures.
struct Counters {
    cpu: cpu::CpuSample,
    /// Records on each service's event topic.
    records: Vec<(Service, i64)>,
    /// Rows inserted into the inbox of every database and into `orders`: one per reaction or
    /// placed order.
    row_sets: i64,
}

async fn counters(context: &Context, databases: &Databases) -> anyhow::Result<Counters> {
    let mut row_sets = 0;
    for (_, pool) in databases.all() {
        let inserted: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables
             WHERE relname IN ('inbox', 'orders')",
        )
        .fetch_one(pool)
        .await?;
        row_sets += inserted;
    }
    let kafka = context.kafka.clone();
    let topics = context.topics.clone();
    let records = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(Service, i64)>> {
        let reader = saga_messaging::inspect::reader::PartitionReader::new(&kafka)?;
        let mut partitions = Vec::new();
        for service in Service::ALL {
            let topic = topics.events(service);
            for partition in 0..reader.partition_count(&topic)? {
                partitions.push((topic.clone(), partition));
            }
        }
        let watermarks = reader.watermarks_of(&partitions)?;
        Ok(Service::ALL
            .into_iter()
            .map(|service| {
                let topic = topics.events(service);
                let total = watermarks
                    .iter()
                    .filter(|((of, _), _)| *of == topic)
                    .map(|(_, (_, high))| high)
                    .sum();
                (service, total)
            })
            .collect())
    })
    .await??;
    Ok(Counters {
        cpu: cpu::sample(),
        records,
        row_sets,
    })
}

pub async fn run(context: &Context, args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.rate.is_some_and(|r| r <= 0.0) {
        bail!("--concurrency and --rate must be positive");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency.max(64))
        .build()?;
    let databases = args.databases.connect().await?;
    let stop = CancellationToken::new();
    let sagas = watch::start(&context.kafka, context.codec.clone(), stop.clone())?;
    let ended = Arc::new(AtomicUsize::new(0));
    let planned = match args.rate {
        Some(rate) => (rate * args.duration as f64).round() as usize,
        None => args.orders,
    };
    let sku = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let stocked = http
        .put(format!("{}/stock/{sku}", args.inventory_url))
        .bearer_auth(&args.admin_token)
        .json(&json!({ "on_hand": planned + args.warmup + 10 }))
        .send()
        .await
        .context("stocking the benchmark SKU")?;
    if !stocked.status().is_success() {
        bail!("PUT /stock/{sku}: {}", stocked.status());
    }
    let placer = Placer {
        http,
        order_url: args.order_url.clone(),
        sku,
        sagas: sagas.clone(),
        timeout: Duration::from_secs(args.timeout),
        ended: ended.clone(),
    };
    let settled = settle::quiet(
        &databases,
        &args.ceiling_db,
        Duration::from_secs(args.settle),
    )
    .await?;
    for warm in load::closed_loop(&placer, args.warmup, args.warmup.clamp(1, 8)).await {
        warm.context("a warm-up order failed")?;
    }
    ended.store(0, std::sync::atomic::Ordering::Relaxed);

    let service_urls = [
        args.order_url.as_str(),
        args.payment_url.as_str(),
        args.inventory_url.as_str(),
        args.shipping_url.as_str(),
        args.history_url.as_str(),
    ];
    let history_before = read_side::scrape(&placer.http, &args.history_url).await;
    let requests_before = broker::scrape(&placer.http, &service_urls).await;
    let before = counters(context, &databases).await?;
    let started_ms = load::epoch_ms();
    let started = Instant::now();
    let progress = report::progress(ended.clone(), planned);
    let results = match args.rate {
        Some(rate) => {
            load::open_loop(&placer, rate, Duration::from_secs(args.duration), 20_000).await
        }
        None => load::closed_loop(&placer, args.orders, args.concurrency).await,
    };
    progress.finish();
    let client_seconds = started.elapsed().as_secs_f64();
    // Inserts reach Postgres' statistics within a second of their commit, and the clients'
    // request counts their `/metrics` within a second too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = counters(context, &databases).await?;
    let requests_after = broker::scrape(&placer.http, &service_urls).await;
    stop.cancel();

    let mut failures = Vec::new();
    let mut placed = Vec::new();
    for result in results {
        match result {
            Ok(one) => placed.push(one),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    let last_end = placed
        .iter()
        .map(|p| p.ended_at_ms as f64)
        .fold(started_ms, f64::max);
    let seconds = ((last_end - started_ms) / 1000.0).max(f64::EPSILON);
    let mut post = Latencies::new();
    let mut saga = Latencies::new();
    for one in &placed {
        post.record_ms(one.post_ms);
        saga.record_ms(one.saga_ms);
    }
    let order_ids: Vec<String> = placed.iter().map(|p| p.order_id.clone()).collect();
    let hops = stats::hops(&sagas.events_of(&order_ids));
    let completed = placed.len().max(1) as f64;
    let cpu = cpu::delta(&before.cpu, &after.cpu);
    let cpu_total: f64 = cpu.values().sum();
    let produced: i64 = after
        .records
        .iter()
        .zip(&before.records)
        .map(|((_, a), (_, b))| a - b)
        .sum();
    let consumed: i64 = after
        .records
        .iter()
        .zip(&before.records)
        .map(|((topic, a), (_, b))| {
            let readers = Service::ALL
                .iter()
                .filter(|s| s.consumes().contains(topic))
                .count();
            (a - b) * readers as i64
        })
        .sum();
    let per_saga = json!({
        "kafka_records_produced": produced as f64 / completed,
        "kafka_records_consumed": consumed as f64 / completed,
        "row_sets": (after.row_sets - before.row_sets) as f64 / completed,
        "broker_requests": broker::per_saga(&requests_before, &requests_after, completed),
    });
    let confirmed = placed.iter().filter(|p| p.confirmed).count();
    let mut report = json!({
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "orders": planned,
        "concurrency": args.rate.is_none().then_some(args.concurrency),
        "rate": args.rate,
        "duration_seconds": args.rate.map(|_| args.duration),
        "completed": placed.len(),
        "confirmed": confirmed,
        "cancelled": placed.len() - confirmed,
        "failed": failures.len(),
        "failures": failures.iter().take(10).collect::<Vec<_>>(),
        "seconds": seconds,
        "client_seconds": client_seconds,
        "sagas_per_second": placed.len() as f64 / seconds,
        "post_ms": post.summary(),
        "saga_ms": saga.summary(),
        "hops_ms": hops.iter().map(|(k, v)| (k.clone(), v.summary())).collect::<serde_json::Map<_, _>>(),
        "cpu_ms_per_saga": cpu.iter().map(|(k, v)| (k.clone(), json!(v / completed))).chain([("total".to_owned(), json!(cpu_total / completed))]).collect::<serde_json::Map<_, _>>(),
        "per_saga": per_saga,
        "settled": settled,
        "machine": report::machine(),
        "git_sha": report::git_sha(),
        "started_at": chrono::Utc::now().to_rfc3339(),
    });
    report["read_side"] = read_side::measure(
        &placer.http,
        &args.history_url,
        history_before,
        &placed,
        &sagas,
    )
    .await;
    if args.ceilings {
        report["ceilings"] = measure_ceilings(context, &args, &report).await?;
    }
    if let Some(dir) = &args.save {
        let path = report::save(dir, &report)?;
        report["saved_to"] = Value::String(path.display().to_string());
    }
    report::print(context, &report)
}

/// Transactions and records per saga on its happy path: `POST /orders` and the four reactions
/// (Payment, Inventory, Shipping, Order), each committing and publishing one event.
const SAGA_HOPS: f64 = 5.0;

/// Kafka alone and Postgres alone, as sagas per second with this run's records and row sets per
/// saga, and the saga's rate as a share of the lower of the two.
async fn measure_ceilings(
    context: &Context,
    args: &BenchArgs,
    report: &Value,
) -> anyhow::Result<Value> {
    let kafka = ceilings::kafka(&context.kafka, 200_000, 400).await?;
    let kafka_hop = ceilings::kafka_hop(&context.kafka, 300).await?;
    let url = args.ceiling_db.clone();
    let (single, batched, alone) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Value, Value, Value)> {
            Ok((
                ceilings::postgres(&url, 4, 10, 1)?,
                ceilings::postgres(&url, 4, 10, 10)?,
                ceilings::postgres(&url, 1, 5, 1)?,
            ))
        })
        .await??;
    let records = report["per_saga"]["kafka_records_produced"]
        .as_f64()
        .unwrap_or(0.0)
        + report["per_saga"]["kafka_records_consumed"]
            .as_f64()
            .unwrap_or(0.0);
    let row_sets = report["per_saga"]["row_sets"].as_f64().unwrap_or(0.0);
    let kafka_sagas = kafka["records_per_second"].as_f64().unwrap_or(0.0) / records.max(1.0);
    let postgres_sagas = batched["row_sets_per_second"].as_f64().unwrap_or(0.0) / row_sets.max(1.0);
    let lower = kafka_sagas.min(postgres_sagas);
    let rate = report["sagas_per_second"].as_f64().unwrap_or(0.0);
    // A saga is five transactions (the POST's and one per reaction), each followed by one
    // record through the broker to the next: its floor with nothing in flight.
    let hop_floor_ms = kafka_hop["consumed_ms"]["p50"].as_f64().unwrap_or(0.0)
        + alone["latency_average_ms"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "kafka": kafka,
        "kafka_hop": kafka_hop,
        "postgres_one_transaction_at_a_time": alone,
        "hop_floor_ms": hop_floor_ms,
        "saga_floor_ms": SAGA_HOPS * hop_floor_ms,
        "kafka_sagas_per_second": kafka_sagas,
        "postgres_one_row_set_per_transaction": single,
        "postgres_ten_row_sets_per_transaction": batched,
        "postgres_sagas_per_second": postgres_sagas,
        "lower_ceiling_sagas_per_second": lower,
        "saga_rate_percent_of_lower_ceiling": 100.0 * rate / lower.max(f64::EPSILON),
    }))
}
