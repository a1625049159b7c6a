//! A lane: one task handling the records of the partitions routed to it, in batches of whatever
//! is ready. Idle, a batch is one record and nothing waits to fill it; busy, one transaction
//! carries up to `batch_size` records. Offsets are stored only for records whose transaction
//! committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Reactions;
use super::handling::Handler;
use super::poll::{Routed, Router, SagaConsumer};

/// What a lane's handling may ask about its situation.
pub(super) struct LaneControl<'a> {
    router: &'a Router,
    lane: usize,
    shutdown: &'a CancellationToken,
}

impl LaneControl<'_> {
    /// Completes when the lane should look up from a wait: shutdown, or a revocation.
    pub async fn interrupted(&self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.router.wake[self.lane].notified() => {}
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Whether the record may still be handled here (its partition was not revoked).
    pub fn is_current(&self, routed: &Routed) -> bool {
        self.router.is_current(&routed.delivery, routed.epoch)
    }
}

pub(super) async fn run<R: Reactions>(
    handler: Arc<Handler<R>>,
    consumer: Arc<SagaConsumer>,
    router: Arc<Router>,
    lane: usize,
    mut receiver: mpsc::Receiver<Routed>,
    shutdown: CancellationToken,
) {
    let batch_size = handler.batch_size();
    let retry_lane = router.is_retry_lane(lane);
    // When the last batch ended: a lane that is kept busy waits a moment after it before the
    // next, so that its batches grow with the load; an idle lane starts at once.
    let mut last_batch_ended: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            routed = receiver.recv() => match routed {
                Some(routed) => routed,
                None => break,
            },
        };
        let mut batch = vec![first];
        take_ready(&mut receiver, &mut batch, batch_size);
        let busy_linger = handler.busy_linger();
        if let Some(ended) = last_batch_ended
            && !retry_lane
            && ended.elapsed() < busy_linger
        {
            gather(
                &mut receiver,
                &mut batch,
                batch_size,
                ended + busy_linger,
                &shutdown,
                |_| false,
            )
            .await;
        }
        let linger = handler.linger();
        if !retry_lane && !linger.is_zero() && !batch.iter().any(|r| handler.is_urgent(&r.delivery))
        {
            // Nothing here that the saga waits on: gather more for one transaction, until
            // something urgent arrives.
            let until = tokio::time::Instant::now() + linger;
            gather(
                &mut receiver,
                &mut batch,
                batch_size,
                until,
                &shutdown,
                |routed| handler.is_urgent(&routed.delivery),
            )
            .await;
        }
        let _busy = router.busy[lane].lock().await;
        if shutdown.is_cancelled() {
            break;
        }
        let control = LaneControl {
            router: &router,
            lane,
            shutdown: &shutdown,
        };
        batch.retain(|routed| control.is_current(routed));
        if batch.is_empty() {
            continue;
        }
        let handled = if retry_lane {
            handler.handle_retries(batch, &control).await
        } else {
            handler.handle_batch(batch, &control).await
        };
        last_batch_ended = Some(tokio::time::Instant::now());
        let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for (topic, partition, offset) in &handled {
            let entry = last.entry((topic.as_str(), *partition)).or_insert(*offset);
            *entry = (*entry).max(*offset);
        }
        for ((topic, partition), offset) in last {
            if let Err(error) = consumer.store_offset(topic, partition, offset) {
                // Revoked meanwhile: the next owner redelivers, and its inbox makes that harmless.
                debug!(%error, topic, partition, offset, "offset not stored");
            }
        }
    }
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
