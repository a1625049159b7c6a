//! Durable workflows inside one service: orchestration within a bounded context, beside the
//! choreography between contexts.
//!
//! Some of what a service does for an order takes longer than one reaction: a payment waits for
//! a reviewer, or for the review to expire. Such a process is a workflow [`Workflow`]: a pure
//! transition function (state + input → new state + [`Command`]s), tested without I/O, whose
//! instances live in the service's own database with a journal of every input that moved them.
//!
//! - **One lock per instance.** An instance is named by its order, and every input to it (a
//!   saga event, a reviewer's decision, a timer) is handled under that order's advisory lock,
//!   the one the service's consumer already holds for each batch ([`begin`]). Inputs that race
//!   queue, so an instance reaches exactly one outcome.
//! - **Outcomes leave through the outbox**, as ordinary saga events, in the transaction that
//!   moved the instance: other services see facts, never the workflow.
//! - **Durable timers** ([`timers`]) are rows: a timer due while the service was down fires when
//!   it is back, replicas share due timers (`FOR UPDATE SKIP LOCKED`), a fired timer commits with
//!   the transition it caused (so it fires once, even across a kill -9), and a cancelled one
//!   never fires.
//! - **Steps** ([`steps`]) have an effect outside the database (a carrier's API). The step runner
//!   calls it outside any transaction, under an idempotency key of workflow, instance and step,
//!   retries transient failures with the one `Backoff`, and hands the outcome to the instance
//!   under its lock. A permanent failure is the workflow's to answer (its own compensation).
//! - **Traces.** An instance keeps the trace context of the event that started it: each input
//!   it handles later is a span in that order's trace, and the events it emits continue it.
//! - **Retention** ([`retention`]): a finished instance is deleted, with its journal, steps and
//!   timers, once it is older than the service's inbox window.

mod handoff;
mod instance;
mod outcomes;
pub mod retention;
pub mod steps;
pub mod timers;
mod traces;

use std::fmt::Debug;

use saga_events::SagaEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use thiserror::Error;
use uuid::Uuid;

pub use instance::{Handled, Instance, Start, begin, handle, load, start, start_all};
/// What [`Workflow::persist`] returns: the consumer's deferred write, the same mechanism.
pub use saga_messaging::Deferred;
pub use steps::Perform;
pub use traces::Traces;

/// A workflow: its rules, and the one hook into the service's own tables.
pub trait Workflow: Clone + Send + Sync + 'static {
    /// The workflow's name in its tables, metrics and `sagactl workflows` (`payment_review`).
    const NAME: &'static str;

    /// An instance's state, kept as JSON.
    type State: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync;

    /// What moves an instance: a saga event, a person's decision, a timer.
    type Input: Serialize + Debug + Send + Sync;

    /// The state after `input` at `now_ms`, and what to do about it; a [`Conflict`] when the
    /// input cannot apply to the state (a second, different decision), which changes nothing.
    fn transition(
        &self,
        state: &Self::State,
        input: &Self::Input,
        now_ms: i64,
    ) -> Result<Transition<Self::State>, Conflict>;

    /// The state's name for operators and metrics (`OPEN`, `APPROVED`).
    fn label(&self, state: &Self::State) -> &'static str;

    /// What an instance in `state` waits for (`reviewer`), or `None` once it has ended.
    fn waiting_for(&self, state: &Self::State) -> Option<&'static str>;

    /// The input a timer named `timer` gives when it fires (`None`: a timer this workflow does
    /// not know, which fires into nothing).
    fn timer_fired(&self, timer: &str) -> Option<Self::Input>;

    /// What the new state of instance `id` means to the service's own tables (Payment's payment
    /// row once a review is decided): one data-modifying statement (`UPDATE`, `INSERT`) with its
    /// parameters numbered from `$1` and bound from values it owns, as a batch's deferred writes
    /// are. It runs as a CTE of the statement that writes the instance, so that both cost one
    /// round trip; `None` (the default) for nothing.
    fn persist(&self, id: Uuid, state: &Self::State) -> Option<Deferred> {
        let _ = (id, state);
        None
    }

    /// The input a finished step gives its instance: its result, or why it failed for good.
    /// `None` (the default, for a workflow without steps): nothing to hand over.
    fn step_finished(
        &self,
        step: &str,
        outcome: Result<serde_json::Value, String>,
    ) -> Option<Self::Input> {
        let _ = (step, outcome);
        None
    }
}

/// Why a step's effect did not happen: a transient failure (the remote timed out or is
/// unavailable) is retried with backoff; anything else is the step's permanent failure, which
/// the workflow answers (with its own compensation, say).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason}")]
pub struct StepFailure {
    pub transient: bool,
    pub reason: String,
}

impl StepFailure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            transient: true,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            transient: false,
            reason: reason.into(),
        }
    }
}

/// A transition's result: the new state, and the commands the engine carries out in the same
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<S> {
    pub state: S,
    pub commands: Vec<Command>,
}

impl<S> Transition<S> {
    /// The state is `state` and nothing is to be done.
    pub fn to(state: S) -> Self {
        Self {
            state,
            commands: Vec::new(),
        }
    }

    pub fn then(mut self, command: Command) -> Self {
        self.commands.push(command);
        self
    }
}

/// What a transition asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Tell the saga: the event goes to the outbox with the state change.
    Emit(Box<SagaEvent>),
    /// Fire the timer `timer` at `due_at_ms` (UTC epoch milliseconds), replacing one of that name.
    Schedule { timer: &'static str, due_at_ms: i64 },
    /// The timer `timer` must not fire (if it has not yet).
    Cancel { timer: &'static str },
    /// Run step `step` now (its effect outside the transaction, by the step runner).
    Run { step: &'static str },
    /// Step `step` must not start (if it has not yet); one already under way still reports its
    /// outcome, for the workflow to undo.
    Drop { step: &'static str },
}

impl Command {
    /// [`Command::Emit`] of `event`.
    pub fn emit(event: impl Into<SagaEvent>) -> Self {
        Command::Emit(Box::new(event.into()))
    }
}

/// An input the instance's state refuses: it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Conflict(pub String);

/// Why handling an input failed.
#[derive(Debug, Error)]
pub enum WorkflowError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("no {workflow} instance for order {instance}")]
    Unknown {
        workflow: &'static str,
        instance: Uuid,
    },
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error("the stored state of {workflow} {instance} cannot be read")]
    Corrupt {
        workflow: &'static str,
        instance: Uuid,
        #[source]
        source: serde_json::Error,
    },
}

/// A workflow's failure where a statement's error is expected (a participant's ledger): a
/// database error stays itself, so that it is retried as one; anything else is about the stored
/// data, and keeps its source.
impl From<WorkflowError> for sqlx::Error {
    fn from(error: WorkflowError) -> Self {
        match error {
            WorkflowError::Database(error) => error,
            other => sqlx::Error::Decode(Box::new(other)),
        }
    }
}

/// `own`, the service's migrations (versions 100 and up), with the workflows' tables (version 60)
/// ahead of them.
pub fn migrator(own: Migrator) -> Migrator {
    let shared = saga_messaging::embedded_migrations!();
    Migrator::with_migrations(shared.iter().chain(own.iter()).cloned().collect())
}
