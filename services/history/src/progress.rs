//! How far the projection has come: per partition, the next offset it will read beside the end
//! of the partition, and the time of the newest record it holds. This is what `/readyz` waits
//! on (a fresh replica serves nothing until it holds what was on the topics when it started),
//! what a read that must see a write waits on, and what the lag metrics show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use saga_history::projection::store::Partition;

/// Shared by the projector, the watermark watcher and the HTTP handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    state: Arc<Mutex<State>>,
    /// Bumped after each committed batch and each watermark fetch: what a waiting read listens
    /// to.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    next: HashMap<Partition, i64>,
    /// (low, high) watermarks, as last fetched.
    ends: HashMap<Partition, (i64, i64)>,
    /// The ends seen at start-up: what the projector must hold before it is ready.
    start: Option<HashMap<Partition, (i64, i64)>>,
    newest_record_ms: Option<i64>,
    /// How many watermark fetches have completed.
    fetches: u64,
}

/// How far behind the projection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// Records on the topics not projected yet, as of the last watermark fetch.
    pub records: i64,
    /// When the newest projected record was written (epoch ms), if any was.
    pub newest_record_ms: Option<i64>,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records behind the topics", self.records)?;
        if let Some(newest) = self.newest_record_ms {
            let age = (chrono::Utc::now().timestamp_millis() - newest).max(0);
            write!(
                f,
                "; its newest record was written {:.1} s ago",
                age as f64 / 1000.0
            )?;
        }
        Ok(())
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            changes: watch::Sender::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The checkpoints the projector starts from.
    pub fn resumed(&self, next: HashMap<Partition, i64>) {
        self.state().next = next;
    }

    /// A batch committed: its partitions' next offsets, and its newest record's time.
    pub fn projected(&self, next: &HashMap<Partition, i64>, newest_record_ms: Option<i64>) {
        {
            let mut state = self.state();
            for (partition, offset) in next {
                let known = state.next.entry(partition.clone()).or_insert(*offset);
                *known = (*known).max(*offset);
            }
            if let Some(newest) = newest_record_ms {
                state.newest_record_ms = Some(state.newest_record_ms.unwrap_or(newest).max(newest));
            }
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// The partitions' watermarks, just fetched; the first call fixes what start-up must reach.
    pub fn ends(&self, ends: HashMap<Partition, (i64, i64)>) {
        {
            let mut state = self.state();
            if state.start.is_none() {
                state.start = Some(ends.clone());
            }
            state.ends = ends;
            state.fetches += 1;
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// How many watermark fetches have completed: a read notes it when it arrives, and once a
    /// later fetch finds nothing left to project, whatever was on the topics when it arrived is
    /// in the database.
    pub fn fetches(&self) -> u64 {
        self.state().fetches
    }

    pub fn behind(&self) -> Behind {
        let state = self.state();
        Behind {
            records: records_behind(&state.next, &state.ends),
            newest_record_ms: state.newest_record_ms,
        }
    }

    /// What start-up still has to read, or `None` once the projection holds everything that was
    /// on the topics when the process started.
    pub fn catching_up(&self) -> Option<String> {
        let state = self.state();
        let Some(start) = &state.start else {
            return Some("the topics' ends are not known yet".to_owned());
        };
        let left = records_behind(&state.next, start);
        (left > 0).then(|| format!("{left} records of those on the topics at start-up"))
    }

    /// A receiver that changes after each committed batch and each watermark fetch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn records_behind(next: &HashMap<Partition, i64>, ends: &HashMap<Partition, (i64, i64)>) -> i64 {
    ends.iter()
        .map(|(partition, (low, high))| {
            let at = next.get(partition).copied().unwrap_or(*low).max(*low);
            (high - at).max(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(n: i32) -> Partition {
        ("order.events".to_owned(), n)
    }

    #[test]
    fn start_up_is_done_once_every_partition_reached_its_end_at_start() {
        let progress = Progress::new();
        assert!(progress.catching_up().is_some(), "ends unknown: not ready");
        progress.ends(HashMap::from([
            (partition(0), (0, 10)),
            (partition(1), (5, 5)),
        ]));
        assert_eq!(
            progress.catching_up().as_deref(),
            Some("10 records of those on the topics at start-up")
        );
        progress.projected(&HashMap::from([(partition(0), 10)]), Some(1));
        progress.ends(HashMap::from([
            (partition(0), (0, 25)),
            (partition(1), (5, 5)),
        ]));
        assert_eq!(progress.catching_up(), None, "later records do not count");
        assert_eq!(progress.behind().records, 15);
    }

    #[test]
    fn a_checkpoint_never_moves_back() {
        let progress = Progress::new();
        progress.projected(&HashMap::from([(partition(0), 10)]), None);
        progress.projected(&HashMap::from([(partition(0), 4)]), None);
        progress.ends(HashMap::from([(partition(0), (0, 12))]));
        assert_eq!(progress.behind().records, 2);
    }
}
