//! `sagactl workflows [--waiting]`: the durable workflows inside the services (Payment's
//! reviews, Shipping's fulfilments), each instance with its state, what it waits for, and its next timer.
//!
//! Read from the services' own `workflow_instances` and `workflow_timers` tables with a query of
//! sagactl's own, as `audit` and `stuck` read theirs: the tool depends on no service's code.

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;
use uuid::Uuid;

use crate::Context;
use crate::databases::DatabaseArgs;
use crate::output::emit;

#[derive(Debug, Clone, Args)]
pub struct WorkflowsArgs {
    #[command(flatten)]
    pub databases: DatabaseArgs,
    /// Only instances that wait for something (a person, a timer), oldest first.
    #[arg(long)]
    pub waiting: bool,
    /// At most this many instances per service.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug)]
struct Row {
    workflow: String,
    instance_id: Uuid,
    label: String,
    waiting_for: Option<String>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The earliest timer still to fire.
    next_timer: Option<String>,
    next_due_at: Option<DateTime<Utc>>,
}
saga_messaging::from_row!(Row {
    workflow,
    instance_id,
    label,
    waiting_for,
    version,
    created_at,
    updated_at,
    next_timer,
    next_due_at
});

pub async fn run(context: &Context, args: WorkflowsArgs) -> anyhow::Result<()> {
    let databases = args.databases.connect().await?;
    let now = Utc::now();
    let mut listed = Vec::new();
    for (service, pool) in [
        ("payment", &databases.payments),
        ("shipping", &databases.shipping),
    ] {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT i.workflow, i.instance_id, i.label, i.waiting_for, i.version, i.created_at,
                    i.updated_at, t.timer AS next_timer, t.due_at AS next_due_at
             FROM workflow_instances i
             LEFT JOIN LATERAL (
                 SELECT timer, due_at FROM workflow_timers t
                 WHERE t.workflow = i.workflow AND t.instance_id = i.instance_id
                   AND t.status = 'PENDING'
                 ORDER BY due_at LIMIT 1
             ) t ON true
             WHERE NOT $1 OR i.waiting_for IS NOT NULL
             ORDER BY i.created_at LIMIT $2",
        )
        .bind(args.waiting)
        .bind(args.limit)
        .fetch_all(pool)
        .await?;
        listed.extend(rows.into_iter().map(|row| (service, row)));
    }
    if context.json {
        let instances: Vec<_> = listed
            .iter()
            .map(|(service, row)| {
                json!({
                    "service": service, "workflow": row.workflow, "order_id": row.instance_id,
                    "state": row.label, "waiting_for": row.waiting_for, "version": row.version,
                    "created_at": row.created_at, "updated_at": row.updated_at,
                    "next_timer": row.next_timer, "next_due_at": row.next_due_at,
                })
            })
            .collect();
        return emit(json!({ "instances": instances }));
    }
    if listed.is_empty() {
        let what = if args.waiting {
            "waits for anything"
        } else {
            "exists"
        };
        return emit(format!("no workflow instance {what}"));
    }
    for (service, row) in &listed {
        let age = (now - row.created_at).num_seconds();
        let waiting = match (&row.waiting_for, &row.next_timer, row.next_due_at) {
            (Some(what), Some(timer), Some(due)) => {
                format!(
                    "waits for a {what}; {timer} in {}s",
                    (due - now).num_seconds()
                )
            }
            (Some(what), _, _) => format!("waits for a {what}"),
            (None, _, _) => "ended".to_owned(),
        };
        emit(format!(
            "{service:<8} {:<15} {} {:<10} {age:>6}s old  {waiting}",
            row.workflow, row.instance_id, row.label
        ))?;
    }
    Ok(())
}
