//! Capped exponential backoff with full jitter: the one way the saga waits before trying again
//! (a transaction retried in place, a relay starting over, a service waiting for its
//! dependencies at start).

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at 100 ms and doubles up to 10 s.
    pub fn new() -> Self {
        Self::with(Duration::from_millis(100), Duration::from_secs(10))
    }

    pub fn with(first: Duration, cap: Duration) -> Self {
        Self { next: first, cap }
    }

    /// The next delay: between half and all of the current step, which then doubles. The jitter
    /// keeps replicas that failed together from retrying together.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = u64::try_from(self.next.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let delay = Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling));
        self.next = (self.next * 2).min(self.cap);
        delay
    }

    /// Sleeps for the next delay unless `interrupted` completes first; false if it did.
    pub async fn wait(&mut self, interrupted: impl std::future::Future<Output = ()>) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = interrupted => false,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_never_exceed_it() {
        let mut backoff = Backoff::with(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(delays[7] >= Duration::from_millis(500), "{delays:?}");
    }
}
