//! Retention of finished instances, against a real Postgres (a schema of its own in the test
//! database): what is finished and older than the window goes, with its journal, steps and
//! timers; what still waits, or finished recently, stays.

use std::time::Duration;

use saga_messaging::inbox::Retention;
use saga_testkit::isolated;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

const WORKFLOW: &str = "retention-test";

/// An instance `hours_ago` old, waiting for `waiting_for`, with one row in each side table.
async fn instance(
    pool: &PgPool,
    waiting_for: Option<&str>,
    hours_ago: f64,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let at = "now() - make_interval(secs => $3)";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO workflow_instances (workflow, instance_id, state, label, waiting_for, updated_at)
         VALUES ($1, $2, '{{}}', 'X', $4, {at})"
    )))
    .bind(WORKFLOW)
    .bind(id)
    .bind(hours_ago * 3600.0)
    .bind(waiting_for)
    .execute(pool)
    .await?;
    for statement in [
        "INSERT INTO workflow_journal (workflow, instance_id, version, input, label) VALUES ($1, $2, 0, '{}', 'X')",
        "INSERT INTO workflow_steps (workflow, instance_id, step, status) VALUES ($1, $2, 'call', 'DONE')",
        "INSERT INTO workflow_timers (workflow, instance_id, timer, due_at, status) VALUES ($1, $2, 'expiry', now(), 'CANCELLED')",
    ] {
        sqlx::query(statement)
            .bind(WORKFLOW)
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(id)
}

async fn rows_of(pool: &PgPool, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM workflow_instances WHERE instance_id = $1)
              + (SELECT count(*) FROM workflow_journal WHERE instance_id = $1)
              + (SELECT count(*) FROM workflow_steps WHERE instance_id = $1)
              + (SELECT count(*) FROM workflow_timers WHERE instance_id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

#[tokio::test]
async fn finished_instances_past_the_window_go_with_their_journal_steps_and_timers()
-> anyhow::Result<()> {
    let schema = format!(
        "wf_retention_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let pool = isolated::schema_pool(&schema, 2).await?;
    saga_workflow::migrator(Migrator::with_migrations(Vec::new()))
        .run(&pool)
        .await?;
    // Given a finished instance two days old, three more than a page of them, one finished an
    // hour ago, and one two days old that still waits
    let old_finished = instance(&pool, None, 48.0).await?;
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(instance(&pool, None, 30.0).await?);
    }
    let recent = instance(&pool, None, 1.0).await?;
    let waiting = instance(&pool, Some("reviewer"), 48.0).await?;
    // When retention keeps a day, two rows per statement
    let retention = Retention {
        keep: Duration::from_secs(24 * 3600),
        every: Duration::from_secs(60),
        batch: 2,
    };
    let mut conn = pool.acquire().await?;
    let deleted = saga_workflow::retention::clean_up(&mut conn, WORKFLOW, &retention).await?;
    // Then the four old finished ones are gone, with every row of theirs, and the others stay
    assert_eq!(deleted, 4);
    for gone in std::iter::once(old_finished).chain(more) {
        assert_eq!(rows_of(&pool, gone).await?, 0, "{gone} is gone");
    }
    assert_eq!(
        rows_of(&pool, recent).await?,
        4,
        "finished within the window"
    );
    assert_eq!(rows_of(&pool, waiting).await?, 4, "still waits");
    Ok(())
}
