//! Handing a leg's outcomes to their instance, in one transaction under the instance's lock.
//!
//! The first outcome is of a step this runner leased: if the lease was lost (another runner
//! claimed the step again after it ran out), nothing is handed over, and that runner reports the
//! same results under the same keys. The others were run ahead of their hand-over, on the state
//! the outcomes before them led to in memory. Under the lock, each is applied to the instance
//! as it really is, so a cancellation that came in between is seen:
//!
//! - the step is scheduled (the transition before it, applied now, ran it; or its row is pending):
//!   its outcome is the step's own, as if it had been claimed;
//! - the step is no longer scheduled (dropped, or never scheduled by the real state): a success is
//!   still reported, for the workflow to undo what the effect did, as for a step dropped while it
//!   ran; a failure did nothing and is forgotten;
//! - the step's outcome is already recorded (another runner reported it): it is skipped.

use std::time::Instant;

use chrono::Utc;
use saga_messaging::error::error_chain;
use saga_messaging::{HandlerError, Outbox};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{ATTEMPTS, backoff};
use crate::handoff::{Claimed, LEASE};
use crate::instance::{self, Moving, Wake};
use crate::outcomes::Outcomes;
use crate::{StepFailure, Workflow, WorkflowError};

/// A step's outcome in the runner's hands, not yet handed over.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) step: String,
    /// The attempt its lease counted, for a step this runner claimed; `None` for one run ahead
    /// of the hand-over of the outcome that scheduled it.
    pub(super) leased: Option<i32>,
    pub(super) outcome: Result<serde_json::Value, StepFailure>,
    /// When it finished (UTC epoch milliseconds): the time its input moves the instance at.
    pub(super) at_ms: i64,
}

impl Finished {
    pub(super) fn new(
        step: String,
        leased: Option<i32>,
        outcome: Result<serde_json::Value, StepFailure>,
    ) -> Self {
        Self {
            step,
            leased,
            outcome,
            at_ms: Utc::now().timestamp_millis(),
        }
    }
}

/// Where a step stands when its outcome is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Scheduled: its outcome is the instance's to hear.
    Scheduled,
    /// No longer scheduled: a success is reported, to be undone; a failure is forgotten.
    Unscheduled,
    /// Reported already, or leased by another runner since: nothing to hand over.
    Reported,
}

/// Hands `held` over to instance `id` (see the module docs) with the events they emit; returns
/// the next step to run at once, leased, if the instance schedules one. `in_flight` names a step
/// still running whose row the hand-over schedules and leases for it.
pub(super) async fn hand_over<W: Workflow>(
    workflow: &W,
    pool: &PgPool,
    outbox: &Outbox,
    id: Uuid,
    held: &[Finished],
    in_flight: Option<&str>,
) -> Result<Option<Claimed<W::State>>, HandlerError> {
    // A step leased here is leased from the transaction's start (`now()`), or later.
    let leased_at_most = Instant::now();
    let mut tx = instance::begin(pool, id).await?;
    let mut moving: Option<Moving<W>> = None;
    // The outcomes to record, written together once the inputs are applied (nothing between
    // reads the rows of steps already handed over in this transaction).
    let mut outcomes = Outcomes::default();
    // The steps the last input applied scheduled: the next outcome held may be one of them.
    let mut scheduled: Vec<&'static str> = Vec::new();
    // Whether a step was scheduled with a pending row: only then is there one to lease.
    let mut leasable = false;
    for (i, finished) in held.iter().enumerate() {
        let step = finished.step.as_str();
        let standing = match finished.leased {
            // The first outcome's step and its instance are read (and locked) together: an
            // outcome handed over almost always moves its instance.
            Some(attempts) if moving.is_none() => {
                match Moving::<W>::lock_with_step(&mut tx, id, step)
                    .await
                    .map_err(handler_error)?
                {
                    Some((locked, row)) => {
                        moving = Some(locked);
                        lease_standing(row, attempts)
                    }
                    // No instance (nothing is ever expected to leave a step without one):
                    // where its row stands, as for any leased step.
                    None => leased(&mut tx, W::NAME, id, step, attempts).await?,
                }
            }
            Some(attempts) => leased(&mut tx, W::NAME, id, step, attempts).await?,
            None if scheduled.contains(&step) => Standing::Scheduled,
            // Its row would say so, had its outcome been written already.
            None if outcomes.has(step) => Standing::Reported,
            None => unleased(&mut tx, W::NAME, id, step).await?,
        };
        scheduled.clear();
        if standing == Standing::Reported {
            if i == 0 {
                // The lease was lost: the runner that holds it now reports it all.
                return Ok(None);
            }
            continue;
        }
        let attempts = finished.leased.unwrap_or(1);
        let outcome = match &finished.outcome {
            Ok(result) => Ok(result.clone()),
            Err(_) if standing == Standing::Unscheduled => continue,
            Err(failure) if failure.transient && attempts < ATTEMPTS => {
                count_failure::<W>(step, "transient");
                retry_later(&mut tx, W::NAME, id, step, attempts, &failure.reason).await?;
                break;
            }
            Err(failure) => {
                count_failure::<W>(step, "permanent");
                Err(failure.reason.clone())
            }
        };
        outcomes.push(step, attempts, &outcome);
        let Some(input) = workflow.step_finished(step, outcome) else {
            continue;
        };
        if moving.is_none() {
            match Moving::<W>::lock(&mut tx, id).await {
                Ok(locked) => moving = Some(locked),
                Err(WorkflowError::Unknown { .. }) => break,
                Err(error) => return Err(handler_error(error)),
            }
        }
        let Some(moving) = moving.as_mut() else {
            break;
        };
        let in_hand = held.get(i + 1).map(|next| next.step.as_str());
        match moving
            .apply(
                &mut tx,
                workflow,
                &input,
                finished.at_ms,
                Wake::Nobody,
                in_hand,
            )
            .await
        {
            Ok(now_scheduled) => {
                leasable |= now_scheduled.iter().any(|step| Some(*step) != in_hand);
                scheduled = now_scheduled;
            }
            // A refused input changes nothing; the outcomes after it were run ahead of it.
            Err(WorkflowError::Conflict(_)) => break,
            Err(error) => return Err(handler_error(error)),
        }
    }
    let Some(moving) = moving else {
        outcomes.record(&mut tx, W::NAME, id).await?;
        tx.commit().await?;
        return Ok(None);
    };
    // The events go into the outbox in the statement that writes the instance.
    let staged = outbox.stage(moving.emitting()).await?;
    let handled = moving
        .write(&mut tx, workflow, &outcomes, &staged)
        .await
        .map_err(handler_error)?;
    let next = if leasable {
        lease_next(&mut tx, W::NAME, id, in_flight).await?
    } else {
        None
    };
    let chained = next.map(|(step, attempts)| Claimed {
        id,
        step,
        attempts,
        leased_at: leased_at_most,
        state: handled.after.clone(),
        traceparent: handled.traceparent.clone(),
    });
    let written = outbox.staged_in(&mut tx, &staged).await?;
    outbox.commit(tx, written).await?;
    Ok(chained)
}

/// A leased step, its row read under lock: see [`lease_standing`].
async fn leased(
    tx: &mut PgConnection,
    workflow: &str,
    id: Uuid,
    step: &str,
    attempts: i32,
) -> Result<Standing, sqlx::Error> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT status, attempts FROM workflow_steps
         WHERE workflow = $1 AND instance_id = $2 AND step = $3 FOR UPDATE",
    )
    .bind(workflow)
    .bind(id)
    .bind(step)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(lease_standing(row, attempts))
}

/// Where a step leased at `attempts` stands, by its row's status and attempts: scheduled if the
/// lease is still this runner's (the row pending, or dropped by a cancellation while it ran,
/// whose success is still reported), reported otherwise.
fn lease_standing(row: Option<(String, i32)>, attempts: i32) -> Standing {
    match row {
        Some((status, now)) if now == attempts && status == "PENDING" => Standing::Scheduled,
        Some((status, now)) if now == attempts && status == "DROPPED" => Standing::Unscheduled,
        _ => Standing::Reported,
    }
}

/// A step run ahead that the input just applied did not schedule: where its row says it stands.
async fn unleased(
    tx: &mut PgConnection,
    workflow: &str,
    id: Uuid,
    step: &str,
) -> Result<Standing, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM workflow_steps
         WHERE workflow = $1 AND instance_id = $2 AND step = $3 FOR UPDATE",
    )
    .bind(workflow)
    .bind(id)
    .bind(step)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match status.as_deref() {
        Some("PENDING") => Standing::Scheduled,
        None | Some("DROPPED") => Standing::Unscheduled,
        Some(_) => Standing::Reported,
    })
}

/// A transient failure: the step is due again after the backoff for its attempts.
async fn retry_later(
    tx: &mut PgConnection,
    workflow: &str,
    id: Uuid,
    step: &str,
    attempts: i32,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let mut delay = backoff();
    let wait = (0..attempts)
        .map(|_| delay.next_delay())
        .last()
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO workflow_steps (workflow, instance_id, step, attempts, due_at, last_error)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
         ON CONFLICT (workflow, instance_id, step) DO UPDATE
             SET attempts = EXCLUDED.attempts, due_at = EXCLUDED.due_at,
                 last_error = EXCLUDED.last_error, updated_at = now()",
    )
    .bind(workflow)
    .bind(id)
    .bind(step)
    .bind(attempts)
    .bind(wait.as_secs_f64())
    .bind(reason)
    .execute(tx)
    .await?;
    Ok(())
}

/// Leases the instance's next due step, if any (`in_flight`, when it is still running, is due
/// now since the hand-over scheduled it), on the state just written, without another round trip.
async fn lease_next(
    tx: &mut PgConnection,
    workflow: &str,
    id: Uuid,
    in_flight: Option<&str>,
) -> Result<Option<(String, i32)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE workflow_steps
         SET attempts = attempts + 1, due_at = now() + make_interval(secs => $3),
             updated_at = now()
         WHERE workflow = $1 AND instance_id = $2 AND step = (
             SELECT step FROM workflow_steps
             WHERE workflow = $1 AND instance_id = $2 AND status = 'PENDING' AND due_at <= now()
             ORDER BY step = $4 DESC, due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING step, attempts",
    )
    .bind(workflow)
    .bind(id)
    .bind(LEASE.as_secs_f64())
    .bind(in_flight.unwrap_or(""))
    .fetch_optional(tx)
    .await
}

fn count_failure<W: Workflow>(step: &str, kind: &'static str) {
    metrics::counter!("saga_workflow_step_failures_total", "workflow" => W::NAME, "step" => step.to_owned(), "kind" => kind).increment(1);
}

pub(super) fn handler_error(error: WorkflowError) -> HandlerError {
    match error {
        WorkflowError::Database(error) => error.into(),
        other => HandlerError::rejected(error_chain(&other)),
    }
}
