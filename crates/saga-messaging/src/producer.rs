//! The one Kafka producer the services publish with: librdkafka's, each record's acknowledgement
//! a future, and the acknowledgements served by a thread of its own.
//!
//! rdkafka's `FutureProducer` is the same thing with a thread that polls 100 ms at a time. Each
//! of its polls ends in up to a millisecond of polls that do not wait: the time left is rounded
//! down to whole milliseconds, and polled again until it is spent. That is a hundredth of a core
//! per producer at rest (on an idle Payment, 70 % of `perf`'s samples were that loop). This
//! thread polls a second at a time, so it spins that millisecond once a second, not ten times.
//! An acknowledgement is served as soon as it arrives either way: the poll returns early for
//! none, it only bounds how long the thread sleeps when nothing comes.
//!
//! The thread holds the producer until it notices that every handle is gone (within a second),
//! then drops it there: librdkafka's teardown (purge, then a short flush) never runs on an async
//! runtime's thread.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::client::Client;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio::sync::oneshot;

use crate::requests::RequestCounts;

/// How long the acknowledgement thread waits at a time when none arrives.
const POLL: Duration = Duration::from_secs(1);

/// Where the broker put an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub partition: i32,
    pub offset: i64,
}

/// The broker's answer for one record: where it was put, or why it was not.
#[derive(Debug)]
pub struct Ack {
    answer: oneshot::Receiver<KafkaResult<Acked>>,
}

impl Future for Ack {
    type Output = KafkaResult<Acked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The sender is dropped unanswered only if librdkafka dropped the record's opaque
        // without a report, which its teardown never does; say so as rdkafka's future would.
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(KafkaError::Canceled)))
    }
}

/// Hands each delivery report to the record's [`Ack`], and counts the producer's requests.
#[derive(Debug)]
pub struct AckContext {
    requests: RequestCounts,
}

impl ClientContext for AckContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.requests.record(&statistics);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<Acked>>>;

    fn delivery(&self, report: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let answer = match report {
            Ok(message) => Ok(Acked {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, _)) => Err(error.clone()),
        };
        // Nobody waits for it any more (a relay stopped mid-batch): nothing to tell.
        let _ = ack.send(answer);
    }
}

/// A producer whose records each answer with an [`Ack`]. Clones share one librdkafka producer.
#[derive(Clone)]
pub struct AckingProducer {
    shared: Arc<Shared>,
}

/// What every handle shares: the last one gone tells the thread to stop.
struct Shared {
    producer: Arc<BaseProducer<AckContext>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for AckingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckingProducer").finish_non_exhaustive()
    }
}

impl AckingProducer {
    /// A producer with `config` (see [`crate::KafkaSettings::producer_config`]), and its
    /// acknowledgement thread.
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<AckContext>> =
            Arc::new(config.create_with_context(AckContext {
                requests: RequestCounts::new("producer"),
            })?);
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-acks".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    serving.poll(POLL);
                }
            })
            .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared { producer, stop }),
        })
    }

    /// Queues a record for `topic` (on `partition`, or where the configured partitioner puts its
    /// key); the [`Ack`] answers once the broker acknowledged it or it failed for good. An error
    /// here is librdkafka refusing to queue it (queue full, a record too large, a producer that
    /// failed for good).
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> KafkaResult<Ack> {
        let (answer_to, answer) = oneshot::channel();
        let mut record: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(topic, Box::new(answer_to))
                .payload(payload)
                .headers(headers);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        self.shared
            .producer
            .send(record)
            .map_err(|(error, _)| error)?;
        Ok(Ack { answer })
    }

    /// The librdkafka client: metadata, and its fatal error if it has one.
    pub fn client(&self) -> &Client<AckContext> {
        self.shared.producer.client()
    }

    /// Waits up to `timeout` until every queued record is answered. Blocks: call it off the
    /// async runtime.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.shared.producer.flush(timeout)
    }
}
