//! A lane: one task handling the records of the partitions routed to it, in batches of whatever
//! is ready. Idle, a batch is one record and nothing waits to fill it; busy, one transaction
//! carries up to `batch_size` records. Offsets are stored only for records whose transaction
//! committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::control::LaneControl;
use super::handler::{Handler, Position};
use super::poll::{Routed, Router, SagaConsumer, TopicPartition};

pub(super) async fn run(
    handler: Arc<Handler>,
    consumer: Arc<SagaConsumer>,
    router: Arc<Router>,
    lane: usize,
    mut receiver: mpsc::Receiver<Routed>,
    shutdown: CancellationToken,
) {
    let retry_lane = router.is_retry_lane(lane);
    // When the last batch ended: a lane that is kept busy waits a moment after it before the
    // next, so that its batches grow with the load; an idle lane starts at once.
    let mut last_batch_ended: Option<tokio::time::Instant> = None;
    // Partitions (under one assignment) held after a handler left a record behind: see below.
    let mut held: HashSet<(TopicPartition, u64)> = HashSet::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            routed = receiver.recv() => match routed {
                Some(routed) => routed,
                None => break,
            },
        };
        let mut batch = collect(
            &handler,
            &mut receiver,
            first,
            retry_lane,
            last_batch_ended,
            &shutdown,
        )
        .await;
        let _busy = router.busy[lane].lock().await;
        if shutdown.is_cancelled() {
            break;
        }
        let control = LaneControl {
            router: &router,
            lane,
            shutdown: &shutdown,
        };
        batch.retain(|routed| {
            control.is_current(routed)
                && !held.contains(&(
                    (routed.delivery.topic.clone(), routed.delivery.partition),
                    routed.epoch,
                ))
        });
        if batch.is_empty() {
            continue;
        }
        let polled: Vec<Polled> = batch.iter().map(Polled::of).collect();
        let handled = if retry_lane {
            handler.handle_retries(batch, &control).await
        } else {
            handler.handle_batch(batch, &control).await
        };
        last_batch_ended = Some(tokio::time::Instant::now());
        record_progress(
            &router,
            &consumer,
            &handler,
            (&polled, &handled),
            &mut held,
            shutdown.is_cancelled(),
        );
    }
}

/// A batch: `first` and whatever else is ready. A busy event lane lets records gather a moment
/// after its last batch, and one holding nothing urgent lingers for more.
async fn collect(
    handler: &Handler,
    receiver: &mut mpsc::Receiver<Routed>,
    first: Routed,
    retry_lane: bool,
    last_batch_ended: Option<tokio::time::Instant>,
    shutdown: &CancellationToken,
) -> Vec<Routed> {
    let batch_size = handler.batch_size();
    let mut batch = vec![first];
    take_ready(receiver, &mut batch, batch_size);
    let busy_linger = handler.busy_linger();
    if let Some(ended) = last_batch_ended
        && !retry_lane
        && ended.elapsed() < busy_linger
    {
        gather(
            receiver,
            &mut batch,
            batch_size,
            ended + busy_linger,
            shutdown,
            |_| false,
        )
        .await;
    }
    let linger = handler.linger();
    if !retry_lane && !linger.is_zero() && !batch.iter().any(|r| handler.is_urgent(&r.delivery)) {
        // Nothing here that the saga waits on: gather more for one transaction, until
        // something urgent arrives.
        let until = tokio::time::Instant::now() + linger;
        gather(
            receiver,
            &mut batch,
            batch_size,
            until,
            shutdown,
            |routed| handler.is_urgent(&routed.delivery),
        )
        .await;
    }
    batch
}

/// After a batch: stores, per partition, the offset up to which every record was handled (under
/// the assignment it was polled in), and holds a partition still ours on which a record was left
/// behind. Nothing is committed past a record nobody handled.
fn record_progress(
    router: &Router,
    consumer: &SagaConsumer,
    handler: &Handler,
    (polled, handled): (&[Polled], &[Position]),
    held: &mut HashSet<(TopicPartition, u64)>,
    shutting_down: bool,
) {
    // Shutdown leaves records behind on purpose: they are redelivered after the restart.
    let gaps = if shutting_down {
        Vec::new()
    } else {
        gaps(polled, handled)
    };
    for gap in gaps {
        let partition = (gap.topic.clone(), gap.partition);
        if router.is_current_partition(&partition, gap.epoch) {
            // Never expected: a handler left a record behind on a partition that is still
            // ours. Nothing later of that partition is handled or committed under this
            // assignment, so the record goes to its next owner instead of being lost, and the
            // partition is named on /readyz meanwhile.
            error!(topic = %gap.topic, partition = gap.partition, offset = gap.offset, "a record was left unhandled on a partition still assigned; holding the partition");
            handler.hold_partition(&format!("{}[{}]", gap.topic, gap.partition), gap.offset);
            held.insert((partition, gap.epoch));
        }
    }
    for ((topic, partition), (offset, epoch)) in storable(polled, handled) {
        // Revoked (or revoked and assigned again) since it was polled: the offset is the new
        // owner's to commit, from where it starts.
        if !router.is_current_partition(&(topic.clone(), partition), epoch) {
            continue;
        }
        if let Err(error) = consumer.store_offset(&topic, partition, offset) {
            debug!(%error, topic, partition, offset, "offset not stored");
        }
    }
}

/// Where a record of a batch sits, and the assignment it was polled under.
#[derive(Debug, Clone)]
struct Polled {
    topic: String,
    partition: i32,
    offset: i64,
    epoch: u64,
}

impl Polled {
    fn of(routed: &Routed) -> Self {
        Self {
            topic: routed.delivery.topic.clone(),
            partition: routed.delivery.partition,
            offset: routed.delivery.offset,
            epoch: routed.epoch,
        }
    }
}

/// Per partition, the first record of the batch that was not handled, if any.
fn gaps(polled: &[Polled], handled: &[Position]) -> Vec<Polled> {
    let handled: HashSet<(&str, i32, i64)> = handled
        .iter()
        .map(|(topic, partition, offset)| (topic.as_str(), *partition, *offset))
        .collect();
    let mut seen: HashSet<(&str, i32)> = HashSet::new();
    polled
        .iter()
        .filter(|record| {
            !handled.contains(&(record.topic.as_str(), record.partition, record.offset))
        })
        .filter(|record| seen.insert((record.topic.as_str(), record.partition)))
        .cloned()
        .collect()
}

/// Per partition, the last offset of the batch before its first record that was not handled,
/// with the epoch it was polled under: committing past a record nobody handled would lose it.
fn storable(polled: &[Polled], handled: &[Position]) -> BTreeMap<(String, i32), (i64, u64)> {
    let handled: HashSet<(&str, i32, i64)> = handled
        .iter()
        .map(|(topic, partition, offset)| (topic.as_str(), *partition, *offset))
        .collect();
    let mut stopped: HashSet<(&str, i32)> = HashSet::new();
    let mut last = BTreeMap::new();
    for record in polled {
        let partition = (record.topic.as_str(), record.partition);
        if stopped.contains(&partition) {
            continue;
        }
        if handled.contains(&(record.topic.as_str(), record.partition, record.offset)) {
            last.insert(
                (record.topic.clone(), record.partition),
                (record.offset, record.epoch),
            );
        } else {
            stopped.insert(partition);
        }
    }
    last
}

/// Moves what is already queued into `batch`, up to `limit`.
fn take_ready(receiver: &mut mpsc::Receiver<Routed>, batch: &mut Vec<Routed>, limit: usize) {
    while batch.len() < limit {
        match receiver.try_recv() {
            Ok(routed) => batch.push(routed),
            Err(_) => break,
        }
    }
}

/// Adds records to `batch` as they arrive until `until`, the batch is full, or one that `stops`
/// arrives.
async fn gather(
    receiver: &mut mpsc::Receiver<Routed>,
    batch: &mut Vec<Routed>,
    limit: usize,
    until: tokio::time::Instant,
    shutdown: &CancellationToken,
    stops: impl Fn(&Routed) -> bool,
) {
    while batch.len() < limit {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(until) => return,
            routed = receiver.recv() => {
                let Some(routed) = routed else { return };
                let stop = stops(&routed);
                batch.push(routed);
                take_ready(receiver, batch, limit);
                if stop {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(partition: i32, offset: i64) -> Polled {
        Polled {
            topic: "t".into(),
            partition,
            offset,
            epoch: 7,
        }
    }

    #[test]
    fn an_offset_is_stored_only_up_to_the_first_record_not_handled() {
        let batch = [
            polled(0, 10),
            polled(0, 11),
            polled(0, 12),
            polled(1, 5),
            polled(1, 6),
        ];
        // Partition 0: 11 was skipped, so 12 (handled) must not be committed past it.
        let handled = vec![
            ("t".to_owned(), 0, 10),
            ("t".to_owned(), 0, 12),
            ("t".to_owned(), 1, 5),
            ("t".to_owned(), 1, 6),
        ];
        let stored = storable(&batch, &handled);
        assert_eq!(stored.get(&("t".to_owned(), 0)), Some(&(10, 7)));
        assert_eq!(stored.get(&("t".to_owned(), 1)), Some(&(6, 7)));
    }

    #[test]
    fn nothing_is_stored_for_a_partition_whose_first_record_was_not_handled() {
        let batch = [polled(0, 10), polled(0, 11)];
        let handled = vec![("t".to_owned(), 0, 11)];
        assert!(storable(&batch, &handled).is_empty());
    }
}
