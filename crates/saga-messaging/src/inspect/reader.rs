//! Reading a partition by explicit assignment (no consumer group): the one way records are read
//! back, by the relay's recovery (what reached the broker?) and by the operator CLI and the tests
//! (what is on a topic?).
//!
//! A read covers one partition from a starting offset up to the high watermark seen when it
//! began. It ends when the record just below that mark has been seen. An end-of-partition event
//! alone does not end it, because librdkafka can report one before the last records already on
//! the broker are delivered; only when the consumer's own position has reached the mark, or when
//! nothing arrives for a while after the event (the tail may hold no records a client sees, such
//! as transaction markers), is the read complete.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::delivery::Delivery;
use crate::kafka::{KafkaSettings, partition_for};

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still on the partition.
    Beginning,
    /// The first record at or after this offset.
    Offset(i64),
    /// The first record whose timestamp is at or after these epoch milliseconds.
    Time(i64),
}

/// One partition's records from `from` up to (not including) `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Low and high watermark of each partition, by topic and partition.
pub type Watermarks = std::collections::HashMap<(String, i32), (i64, i64)>;

/// Blocking reads; call from a blocking thread.
pub struct PartitionReader {
    consumer: BaseConsumer,
    timeout: Duration,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader").finish_non_exhaustive()
    }
}

/// How long a read may take in all before it is abandoned as stuck.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// After an end-of-partition event, how long silence means the tail holds nothing to see.
const QUIET_AFTER_EOF: Duration = Duration::from_secs(2);

impl PartitionReader {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: kafka.reader_config().create()?,
            timeout: Duration::from_secs(10),
        })
    }

    pub fn consumer(&self) -> &BaseConsumer {
        &self.consumer
    }

    /// Partitions of `topic`; 0 when the topic does not exist.
    pub fn partition_count(&self, topic: &str) -> Result<i32, KafkaError> {
        let metadata = self.consumer.fetch_metadata(Some(topic), self.timeout)?;
        let Some(topic) = metadata.topics().first() else {
            return Ok(0);
        };
        if topic.error().is_some() {
            return Ok(0);
        }
        Ok(i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX))
    }

    /// Low and high watermarks of one partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
    }

    fn resolve(&self, topic: &str, partition: i32, start: Start) -> Result<i64, KafkaError> {
        let (low, high) = self.watermarks(topic, partition)?;
        Ok(match start {
            Start::Beginning => low,
            Start::Offset(offset) => offset.clamp(low, high),
            Start::Time(millis) => {
                let mut wanted = TopicPartitionList::new();
                wanted.add_partition_offset(topic, partition, Offset::Offset(millis))?;
                let found = self.consumer.offsets_for_times(wanted, self.timeout)?;
                match found.find_partition(topic, partition).map(|p| p.offset()) {
                    Some(Offset::Offset(offset)) => offset.clamp(low, high),
                    // No record that late: nothing to read.
                    _ => high,
                }
            }
        })
    }

    /// Calls `visit` with every record of one partition from `start` up to the high watermark at
    /// the time of the call, in offset order, until `visit` breaks.
    pub fn scan(
        &self,
        topic: &str,
        partition: i32,
        start: Start,
        mut visit: impl FnMut(Delivery) -> ControlFlow<()>,
    ) -> Result<(), KafkaError> {
        let (_, high) = self.watermarks(topic, partition)?;
        let from = self.resolve(topic, partition, start)?;
        if from >= high {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        self.consumer.assign(&assignment)?;
        let deadline = Instant::now() + READ_DEADLINE;
        let mut eof_at: Option<Instant> = None;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    eof_at = None;
                    let offset = message.offset();
                    if visit(Delivery::from_message(&message)).is_break() || offset >= high - 1 {
                        return Ok(());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    if self.position(topic, partition)? >= high {
                        return Ok(());
                    }
                    eof_at.get_or_insert_with(Instant::now);
                }
                Some(Err(error)) => return Err(error),
                None => {
                    if eof_at.is_some_and(|at| at.elapsed() >= QUIET_AFTER_EOF) {
                        return Ok(());
                    }
                }
            }
        }
        Err(KafkaError::MessageConsumption(
            RDKafkaErrorCode::RequestTimedOut,
        ))
    }

    /// Calls `visit` with every record of several partitions at once, each from its first
    /// offset up to (not including) its last, read side by side by one assignment: what a
    /// replay of whole topics wants (one partition after another would pay each one's start-up
    /// in turn). Records of one partition come in offset order; partitions interleave. Stops
    /// early when `visit` breaks.
    pub fn scan_ranges(
        &self,
        ranges: &[Range],
        mut visit: impl FnMut(Delivery) -> ControlFlow<()>,
    ) -> Result<(), KafkaError> {
        let mut assignment = TopicPartitionList::new();
        let mut open: std::collections::HashMap<(String, i32), i64> =
            std::collections::HashMap::new();
        for range in ranges.iter().filter(|r| r.from < r.to) {
            assignment.add_partition_offset(
                &range.topic,
                range.partition,
                Offset::Offset(range.from),
            )?;
            open.insert((range.topic.clone(), range.partition), range.to);
        }
        if open.is_empty() {
            return Ok(());
        }
        self.consumer.assign(&assignment)?;
        let mut last_record = Instant::now();
        while !open.is_empty() {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    last_record = Instant::now();
                    let key = (message.topic().to_owned(), message.partition());
                    let Some(&to) = open.get(&key) else { continue };
                    let offset = message.offset();
                    if offset >= to {
                        open.remove(&key);
                        continue;
                    }
                    if visit(Delivery::from_message(&message)).is_break() {
                        return Ok(());
                    }
                    if offset + 1 >= to {
                        open.remove(&key);
                    }
                }
                // The end of a partition (the event names only its number): a range whose
                // partition has nothing more to give is done, even if it hoped for more.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    let ended: Vec<(String, i32)> = open
                        .iter()
                        .filter(|((topic, p), to)| {
                            *p == partition && self.position(topic, *p).is_ok_and(|at| at >= **to)
                        })
                        .map(|(key, _)| key.clone())
                        .collect();
                    for key in ended {
                        open.remove(&key);
                    }
                }
                Some(Err(error)) => return Err(error),
                None => {
                    if last_record.elapsed() > READ_DEADLINE {
                        return Err(KafkaError::MessageConsumption(
                            RDKafkaErrorCode::RequestTimedOut,
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The first (`Offset::Beginning`) or next (`Offset::End`) offset of every partition of
    /// `partitions`, asked of the brokers in one request each rather than one per partition. A
    /// partition the broker did not answer for fails the whole call, so that no caller mistakes
    /// a partition left out for an empty one.
    fn offsets_at(
        &self,
        partitions: &TopicPartitionList,
        at: Offset,
    ) -> Result<std::collections::HashMap<(String, i32), i64>, KafkaError> {
        let mut asked = TopicPartitionList::new();
        for p in partitions.elements() {
            asked.add_partition_offset(p.topic(), p.partition(), at)?;
        }
        let answered = self.consumer.offsets_for_times(asked, self.timeout)?;
        let mut offsets = std::collections::HashMap::with_capacity(answered.count());
        for p in answered.elements() {
            p.error()?;
            if let Offset::Offset(offset) = p.offset() {
                offsets.insert((p.topic().to_owned(), p.partition()), offset);
            }
        }
        if offsets.len() < partitions.count() {
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownPartition,
            ));
        }
        Ok(offsets)
    }

    /// Low and high watermarks of each of `partitions`, in two requests for all of them
    /// (`watermarks` asks two per partition): what a watcher of many partitions polls.
    pub fn watermarks_of(&self, partitions: &[(String, i32)]) -> Result<Watermarks, KafkaError> {
        if partitions.is_empty() {
            return Ok(Watermarks::new());
        }
        let mut asked = TopicPartitionList::new();
        for (topic, partition) in partitions {
            asked.add_partition(topic, *partition);
        }
        let low = self.offsets_at(&asked, Offset::Beginning)?;
        let high = self.offsets_at(&asked, Offset::End)?;
        Ok(low
            .into_iter()
            .filter_map(|(partition, low)| {
                let high = *high.get(&partition)?;
                Some((partition, (low, high)))
            })
            .collect())
    }

    fn position(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        let position = self.consumer.position()?;
        Ok(
            match position
                .find_partition(topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => -1,
            },
        )
    }

    /// Every record of every partition of `topics`, each from its low to its high watermark at
    /// the time of the call, read side by side ([`PartitionReader::scan_ranges`]): a whole-topic
    /// read pays the start-up of a fetch once, not once per partition.
    pub fn read_topics(&self, topics: &[String]) -> Result<Vec<Delivery>, KafkaError> {
        let mut partitions = TopicPartitionList::new();
        for topic in topics {
            for partition in 0..self.partition_count(topic)? {
                partitions.add_partition(topic, partition);
            }
        }
        let from = self.offsets_at(&partitions, Offset::Beginning)?;
        let to = self.offsets_at(&partitions, Offset::End)?;
        let ranges: Vec<Range> = partitions
            .elements()
            .iter()
            .map(|p| {
                let key = (p.topic().to_owned(), p.partition());
                Range {
                    from: from.get(&key).copied().unwrap_or(0),
                    to: to.get(&key).copied().unwrap_or(0),
                    topic: key.0,
                    partition: key.1,
                }
            })
            .collect();
        let mut records = Vec::new();
        self.scan_ranges(&ranges, |record| {
            records.push(record);
            ControlFlow::Continue(())
        })?;
        Ok(records)
    }

    /// Every record of one partition, from its low to its high watermark at the time of the call.
    pub fn read_partition(&self, topic: &str, partition: i32) -> Result<Vec<Delivery>, KafkaError> {
        let mut records = Vec::new();
        self.scan(topic, partition, Start::Beginning, |record| {
            records.push(record);
            ControlFlow::Continue(())
        })?;
        Ok(records)
    }

    /// Every record of `topic` whose key is `key`, reading only the partition the key maps to.
    pub fn records_with_key(&self, topic: &str, key: &str) -> Result<Vec<Delivery>, KafkaError> {
        self.records_with_key_on(&[topic.to_owned()], key)
    }

    /// Every record keyed `key` on each of `topics`, reading only the partition the key maps to
    /// on each, side by side ([`PartitionReader::scan_ranges`]).
    pub fn records_with_key_on(
        &self,
        topics: &[String],
        key: &str,
    ) -> Result<Vec<Delivery>, KafkaError> {
        let mut ranges = Vec::with_capacity(topics.len());
        for topic in topics {
            let partitions = self.partition_count(topic)?;
            if partitions == 0 {
                continue;
            }
            let partition = partition_for(key.as_bytes(), partitions);
            let (from, to) = self.watermarks(topic, partition)?;
            ranges.push(Range {
                topic: topic.clone(),
                partition,
                from,
                to,
            });
        }
        let mut records = Vec::new();
        self.scan_ranges(&ranges, |record| {
            if record.key.as_deref() == Some(key.as_bytes()) {
                records.push(record);
            }
            ControlFlow::Continue(())
        })?;
        Ok(records)
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
