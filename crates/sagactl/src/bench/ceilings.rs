//! The box's own ceilings, measured in the same run as the saga: Kafka alone and Postgres alone,
//! each doing the saga's kind of work as fast as it can, so that the saga's rate can be read as
//! a share of what this machine can do at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use saga_messaging::KafkaSettings;
use serde_json::{Value, json};

use super::stats::Latencies;

/// A topic of the benchmark's own for one measurement, deleted after it.
struct ScratchTopic {
    name: String,
    admin: AdminClient<DefaultClientContext>,
    options: AdminOptions,
}

impl ScratchTopic {
    async fn create(kafka: &KafkaSettings, prefix: &str, partitions: i32) -> anyhow::Result<Self> {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> = kafka.probe_config().create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for result in admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await?
        {
            result.map_err(|(t, code)| anyhow::anyhow!("creating {t}: {code}"))?;
        }
        Ok(Self {
            name,
            admin,
            options,
        })
    }

    /// Deletes it; a topic left behind only takes a little of the broker's disk.
    async fn delete(self) {
        let _ = self.admin.delete_topics(&[&self.name], &self.options).await;
    }
}

/// Records per second through the broker: produced with the relay's producer settings
/// (`acks=all`, idempotent) and consumed back by a reader, both at once, `count` records of
/// `size` bytes over 6 partitions.
pub async fn kafka(kafka: &KafkaSettings, count: usize, size: usize) -> anyhow::Result<Value> {
    let scratch = ScratchTopic::create(kafka, "bench-ceiling", 6).await?;
    let settings = kafka.clone();
    let name = scratch.name.clone();
    let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let consumer: BaseConsumer = settings
            .reader_config()
            .set("enable.partition.eof", "false")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..6 {
            assignment.add_partition_offset(&name, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let producer: ThreadedProducer<_> = settings.producer_config().create()?;
        let payload = vec![b'x'; size];
        let started = Instant::now();
        let keys: Vec<String> = (0..1000).map(|k| format!("key-{k}")).collect();
        let mut consumed = 0;
        for i in 0..count {
            let key = &keys[i % keys.len()];
            let mut record = BaseRecord::to(&name).key(key).payload(&payload);
            // A full queue is the producer's back-pressure: wait, keep consuming.
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, returned)) => {
                        record = returned;
                        consumed += drain(&consumer, Duration::from_millis(1));
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while consumed < count {
            if Instant::now() > deadline {
                bail!("only {consumed} of {count} records came back within 120 s");
            }
            consumed += drain(&consumer, Duration::from_millis(100));
        }
        producer.flush(Duration::from_secs(10))?;
        Ok(count as f64 / started.elapsed().as_secs_f64())
    })
    .await??;
    scratch.delete().await;
    Ok(json!({
        "records_per_second": measured,
        "records": count,
        "record_bytes": size,
        "method": "produce (acks=all, idempotent, the relay's settings) and consume back at once",
    }))
}

/// One hop through the broker with nothing else in flight: a record produced with the relay's
/// settings (`acks=all`, idempotent, no linger), its acknowledgement, and its arrival at
/// [`HOP_GROUPS`] consumer groups with the services' settings (each a group member whose fetch
/// waits at the broker, polled on a thread of its own and handed to a task, as the services'
/// lanes are). `samples` records, one at a time, a few milliseconds apart so that each finds
/// the fetches waiting, as a saga's next hop does. What a hop takes above this is the
/// services' own.
pub async fn kafka_hop(kafka: &KafkaSettings, samples: usize) -> anyhow::Result<Value> {
    let scratch = ScratchTopic::create(kafka, "bench-hop", 1).await?;
    let measured = hop_samples(kafka, &scratch.name, samples).await;
    scratch.delete().await;
    let (acked, consumed) = measured?;
    Ok(json!({
        "acknowledged_ms": acked.summary(),
        "consumed_ms": consumed.summary(),
        "samples": samples,
        "groups": HOP_GROUPS,
        "method": format!("one 400 B record at a time, 5 ms apart: produced (the relay's settings) → acknowledged, and → polled by each of {HOP_GROUPS} consumer groups (the services' settings) and handed to a task"),
    }))
}

/// Consumer groups that read each record of the hop's floor: a saga's event topics are each
/// read by three to four services' groups (and the read side's, whose fetches wait to fill), and
/// the broker answers every waiting fetch of a topic when a record lands on it.
const HOP_GROUPS: usize = 4;

async fn hop_samples(
    kafka: &KafkaSettings,
    topic: &str,
    samples: usize,
) -> anyhow::Result<(Latencies, Latencies)> {
    // Every client is made before any thread starts, so that a failure leaves none running.
    let producer: FutureProducer = kafka.producer_config().create()?;
    let mut consumers = Vec::with_capacity(HOP_GROUPS);
    for _ in 0..HOP_GROUPS {
        let group = format!("bench-hop-{}", uuid::Uuid::new_v4().simple());
        let consumer: BaseConsumer = kafka.consumer_config(&group, None).create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        consumers.push(consumer);
    }
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut polling = Vec::with_capacity(HOP_GROUPS);
    for consumer in consumers {
        let (stop, arrivals) = (Arc::clone(&stop), arrivals.clone());
        polling.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100))
                    && arrivals.send(Instant::now()).is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(arrivals);
    let payload = vec![b'x'; 400];
    let mut acked = Latencies::new();
    let mut consumed = Latencies::new();
    // The first records open the connections and find the consumers' positions; not counted.
    let warmup = 20;
    let mut outcome = Ok(());
    'samples: for sample in 0..warmup + samples {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        let record = FutureRecord::to(topic).key("hop").payload(&payload);
        if let Err((error, _)) = producer.send(record, Duration::from_secs(10)).await {
            outcome = Err(anyhow::anyhow!("producing a sample: {error}"));
            break;
        }
        let ack = sent.elapsed();
        for _ in 0..HOP_GROUPS {
            let Ok(Some(arrival)) =
                tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await
            else {
                outcome = Err(anyhow::anyhow!(
                    "sample {sample} did not reach every group within 10 s"
                ));
                break 'samples;
            };
            if sample >= warmup {
                consumed.record_ms(arrival.duration_since(sent).as_secs_f64() * 1000.0);
            }
        }
        if sample >= warmup {
            acked.record_ms(ack.as_secs_f64() * 1000.0);
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(arrived);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in polling {
            let _ = thread.join();
        }
    })
    .await;
    outcome.map(|()| (acked, consumed))
}

fn drain(consumer: &BaseConsumer, wait: Duration) -> usize {
    let mut seen = 0;
    let mut timeout = wait;
    while let Some(Ok(_)) = consumer.poll(timeout) {
        seen += 1;
        timeout = Duration::ZERO;
    }
    seen
}

/// Row sets per second through Postgres: `pgbench` with transactions shaped like a reaction's
/// (an inbox row, an effect row, a 400-byte outbox row, a notify), `rows` of each per
/// transaction, `clients` connections, `synchronous_commit` on.
pub fn postgres(
    database_url: &str,
    clients: u32,
    seconds: u32,
    rows: u32,
) -> anyhow::Result<Value> {
    let pgbench =
        find_pgbench().context("pgbench not found (it comes with Debian's postgresql package)")?;
    let setup = "CREATE SCHEMA IF NOT EXISTS bench_ceiling;
        CREATE TABLE IF NOT EXISTS bench_ceiling.inbox (event_id uuid PRIMARY KEY, event_type text,
            topic text, kafka_partition int, kafka_offset bigint, processed_at timestamptz DEFAULT now());
        CREATE TABLE IF NOT EXISTS bench_ceiling.effect (id uuid PRIMARY KEY, order_id uuid,
            status text, amount bigint, updated_at timestamptz DEFAULT now());
        CREATE TABLE IF NOT EXISTS bench_ceiling.outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id uuid, topic text, message_key bytea, payload bytea, headers bytea,
            created_at timestamptz DEFAULT now(), published_at timestamptz);
        TRUNCATE bench_ceiling.inbox, bench_ceiling.effect, bench_ceiling.outbox;";
    let psql = pgbench.with_file_name("psql");
    let status = std::process::Command::new(&psql)
        .args([database_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", setup])
        .status()
        .with_context(|| format!("running {}", psql.display()))?;
    if !status.success() {
        bail!("could not create the ceiling tables");
    }
    let script = format!(
        "BEGIN;
INSERT INTO bench_ceiling.inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
  SELECT gen_random_uuid(), 'OrderPlaced', 'order.events', 0, n FROM generate_series(1, {rows}) n;
INSERT INTO bench_ceiling.effect (id, order_id, status, amount)
  SELECT gen_random_uuid(), gen_random_uuid(), 'AUTHORIZED', n FROM generate_series(1, {rows}) n;
INSERT INTO bench_ceiling.outbox (event_id, topic, message_key, payload, headers)
  SELECT gen_random_uuid(), 'payment.events', '\\x00'::bytea, convert_to(repeat('x', 400), 'UTF8'), '\\x00'::bytea
  FROM generate_series(1, {rows}) n;
SELECT pg_notify('bench_ceiling', '');
COMMIT;
"
    );
    let file = std::env::temp_dir().join(format!("saga-ceiling-{}.sql", std::process::id()));
    std::fs::write(&file, script)?;
    let output = std::process::Command::new(&pgbench)
        .args(["-n", "-f"])
        .arg(&file)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            database_url,
        ])
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench printed no tps: {}{}",
                text,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    // pgbench's own mean over every transaction of the run (with one client, one at a time).
    let latency_ms = text
        .lines()
        .find(|l| l.starts_with("latency average = "))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok());
    Ok(json!({
        "transactions_per_second": tps,
        "latency_average_ms": latency_ms,
        "row_sets_per_transaction": rows,
        "row_sets_per_second": tps * f64::from(rows),
        "clients": clients,
        "method": "pgbench: inbox + effect + 400 B outbox rows and a notify per row set, synchronous_commit on",
    }))
}

fn find_pgbench() -> Option<std::path::PathBuf> {
    if let Ok(path) = std::env::var("PGBENCH") {
        return Some(path.into());
    }
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.exists())
        .collect();
    candidates.sort();
    candidates.pop()
}
