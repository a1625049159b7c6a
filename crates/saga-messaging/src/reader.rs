//! Reading records back from the topics by explicit assignment (no consumer group): what the
//! operator CLI and the black-box tests use to look at one order's events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::headers;
use crate::kafka::{KafkaSettings, partition_for};

/// One record as it sits on a topic.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_millis: Option<i64>,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Blocking reads; call from a blocking thread.
pub struct TopicReader {
    consumer: BaseConsumer,
    timeout: Duration,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader").finish_non_exhaustive()
    }
}

impl TopicReader {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: kafka.reader_config().create()?,
            timeout: Duration::from_secs(10),
        })
    }

    pub fn consumer(&self) -> &BaseConsumer {
        &self.consumer
    }

    pub fn partition_count(&self, topic: &str) -> Result<i32, KafkaError> {
        let metadata = self.consumer.fetch_metadata(Some(topic), self.timeout)?;
        Ok(metadata
            .topics()
            .first()
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0))
    }

    /// Every record of `topic` whose key is `key`, reading only the partition the key maps to.
    pub fn records_with_key(&self, topic: &str, key: &str) -> Result<Vec<RawRecord>, KafkaError> {
        let partitions = self.partition_count(topic)?;
        if partitions == 0 {
            return Ok(Vec::new());
        }
        let partition = partition_for(key.as_bytes(), partitions);
        let mut records = self.read_partition(topic, partition)?;
        records.retain(|r| r.key.as_deref() == Some(key));
        Ok(records)
    }

    /// Every record of one partition, from its low to its high watermark at the time of the call.
    pub fn read_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<RawRecord>, KafkaError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.timeout)?;
        let mut records = Vec::new();
        if high <= low {
            return Ok(records);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
        self.consumer.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        // An end-of-partition event can come before the last record that was already there when
        // the watermarks were read; only a few seconds without records ends the read early.
        let mut quiet_since: Option<Instant> = None;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    quiet_since = None;
                    records.push(RawRecord {
                        topic: topic.to_owned(),
                        partition,
                        offset: message.offset(),
                        timestamp_millis: message.timestamp().to_millis(),
                        key: message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        headers: headers::to_map(message.headers()),
                    });
                    if message.offset() >= high - 1 {
                        return Ok(records);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(3) {
                        return Ok(records);
                    }
                }
                Some(Err(error)) => return Err(error),
            }
        }
        Err(KafkaError::MessageConsumption(
            rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
        ))
    }
}

/// The offsets `group` has committed on `partitions` of `topic` (the next record it will read on
/// each), None where it has committed nothing.
pub fn committed_offsets(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, Option<i64>)>, KafkaError> {
    let consumer: BaseConsumer = kafka.reader_config().set("group.id", group).create()?;
    let mut wanted = TopicPartitionList::new();
    for partition in partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(wanted, Duration::from_secs(10))?;
    Ok(partitions
        .iter()
        .map(|&partition| {
            let offset =
                committed
                    .find_partition(topic, partition)
                    .and_then(|p| match p.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    });
            (partition, offset)
        })
        .collect())
}

/// The offset `group` has committed on one partition, if any.
pub fn committed_offset(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, KafkaError> {
    Ok(committed_offsets(kafka, group, topic, &[partition])?
        .first()
        .and_then(|(_, offset)| *offset))
}
