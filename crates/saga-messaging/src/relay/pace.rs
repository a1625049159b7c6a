//! Whether the relay is busy enough that waiting a moment before a round pays.
//!
//! A round costs a read, a produce and a delete however many rows it carries, so under load the
//! relay lets rows gather for [`RelaySettings::busy_linger`](super::RelaySettings) before it
//! reads. One order at a time must pay no such wait on any hop. Judging load by the time since
//! the last round misfires there: Order's relay publishes twice per saga (the order placed, then
//! its end) 15 to 20 ms apart, and the next order's placement follows the end within a few
//! milliseconds, so "a wake soon after a round" calls that pace busy. The mean gap between wakes
//! does not: it stays near half a saga, far above the few milliseconds between commits under
//! real load.

use std::time::{Duration, Instant};

/// Wakes closer together than this on average are load: about 200 committing transactions a
/// second in one service's database.
const BUSY_BELOW: Duration = Duration::from_millis(5);

/// The weight of the newest gap in the mean (1/8): a burst must last a score of wakes before
/// it counts, and a pause forgets it as quickly.
const NEWEST_WEIGHT: u32 = 8;

/// A gap at least this long just means quiet: it counts as this much, so that one pause does not
/// take a hundred wakes to forget.
const QUIET: Duration = Duration::from_millis(40);

/// The moving mean of the gaps between the relay's wakes.
#[derive(Debug, Clone)]
pub struct Pace {
    last_wake: Option<Instant>,
    mean_gap: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            last_wake: None,
            // A relay that starts is quiet until wakes show otherwise.
            mean_gap: QUIET,
        }
    }
}

impl Pace {
    /// Counts a wake at `now`, and says whether the relay is busy: the last round published
    /// something, and wakes have been coming faster than [`BUSY_BELOW`] apart.
    pub fn woken(&mut self, now: Instant, last_round_published: bool) -> bool {
        if let Some(last) = self.last_wake.replace(now) {
            let gap = now.saturating_duration_since(last).min(QUIET);
            self.mean_gap = (self.mean_gap * (NEWEST_WEIGHT - 1) + gap) / NEWEST_WEIGHT;
        }
        last_round_published && self.mean_gap < BUSY_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wakes at the given offsets (ms) after a start: whether each found the relay busy.
    fn verdicts(offsets_ms: &[u64], published: bool) -> Vec<bool> {
        let start = Instant::now();
        let mut pace = Pace::default();
        offsets_ms
            .iter()
            .map(|ms| pace.woken(start + Duration::from_millis(*ms), published))
            .collect()
    }

    #[test]
    fn one_order_at_a_time_is_not_busy() {
        // Given Order's relay woken for each order placed and each order ended, back to back
        let wakes: Vec<u64> = (0..50).flat_map(|n| [n * 22, n * 22 + 19]).collect();
        // Then no wake lingers
        assert!(!verdicts(&wakes, true).contains(&true));
    }

    #[test]
    fn commits_a_millisecond_apart_become_busy() {
        let wakes: Vec<u64> = (0..40).collect();
        assert_eq!(verdicts(&wakes, true).last(), Some(&true));
    }

    #[test]
    fn a_round_that_published_nothing_never_lingers() {
        let wakes: Vec<u64> = (0..40).collect();
        assert!(!verdicts(&wakes, false).contains(&true));
    }

    #[test]
    fn a_pause_forgets_a_burst() {
        // Given a burst that made the relay busy, then a pause of a second
        let mut wakes: Vec<u64> = (0..40).collect();
        wakes.push(1_040);
        let verdicts = verdicts(&wakes, true);
        assert!(verdicts[38], "the burst was busy");
        // Then the first wake after the pause goes out at once
        assert_eq!(verdicts.last(), Some(&false));
    }

    #[test]
    fn a_few_quick_wakes_after_a_quiet_spell_are_not_yet_busy() {
        let wakes = [0, 1_000, 1_001, 1_002];
        assert!(!verdicts(&wakes, true).contains(&true));
    }
}
