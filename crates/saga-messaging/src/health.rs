//! What the consumer and the relay tell `/readyz` about themselves: whether the consumer has
//! joined its group, and which partitions have been retrying in place for too long. A partition
//! that cannot move gets a name and a reason, on `/readyz` and in a metric, instead of waiting in
//! silence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shared between a service's consumer, relay and HTTP server. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    consumer_joined: bool,
    consumer_fetching: bool,
    stuck: BTreeMap<String, Stuck>,
    /// Work of the consumer being retried in place right now (see [`Health::retrying_in_place`]).
    in_place: usize,
    /// Why the consumer was last replaced by a new one, and how often it was.
    rebuilds: Vec<String>,
    /// What a reader still has to read before its answers are worth serving.
    catching_up: Option<String>,
}

#[derive(Debug, Clone)]
struct Stuck {
    since: Instant,
    error: String,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The consumer received its first assignment (possibly empty): it is in its group.
    pub fn consumer_joined(&self) {
        self.state().consumer_joined = true;
    }

    pub fn is_consumer_joined(&self) -> bool {
        self.state().consumer_joined
    }

    /// Every partition the consumer was given is being fetched.
    pub fn consumer_fetching(&self) {
        self.state().consumer_fetching = true;
    }

    /// `what` (a partition, or several) has been failing since `since` and still is.
    pub fn stuck(&self, what: &str, since: Instant, error: &str) {
        let mut state = self.state();
        state.stuck.insert(
            what.to_owned(),
            Stuck {
                since,
                error: error.chars().take(300).collect(),
            },
        );
        metrics::gauge!("saga_consumer_stuck_partitions").set(state.stuck.len() as f64);
    }

    /// `what` moves again.
    pub fn moving(&self, what: &str) {
        let mut state = self.state();
        if state.stuck.remove(what).is_some() {
            metrics::gauge!("saga_consumer_stuck_partitions").set(state.stuck.len() as f64);
        }
    }

    /// Marks work of the consumer (a batch, a record) as retried in place until the returned
    /// guard is dropped: its messages arrived, and wait for the database, broker or registry to
    /// come back. The order deadline holds off meanwhile, so that it never beats a reply that
    /// arrived in time.
    pub fn retrying_in_place(&self) -> RetryingInPlace {
        self.state().in_place += 1;
        RetryingInPlace {
            health: self.clone(),
        }
    }

    /// Whether some work of the consumer is being retried in place right now.
    pub fn is_retrying_in_place(&self) -> bool {
        self.state().in_place > 0
    }

    /// The consumer failed for good (`why`) and is being replaced by a new one.
    pub fn consumer_rebuilt(&self, why: &str) {
        let mut state = self.state();
        state.consumer_joined = false;
        state.consumer_fetching = false;
        state.rebuilds.push(why.chars().take(300).collect());
    }

    /// Why the consumer was replaced, each time it was.
    pub fn consumer_rebuilds(&self) -> Vec<String> {
        self.state().rebuilds.clone()
    }

    /// A reader (the read side's projector) has `behind` left to read before it holds what was
    /// there when it started; `None` once it does.
    pub fn catching_up(&self, behind: Option<String>) {
        self.state().catching_up = behind;
    }

    /// Why the service should not be considered ready, if anything.
    pub fn problems(&self) -> Vec<String> {
        let state = self.state();
        let mut problems = Vec::new();
        if !state.consumer_joined {
            problems.push("the consumer has not joined its group yet".to_owned());
        } else if !state.consumer_fetching {
            problems.push("the consumer is not fetching its partitions yet".to_owned());
        }
        if let Some(behind) = &state.catching_up {
            problems.push(format!("catching up: {behind}"));
        }
        for (what, stuck) in &state.stuck {
            problems.push(format!(
                "{what} has been retrying in place for {}s: {}",
                stuck.since.elapsed().as_secs(),
                stuck.error
            ));
        }
        problems
    }
}

/// Work retried in place, for as long as it lives: see [`Health::retrying_in_place`].
#[derive(Debug)]
pub struct RetryingInPlace {
    health: Health,
}

impl Drop for RetryingInPlace {
    fn drop(&mut self) {
        let mut state = self.health.state();
        state.in_place = state.in_place.saturating_sub(1);
    }
}

/// How long a retry in place may last before its partition is reported stuck.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_partition_is_named_until_it_moves() {
        let health = Health::new();
        health.consumer_joined();
        health.consumer_fetching();
        assert!(health.problems().is_empty());
        health.stuck(
            "payment.events[3]",
            Instant::now(),
            "database: connection refused",
        );
        let problems = health.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("payment.events[3]"), "{problems:?}");
        health.moving("payment.events[3]");
        assert!(health.problems().is_empty());
    }
}
