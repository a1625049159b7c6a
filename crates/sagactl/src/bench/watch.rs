//! Watches the four event topics during a run: learns when each order's saga ended (so the load
//! generator never polls the API), and what each hop of it cost.
//!
//! Every record is decoded, so each event's own clock (`occurred_at`, set when the reaction that
//! emitted it ran) and the record's timestamp (set when the relay produced it) are known. Between
//! them lies the outbox wait; between a record's timestamp and the `occurred_at` of the event it
//! caused lies the consumer's fetch and the reaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use saga_events::{EventCodec, EventType, SagaEvent, Service};
use saga_messaging::KafkaSettings;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How a saga ended, by the clock of its last event.
#[derive(Debug, Clone)]
pub struct Ending {
    pub confirmed: bool,
    pub occurred_at_ms: i64,
}

/// One event of a watched order.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event_type: EventType,
    pub event_id: String,
    pub causation_id: Option<String>,
    pub occurred_at_ms: i64,
    pub record_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Track {
    waiter: Option<oneshot::Sender<Ending>>,
    ending: Option<Ending>,
    events: Vec<Seen>,
}

/// What the watcher knows, shared with the load generator.
#[derive(Debug, Clone, Default)]
pub struct Sagas {
    tracks: Arc<Mutex<HashMap<String, Track>>>,
}

impl Sagas {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Track>) -> T) -> T {
        let mut tracks = self
            .tracks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut tracks)
    }

    /// Resolves when the saga of `order_id` ends (at once, if it already has).
    pub fn ending(&self, order_id: &str) -> oneshot::Receiver<Ending> {
        let (sender, receiver) = oneshot::channel();
        self.with(|tracks| {
            let track = tracks.entry(order_id.to_owned()).or_default();
            match &track.ending {
                Some(ending) => {
                    let _ = sender.send(ending.clone());
                }
                None => track.waiter = Some(sender),
            }
        });
        receiver
    }

    fn saw(&self, order_id: &str, seen: Seen) {
        self.with(|tracks| {
            let track = tracks.entry(order_id.to_owned()).or_default();
            if matches!(
                seen.event_type,
                EventType::OrderConfirmed | EventType::OrderCancelled
            ) && track.ending.is_none()
            {
                let ending = Ending {
                    confirmed: seen.event_type == EventType::OrderConfirmed,
                    occurred_at_ms: seen.occurred_at_ms,
                };
                if let Some(waiter) = track.waiter.take() {
                    let _ = waiter.send(ending.clone());
                }
                track.ending = Some(ending);
            }
            track.events.push(seen);
        });
    }

    /// The events seen of each of `orders`.
    pub fn events_of(&self, orders: &[String]) -> Vec<Vec<Seen>> {
        self.with(|tracks| {
            orders
                .iter()
                .map(|o| tracks.get(o).map(|t| t.events.clone()).unwrap_or_default())
                .collect()
        })
    }
}

/// Starts watching from the current end of the four event topics; stops at `stop`.
///
/// The ends are resolved to concrete offsets before this returns. Assigning `Offset::End` would
/// leave librdkafka to resolve them on its first fetch, after the first orders may already have
/// been placed: their events would land before the watcher's start and never be seen.
pub fn start(
    kafka: &KafkaSettings,
    codec: EventCodec,
    stop: CancellationToken,
) -> anyhow::Result<Sagas> {
    let began = std::time::Instant::now();
    let timeout = std::time::Duration::from_secs(10);
    // Latency is read off the events' own clocks, not off when the watcher sees them: it can
    // fetch in big, lazy batches and leave the broker's time to the saga.
    let consumer: StreamConsumer = kafka
        .reader_config()
        .set("enable.partition.eof", "false")
        .set("fetch.min.bytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let topics = codec.topics().clone();
    let mut assignment = TopicPartitionList::new();
    for service in Service::ALL {
        let topic = topics.events(service);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                let (_, end) = consumer
                    .fetch_watermarks(topic.name(), partition.id(), timeout)
                    .with_context(|| format!("the end of {} [{}]", topic.name(), partition.id()))?;
                assignment.add_partition_offset(
                    topic.name(),
                    partition.id(),
                    Offset::Offset(end),
                )?;
            }
        }
    }
    consumer.assign(&assignment)?;
    eprintln!(
        "watching {} partitions of the event topics from their ends (ready in {} ms)",
        assignment.count(),
        began.elapsed().as_millis()
    );
    let sagas = Sagas::default();
    let seen = sagas.clone();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                message = consumer.recv() => message,
            };
            let Ok(message) = message else { continue };
            let Some(payload) = message.payload() else {
                continue;
            };
            let Ok(event) = codec.decode(payload).await else {
                continue;
            };
            seen.saw(
                event.order_id(),
                observed(&event, message.timestamp().to_millis()),
            );
        }
    });
    Ok(sagas)
}

fn observed(event: &SagaEvent, record_ms: Option<i64>) -> Seen {
    let metadata = event.metadata();
    Seen {
        event_type: event.event_type(),
        event_id: metadata.event_id.clone(),
        causation_id: metadata.causation_id.clone(),
        occurred_at_ms: metadata.occurred_at,
        record_ms,
    }
}
