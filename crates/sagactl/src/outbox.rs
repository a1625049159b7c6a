//! `sagactl outbox`: the outbox rows a broker refused for good, per service.
//!
//! A row the broker will never take as it is (its topic does not exist, the service may not
//! write it, the record is too large) is moved by the relay into the service's `outbox_refused`
//! table with the error, so that every other row still goes out. Once the cause is fixed (the
//! topic created, the ACL granted, the topic's size limit raised), `resend` puts the rows back
//! into the outbox, and the relay publishes them like any other.

use clap::{Args, Subcommand};
use saga_messaging::outbox;
use serde_json::{Value, json};

use crate::Context;
use crate::databases::DatabaseArgs;
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// The refused rows of every service (or one): id, topic, event type, size, error.
    List {
        /// order, payment, inventory or shipping; every service when left out.
        service: Option<String>,
        #[command(flatten)]
        databases: DatabaseArgs,
    },
    /// Puts refused rows back into a service's outbox for its relay to publish.
    Resend(ResendArgs),
}

#[derive(Debug, Args)]
pub struct ResendArgs {
    pub service: String,
    /// One refused row, by the id `list` prints.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub id: Option<i64>,
    /// Every refused row of the service.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub databases: DatabaseArgs,
}

pub async fn run(context: &Context, command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::List { service, databases } => {
            let databases = databases.connect().await?;
            let mut listed = Vec::new();
            for (name, pool) in databases.all() {
                if service.as_deref().is_some_and(|wanted| wanted != name) {
                    continue;
                }
                let mut conn = pool.acquire().await?;
                for row in outbox::refused(&mut conn).await? {
                    listed.push(json!({
                        "service": name,
                        "id": row.id,
                        "event_id": row.event_id.to_string(),
                        "event_type": row.event_type,
                        "topic": row.topic,
                        "key": row.message_key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                        "bytes": row.payload_bytes,
                        "created_at": row.created_at.to_rfc3339(),
                        "refused_at": row.refused_at.to_rfc3339(),
                        "error": row.error,
                    }));
                }
            }
            if context.json {
                return emit(Value::Array(listed));
            }
            if listed.is_empty() {
                return emit("no refused outbox rows");
            }
            for row in &listed {
                emit(format!(
                    "{} #{} {} to {} ({} bytes), refused {}: {}",
                    row["service"].as_str().unwrap_or(""),
                    row["id"],
                    row["event_type"].as_str().unwrap_or(""),
                    row["topic"].as_str().unwrap_or(""),
                    row["bytes"],
                    row["refused_at"].as_str().unwrap_or(""),
                    row["error"].as_str().unwrap_or(""),
                ))?;
            }
            Ok(())
        }
        OutboxCommand::Resend(args) => {
            let databases = args.databases.connect().await?;
            let Some((_, pool)) = databases
                .all()
                .into_iter()
                .find(|(name, _)| *name == args.service)
            else {
                anyhow::bail!(
                    "unknown service {:?}: order, payment, inventory or shipping",
                    args.service
                );
            };
            let mut conn = pool.acquire().await?;
            let ids = args.id.map(|id| vec![id]);
            let resent = outbox::resend(&mut conn, ids.as_deref()).await?;
            if context.json {
                return emit(json!({ "service": args.service, "resent": resent }));
            }
            emit(format!(
                "{resent} refused rows of {} back in its outbox",
                args.service
            ))
        }
    }
}
