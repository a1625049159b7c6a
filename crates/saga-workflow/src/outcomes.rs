//! Steps' final outcomes on their way to their rows: gathered by a hand-over, then written in
//! one statement, or as part of the statement that writes the instance they moved
//! ([`crate::instance`]), so that a hand-over pays one round trip for both.

use sqlx::PgConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use uuid::Uuid;

/// Steps' final outcomes, each for its row (a row of its own for a step run ahead of its
/// schedule).
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    steps: Vec<String>,
    statuses: Vec<&'static str>,
    attempts: Vec<i32>,
    results: Vec<Option<serde_json::Value>>,
    errors: Vec<Option<String>>,
}

impl Outcomes {
    pub(crate) fn push(
        &mut self,
        step: &str,
        attempts: i32,
        outcome: &Result<serde_json::Value, String>,
    ) {
        let (status, result, error) = match outcome {
            Ok(result) => ("DONE", Some(result.clone()), None),
            Err(reason) => ("FAILED", None, Some(reason.clone())),
        };
        // A step heard twice keeps its first attempt count and its last outcome, as two upserts
        // of its row would.
        if let Some(i) = self.steps.iter().position(|s| s == step) {
            self.statuses[i] = status;
            self.results[i] = result;
            self.errors[i] = error;
            return;
        }
        self.steps.push(step.to_owned());
        self.statuses.push(status);
        self.attempts.push(attempts);
        self.results.push(result);
        self.errors.push(error);
    }

    pub(crate) fn has(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s == step)
    }

    /// Writes the outcomes of instance `id`'s steps, in a statement of their own.
    pub(crate) async fn record(
        &self,
        tx: &mut PgConnection,
        workflow: &str,
        id: Uuid,
    ) -> Result<(), sqlx::Error> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let upsert = upsert(3);
        self.bind(
            sqlx::query(sqlx::AssertSqlSafe(upsert))
                .bind(workflow)
                .bind(id),
        )
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Binds the outcomes' five arrays, in the order [`upsert`] numbers them: next after those
    /// `query` binds already.
    pub(crate) fn bind<'q>(
        &'q self,
        query: Query<'q, sqlx::Postgres, PgArguments>,
    ) -> Query<'q, sqlx::Postgres, PgArguments> {
        query
            .bind(&self.steps)
            .bind(&self.statuses)
            .bind(&self.attempts)
            .bind(&self.results)
            .bind(&self.errors)
    }
}

/// How many parameters [`Outcomes::bind`] binds: one array per column.
pub(crate) const PARAMETERS: usize = 5;

/// The statement that writes outcomes to their steps' rows: `$1` the workflow, `$2` the
/// instance, and the [`PARAMETERS`] arrays [`Outcomes::bind`] binds from `$first` on. An empty
/// set of outcomes writes nothing.
pub(crate) fn upsert(first: usize) -> String {
    let [steps, statuses, attempts, results, errors] =
        std::array::from_fn::<_, PARAMETERS, _>(|i| format!("${}", first + i));
    format!(
        "INSERT INTO workflow_steps (workflow, instance_id, step, status, attempts, result,
                                     last_error)
         SELECT $1, $2, o.step, o.status, o.attempts, o.result, o.error
         FROM unnest({steps}::text[], {statuses}::text[], {attempts}::int[], {results}::jsonb[],
                     {errors}::text[])
              AS o(step, status, attempts, result, error)
         ON CONFLICT (workflow, instance_id, step) DO UPDATE
             SET status = EXCLUDED.status, result = EXCLUDED.result,
                 last_error = EXCLUDED.last_error, updated_at = now()"
    )
}
