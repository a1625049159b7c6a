//! Waiting out infrastructure: a step that fails because the database, the broker or the
//! registry is away is tried again in place, with the one [`Backoff`], until it succeeds, fails
//! for good, or shutdown or a revocation interrupts. After `stuck_after` the wait is named on
//! `/readyz`, and while it lasts [`crate::Health::retrying_in_place`] holds Order's deadline scanner.

use std::time::Instant;

use tracing::warn;

use super::control::LaneControl;
use super::handler::Handler;
use crate::backoff::Backoff;
use crate::error::HandlerError;
use crate::health::RetryingInPlace;

/// How a run that waits on infrastructure ended.
pub(super) enum Attempt<T> {
    Done(T),
    /// Failed for good: the caller decides where the record goes.
    Failed(HandlerError),
    /// Shutdown or a revocation came first.
    Interrupted,
}

impl<T> Attempt<T> {
    /// The same ending, with what a successful run returned mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Done(value) => Attempt::Done(f(value)),
            Attempt::Failed(error) => Attempt::Failed(error),
            Attempt::Interrupted => Attempt::Interrupted,
        }
    }
}

/// A wait in place under way: its backoff, since when it fails, and the hold it puts on
/// Order's deadline scanner while it lasts.
#[derive(Default)]
pub(super) struct InPlace {
    backoff: Backoff,
    since: Option<Instant>,
    hold: Option<RetryingInPlace>,
}

impl InPlace {
    /// Whether a failure is being waited out.
    pub fn failing(&self) -> bool {
        self.since.is_some()
    }
}

impl Handler {
    /// Runs `attempt` until it succeeds, fails for good, or shutdown or a revocation interrupts
    /// its backoff. Infrastructure failures are waited out; after `stuck_after` the wait is
    /// named on `/readyz`.
    pub(super) async fn persist<T, F, Fut>(
        &self,
        lane: &LaneControl<'_>,
        label: &str,
        mut attempt: F,
    ) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HandlerError>>,
    {
        let mut waiting = InPlace::default();
        loop {
            match attempt().await {
                Ok(value) => {
                    if waiting.failing() {
                        self.health.moving(label);
                    }
                    return Attempt::Done(value);
                }
                Err(error) if error.is_transient() => {
                    if !self.wait_in_place(&mut waiting, label, &error, lane).await {
                        return Attempt::Interrupted;
                    }
                }
                Err(error) => return Attempt::Failed(error),
            }
        }
    }

    /// One backoff of a wait in place after `error`; false if shutdown or a revocation cut it
    /// short.
    pub(super) async fn wait_in_place(
        &self,
        waiting: &mut InPlace,
        label: &str,
        error: &HandlerError,
        lane: &LaneControl<'_>,
    ) -> bool {
        let since = *waiting.since.get_or_insert_with(Instant::now);
        waiting
            .hold
            .get_or_insert_with(|| self.health.retrying_in_place());
        let reason = error.reason();
        warn!(partitions = label, error = %reason, "infrastructure failure; retrying in place");
        metrics::counter!("saga_retries_in_place_total", "service" => self.service.name())
            .increment(1);
        if since.elapsed() >= self.settings.stuck_after {
            self.health.stuck(label, since, &reason);
        }
        waiting.backoff.wait(lane.interrupted()).await
    }
}
