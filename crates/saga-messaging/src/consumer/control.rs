//! What a lane's handling may ask about its situation (shutdown, revocations), and the
//! partitions a batch has given up on. Its own module so that the lane, the batch handling and
//! the retry path all use it without importing each other.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::poll::{Routed, Router};

/// What a lane's handling may ask about its situation.
pub(super) struct LaneControl<'a> {
    pub router: &'a Router,
    pub lane: usize,
    pub shutdown: &'a CancellationToken,
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

/// The partitions of a batch whose handling stopped at a record that was not handled (revoked
/// while it waited, or interrupted): nothing later of such a partition may be handled in that
/// batch, or it would run ahead of a record the next owner still has to handle.
#[derive(Debug, Default)]
pub(super) struct Abandoned(HashSet<(String, i32)>);

impl Abandoned {
    pub fn abandon(&mut self, routed: &Routed) {
        self.abandon_partition((routed.delivery.topic.clone(), routed.delivery.partition));
    }

    pub fn abandon_partition(&mut self, partition: (String, i32)) {
        self.0.insert(partition);
    }

    pub fn contains(&self, routed: &Routed) -> bool {
        self.0
            .contains(&(routed.delivery.topic.clone(), routed.delivery.partition))
    }
}
