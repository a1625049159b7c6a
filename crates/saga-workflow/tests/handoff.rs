//! A start's first step, handed to the runner of its own process, against a real Postgres (a
//! schema of its own in the test database): the start leases the step in its own transaction,
//! the runner runs it once that transaction committed, within that lease and without claiming
//! it, and a start rolled back has nothing run. A file of its own: a process has one runner of a
//! workflow that takes hand-offs, and the other suites run runners of theirs side by side.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_events::{EventCodec, TopicNames};
use saga_messaging::Outbox;
use saga_testkit::isolated;
use saga_workflow::{Command, Conflict, Perform, StepFailure, Transition, Workflow};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The step's outcome, as its instance hears it (journaled as `"Shipped"`).
#[derive(Debug, Serialize)]
enum Heard {
    Shipped,
}

/// One step, `ship`; the instance is done once it has run.
#[derive(Debug, Clone, Copy)]
struct OneStep;

impl Workflow for OneStep {
    const NAME: &'static str = "handoff-test";
    /// Whether the step has run.
    type State = bool;
    type Input = Heard;

    fn transition(&self, _: &bool, _: &Heard, _: i64) -> Result<Transition<bool>, Conflict> {
        Ok(Transition::to(true))
    }

    fn label(&self, done: &bool) -> &'static str {
        if *done { "DONE" } else { "SHIPPING" }
    }

    fn waiting_for(&self, done: &bool) -> Option<&'static str> {
        (!done).then_some("ship")
    }

    fn timer_fired(&self, _timer: &str) -> Option<Heard> {
        None
    }

    fn step_finished(&self, _step: &str, outcome: Result<Value, String>) -> Option<Heard> {
        outcome.ok().map(|_| Heard::Shipped)
    }
}

/// The remote: records the instance of every call.
#[derive(Clone, Default)]
struct Remote(Arc<Mutex<Vec<Uuid>>>);

impl Remote {
    fn calls(&self) -> Vec<Uuid> {
        self.0.lock().map(|calls| calls.clone()).unwrap_or_default()
    }
}

impl Perform<OneStep> for Remote {
    async fn perform(&self, id: Uuid, _: &bool, _: &str, _: &str) -> Result<Value, StepFailure> {
        if let Ok(mut calls) = self.0.lock() {
            calls.push(id);
        }
        Ok(json!({}))
    }
}

/// A step's row as the test reads it: status, attempts, and whether it is due later (leased).
type StepRow = (String, i32, bool);

/// Starts an instance of [`OneStep`] in a transaction of its own, and reads its step's row in
/// that transaction: the transaction is returned uncommitted.
async fn started(
    pool: &PgPool,
    id: Uuid,
) -> anyhow::Result<(sqlx::Transaction<'static, sqlx::Postgres>, StepRow)> {
    let mut tx = saga_workflow::begin(pool, id).await?;
    saga_workflow::start(
        &mut tx,
        &OneStep,
        id,
        &false,
        vec![Command::Run { step: "ship" }],
        None,
    )
    .await?;
    let row = step_row(&mut tx, id).await?;
    Ok((tx, row))
}

async fn step_row(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<StepRow> {
    Ok(sqlx::query_as(
        "SELECT status, attempts, due_at > clock_timestamp() FROM workflow_steps
         WHERE workflow = 'handoff-test' AND instance_id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Waits until instance `id` is done; returns its step's row then.
async fn done(pool: &PgPool, id: Uuid, remote: &Remote) -> anyhow::Result<StepRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let instance = saga_workflow::load::<OneStep>(&mut *pool.acquire().await?, id).await?;
        if instance.as_ref().is_some_and(|i| i.state) {
            return step_row(&mut *pool.acquire().await?, id).await;
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "{id} never got done: {instance:?}; calls {:?}",
                remote.calls()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_start_hands_its_first_step_to_the_runner_of_its_process_once_it_commits()
-> anyhow::Result<()> {
    let schema = format!("wf_handoff_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let pool = isolated::schema_pool(&schema, 4).await?;
    saga_workflow::migrator(Migrator::with_migrations(Vec::new()))
        .run(&pool)
        .await?;
    let remote = Remote::default();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    // Given a runner of the workflow in this process
    let codec = EventCodec::new(&isolated::registry_url(), TopicNames::new("unused"))?;
    tokio::spawn(saga_workflow::steps::run(
        OneStep,
        remote.clone(),
        pool.clone(),
        Outbox::new(codec),
        shutdown.clone(),
    ));
    // (it takes hand-offs once it listens: until then, a start leaves its step for a claim)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut unleased = Vec::new();
    let first = loop {
        let id = Uuid::now_v7();
        let (tx, row) = started(&pool, id).await?;
        tx.commit().await?;
        if row.1 == 1 {
            break id;
        }
        assert_eq!(
            row,
            ("PENDING".to_owned(), 0, false),
            "a step left for a claim"
        );
        unleased.push(id);
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the runner never took hand-offs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // When a start is rolled back, and another commits
    let rolled_back = Uuid::now_v7();
    let (tx, row) = started(&pool, rolled_back).await?;
    // (each leased its step to the runner, in its own transaction)
    assert_eq!(row, ("PENDING".to_owned(), 1, true), "leased by the start");
    tx.rollback().await?;
    let handed = Uuid::now_v7();
    let (tx, row) = started(&pool, handed).await?;
    assert_eq!(row, ("PENDING".to_owned(), 1, true), "leased by the start");
    tx.commit().await?;
    // Then the committed starts' steps run once each, within the lease the start took (no claim
    // counted a second attempt, and none waited for the lease to end)
    for id in [first, handed] {
        let (status, attempts, _) = done(&pool, id, &remote).await?;
        assert_eq!((status.as_str(), attempts), ("DONE", 1), "{id}");
    }
    // And those left for a claim ran too
    for id in &unleased {
        assert_eq!(done(&pool, *id, &remote).await?.0, "DONE");
    }
    // And the rolled-back start's step never ran
    let calls = remote.calls();
    assert!(!calls.contains(&rolled_back), "{calls:?}");
    for id in [first, handed] {
        assert_eq!(calls.iter().filter(|c| **c == id).count(), 1, "{calls:?}");
    }
    Ok(())
}
