//! A start's first steps, handed to the runner of the same process without a claim.
//!
//! Through the database alone, a step a consumer's batch schedules costs the runner a wake
//! (`NOTIFY`) and a claim: a scan of the due steps, and an update that leases them. When the
//! process that starts an instance also runs a runner of its workflow, [`crate::start_all`]
//! leases the first steps itself, in the start's own transaction, parks them here under a ticket,
//! and names the ticket in its `NOTIFY`. Postgres delivers a notification only once its
//! transaction committed, so the runner runs the parked steps exactly when the start is true,
//! and the steps of a start rolled back are never run: their ticket is never named, and is
//! forgotten after [`LEASE`].
//!
//! Nothing is lost when a hand-off is: a process killed before its runner ran the steps, or a
//! listener that missed the notification (it reconnects), leaves them leased, and when the lease
//! ends any runner claims them as it claims every due step. A runner registers only while it
//! listens, and only starts on its own tables (the same database and schema: [`scope!`]) hand it
//! their steps. With two runners of one workflow in a process (tests do this), the later one is
//! handed the steps, and the earlier claims as before.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::Workflow;

/// How long a lease holds a step: past the call's timeout ([`crate::steps::STEP_TIMEOUT`]), with
/// a margin for the hand-over. A step whose lease ended is due again, for any runner to claim.
pub(crate) const LEASE: Duration = Duration::from_secs(5);

/// A leased step, ready to run: claimed by a runner, leased by the hand-over of the outcome
/// before it, or handed over by the start that scheduled it.
#[derive(Debug)]
pub(crate) struct Claimed<S> {
    pub(crate) id: Uuid,
    pub(crate) step: String,
    /// The attempt the lease counted: the hand-over of its outcome checks the lease is still it.
    pub(crate) attempts: i32,
    pub(crate) state: S,
    pub(crate) traceparent: Option<String>,
    /// When the lease began (at most): a step is run only while its lease has time left for
    /// the call and the hand-over.
    pub(crate) leased_at: Instant,
}

/// What a ticket's notification payload starts with: a runner that does not hold the ticket
/// knows that the steps it names are leased, and that there is nothing to look for.
const TICKET: &str = "handed:";

/// The tables a connection works on, as SQL: a start hands its steps only to a runner on the
/// same ones. A macro, so that it is spelled once inside the statements' literals.
macro_rules! scope {
    () => {
        "current_database() || '/' || current_schema()"
    };
}
pub(crate) use scope;

/// The runner of each workflow in this process that takes hand-offs, by workflow name.
static RUNNERS: LazyLock<Mutex<HashMap<&'static str, Arc<dyn Any + Send + Sync>>>> =
    LazyLock::new(Mutex::default);

/// Where a runner's handed steps wait between the start's statement and its commit.
pub(crate) struct Handoff<S> {
    runner: Uuid,
    /// The tables the runner works on ([`scope!`]).
    pub(crate) scope: String,
    next: AtomicU64,
    parked: Mutex<HashMap<u64, Parked<S>>>,
}

struct Parked<S> {
    at: Instant,
    steps: Vec<Claimed<S>>,
}

/// What a notification means to a runner.
#[derive(Debug)]
pub(crate) enum Woken<S> {
    /// Steps handed to this runner by a start that committed.
    Handed(Vec<Claimed<S>>),
    /// Steps leased for another runner, or already forgotten: nothing to do.
    Leased,
    /// A step may be due: look.
    Look,
}

impl<S: Send + 'static> Handoff<S> {
    /// Registers a runner of `W` in this process, on the tables `scope` names: starts on them
    /// hand it their first steps until the [`Registration`] is dropped.
    pub(crate) fn register<W: Workflow<State = S>>(scope: String) -> Registration<S> {
        let handoff = Arc::new(Self {
            runner: Uuid::new_v4(),
            scope,
            next: AtomicU64::new(0),
            parked: Mutex::default(),
        });
        let erased: Arc<dyn Any + Send + Sync> = handoff.clone();
        lock(&RUNNERS).insert(W::NAME, erased);
        Registration {
            workflow: W::NAME,
            handoff,
        }
    }

    /// The runner of `W` in this process that takes hand-offs, if one does.
    pub(crate) fn of<W: Workflow<State = S>>() -> Option<Arc<Self>> {
        let erased = lock(&RUNNERS).get(W::NAME)?.clone();
        erased.downcast().ok()
    }

    /// A new ticket: its number, and the payload that names it.
    pub(crate) fn ticket(&self) -> (u64, String) {
        let number = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        (number, format!("{TICKET}{}:{number}", self.runner))
    }

    /// Parks `steps` under ticket `number` until its notification comes, and forgets tickets
    /// whose steps' lease has ended (their start rolled back, or their notification was missed).
    pub(crate) fn park(&self, number: u64, steps: Vec<Claimed<S>>) {
        let mut parked = lock(&self.parked);
        parked.retain(|_, old| old.at.elapsed() < LEASE);
        if !steps.is_empty() {
            let at = Instant::now();
            parked.insert(number, Parked { at, steps });
        }
    }

    /// What the notification `payload` means to this runner.
    pub(crate) fn woken(&self, payload: &str) -> Woken<S> {
        let Some(ticket) = payload.strip_prefix(TICKET) else {
            return Woken::Look;
        };
        let mine = ticket
            .split_once(':')
            .filter(|(runner, _)| *runner == self.runner.to_string())
            .and_then(|(_, number)| number.parse::<u64>().ok());
        match mine.and_then(|number| lock(&self.parked).remove(&number)) {
            Some(parked) => Woken::Handed(parked.steps),
            None => Woken::Leased,
        }
    }
}

/// A runner's registration: it ends when dropped, unless a later runner of the same workflow
/// took its place.
pub(crate) struct Registration<S> {
    workflow: &'static str,
    handoff: Arc<Handoff<S>>,
}

impl<S> std::ops::Deref for Registration<S> {
    type Target = Handoff<S>;

    fn deref(&self) -> &Handoff<S> {
        &self.handoff
    }
}

impl<S> Drop for Registration<S> {
    fn drop(&mut self) {
        let mut runners = lock(&RUNNERS);
        let ours = runners.get(self.workflow).is_some_and(|current| {
            std::ptr::addr_eq(Arc::as_ptr(current), Arc::as_ptr(&self.handoff))
        });
        if ours {
            runners.remove(self.workflow);
        }
    }
}

/// The maps stay usable after a panic elsewhere: no holder of their lock leaves them half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
