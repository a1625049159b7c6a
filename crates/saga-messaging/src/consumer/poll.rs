//! The thread that owns the Kafka consumer: polls it, routes records to lanes, and handles
//! rebalances.
//!
//! It is a plain thread, not a task, because librdkafka runs rebalance callbacks inside `poll`,
//! and a revocation must wait there for the lanes to finish the batches they hold of the revoked
//! partitions: blocking a runtime worker for that could starve the very lanes it waits for.
//!
//! A lane that cannot take more records gets its partition paused, with the records already
//! polled kept aside: the other partitions keep flowing, and `poll` keeps being called, so the
//! consumer stays in its group however long one lane is busy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ConsumerError;
use crate::delivery::Delivery;
use crate::health::Health;
use crate::kafka::KafkaSettings;
use crate::requests::RequestCounts;

pub(super) type SagaConsumer = BaseConsumer<Rebalancer>;
pub(super) type TopicPartition = (String, i32);

/// A record on its way to a lane, tagged with the assignment it was polled under: a record
/// polled before its partition was revoked (and perhaps assigned again) must not be handled.
#[derive(Debug)]
pub(super) struct Routed {
    pub delivery: Delivery,
    pub epoch: u64,
}

/// How long a revocation waits for a lane to finish its batch before letting go regardless
/// (whatever it still commits is deduplicated by the next owner's inbox).
const REVOKE_WAIT: Duration = Duration::from_secs(20);

/// Which lane owns which partition, and the lanes' doors.
#[derive(Debug)]
pub(super) struct Router {
    senders: Vec<mpsc::Sender<Routed>>,
    /// Held by a lane while it handles a batch: taking it means the lane holds no batch.
    pub busy: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Wakes a lane that is waiting (backoff, a retry's due time) to look at its assignment.
    pub wake: Vec<Arc<Notify>>,
    retry_topic: String,
    state: Mutex<RouterState>,
}

#[derive(Debug, Default)]
struct RouterState {
    assigned: HashMap<TopicPartition, (usize, u64)>,
    load: Vec<usize>,
    next_epoch: u64,
}

impl Router {
    /// `lanes` for event partitions plus one for the retry topic, each with room for `queue`
    /// records.
    pub fn new(
        lanes: usize,
        queue: usize,
        retry_topic: String,
    ) -> (Self, Vec<mpsc::Receiver<Routed>>) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..=lanes {
            let (sender, receiver) = mpsc::channel(queue);
            senders.push(sender);
            receivers.push(receiver);
        }
        let count = senders.len();
        let router = Self {
            senders,
            busy: (0..count).map(|_| Arc::default()).collect(),
            wake: (0..count).map(|_| Arc::default()).collect(),
            retry_topic,
            state: Mutex::new(RouterState {
                load: vec![0; count],
                ..RouterState::default()
            }),
        };
        (router, receivers)
    }

    fn state(&self) -> MutexGuard<'_, RouterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `lane` is the one that handles the retry topic.
    pub fn is_retry_lane(&self, lane: usize) -> bool {
        lane == self.senders.len() - 1
    }

    fn assign(&self, partitions: &[TopicPartition]) {
        let retry_lane = self.senders.len() - 1;
        let mut state = self.state();
        for partition in partitions {
            let lane = if partition.0 == self.retry_topic {
                retry_lane
            } else {
                (0..retry_lane)
                    .min_by_key(|lane| state.load[*lane])
                    .unwrap_or(0)
            };
            state.next_epoch += 1;
            let epoch = state.next_epoch;
            if let Some((old, _)) = state.assigned.insert(partition.clone(), (lane, epoch)) {
                state.load[old] -= 1;
            }
            state.load[lane] += 1;
        }
    }

    /// Forgets `partitions`; returns the lanes that owned them.
    fn revoke(&self, partitions: &[TopicPartition]) -> Vec<usize> {
        let mut state = self.state();
        let mut lanes = Vec::new();
        for partition in partitions {
            if let Some((lane, _)) = state.assigned.remove(partition) {
                state.load[lane] -= 1;
                if !lanes.contains(&lane) {
                    lanes.push(lane);
                }
            }
        }
        lanes
    }

    /// The partitions assigned now.
    fn assigned(&self) -> Vec<TopicPartition> {
        self.state().assigned.keys().cloned().collect()
    }

    fn route(&self, partition: &TopicPartition) -> Option<(usize, u64)> {
        self.state().assigned.get(partition).copied()
    }

    /// Whether a record polled under `epoch` may still be handled.
    pub fn is_current(&self, delivery: &Delivery, epoch: u64) -> bool {
        self.is_current_partition(&(delivery.topic.clone(), delivery.partition), epoch)
    }

    /// Whether `partition` is still assigned under `epoch`.
    pub fn is_current_partition(&self, partition: &TopicPartition, epoch: u64) -> bool {
        self.state()
            .assigned
            .get(partition)
            .is_some_and(|(_, current)| *current == epoch)
    }
}

/// Stops the lanes' work on revoked partitions before librdkafka lets them go, and commits
/// what they finished.
pub(super) struct Rebalancer {
    router: Arc<Router>,
    health: Health,
    runtime: tokio::runtime::Handle,
    requests: RequestCounts,
}

impl ClientContext for Rebalancer {
    /// librdkafka's statistics, every second: each partition's lag goes to `/metrics`, and the
    /// consumer counts as ready only once every partition it was given is being fetched (the
    /// first seconds after an assignment go to looking up committed offsets). Its requests are
    /// counted too ([`crate::requests`]).
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.requests.record(&statistics);
        let mut fetching = true;
        let assigned = self.router.assigned();
        for (topic_name, topic) in &statistics.topics {
            for (id, partition) in &topic.partitions {
                if *id < 0 || !assigned.contains(&(topic_name.clone(), *id)) {
                    continue;
                }
                if partition.fetch_state != "active" {
                    fetching = false;
                }
                if partition.consumer_lag >= 0 {
                    metrics::gauge!(
                        "saga_consumer_lag",
                        "topic" => topic_name.clone(),
                        "partition" => id.to_string()
                    )
                    .set(partition.consumer_lag as f64);
                }
            }
        }
        // Nothing assigned (more members than partitions) is fetching everything it has.
        if fetching && self.health.is_consumer_joined() {
            self.health.consumer_fetching();
        }
    }
}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list);
        for lane in self.router.revoke(&partitions) {
            self.router.wake[lane].notify_waiters();
            wait_until_idle(&self.router, lane, &self.runtime);
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(%error, "nothing committed on revocation");
        }
        // The partition's lag is its new owner's to report now; a stale value here would add
        // to the group's total for as long as this process runs.
        for (topic, partition) in &partitions {
            metrics::gauge!(
                "saga_consumer_lag",
                "topic" => topic.clone(),
                "partition" => partition.to_string()
            )
            .set(0.0);
        }
        info!(partitions = ?partitions, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                self.router.assign(&partitions);
                // A partition paused under an earlier assignment starts afresh.
                let _ = consumer.resume(list);
                self.health.consumer_joined();
                info!(partitions = ?partitions, "partitions assigned");
            }
            Rebalance::Error(error) => warn!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Blocks until `lane` holds no batch (or the revocation deadline passes). Never on a runtime
/// thread, where blocking could starve the lane itself: there it only commits.
fn wait_until_idle(router: &Router, lane: usize, runtime: &tokio::runtime::Handle) {
    if tokio::runtime::Handle::try_current().is_ok() {
        return;
    }
    let busy = router.busy[lane].clone();
    // The timer must be made inside the runtime, so inside the future.
    let idle =
        runtime.block_on(async { tokio::time::timeout(REVOKE_WAIT, busy.lock_owned()).await });
    if idle.is_err() {
        warn!(lane, "a lane kept its batch past the deadline");
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

pub(super) fn create(
    kafka: &KafkaSettings,
    group: &str,
    instance: Option<&str>,
    router: Arc<Router>,
    health: Health,
) -> Result<SagaConsumer, KafkaError> {
    kafka
        .consumer_config(group, instance)
        .create_with_context(Rebalancer {
            router,
            health,
            runtime: tokio::runtime::Handle::current(),
            requests: RequestCounts::new("consumer"),
        })
}

/// Polls until `shutdown`, then waits for the lanes to finish their batches, commits and closes.
pub(super) fn run(
    consumer: Arc<SagaConsumer>,
    router: &Router,
    shutdown: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) -> Result<(), ConsumerError> {
    let mut held: HashMap<TopicPartition, VecDeque<Routed>> = HashMap::new();
    let mut failure = None;
    while !shutdown.is_cancelled() {
        if let Err(error) = forward_held(&consumer, router, &mut held) {
            failure = Some(error);
            break;
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    failure = Some(ConsumerError::Fatal { code, reason });
                    break;
                }
                // Broker away, a rebalance in progress, …: librdkafka recovers by itself.
                warn!(%error, "consumer error");
                continue;
            }
        };
        let delivery = Delivery::from_message(&message);
        drop(message);
        let partition = (delivery.topic.clone(), delivery.partition);
        // Records only arrive for assigned partitions; one that races a revocation is left to
        // the next owner.
        let Some((lane, epoch)) = router.route(&partition) else {
            continue;
        };
        let routed = Routed { delivery, epoch };
        if let Some(queue) = held.get_mut(&partition) {
            queue.push_back(routed);
            continue;
        }
        match router.senders[lane].try_send(routed) {
            Ok(()) => {}
            Err(TrySendError::Full(routed)) => {
                pause(&consumer, &partition, true);
                held.insert(partition, VecDeque::from([routed]));
            }
            Err(TrySendError::Closed(_)) => {
                failure = Some(ConsumerError::LaneFailed(format!("lane {lane} is gone")));
                break;
            }
        }
    }
    shutdown.cancel();
    // Let every lane finish the batch it holds; none starts another after shutdown.
    for lane in 0..router.busy.len() {
        router.wake[lane].notify_waiters();
        wait_until_idle(router, lane, runtime);
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => info!("offsets committed"),
        Err(error) => debug!(%error, "no offsets to commit at shutdown"),
    }
    // Closing runs the revocation callback, which must not run on a runtime thread: wait until
    // the lanes have let go of the consumer, so that the last handle is dropped here.
    let deadline = std::time::Instant::now() + REVOKE_WAIT;
    while Arc::strong_count(&consumer) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Dropping the last handle closes the consumer: it leaves the group (a static member stays
    // until its session times out, and gets its partitions back if it returns before that).
    drop(consumer);
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// Hands records kept aside to their lanes as room appears, resuming each partition whose
/// records have all gone. Records of partitions no longer assigned are dropped.
fn forward_held(
    consumer: &SagaConsumer,
    router: &Router,
    held: &mut HashMap<TopicPartition, VecDeque<Routed>>,
) -> Result<(), ConsumerError> {
    let mut emptied = Vec::new();
    for (partition, queue) in held.iter_mut() {
        let Some((lane, epoch)) = router.route(partition) else {
            queue.clear();
            emptied.push(partition.clone());
            continue;
        };
        queue.retain(|routed| routed.epoch == epoch);
        while let Some(routed) = queue.pop_front() {
            match router.senders[lane].try_send(routed) {
                Ok(()) => {}
                Err(TrySendError::Full(routed)) => {
                    queue.push_front(routed);
                    break;
                }
                Err(TrySendError::Closed(_)) => {
                    return Err(ConsumerError::LaneFailed(format!("lane {lane} is gone")));
                }
            }
        }
        if queue.is_empty() {
            emptied.push(partition.clone());
        }
    }
    for partition in emptied {
        held.remove(&partition);
        pause(consumer, &partition, false);
    }
    Ok(())
}

fn pause(consumer: &SagaConsumer, partition: &TopicPartition, paused: bool) {
    let mut list = TopicPartitionList::new();
    list.add_partition(&partition.0, partition.1);
    let result = if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(error) = result {
        debug!(%error, topic = %partition.0, partition = partition.1, paused, "pause/resume");
    }
}
