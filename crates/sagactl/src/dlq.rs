//! `sagactl dlq`: list, show, redrive and skip a service's dead letters.
//!
//! Dead letters are records on `<service>.dlq`: the original key, bytes and headers plus where
//! they came from and why they failed. Reading, choosing and re-publishing them is
//! [`saga_messaging::inspect::dead_letters`], which the console uses too; this module only
//! parses the command line and prints. A skip is for what no redrive can fix, such as bytes that
//! are not an event at all.

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use saga_events::Service;
use saga_messaging::headers;
use saga_messaging::inspect::dead_letters::{self, DeadLetter, Selection, Verb};
use serde_json::{Value, json};

use crate::Context;
use crate::output::{emit, short_name};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: id, order, event type, error, attempts, age.
    List {
        /// order, payment, inventory or shipping.
        service: String,
    },
    /// One dead letter, decoded with its writer schema, with all its headers.
    Show {
        service: String,
        /// `<partition>:<offset>` as `list` prints it.
        id: String,
    },
    /// Re-publishes dead letters through the service's retry topic.
    Redrive(RedriveArgs),
    /// Gives one dead letter up for good: the service drops it and releases its order's
    /// messages that waited behind it.
    Skip(SkipArgs),
}

#[derive(Debug, Args)]
pub struct SkipArgs {
    pub service: String,
    /// The dead letter, `<partition>:<offset>` as `list` prints it.
    #[arg(long)]
    pub id: String,
    /// Show what would be skipped, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    pub service: String,
    /// One dead letter, `<partition>:<offset>`.
    #[arg(long, conflicts_with_all = ["order", "all"])]
    pub id: Option<String>,
    /// Every dead letter of this order.
    #[arg(long, conflicts_with = "all")]
    pub order: Option<String>,
    /// Every dead letter of the service.
    #[arg(long)]
    pub all: bool,
    /// Show what would be redriven, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn service(name: &str) -> anyhow::Result<Service> {
    Service::from_name(name)
        .with_context(|| format!("unknown service {name:?}: order, payment, inventory or shipping"))
}

/// Every record of the service's dead-letter topic.
async fn read(context: &Context, service: Service) -> anyhow::Result<Vec<DeadLetter>> {
    Ok(dead_letters::read(&context.kafka, vec![context.topics.dlq(service)]).await?)
}

fn age(letter: &DeadLetter) -> String {
    match letter.failed_at() {
        Some(since) => {
            let secs = (Utc::now() - since).num_seconds().max(0);
            match secs {
                0..60 => format!("{secs}s"),
                60..3600 => format!("{}m", secs / 60),
                3600..86400 => format!("{}h", secs / 3600),
                _ => format!("{}d", secs / 86400),
            }
        }
        None => "?".into(),
    }
}

fn summary(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id(),
        "order_id": letter.order(),
        "event_type": letter.event_type(),
        "event_id": letter.header(headers::EVENT_ID),
        "error_kind": letter.header(headers::ERROR_KIND),
        "error": letter.error(),
        "attempts": letter.attempts(),
        "source": letter.source(),
        "first_failure": letter.header(headers::FIRST_FAILURE),
        "last_failure": letter.header(headers::LAST_FAILURE),
        "age": age(letter),
    })
}

pub async fn run(context: &Context, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { service: name } => {
            let letters = read(context, service(&name)?).await?;
            if context.json {
                return emit(Value::Array(letters.iter().map(summary).collect()));
            }
            if letters.is_empty() {
                return emit(format!("no dead letters at {name}"));
            }
            emit(format!(
                "{:<8} {:<38} {:<24} {:>8} {:>5}  ERROR",
                "ID", "ORDER", "EVENT", "ATTEMPTS", "AGE"
            ))?;
            for letter in &letters {
                let error: String = letter.error().chars().take(80).collect();
                emit(format!(
                    "{:<8} {:<38} {:<24} {:>8} {:>5}  {error}",
                    letter.id(),
                    letter.order().unwrap_or("-"),
                    letter.event_type(),
                    letter.header(headers::ATTEMPTS),
                    age(letter),
                ))?;
            }
            Ok(())
        }
        DlqCommand::Show { service: name, id } => {
            let letters = read(context, service(&name)?).await?;
            let letter = letters
                .iter()
                .find(|l| l.id() == id)
                .with_context(|| format!("no dead letter {id} at {name}"))?;
            let record = &letter.0;
            let (writer, value) = match context.codec.decode_json(&record.payload).await {
                Ok((full_name, value)) => (Value::String(full_name), value),
                Err(error) => (
                    Value::Null,
                    json!({ "undecodable": error.to_string(), "bytes": hex(&record.payload) }),
                ),
            };
            let shown = json!({
                "id": id,
                "topic": record.topic,
                "key": record.key.as_deref().map(String::from_utf8_lossy),
                "writer_schema": writer,
                "event_type": writer.as_str().map(short_name),
                "headers": record.headers.to_text_map(),
                "value": value,
            });
            if context.json {
                emit(shown)
            } else {
                emit(serde_json::to_string_pretty(&shown)?)
            }
        }
        DlqCommand::Redrive(args) => {
            let selection = match (args.id, args.order, args.all) {
                (Some(id), _, _) => Selection::One(id),
                (None, Some(order), _) => Selection::Order(order),
                (None, None, true) => Selection::All,
                (None, None, false) => bail!(
                    "say what to redrive: --id <partition:offset>, --order <order id> or --all"
                ),
            };
            republish(
                context,
                &args.service,
                &selection,
                args.dry_run,
                Verb::Redrive,
            )
            .await
        }
        DlqCommand::Skip(args) => {
            republish(
                context,
                &args.service,
                &Selection::One(args.id),
                args.dry_run,
                Verb::Skip,
            )
            .await
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends the chosen dead letters through the service's retry topic and says what went.
async fn republish(
    context: &Context,
    name: &str,
    selection: &Selection,
    dry_run: bool,
    verb: Verb,
) -> anyhow::Result<()> {
    let service = service(name)?;
    let letters = read(context, service).await?;
    let chosen: Vec<&DeadLetter> = letters.iter().filter(|l| selection.matches(l)).collect();
    if chosen.is_empty() {
        bail!("no dead letter at {name} matches");
    }
    let retry_topic = context.topics.retry(service);
    let who = std::env::var("USER").unwrap_or_else(|_| "sagactl".into());
    let sent =
        dead_letters::republish(&context.kafka, &retry_topic, &chosen, verb, &who, dry_run).await?;
    if context.json {
        let key = match verb {
            Verb::Redrive => "redriven",
            Verb::Skip => "skipped",
        };
        let entries: Vec<Value> = sent
            .iter()
            .map(|s| json!({"id": s.id, "order_id": s.order_id, "event_type": s.event_type, "to": s.to}))
            .collect();
        return emit(json!({ "dry_run": dry_run, key: entries }));
    }
    for entry in &sent {
        emit(format!(
            "{} {} {} {} → {}",
            match (verb, dry_run) {
                (Verb::Redrive, true) => "would redrive",
                (Verb::Redrive, false) => "redrove",
                (Verb::Skip, true) => "would skip",
                (Verb::Skip, false) => "skipped",
            },
            entry.id,
            entry.order_id.as_deref().unwrap_or("-"),
            entry.event_type,
            entry.to
        ))?;
    }
    Ok(())
}
