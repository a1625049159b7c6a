//! Instances in the service's database: started, loaded, and moved by one input at a time under
//! their order's lock, with every move journaled and its commands carried out in the same
//! transaction.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use saga_events::SagaEvent;
use saga_messaging::DeferredWrites;
use saga_messaging::outbox::Staged;
use saga_messaging::parking;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::handoff::{Claimed, Handoff, LEASE, scope};
use crate::outcomes::{self, Outcomes};
use crate::{Command, Workflow, WorkflowError};

/// The `NOTIFY` channel a transaction that schedules a step signals on: the step runner listens.
pub const CHANNEL: &str = "saga_workflow_steps";

/// An instance as stored.
#[derive(Debug, Clone)]
pub struct Instance<S> {
    pub id: Uuid,
    pub state: S,
    pub label: String,
    pub waiting_for: Option<String>,
    pub version: i32,
    /// The trace the instance belongs to (that of the event that started it).
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What one input did to an instance.
#[derive(Debug, Clone)]
pub struct Handled<S> {
    pub before: S,
    pub after: S,
    /// The events to write to the outbox, in the transaction that moved the instance.
    pub emit: Vec<SagaEvent>,
    /// The trace the instance belongs to: spans of this input, and the events it emits, continue
    /// it.
    pub traceparent: Option<String>,
}

impl<S: PartialEq> Handled<S> {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Begins a transaction holding the lock of instance `id` (its order's advisory lock, the one the
/// service's consumer takes for each batch): every input to an instance is handled under it.
pub async fn begin(pool: &PgPool, id: Uuid) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    parking::begin_locked(pool, &[id]).await
}

/// Starts instance `id` in `state` and carries out `commands` (its first steps and timers, its
/// first events); returns the events to emit. Starting an instance that exists changes nothing
/// and emits nothing: a redelivered start is harmless. The instance belongs to the trace
/// `traceparent` names (its order's: see [`crate::Traces`]). The caller holds the instance's
/// lock.
pub async fn start<W: Workflow>(
    tx: &mut PgConnection,
    workflow: &W,
    id: Uuid,
    state: &W::State,
    commands: Vec<Command>,
    traceparent: Option<&str>,
) -> Result<Vec<SagaEvent>, WorkflowError> {
    let one = Start {
        id,
        state,
        commands,
        traceparent,
    };
    start_all(tx, workflow, vec![one]).await
}

/// An instance to start: see [`start`].
#[derive(Debug)]
pub struct Start<'a, S> {
    pub id: Uuid,
    pub state: &'a S,
    pub commands: Vec<Command>,
    pub traceparent: Option<&'a str>,
}

/// Starts each of `starts` as [`start`] starts one, in one statement for all of them: their
/// rows, their journals' first entries, their first steps and one wake of the runners. A batch
/// of a consumer starts its orders' workflows in one round trip. Other commands (a first timer)
/// are carried out after, one instance at a time. Returns the events to emit, in order; an id
/// given twice is started once, as the first names it.
///
/// When a runner of the workflow runs in this process, the first steps are leased to it here and
/// handed over once the transaction commits, so that it need not claim them ([`crate::handoff`]).
pub async fn start_all<W: Workflow>(
    tx: &mut PgConnection,
    workflow: &W,
    starts: Vec<Start<'_, W::State>>,
) -> Result<Vec<SagaEvent>, WorkflowError> {
    let mut seen = HashSet::with_capacity(starts.len());
    let starts: Vec<Start<'_, W::State>> = starts
        .into_iter()
        .filter(|start| seen.insert(start.id))
        .collect();
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    let mut steps: (Vec<Uuid>, Vec<&str>) = (Vec::new(), Vec::new());
    for start in &starts {
        for command in &start.commands {
            if let Command::Run { step } = command {
                steps.0.push(start.id);
                steps.1.push(step);
            }
        }
    }
    // The events the commands emit are known before any is carried out: the journal's first
    // entry names them, written with the instance.
    let emitted: Vec<serde_json::Value> = starts
        .iter()
        .map(|start| {
            start
                .commands
                .iter()
                .filter_map(|command| match command {
                    Command::Emit(event) => {
                        Some(serde_json::Value::from(event.event_type().name()))
                    }
                    _ => None,
                })
                .collect()
        })
        .collect();
    // With a runner here to hand them to, the steps are leased to it from this statement on.
    let handoff = Handoff::<W::State>::of::<W>().filter(|_| !steps.0.is_empty());
    let ticket = handoff.as_ref().map(|handoff| handoff.ticket());
    let leased_at = Instant::now();
    let started: Vec<(Uuid, bool)> = sqlx::query_as(concat!(
        "WITH input AS (
             SELECT * FROM unnest($2::uuid[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
                                  $7::jsonb[])
                 AS i(instance_id, state, label, waiting_for, traceparent, emitted)
         ),
         started AS (
             INSERT INTO workflow_instances (workflow, instance_id, state, label, waiting_for,
                                             traceparent)
             SELECT $1, instance_id, state, label, waiting_for, traceparent FROM input
             ON CONFLICT (workflow, instance_id) DO NOTHING
             RETURNING instance_id
         ),
         journal AS (
             INSERT INTO workflow_journal (workflow, instance_id, version, input, label, emitted)
             SELECT $1, i.instance_id, 0, '\"start\"'::jsonb, i.label,
                    ARRAY(SELECT jsonb_array_elements_text(i.emitted))
             FROM started s JOIN input i USING (instance_id)
         ),
         -- The lease, if the runner to hand the steps to works on these tables.
         leasing AS (
             SELECT $12::float8 AS secs WHERE $13 = ",
        scope!(),
        "
         ),
         scheduled AS (
             INSERT INTO workflow_steps (workflow, instance_id, step, attempts, due_at)
             SELECT $1, r.instance_id, r.step, CASE WHEN l.secs IS NULL THEN 0 ELSE 1 END,
                    clock_timestamp() + make_interval(secs => coalesce(l.secs, 0))
             FROM unnest($8::uuid[], $9::text[]) AS r(instance_id, step)
             JOIN started s USING (instance_id)
             LEFT JOIN leasing l ON true
             ON CONFLICT (workflow, instance_id, step) DO NOTHING
         )
         -- A step scheduled wakes the runners, or names the ticket its lease waits under: one
         -- notification per transaction, however many rows ask for it (Postgres folds the same
         -- payload on the same channel).
         SELECT s.instance_id, EXISTS (SELECT FROM leasing) FROM started s
         WHERE s.instance_id <> ALL($8)
            OR pg_notify($10, CASE WHEN EXISTS (SELECT FROM leasing) THEN $11 ELSE $1 END)
               IS NOT NULL",
    ))
    .bind(W::NAME)
    .bind(starts.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(
        starts
            .iter()
            .map(|s| sqlx::types::Json(s.state))
            .collect::<Vec<_>>(),
    )
    .bind(
        starts
            .iter()
            .map(|s| workflow.label(s.state))
            .collect::<Vec<_>>(),
    )
    .bind(
        starts
            .iter()
            .map(|s| workflow.waiting_for(s.state))
            .collect::<Vec<_>>(),
    )
    .bind(starts.iter().map(|s| s.traceparent).collect::<Vec<_>>())
    .bind(&emitted)
    .bind(&steps.0)
    .bind(&steps.1)
    .bind(CHANNEL)
    .bind(ticket.as_ref().map(|(_, payload)| payload.as_str()))
    .bind(LEASE.as_secs_f64())
    .bind(handoff.as_ref().map(|handoff| handoff.scope.as_str()))
    .fetch_all(&mut *tx)
    .await?;
    // Whether the steps were leased to the runner here: all were, or none.
    let handoff = handoff.filter(|_| started.iter().any(|(_, leased)| *leased));
    let started: HashSet<Uuid> = started.into_iter().map(|(id, _)| id).collect();
    let mut emit = Vec::new();
    let mut leased = Vec::new();
    for start in starts {
        if !started.contains(&start.id) {
            continue;
        }
        let mut rest = Vec::new();
        for command in start.commands {
            match command {
                Command::Emit(event) => emit.push(*event),
                Command::Run { step } if handoff.is_some() => leased.push(Claimed {
                    id: start.id,
                    step: step.to_owned(),
                    attempts: 1,
                    state: start.state.clone(),
                    traceparent: start.traceparent.map(str::to_owned),
                    leased_at,
                }),
                Command::Run { .. } => {}
                other => rest.push(other),
            }
        }
        if !rest.is_empty() {
            carry_out(tx, W::NAME, start.id, rest, Wake::Runner, None).await?;
        }
        metrics::counter!("saga_workflow_started_total", "workflow" => W::NAME).increment(1);
    }
    if let (Some(handoff), Some((number, _))) = (handoff, ticket) {
        handoff.park(number, leased);
    }
    Ok(emit)
}

/// Instance `id` of workflow `W`, if there is one.
pub async fn load<W: Workflow>(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Instance<W::State>>, WorkflowError> {
    read::<W>(conn, id, "").await
}

/// Moves instance `id` by `input` at `now_ms`: transition, journal, the service's own tables
/// ([`Workflow::persist`]), timers; returns what changed and the events to emit. A refused input
/// is a [`WorkflowError::Conflict`] and changes nothing. The caller holds the instance's lock
/// ([`begin`]).
pub async fn handle<W: Workflow>(
    tx: &mut PgConnection,
    workflow: &W,
    id: Uuid,
    input: &W::Input,
    now_ms: i64,
) -> Result<Handled<W::State>, WorkflowError> {
    moved(tx, workflow, id, input, now_ms, Wake::Runner).await
}

/// Whether a step the move schedules wakes the step runners (`NOTIFY`). The runner's own
/// hand-over claims the step it schedules in the same transaction, so it wakes nobody: a wake
/// would only send a runner to claim a step that is already claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    Runner,
    Nobody,
}

/// [`handle`], waking the runners or not.
pub(crate) async fn moved<W: Workflow>(
    tx: &mut PgConnection,
    workflow: &W,
    id: Uuid,
    input: &W::Input,
    now_ms: i64,
    wake: Wake,
) -> Result<Handled<W::State>, WorkflowError> {
    let mut moving = Moving::<W>::lock(tx, id).await?;
    moving
        .apply(tx, workflow, input, now_ms, wake, None)
        .await?;
    moving
        .write(tx, workflow, &Outcomes::default(), &Staged::default())
        .await
}

/// An instance read under its lock and moved by one input after another in memory, then written
/// once: its state, one journal entry per input that changed something, and what the final state
/// means to the service's tables. The step runner hands a chain's outcomes over this way.
pub(crate) struct Moving<W: Workflow> {
    id: Uuid,
    before: W::State,
    state: W::State,
    version: i32,
    journal: Vec<serde_json::Value>,
    emit: Vec<SagaEvent>,
    traceparent: Option<String>,
}

impl<W: Workflow> Moving<W> {
    /// Instance `id`, locked (`FOR UPDATE`) for the rest of the transaction.
    pub(crate) async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Self, WorkflowError> {
        let instance = read::<W>(tx, id, "FOR UPDATE")
            .await?
            .ok_or(WorkflowError::Unknown {
                workflow: W::NAME,
                instance: id,
            })?;
        Ok(Self::of(id, instance))
    }

    fn of(id: Uuid, instance: Instance<W::State>) -> Self {
        Self {
            id,
            before: instance.state.clone(),
            state: instance.state,
            version: instance.version,
            journal: Vec::new(),
            emit: Vec::new(),
            traceparent: instance.traceparent,
        }
    }

    /// Instance `id`, locked as [`Moving::lock`] locks it, with the status and attempts of its
    /// step `step` (`None` if it has no row), locked too: in one round trip, as a hand-over of
    /// the step's outcome starts. `None` if there is no such instance.
    pub(crate) async fn lock_with_step(
        tx: &mut PgConnection,
        id: Uuid,
        step: &str,
    ) -> Result<Option<(Self, Option<(String, i32)>)>, WorkflowError> {
        let joined: Option<WithStep> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH step AS (
                 SELECT status, attempts FROM workflow_steps
                 WHERE workflow = $1 AND instance_id = $2 AND step = $3 FOR UPDATE
             )
             SELECT {COLUMNS}, step.status AS step_status, step.attempts AS step_attempts
             FROM workflow_instances LEFT JOIN step ON true
             WHERE workflow = $1 AND instance_id = $2
             FOR UPDATE OF workflow_instances"
        )))
        .bind(W::NAME)
        .bind(id)
        .bind(step)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(joined) = joined else {
            return Ok(None);
        };
        let step_row = joined.step_status.zip(joined.step_attempts);
        Ok(Some((Self::of(id, from_row::<W>(joined.row)?), step_row)))
    }

    /// Moves the instance by `input` at `now_ms` and carries out the transition's commands;
    /// returns the steps it scheduled. A step named `in_hand` is scheduled without a pending row:
    /// its outcome is already in the caller's hands, which writes the row itself. A refused
    /// input is a [`WorkflowError::Conflict`] and changes nothing.
    pub(crate) async fn apply(
        &mut self,
        tx: &mut PgConnection,
        workflow: &W,
        input: &W::Input,
        now_ms: i64,
        wake: Wake,
        in_hand: Option<&str>,
    ) -> Result<Vec<&'static str>, WorkflowError> {
        let transition = workflow.transition(&self.state, input, now_ms)?;
        let changed = transition.state != self.state;
        let (emit, scheduled) =
            carry_out(tx, W::NAME, self.id, transition.commands, wake, in_hand).await?;
        if changed || !emit.is_empty() {
            let emitted: Vec<&str> = emit.iter().map(|e| e.event_type().name()).collect();
            self.journal.push(serde_json::json!({
                "version": i64::from(self.version) + 1 + self.journal.len() as i64,
                "input": serde_json::to_value(input).unwrap_or(serde_json::Value::Null),
                "label": workflow.label(&transition.state),
                "emitted": emitted,
            }));
            self.state = transition.state;
            self.emit.extend(emit);
        }
        Ok(scheduled)
    }

    /// The events the inputs applied so far emit, in order.
    pub(crate) fn emitting(&self) -> &[SagaEvent] {
        &self.emit
    }

    /// Writes the instance as moved, with its journal, its steps' `outcomes`, the outbox's
    /// `staged` records (its events, encoded: see [`Moving::emitting`]; or none, for a caller
    /// that writes them itself) and what the final state means to the service's own tables
    /// ([`Workflow::persist`]), in one statement; returns what changed and the events to emit.
    pub(crate) async fn write(
        self,
        tx: &mut PgConnection,
        workflow: &W,
        outcomes: &Outcomes,
        staged: &Staged,
    ) -> Result<Handled<W::State>, WorkflowError> {
        if self.journal.is_empty() && staged.is_empty() {
            outcomes.record(tx, W::NAME, self.id).await?;
        } else {
            let applied = !self.journal.is_empty();
            let version = self.version + i32::try_from(self.journal.len()).unwrap_or(i32::MAX);
            let journal = serde_json::Value::Array(self.journal);
            // The outcomes' upsert, the outbox's insert and the service's own write are CTEs:
            // carried out whether or not anything reads them.
            // `$1` to `$7` are the instance's own; the others follow in the order they are bound.
            let mut next = 8;
            let recorded = outcomes::upsert(next);
            next += outcomes::PARAMETERS;
            let published = if staged.is_empty() {
                String::new()
            } else {
                let insert = Staged::insert(next, "true");
                next += Staged::PARAMETERS;
                format!("published AS ({insert}),")
            };
            let mut persisted = DeferredWrites::default();
            if applied {
                persisted.extend(workflow.persist(self.id, &self.state));
            }
            let persisted_ctes = persisted.ctes(next);
            let statement = format!(
                "WITH recorded AS ({recorded}){persisted_ctes}, {published}
                 moved AS (
                     UPDATE workflow_instances
                     SET state = $3, label = $4, waiting_for = $5, version = $6, updated_at = now()
                     WHERE workflow = $1 AND instance_id = $2
                     RETURNING 1
                 )
                 INSERT INTO workflow_journal (workflow, instance_id, version, input, label, emitted)
                 SELECT $1, $2, j.version, j.input, j.label,
                        ARRAY(SELECT jsonb_array_elements_text(j.emitted))
                 FROM moved,
                      jsonb_to_recordset($7) AS j(version int, input jsonb, label text, emitted jsonb)"
            );
            let query = sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(W::NAME)
                .bind(self.id)
                .bind(sqlx::types::Json(&self.state))
                .bind(workflow.label(&self.state))
                .bind(workflow.waiting_for(&self.state))
                .bind(version)
                .bind(journal);
            let mut query = outcomes.bind(query);
            if !staged.is_empty() {
                query = staged.bind(query);
            }
            persisted.bind(query).execute(&mut *tx).await?;
        }
        Ok(Handled {
            before: self.before,
            after: self.state,
            emit: self.emit,
            traceparent: self.traceparent,
        })
    }
}

const COLUMNS: &str =
    "instance_id, state, label, waiting_for, version, traceparent, created_at, updated_at";

/// A row of [`COLUMNS`].
struct Row {
    instance_id: Uuid,
    state: serde_json::Value,
    label: String,
    waiting_for: Option<String>,
    version: i32,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}
saga_messaging::from_row!(Row {
    instance_id,
    state,
    label,
    waiting_for,
    version,
    traceparent,
    created_at,
    updated_at
});

/// A row of [`COLUMNS`] with one of its instance's steps, if it has that step.
struct WithStep {
    row: Row,
    step_status: Option<String>,
    step_attempts: Option<i32>,
}

impl<'r> FromRow<'r, PgRow> for WithStep {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            row: Row::from_row(row)?,
            step_status: row.try_get("step_status")?,
            step_attempts: row.try_get("step_attempts")?,
        })
    }
}

fn from_row<W: Workflow>(row: Row) -> Result<Instance<W::State>, WorkflowError> {
    Ok(Instance {
        id: row.instance_id,
        state: state_of::<W>(row.instance_id, row.state)?,
        label: row.label,
        waiting_for: row.waiting_for,
        version: row.version,
        traceparent: row.traceparent,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Instance `id`'s state as its row keeps it.
pub(crate) fn state_of<W: Workflow>(
    id: Uuid,
    state: serde_json::Value,
) -> Result<W::State, WorkflowError> {
    serde_json::from_value(state).map_err(|source| WorkflowError::Corrupt {
        workflow: W::NAME,
        instance: id,
        source,
    })
}

async fn read<W: Workflow>(
    conn: &mut PgConnection,
    id: Uuid,
    lock: &'static str,
) -> Result<Option<Instance<W::State>>, WorkflowError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflow_instances WHERE workflow = $1 AND instance_id = $2 {lock}"
    )))
    .bind(W::NAME)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(from_row::<W>).transpose()
}

/// Carries out the commands; returns the events to emit, in order, and the steps scheduled. A
/// step named `in_hand` gets no pending row (see [`Moving::apply`]).
async fn carry_out(
    tx: &mut PgConnection,
    workflow: &'static str,
    id: Uuid,
    commands: Vec<Command>,
    wake: Wake,
    in_hand: Option<&str>,
) -> Result<(Vec<SagaEvent>, Vec<&'static str>), sqlx::Error> {
    let mut emit = Vec::new();
    let mut scheduled = Vec::new();
    for command in commands {
        match command {
            Command::Emit(event) => emit.push(*event),
            Command::Schedule { timer, due_at_ms } => {
                let due_at = DateTime::<Utc>::from_timestamp_millis(due_at_ms).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO workflow_timers (workflow, instance_id, timer, due_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (workflow, instance_id, timer) DO UPDATE
                         SET due_at = EXCLUDED.due_at, status = 'PENDING', fired_at = NULL",
                )
                .bind(workflow)
                .bind(id)
                .bind(timer)
                .bind(due_at)
                .execute(&mut *tx)
                .await?;
            }
            Command::Run { step } => {
                scheduled.push(step);
                if in_hand == Some(step) {
                    continue;
                }
                // With the wake in the same statement: the insert is a CTE, always carried out;
                // the notification only when the runners are to be woken.
                sqlx::query(
                    "WITH scheduled AS (
                         INSERT INTO workflow_steps (workflow, instance_id, step)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (workflow, instance_id, step) DO NOTHING
                     )
                     SELECT pg_notify($4, $1) WHERE $5",
                )
                .bind(workflow)
                .bind(id)
                .bind(step)
                .bind(CHANNEL)
                .bind(wake == Wake::Runner)
                .execute(&mut *tx)
                .await?;
            }
            Command::Drop { step } => {
                sqlx::query(
                    "UPDATE workflow_steps SET status = 'DROPPED', updated_at = now()
                     WHERE workflow = $1 AND instance_id = $2 AND step = $3 AND status = 'PENDING'",
                )
                .bind(workflow)
                .bind(id)
                .bind(step)
                .execute(&mut *tx)
                .await?;
            }
            Command::Cancel { timer } => {
                sqlx::query(
                    "UPDATE workflow_timers SET status = 'CANCELLED'
                     WHERE workflow = $1 AND instance_id = $2 AND timer = $3 AND status = 'PENDING'",
                )
                .bind(workflow)
                .bind(id)
                .bind(timer)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok((emit, scheduled))
}
