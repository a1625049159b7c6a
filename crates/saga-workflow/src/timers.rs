//! The timer loop: fires a workflow's due timers, one per transaction, and keeps its gauges.
//!
//! A timer is a row. The loop claims the earliest due one (`FOR UPDATE SKIP LOCKED`, so replicas
//! share them), takes its instance's lock without waiting (an instance whose input is being
//! handled right now is left for the next round, so that the loop never waits for a lock while
//! it holds a timer row someone may be cancelling), hands the instance the timer's input, marks
//! the timer fired and writes the events, all in one transaction: a timer fires exactly once,
//! including across a kill -9, and one due while the service was down fires when it is back.
//!
//! Metrics: `saga_workflow_timer_lateness_seconds` (due → fired), `saga_workflow_instances`
//! (waiting instances by state and what they wait for) and `saga_workflow_wait_used_ratio` (how
//! much of its time the waiting instance closest to its timer has used: what the alert on
//! reviews left too long reads).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_messaging::error::error_chain;
use saga_messaging::headers::{Headers, TRACEPARENT};
use saga_messaging::{Backoff, HandlerError, Outbox, parking, trace};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};
use uuid::Uuid;

use crate::{Workflow, WorkflowError, instance};

/// The longest the loop sleeps: a timer scheduled meanwhile may be due sooner than any it saw.
/// It bounds a timer's lateness at normal load.
const LONGEST_SLEEP: Duration = Duration::from_millis(250);
const SHORTEST_SLEEP: Duration = Duration::from_millis(20);
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Fires `workflow`'s timers until `shutdown`.
pub async fn run<W: Workflow>(
    workflow: W,
    pool: PgPool,
    outbox: Outbox,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(5));
    let mut gauges_at = tokio::time::Instant::now();
    let mut labels = HashSet::new();
    while !shutdown.is_cancelled() {
        match fire_one(&workflow, &pool, &outbox).await {
            Ok(Fired::One) => {
                backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(5));
                continue;
            }
            Ok(Fired::None | Fired::Busy) => {}
            Err(error) => {
                warn!(workflow = W::NAME, error = %error_chain(&error), "workflow timers could not be fired");
                if !backoff.wait(shutdown.cancelled()).await {
                    return;
                }
                continue;
            }
        }
        if gauges_at.elapsed() >= GAUGES_EVERY {
            if let Err(error) = report::<W>(&pool, &mut labels).await {
                warn!(workflow = W::NAME, error = %error_chain(&error), "workflow instances could not be counted");
            }
            gauges_at = tokio::time::Instant::now();
        }
        let sleep = match next_due::<W>(&pool).await {
            Ok(Some(due)) => due.clamp(SHORTEST_SLEEP, LONGEST_SLEEP),
            Ok(None) | Err(_) => LONGEST_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

enum Fired {
    One,
    None,
    /// The earliest due timer's instance is being moved by another input right now.
    Busy,
}

async fn fire_one<W: Workflow>(
    workflow: &W,
    pool: &PgPool,
    outbox: &Outbox,
) -> Result<Fired, HandlerError> {
    let mut tx = pool.begin().await?;
    let due: Option<(Uuid, String, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT t.instance_id, t.timer, t.due_at, i.traceparent
         FROM workflow_timers t
         LEFT JOIN workflow_instances i USING (workflow, instance_id)
         WHERE t.workflow = $1 AND t.status = 'PENDING' AND t.due_at <= now()
         ORDER BY t.due_at LIMIT 1
         FOR UPDATE OF t SKIP LOCKED",
    )
    .bind(W::NAME)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, timer, due_at, traceparent)) = due else {
        return Ok(Fired::None);
    };
    if !parking::try_lock_order(&mut tx, id).await? {
        return Ok(Fired::Busy);
    }
    let span = info_span!(
        "workflow timer",
        workflow = W::NAME,
        timer = %timer,
        order_id = %id,
        otel.kind = "client",
    );
    if let Some(traceparent) = &traceparent {
        let mut carried = Headers::new();
        carried.insert(TRACEPARENT, traceparent.as_str());
        trace::continue_trace(&span, &carried);
    }
    async {
        let now = Utc::now();
        let handled = match workflow.timer_fired(&timer) {
            Some(input) => {
                instance::handle(&mut tx, workflow, id, &input, now.timestamp_millis()).await
            }
            None => Err(WorkflowError::Conflict(crate::Conflict(format!(
                "{} has no timer {timer}",
                W::NAME
            )))),
        };
        let emit = match handled {
            Ok(handled) => handled.emit,
            // A timer of an instance that ended or is gone has nothing left to do.
            Err(WorkflowError::Conflict(_) | WorkflowError::Unknown { .. }) => Vec::new(),
            Err(WorkflowError::Database(error)) => return Err(error.into()),
            Err(error) => return Err(HandlerError::rejected(error_chain(&error))),
        };
        sqlx::query(
            "UPDATE workflow_timers SET status = 'FIRED', fired_at = now()
             WHERE workflow = $1 AND instance_id = $2 AND timer = $3",
        )
        .bind(W::NAME)
        .bind(id)
        .bind(&timer)
        .execute(&mut *tx)
        .await?;
        let written = outbox.append(&mut tx, &emit).await?;
        outbox.commit(tx, written).await?;
        let late = (now - due_at).to_std().unwrap_or(Duration::ZERO);
        metrics::histogram!("saga_workflow_timer_lateness_seconds", "workflow" => W::NAME)
            .record(late.as_secs_f64());
        Ok(Fired::One)
    }
    .instrument(span)
    .await
}

async fn next_due<W: Workflow>(pool: &PgPool) -> Result<Option<Duration>, sqlx::Error> {
    let due: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(due_at) FROM workflow_timers WHERE workflow = $1 AND status = 'PENDING'",
    )
    .bind(W::NAME)
    .fetch_one(pool)
    .await?;
    Ok(due.map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)))
}

/// Sets the gauges; `labels` are the (state, waits-for) pairs seen before, set to 0 when none is
/// left.
async fn report<W: Workflow>(
    pool: &PgPool,
    labels: &mut HashSet<(String, String)>,
) -> Result<(), sqlx::Error> {
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT label, waiting_for, count(*) FROM workflow_instances
         WHERE workflow = $1 AND waiting_for IS NOT NULL GROUP BY label, waiting_for",
    )
    .bind(W::NAME)
    .fetch_all(pool)
    .await?;
    let mut seen = HashSet::new();
    for (label, waiting_for, count) in counts {
        metrics::gauge!("saga_workflow_instances", "workflow" => W::NAME, "state" => label.clone(), "waiting_for" => waiting_for.clone())
            .set(count as f64);
        seen.insert((label, waiting_for));
    }
    for (label, waiting_for) in labels.difference(&seen) {
        metrics::gauge!("saga_workflow_instances", "workflow" => W::NAME, "state" => label.clone(), "waiting_for" => waiting_for.clone())
            .set(0.0);
    }
    labels.extend(seen);
    let used: Vec<(String, f64)> = sqlx::query_as(
        "SELECT i.waiting_for,
                max(extract(epoch FROM now() - i.updated_at)
                    / greatest(extract(epoch FROM t.due_at - i.updated_at), 0.001))::float8
         FROM workflow_instances i
         JOIN workflow_timers t USING (workflow, instance_id)
         WHERE i.workflow = $1 AND i.waiting_for IS NOT NULL AND t.status = 'PENDING'
         GROUP BY i.waiting_for",
    )
    .bind(W::NAME)
    .fetch_all(pool)
    .await?;
    // What nothing waits for any more has used none of its time.
    for (_, waiting_for) in labels.iter() {
        if !used.iter().any(|(w, _)| w == waiting_for) {
            metrics::gauge!("saga_workflow_wait_used_ratio", "workflow" => W::NAME, "waiting_for" => waiting_for.clone())
                .set(0.0);
        }
    }
    for (waiting_for, ratio) in used {
        metrics::gauge!("saga_workflow_wait_used_ratio", "workflow" => W::NAME, "waiting_for" => waiting_for)
            .set(ratio);
    }
    Ok(())
}
