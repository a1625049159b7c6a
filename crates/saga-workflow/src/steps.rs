//! The step runner: runs the effects of a workflow's steps, outside any transaction, and hands
//! each outcome to its instance under the instance's lock.
//!
//! 1. **Claim.** The earliest due step is taken (`FOR UPDATE SKIP LOCKED`, so replicas share
//!    them) and leased: its `due_at` moves past the call's timeout and its attempt is counted,
//!    in one statement of its own that also reads the instance's state. A runner killed mid-call
//!    leaves the step to be claimed again when the lease ends. A start in the runner's own
//!    process leases its first steps itself and hands them over once it commits
//!    ([`crate::handoff`]): those are not claimed.
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
//! **Running ahead.** When an outcome's transition does nothing but schedule the next step
//! (allocate → label → pickup), the runner does not hand it over first: it works the transition
//! out in memory and runs the next step at once, under that step's own key, then hands the
//! outcomes over together in one transaction (`hand_over`). A chain of fast steps thus costs one
//! transaction, not one per step. Each outcome is applied to the instance as it is then, so a
//! cancellation that came in meanwhile is answered as for a step dropped while it ran. A runner
//! killed before the hand-over runs the chain again from its first step when the lease ends: the
//! keys make the calls repeat nothing. A step that takes longer than [`PATIENCE`] has the outcomes
//! before it handed over while it runs, and is leased in that transaction, so that what is done
//! shows (`GET /shipments/{id}`) and is not asked for again after a crash. A step the hand-over
//! schedules is leased in its transaction and run at once; it wakes no runner, since no other
//! runner is to claim it. Chains of different instances run side by side ([`CONCURRENCY`]),
//! claimed in batches. The runner wakes on `NOTIFY` from the transaction that scheduled a step,
//! and looks at least every 250 ms besides; a chain that ends makes nothing due, so it sends the
//! runner to look only if its last look filled every place.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_messaging::error::error_chain;
use saga_messaging::headers::{Headers, TRACEPARENT};
use saga_messaging::{Backoff, HandlerError, Outbox, trace};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};
use uuid::Uuid;

use crate::handoff::{Claimed, Handoff, LEASE, Woken, scope};
use crate::instance::{self, CHANNEL};
use crate::{Command, StepFailure, Workflow};
use hand_over::{Finished, hand_over};

/// The longest a step's call may take; it counts as a transient failure after.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Time a lease keeps for the hand-over after its last call.
const HAND_OVER_MARGIN: Duration = Duration::from_secs(1);

/// How long a step run ahead may take before the outcomes before it are handed over while it
/// runs: a fast chain commits once, a slow step does not keep what is done out of sight.
pub const PATIENCE: Duration = Duration::from_millis(50);

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
    // Steps handed over by this process's starts ([`crate::handoff`]) come with a notification:
    // only a runner that listens takes them.
    let handoff = match listener {
        Some(_) => scope(&pool).await.map(Handoff::register::<W>),
        None => None,
    };
    let mut handed: VecDeque<Claimed<W::State>> = VecDeque::new();
    let mut backoff = backoff();
    // Each chain is a task of its own: it holds a connection while it hands an outcome over, and
    // must get on with it while this loop waits for one to claim more.
    let performer = Arc::new(performer);
    let mut running = JoinSet::new();
    // Whether a step may be due that this runner has not looked for: at start, after a wake or
    // a poll, and after a claim that filled every free place (more may wait). A chain that ends
    // frees a place but makes nothing due (what its hand-over schedules, it runs itself), so it
    // sends no look to the database by itself.
    let mut look = true;
    while !shutdown.is_cancelled() {
        while running.len() < CONCURRENCY
            && let Some(claimed) = handed.pop_front()
        {
            // Waited so long for a place that its lease may end mid-call: it is left to end,
            // and the step claimed again then.
            if claimed.leased_at.elapsed() + STEP_TIMEOUT + HAND_OVER_MARGIN >= LEASE {
                continue;
            }
            let (workflow, performer) = (workflow.clone(), performer.clone());
            let (pool, outbox) = (pool.clone(), outbox.clone());
            running.spawn(async move {
                run_chain(&workflow, performer.as_ref(), &pool, &outbox, claimed).await;
            });
        }
        let room = CONCURRENCY.saturating_sub(running.len());
        if room > 0 && look {
            match claim_due::<W>(&pool, room).await {
                Ok(claimed) => {
                    backoff = self::backoff();
                    look = claimed.len() == room;
                    for claimed in claimed {
                        let (workflow, performer) = (workflow.clone(), performer.clone());
                        let (pool, outbox) = (pool.clone(), outbox.clone());
                        running.spawn(async move {
                            run_chain(&workflow, performer.as_ref(), &pool, &outbox, claimed).await;
                        });
                    }
                    if look {
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
                    Ok(Some(notification)) => Some(notification.payload().to_owned()),
                    // The connection was lost: it reconnects on the next call, and what was
                    // missed meanwhile may be due.
                    Ok(None) => None,
                    Err(_) => std::future::pending::<Option<String>>().await,
                },
                None => std::future::pending::<Option<String>>().await,
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
            payload = woken => match (payload, handoff.as_ref()) {
                (Some(payload), Some(handoff)) => match handoff.woken(&payload) {
                    Woken::Handed(steps) => handed.extend(steps),
                    Woken::Leased => {}
                    Woken::Look => look = true,
                },
                _ => look = true,
            },
            _ = tokio::time::sleep(LONGEST_SLEEP) => look = true,
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

/// The tables `pool` works on ([`crate::handoff::scope!`]); `None` if they cannot be told.
async fn scope(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar(concat!("SELECT ", scope!()))
        .fetch_one(pool)
        .await
        .ok()
}

/// Runs a claimed step, then each step its outcome schedules at once, until none is.
async fn run_chain<W: Workflow, P: Perform<W>>(
    workflow: &W,
    performer: &P,
    pool: &PgPool,
    outbox: &Outbox,
    first: Claimed<W::State>,
) {
    let mut legs = VecDeque::from([first]);
    while let Some(claimed) = legs.pop_front() {
        legs.extend(run_leg(workflow, performer, pool, outbox, claimed).await);
    }
}

/// Runs `claimed`, then runs ahead through the steps its outcomes schedule while each answers
/// within [`PATIENCE`], and hands all the outcomes over at once. A step slower than that has the
/// outcomes before it handed over while it runs (leased in that transaction, so that what is done
/// shows and survives a crash), and the leg goes on from it. Returns the steps leased for this
/// instance to run next.
async fn run_leg<W: Workflow, P: Perform<W>>(
    workflow: &W,
    performer: &P,
    pool: &PgPool,
    outbox: &Outbox,
    claimed: Claimed<W::State>,
) -> Vec<Claimed<W::State>> {
    let Claimed {
        id,
        step,
        attempts,
        mut state,
        traceparent,
        mut leased_at,
    } = claimed;
    let mut span = step_span::<W>(id, &step, attempts, traceparent.as_deref());
    let outcome = perform(performer, id, &state, &step)
        .instrument(span.clone())
        .await;
    let mut held = vec![Finished::new(step, Some(attempts), outcome)];
    while let Some((next, ahead)) = run_ahead(workflow, &state, &held) {
        // The lease of the first outcome held must outlast the call and its hand-over.
        if leased_at.elapsed() + STEP_TIMEOUT + HAND_OVER_MARGIN >= LEASE {
            break;
        }
        span = step_span::<W>(id, next, 1, traceparent.as_deref());
        let call = async move {
            let outcome = perform(performer, id, &ahead, next).await;
            (outcome, ahead)
        }
        .instrument(span.clone());
        tokio::pin!(call);
        tokio::select! {
            (outcome, ahead) = &mut call => {
                held.push(Finished::new(next.to_owned(), None, outcome));
                state = ahead;
                continue;
            }
            _ = tokio::time::sleep(PATIENCE) => {}
        }
        // Slow: what is done is handed over while the call goes on, with this step leased.
        leased_at = Instant::now();
        let handing =
            hand_over(workflow, pool, outbox, id, &held, Some(next)).instrument(span.clone());
        // Both are polled: the call may itself wait on the instance's lock (a remote that calls
        // back into this service), which the hand-over holds until it commits.
        let (handed, (outcome, _)) = tokio::join!(handing, &mut call);
        match handed {
            Ok(Some(lease)) if lease.step == next => {
                held = vec![Finished::new(
                    next.to_owned(),
                    Some(lease.attempts),
                    outcome,
                )];
                state = lease.state;
            }
            Ok(other) => {
                // The instance moved meanwhile and no longer schedules it: its outcome is still
                // reported (a success is the workflow's to undo), then the step it schedules.
                let late = [Finished::new(next.to_owned(), None, outcome)];
                let mut after = reported::<W>(
                    hand_over(workflow, pool, outbox, id, &late, None)
                        .instrument(span)
                        .await,
                    id,
                );
                after.extend(other);
                return after;
            }
            Err(error) => {
                reported::<W>(Err(error), id);
                return Vec::new();
            }
        }
    }
    reported::<W>(
        hand_over(workflow, pool, outbox, id, &held, None)
            .instrument(span)
            .await,
        id,
    )
}

/// The step `state`'s last outcome held schedules, alone, and the state it leads to: the step
/// the runner may run before handing the outcomes over. `None` when the outcome is a transient
/// failure (retried later), or the transition does anything besides scheduling one step.
fn run_ahead<W: Workflow>(
    workflow: &W,
    state: &W::State,
    held: &[Finished],
) -> Option<(&'static str, W::State)> {
    let last = held.last()?;
    let outcome = match &last.outcome {
        Ok(result) => Ok(result.clone()),
        Err(failure) if !failure.transient => Err(failure.reason.clone()),
        Err(_) => return None,
    };
    let input = workflow.step_finished(&last.step, outcome)?;
    let transition = workflow.transition(state, &input, last.at_ms).ok()?;
    match transition.commands.as_slice() {
        [Command::Run { step }] => Some((step, transition.state)),
        _ => None,
    }
}

fn step_span<W: Workflow>(
    id: Uuid,
    step: &str,
    attempt: i32,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = info_span!(
        "workflow step",
        workflow = W::NAME,
        step = %step,
        order_id = %id,
        attempt,
        otel.kind = "client",
    );
    if let Some(traceparent) = traceparent {
        let mut carried = Headers::new();
        carried.insert(TRACEPARENT, traceparent);
        trace::continue_trace(&span, &carried);
    }
    span
}

/// Runs the effect of `step` under its idempotency key; a call that outlasts [`STEP_TIMEOUT`]
/// is a transient failure.
async fn perform<W: Workflow, P: Perform<W>>(
    performer: &P,
    id: Uuid,
    state: &W::State,
    step: &str,
) -> Result<serde_json::Value, StepFailure> {
    let key = format!("{}:{}:{}", W::NAME, id, step);
    match tokio::time::timeout(STEP_TIMEOUT, performer.perform(id, state, step, &key)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StepFailure::transient(format!(
            "no answer within {STEP_TIMEOUT:?}"
        ))),
    }
}

/// The steps a hand-over leased, or none if it failed (logged: the first outcome's step runs
/// again when its lease ends, and its key repeats nothing).
fn reported<W: Workflow>(
    handed: Result<Option<Claimed<W::State>>, HandlerError>,
    id: Uuid,
) -> Vec<Claimed<W::State>> {
    match handed {
        Ok(next) => next.into_iter().collect(),
        Err(error) => {
            warn!(
                workflow = W::NAME,
                order_id = %id,
                error = %error.reason(),
                "a step's outcome could not be handed over: the step runs again when its lease ends"
            );
            Vec::new()
        }
    }
}

/// Claims up to `limit` due steps, earliest first, with their instances' state, in one
/// statement: a look that finds nothing due costs one round trip and writes nothing.
async fn claim_due<W: Workflow>(
    pool: &PgPool,
    limit: usize,
) -> Result<Vec<Claimed<W::State>>, HandlerError> {
    let leased_at = Instant::now();
    let leased: Vec<(Uuid, String, i32, serde_json::Value, Option<String>)> = sqlx::query_as(
        "WITH due AS (
             SELECT instance_id, step FROM workflow_steps
             WHERE workflow = $1 AND status = 'PENDING' AND due_at <= now()
             ORDER BY due_at LIMIT $2
             FOR UPDATE SKIP LOCKED
         ),
         leased AS (
             UPDATE workflow_steps s
             SET attempts = s.attempts + 1, due_at = now() + make_interval(secs => $3),
                 updated_at = now()
             FROM due
             WHERE s.workflow = $1 AND s.instance_id = due.instance_id AND s.step = due.step
             RETURNING s.instance_id, s.step, s.attempts
         )
         SELECT leased.instance_id, leased.step, leased.attempts, i.state, i.traceparent
         FROM leased
         JOIN workflow_instances i ON i.workflow = $1 AND i.instance_id = leased.instance_id",
    )
    .bind(W::NAME)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(LEASE.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(leased
        .into_iter()
        .filter_map(|(id, step, attempts, state, traceparent)| {
            // An instance whose state cannot be read holds back no other: its step stays leased,
            // and is looked at again (and said again) when the lease ends.
            match instance::state_of::<W>(id, state) {
                Ok(state) => Some(Claimed {
                    id,
                    step,
                    attempts,
                    state,
                    traceparent,
                    leased_at,
                }),
                Err(error) => {
                    warn!(workflow = W::NAME, order_id = %id, error = %error_chain(&error), "a claimed step's instance cannot be read");
                    None
                }
            }
        })
        .collect())
}

mod hand_over;
