//! The step runner: runs the effects of a workflow's steps, outside any transaction, and hands
//! each outcome to its instance under the instance's lock.
//!
//! 1. **Claim.** The earliest due step is taken (`FOR UPDATE SKIP LOCKED`, so replicas share
//!    them) and leased: its `due_at` moves past the call's timeout and its attempt is counted,
//!    in a transaction of its own. A runner killed mid-call leaves the step to be claimed again
//!    when the lease ends.
//! 2. **Perform.** [`Workflow::perform`] runs the effect under the key `workflow:instance:step`,
//!    which the remote honours: a step run again after a crash repeats nothing (the same label,
//!    not a second one). A call that outlasts [`STEP_TIMEOUT`] is a transient failure.
//! 3. **Hand over.** Under the instance's lock: a transient failure is retried later (the one
//!    `Backoff`, up to [`ATTEMPTS`] attempts, then it is permanent); the result, or a permanent
//!    failure, goes to the instance ([`Workflow::step_finished`]) with the events it emits. A step
//!    dropped meanwhile (its order was cancelled) still hands over a success: the workflow undoes
//!    what the effect did. An outcome whose lease was lost (another runner claimed the step
//!    again) is dropped; that runner reports the same result.
//!
//! A step the transition schedules now is claimed in the hand-over's own transaction and run at
//! once, on the state just written, so that a chain of steps (allocate → label → pickup) costs
//! one transaction per step; it wakes no runner, since no other runner is to claim it.
//! Chains of different instances run side by side ([`CONCURRENCY`]), claimed in batches. The
//! runner wakes on `NOTIFY` from the transaction that scheduled a step, and looks at least every
//! 250 ms besides.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use saga_messaging::error::error_chain;
use saga_messaging::headers::{Headers, TRACEPARENT};
use saga_messaging::{Backoff, HandlerError, Outbox, trace};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};
use uuid::Uuid;

use crate::instance::{self, CHANNEL, Wake};
use crate::{StepFailure, Workflow, WorkflowError};

/// The longest a step's call may take; it counts as a transient failure after.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a claim holds a step: past the call's timeout, with a margin for the hand-over.
const LEASE: Duration = Duration::from_secs(5);

/// Attempts of a step before a transient failure counts as permanent. A step's whole retry
/// budget is then at most `ATTEMPTS × STEP_TIMEOUT` of calls plus 0.7 s of backoff (8.7 s),
/// well inside the saga's default 30 s deadline.
pub const ATTEMPTS: i32 = 4;

/// The backoff between attempts of a step: 100, 200, 400 ms (each with jitter).
fn backoff() -> Backoff {
    Backoff::with(Duration::from_millis(100), Duration::from_millis(800))
}

const LONGEST_SLEEP: Duration = Duration::from_millis(250);

/// Chains of steps one runner runs at once: a carrier's calls overlap, each order's in turn.
pub const CONCURRENCY: usize = 32;

/// What runs the effects of a workflow's steps: the remote calls, kept apart from the
/// workflow's rules so that those stay free of I/O.
pub trait Perform<W: Workflow>: Send + Sync + 'static {
    /// Runs the effect of step `step` of `instance` in `state` (a call to a remote API), under
    /// `key`, the idempotency key the remote honours: the same key never has its effect twice.
    /// Called outside any transaction, with no lock held.
    fn perform<'a>(
        &'a self,
        instance: Uuid,
        state: &'a W::State,
        step: &'a str,
        key: &'a str,
    ) -> impl Future<Output = Result<serde_json::Value, StepFailure>> + Send + 'a;
}

/// A claimed step, ready to run.
#[derive(Debug)]
struct Claimed<S> {
    id: Uuid,
    step: String,
    attempts: i32,
    state: S,
    traceparent: Option<String>,
}

/// Runs `workflow`'s steps with `performer` until `shutdown`: up to [`CONCURRENCY`] chains at
/// once, each its own instance's (an instance has at most one step due at a time).
pub async fn run<W: Workflow, P: Perform<W>>(
    workflow: W,
    performer: P,
    pool: PgPool,
    outbox: Outbox,
    shutdown: CancellationToken,
) {
    let mut listener = listen(&pool).await;
    let mut backoff = backoff();
    // Each chain is a task of its own: it holds a connection while it hands an outcome over, and
    // must get on with it while this loop waits for one to claim more.
    let performer = Arc::new(performer);
    let mut running = JoinSet::new();
    while !shutdown.is_cancelled() {
        let room = CONCURRENCY.saturating_sub(running.len());
        if room > 0 {
            match claim_due(&workflow, &pool, room).await {
                Ok(claimed) => {
                    backoff = self::backoff();
                    let claimed_any = !claimed.is_empty();
                    for claimed in claimed {
                        let (workflow, performer) = (workflow.clone(), performer.clone());
                        let (pool, outbox) = (pool.clone(), outbox.clone());
                        running.spawn(async move {
                            run_chain(&workflow, performer.as_ref(), &pool, &outbox, claimed).await;
                        });
                    }
                    if claimed_any {
                        continue;
                    }
                }
                Err(error) => {
                    warn!(workflow = W::NAME, error = %error.reason(), "workflow steps could not be claimed");
                    if running.is_empty() && !backoff.wait(shutdown.cancelled()).await {
                        return;
                    }
                }
            }
        }
        let woken = async {
            match listener.as_mut() {
                Some(connected) => match connected.try_recv().await {
                    // A notification, or the connection lost (it reconnects on the next call).
                    Ok(_) => {}
                    Err(_) => std::future::pending::<()>().await,
                },
                None => std::future::pending::<()>().await,
            }
        };
        let a_chain_ended = async {
            if running.is_empty() {
                std::future::pending::<()>().await;
            } else {
                running.join_next().await;
            }
        };
        tokio::select! {
            _ = a_chain_ended => {}
            _ = woken => {}
            _ = tokio::time::sleep(LONGEST_SLEEP) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A listener on [`CHANNEL`]; without one (the database refused it), the runner only polls.
async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}

/// Runs a claimed step, then each step its outcome schedules at once, until none is.
async fn run_chain<W: Workflow, P: Perform<W>>(
    workflow: &W,
    performer: &P,
    pool: &PgPool,
    outbox: &Outbox,
    first: Claimed<W::State>,
) {
    let mut next = Some(first);
    while let Some(claimed) = next.take() {
        let span = info_span!(
            "workflow step",
            workflow = W::NAME,
            step = %claimed.step,
            order_id = %claimed.id,
            attempt = claimed.attempts,
            otel.kind = "client",
        );
        if let Some(traceparent) = &claimed.traceparent {
            let mut carried = Headers::new();
            carried.insert(TRACEPARENT, traceparent.as_str());
            trace::continue_trace(&span, &carried);
        }
        let outcome = async {
            let key = format!("{}:{}:{}", W::NAME, claimed.id, claimed.step);
            let call = performer.perform(claimed.id, &claimed.state, &claimed.step, &key);
            let outcome = match tokio::time::timeout(STEP_TIMEOUT, call).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StepFailure::transient(format!(
                    "no answer within {STEP_TIMEOUT:?}"
                ))),
            };
            hand_over(workflow, pool, outbox, &claimed, outcome).await
        }
        .instrument(span)
        .await;
        match outcome {
            Ok(chained) => next = chained,
            Err(error) => warn!(
                workflow = W::NAME,
                step = %claimed.step,
                order_id = %claimed.id,
                error = %error.reason(),
                "a step's outcome could not be handed over: the step runs again when its lease ends"
            ),
        }
    }
}

/// Claims up to `limit` due steps, earliest first, in a transaction of its own.
async fn claim_due<W: Workflow>(
    _workflow: &W,
    pool: &PgPool,
    limit: usize,
) -> Result<Vec<Claimed<W::State>>, HandlerError> {
    let mut tx = pool.begin().await?;
    let leased: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "WITH due AS (
             SELECT instance_id, step FROM workflow_steps
             WHERE workflow = $1 AND status = 'PENDING' AND due_at <= now()
             ORDER BY due_at LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE workflow_steps s
         SET attempts = s.attempts + 1, due_at = now() + make_interval(secs => $3),
             updated_at = now()
         FROM due
         WHERE s.workflow = $1 AND s.instance_id = due.instance_id AND s.step = due.step
         RETURNING s.instance_id, s.step, s.attempts",
    )
    .bind(W::NAME)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(LEASE.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = leased.iter().map(|(id, _, _)| *id).collect();
    let instances = instance::load_many::<W>(&mut tx, &ids)
        .await
        .map_err(handler_error)?;
    tx.commit().await?;
    Ok(leased
        .into_iter()
        .filter_map(|(id, step, attempts)| {
            let instance = instances.get(&id)?;
            Some(Claimed {
                id,
                step,
                attempts,
                state: instance.state.clone(),
                traceparent: instance.traceparent.clone(),
            })
        })
        .collect())
}

/// Hands a step's outcome to its instance under the instance's lock; returns the next step
/// to run at once, claimed, if the transition scheduled one.
async fn hand_over<W: Workflow>(
    workflow: &W,
    pool: &PgPool,
    outbox: &Outbox,
    claimed: &Claimed<W::State>,
    outcome: Result<serde_json::Value, StepFailure>,
) -> Result<Option<Claimed<W::State>>, HandlerError> {
    let (id, step) = (claimed.id, claimed.step.as_str());
    let mut tx = instance::begin(pool, id).await?;
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT status, attempts FROM workflow_steps
         WHERE workflow = $1 AND instance_id = $2 AND step = $3 FOR UPDATE",
    )
    .bind(W::NAME)
    .bind(id)
    .bind(step)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, attempts)) = row else {
        return Ok(None);
    };
    // Claimed again by another runner after this one's lease ran out: that one reports.
    if attempts != claimed.attempts || !matches!(status.as_str(), "PENDING" | "DROPPED") {
        return Ok(None);
    }
    let dropped = status == "DROPPED";
    let outcome = match outcome {
        Err(failure) if failure.transient && attempts < ATTEMPTS && !dropped => {
            metrics::counter!("saga_workflow_step_failures_total", "workflow" => W::NAME, "step" => step.to_owned(), "kind" => "transient").increment(1);
            let mut delay = backoff();
            let wait = (0..attempts)
                .map(|_| delay.next_delay())
                .last()
                .unwrap_or_default();
            sqlx::query(
                "UPDATE workflow_steps
                 SET due_at = now() + make_interval(secs => $4), last_error = $5, updated_at = now()
                 WHERE workflow = $1 AND instance_id = $2 AND step = $3",
            )
            .bind(W::NAME)
            .bind(id)
            .bind(step)
            .bind(wait.as_secs_f64())
            .bind(&failure.reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(None);
        }
        // A dropped step that failed did nothing: there is nothing to undo.
        Err(_) if dropped => {
            tx.commit().await?;
            return Ok(None);
        }
        Err(failure) => {
            metrics::counter!("saga_workflow_step_failures_total", "workflow" => W::NAME, "step" => step.to_owned(), "kind" => "permanent").increment(1);
            Err(failure.reason)
        }
        Ok(result) => Ok(result),
    };
    let (final_status, result, error) = match &outcome {
        Ok(result) => ("DONE", Some(result.clone()), None),
        Err(reason) => ("FAILED", None, Some(reason.clone())),
    };
    sqlx::query(
        "UPDATE workflow_steps SET status = $4, result = $5, last_error = $6, updated_at = now()
         WHERE workflow = $1 AND instance_id = $2 AND step = $3",
    )
    .bind(W::NAME)
    .bind(id)
    .bind(step)
    .bind(final_status)
    .bind(result)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    let Some(input) = workflow.step_finished(step, outcome) else {
        tx.commit().await?;
        return Ok(None);
    };
    let now = Utc::now().timestamp_millis();
    let handled = match instance::moved(&mut tx, workflow, id, &input, now, Wake::Nobody).await {
        Ok(handled) => handled,
        Err(WorkflowError::Conflict(_) | WorkflowError::Unknown { .. }) => {
            tx.commit().await?;
            return Ok(None);
        }
        Err(WorkflowError::Database(error)) => return Err(error.into()),
        Err(error) => return Err(HandlerError::rejected(error_chain(&error))),
    };
    // The next step the transition scheduled, leased here: it runs at once, on the state just
    // written, without another round trip.
    let next: Option<(String, i32)> = sqlx::query_as(
        "UPDATE workflow_steps
         SET attempts = attempts + 1, due_at = now() + make_interval(secs => $3),
             updated_at = now()
         WHERE workflow = $1 AND instance_id = $2 AND step = (
             SELECT step FROM workflow_steps
             WHERE workflow = $1 AND instance_id = $2 AND status = 'PENDING' AND due_at <= now()
             ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING step, attempts",
    )
    .bind(W::NAME)
    .bind(id)
    .bind(LEASE.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let chained = next.map(|(step, attempts)| Claimed {
        id,
        step,
        attempts,
        state: handled.after.clone(),
        traceparent: handled.traceparent.clone(),
    });
    let written = outbox.append(&mut tx, &handled.emit).await?;
    outbox.commit(tx, written).await?;
    Ok(chained)
}

fn handler_error(error: WorkflowError) -> HandlerError {
    match error {
        WorkflowError::Database(error) => error.into(),
        other => HandlerError::rejected(error_chain(&other)),
    }
}
