//! A workflow's own write ([`Workflow::persist`]) against a real Postgres (a schema of its own in
//! the test database): it lands with the move of the instance, written with the new state's
//! values; an input that changes nothing writes nothing, and a refused input leaves the row as it
//! was. Payment's review decision relies on it for its payment row.

use saga_testkit::isolated;
use saga_workflow::{Conflict, Deferred, Transition, Workflow, WorkflowError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Review {
    Open,
    Decided(String),
}

#[derive(Debug, Serialize)]
struct Decide(String);

/// A review decided once; the decision goes to the service's own `reviewed` row.
#[derive(Debug, Clone, Copy)]
struct Reviews;

impl Workflow for Reviews {
    const NAME: &'static str = "persist-test";
    type State = Review;
    type Input = Decide;

    fn transition(
        &self,
        state: &Review,
        Decide(decision): &Decide,
        _: i64,
    ) -> Result<Transition<Review>, Conflict> {
        match state {
            Review::Open => Ok(Transition::to(Review::Decided(decision.clone()))),
            Review::Decided(made) if made == decision => Ok(Transition::to(state.clone())),
            Review::Decided(made) => Err(Conflict(format!("already decided: {made}"))),
        }
    }

    fn label(&self, state: &Review) -> &'static str {
        match state {
            Review::Open => "OPEN",
            Review::Decided(_) => "DECIDED",
        }
    }

    fn waiting_for(&self, state: &Review) -> Option<&'static str> {
        matches!(state, Review::Open).then_some("reviewer")
    }

    fn timer_fired(&self, _timer: &str) -> Option<Decide> {
        None
    }

    fn persist(&self, id: Uuid, state: &Review) -> Option<Deferred> {
        let Review::Decided(decision) = state else {
            return None;
        };
        let decision = decision.clone();
        Some(Deferred::new(
            "UPDATE reviewed SET decision = $1, writes = writes + 1 WHERE id = $2",
            move |query| query.bind(decision).bind(id),
        ))
    }
}

/// The `reviewed` row of `id`: its decision and how many times it was written.
async fn reviewed(pool: &PgPool, id: Uuid) -> anyhow::Result<(Option<String>, i32)> {
    Ok(
        sqlx::query_as("SELECT decision, writes FROM reviewed WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

/// Handles `decision` for instance `id` in a transaction of its own, committed when it succeeds.
async fn decide(pool: &PgPool, id: Uuid, decision: &str) -> Result<bool, WorkflowError> {
    let mut tx = saga_workflow::begin(pool, id).await?;
    let handled =
        saga_workflow::handle(&mut tx, &Reviews, id, &Decide(decision.to_owned()), 0).await?;
    tx.commit().await?;
    Ok(handled.changed())
}

#[tokio::test]
async fn a_decision_writes_the_service_row_with_the_instance_and_only_when_it_changed_it()
-> anyhow::Result<()> {
    let schema = format!("wf_persist_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let pool = isolated::schema_pool(&schema, 2).await?;
    saga_workflow::migrator(Migrator::with_migrations(Vec::new()))
        .run(&pool)
        .await?;
    sqlx::query(
        "CREATE TABLE reviewed (id uuid PRIMARY KEY, decision text, writes int NOT NULL DEFAULT 0)",
    )
    .execute(&pool)
    .await?;
    // Given an open review, and its row in the service's own table
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO reviewed (id) VALUES ($1)")
        .bind(id)
        .execute(&pool)
        .await?;
    let mut tx = saga_workflow::begin(&pool, id).await?;
    saga_workflow::start(&mut tx, &Reviews, id, &Review::Open, Vec::new(), None).await?;
    tx.commit().await?;
    assert_eq!(
        reviewed(&pool, id).await?,
        (None, 0),
        "nothing persisted at the start"
    );

    // When it is decided, the row has the decision, written once with the instance's move
    assert!(
        decide(&pool, id, "approve").await?,
        "the decision moved the review"
    );
    assert_eq!(reviewed(&pool, id).await?, (Some("approve".to_owned()), 1));
    let instance = saga_workflow::load::<Reviews>(&mut *pool.acquire().await?, id).await?;
    assert_eq!(
        instance.map(|i| (i.state, i.label)),
        Some((Review::Decided("approve".to_owned()), "DECIDED".to_owned()))
    );

    // When the same decision comes again, nothing changes and nothing is written
    assert!(
        !decide(&pool, id, "approve").await?,
        "a repeat moves nothing"
    );
    assert_eq!(reviewed(&pool, id).await?, (Some("approve".to_owned()), 1));

    // When another decision comes, it is refused and the row stays as it was
    let refused = decide(&pool, id, "decline").await;
    assert!(
        matches!(refused, Err(WorkflowError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(reviewed(&pool, id).await?, (Some("approve".to_owned()), 1));
    Ok(())
}
