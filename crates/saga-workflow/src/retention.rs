//! Finished instances do not stay forever. An instance that waits for nothing more, and has not
//! moved for as long as the service keeps its inbox entries (`RETENTION_HOURS`), is deleted with
//! its journal, steps and timers: no input for it can still arrive (a duplicate of its events is
//! no longer recognised by then either). One round deletes a bounded batch per statement and
//! skips rows in use, as the inbox's cleanup does, so it never waits on the hot path.

use std::pin::Pin;
use std::time::Duration;

use saga_messaging::inbox::Retention;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Workflow;

/// Deletes `workflow`'s finished instances older than `retention.keep`, with their journal,
/// steps and timers, a batch per statement; returns the instances deleted.
pub async fn clean_up(
    conn: &mut PgConnection,
    workflow: &'static str,
    retention: &Retention,
) -> Result<u64, sqlx::Error> {
    let deleted = retention
        .in_batches(conn, workflow, delete_finished)
        .await?;
    if deleted > 0 {
        info!(
            workflow,
            instances = deleted,
            "deleted finished workflow instances past retention"
        );
    }
    Ok(deleted)
}

/// One round of the workflows' cleanup: a batch of `workflow`'s finished instances, with their
/// journal, steps and timers.
fn delete_finished<'c>(
    conn: &'c mut PgConnection,
    retention: &'c Retention,
    workflow: &'static str,
) -> Pin<Box<dyn Future<Output = Result<u64, sqlx::Error>> + Send + 'c>> {
    Box::pin(async move {
        Ok(sqlx::query(
            "WITH done AS (
                     SELECT instance_id FROM workflow_instances
                     WHERE workflow = $1 AND waiting_for IS NULL
                       AND updated_at < now() - make_interval(secs => $2)
                     LIMIT $3 FOR UPDATE SKIP LOCKED
                 ),
                 journal AS (
                     DELETE FROM workflow_journal
                     WHERE workflow = $1 AND instance_id IN (SELECT instance_id FROM done)
                 ),
                 steps AS (
                     DELETE FROM workflow_steps
                     WHERE workflow = $1 AND instance_id IN (SELECT instance_id FROM done)
                 ),
                 timers AS (
                     DELETE FROM workflow_timers
                     WHERE workflow = $1 AND instance_id IN (SELECT instance_id FROM done)
                 )
                 DELETE FROM workflow_instances
                 WHERE workflow = $1 AND instance_id IN (SELECT instance_id FROM done)",
        )
        .bind(workflow)
        .bind(retention.keep.as_secs_f64())
        .bind(retention.batch)
        .execute(conn)
        .await?
        .rows_affected())
    })
}

/// Cleans up `W`'s finished instances every `retention.every` until shutdown; a failed round is
/// logged and tried again at the next.
pub async fn keep_clean<W: Workflow>(
    _workflow: W,
    pool: PgPool,
    retention: Retention,
    shutdown: CancellationToken,
) {
    loop {
        let cleaned = match pool.acquire().await {
            Ok(mut conn) => clean_up(&mut conn, W::NAME, &retention).await,
            Err(error) => Err(error),
        };
        if let Err(error) = cleaned {
            warn!(workflow = W::NAME, %error, "could not delete finished workflow instances; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.every.max(Duration::from_secs(1))) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
