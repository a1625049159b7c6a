//! Shared by the messaging integration tests: a schema of their own in the `saga_test` database,
//! topics of their own on the broker, and sample events.
#![allow(dead_code)]

use std::time::Duration;

use saga_events::{EventCodec, EventMetadata, EventType, OrderConfirmed, SagaEvent, TopicNames};
use saga_messaging::Delivery;
use saga_messaging::KafkaSettings;
use saga_messaging::inspect::reader::PartitionReader;
use saga_testkit::isolated;
use sqlx::PgPool;

pub use saga_testkit::isolated::registry_url;
#[allow(unused_imports)]
pub use saga_testkit::{Recorder, record_effect};

pub fn kafka() -> KafkaSettings {
    KafkaSettings::new(isolated::bootstrap())
}

/// Everything one test needs, isolated from every other test: a Postgres schema with the outbox,
/// inbox and an `effects` table, topics under a unique prefix, and a codec for them.
pub struct Isolated {
    pub pool: PgPool,
    pub topics: TopicNames,
    pub codec: EventCodec,
    pub kafka: KafkaSettings,
    pub lock_key: i64,
}

impl Isolated {
    pub async fn new(partitions: i32) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pool = isolated::schema_pool(&format!("t_{}", &id[..16]), 8).await?;
        saga_messaging::migrate(&pool, &mut saga_testkit::effects_migrator()).await?;
        let topics = TopicNames::new(format!("mt-{}.", &id[..12]));
        let kafka = kafka();
        isolated::create_topics(&topics.all(), partitions)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let codec = EventCodec::new(&registry_url(), topics.clone())?;
        // Each test elects its own relay: tests share one database.
        let lock_key = i64::from_str_radix(&id[..15], 16)?;
        Ok(Self {
            pool,
            topics,
            codec,
            kafka,
            lock_key,
        })
    }

    /// Every record on `topic`, partition by partition.
    pub async fn records(&self, topic: &str) -> anyhow::Result<Vec<Delivery>> {
        let kafka = self.kafka.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Delivery>> {
            let reader = PartitionReader::new(&kafka)?;
            let mut records = Vec::new();
            for partition in 0..reader.partition_count(&topic)? {
                records.extend(reader.read_partition(&topic, partition)?);
            }
            Ok(records)
        })
        .await?
    }

    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?)
    }
}

/// The order id a test calls `name`: the same UUID for the same name, as the saga's ids are.
pub fn order(name: &str) -> String {
    // FNV-1a, widened to 128 bits: enough to keep a handful of test names apart.
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in name.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    uuid::Uuid::from_u128(hash).to_string()
}

/// A small event of the order called `name`, distinct every call.
pub fn event(name: &str) -> SagaEvent {
    let order_id = order(name);
    OrderConfirmed {
        metadata: EventMetadata::first(&order_id, "test"),
        order_id,
    }
    .into()
}

pub fn event_type_of(record: &Delivery) -> Option<&str> {
    record.headers.get("event-type")
}

/// Polls until `done` holds or the deadline passes; then fails with what it last saw.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(bool, String)>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let (done, seen) = check().await?;
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("timed out waiting for {what}; last saw {seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const ORDER_CONFIRMED: EventType = EventType::OrderConfirmed;

/// Produces `events` to their topics, as the relays would (key = order id).
pub async fn produce(iso: &Isolated, events: &[&SagaEvent]) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = iso.kafka.producer_config().create()?;
    for event in events {
        let encoded = iso.codec.encode(event).await?;
        producer
            .send(
                FutureRecord::to(&encoded.topic)
                    .key(&encoded.key)
                    .payload(&encoded.payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Produces one record as it is, to an explicit partition: a retry or dead-letter record as a
/// service's relay would have written it.
pub async fn produce_raw(
    iso: &Isolated,
    topic: &str,
    partition: i32,
    key: &str,
    payload: &[u8],
    headers: &saga_messaging::Headers,
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = iso.kafka.producer_config().create()?;
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(payload)
                .headers(headers.to_kafka()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// Creates one more topic on the broker (one partition) and waits until its metadata is seen.
pub async fn create_topic(topic: &str) -> anyhow::Result<()> {
    isolated::create_topics(&[topic.to_owned()], 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
