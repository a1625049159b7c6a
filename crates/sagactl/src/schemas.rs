//! `sagactl schemas check|diff|freeze`: the gate an event's schema passes before it ships.
//!
//! `check` reads every version of every event under `schemas/` and checks each against every
//! earlier version of the same record, in both directions (what the registry's
//! `FULL_TRANSITIVE` asks), then asks the running registry whether it would take each newest
//! version. It names the event, the versions, the direction and the field or symbol at fault.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use saga_events::Service;
use saga_events::history::{HistoryError, SchemaHistory, diff, freeze};

use crate::Context;

/// The compatibility level the saga's registry must run with.
pub const REQUIRED_LEVEL: &str = "FULL_TRANSITIVE";

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Checks every version against every earlier one, locally and against the registry.
    Check(CheckArgs),
    /// What changed between two versions of an event (default: the newest and the one before).
    Diff(DiffArgs),
    /// Generates the AsyncAPI 3 catalogue and its Markdown page (`--check`: fail if stale).
    Asyncapi(crate::catalogue::AsyncApiArgs),
    /// Rewrites every shipped version (all but each event's newest) in self-contained form.
    Freeze {
        /// The schemas directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The schemas directory.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Only the local checks: no registry.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The event, e.g. `OrderPlaced` or `order/OrderPlaced`.
    pub event: String,
    #[arg(long)]
    pub from: Option<u32>,
    #[arg(long)]
    pub to: Option<u32>,
    /// The schemas directory.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
}

/// What is wrong with a schemas directory, one error a line, as one error.
fn invalid(dir: &std::path::Path, errors: &[HistoryError]) -> anyhow::Error {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {}", saga_messaging::error::error_chain(e)))
        .collect();
    anyhow::anyhow!(
        "{} is not a valid schema history:\n{}",
        dir.display(),
        lines.join("\n")
    )
}

/// The schema history under `dir`, or every problem with it.
pub fn load(dir: &std::path::Path) -> anyhow::Result<SchemaHistory> {
    SchemaHistory::load(dir).map_err(|errors| invalid(dir, &errors))
}

/// Runs a `schemas` command; `Ok(false)` when the gate refuses.
pub async fn run(context: &Context, command: SchemasCommand) -> anyhow::Result<bool> {
    match command {
        SchemasCommand::Check(args) => check(context, args).await,
        SchemasCommand::Asyncapi(args) => crate::catalogue::run(&args),
        SchemasCommand::Diff(args) => {
            let history = load(&args.dir)?;
            let event = history
                .event(&args.event)
                .with_context(|| format!("no event {} under {}", args.event, args.dir.display()))?;
            let newest = event.latest().map_or(0, |v| v.version);
            let to = args.to.unwrap_or(newest);
            let from = args.from.unwrap_or(to.saturating_sub(1));
            let (Some(older), Some(newer)) = (event.version(from), event.version(to)) else {
                anyhow::bail!(
                    "{} has versions 1 to {newest}; asked for v{from} and v{to}",
                    event.event
                );
            };
            println!("{} v{from} → v{to}", event.event);
            let changes = diff(older, newer);
            if changes.is_empty() {
                println!("  no change to fields or types");
            }
            for change in changes {
                println!("  {change}");
            }
            Ok(true)
        }
        SchemasCommand::Freeze { dir } => {
            let rewritten = freeze(&dir).map_err(|errors| invalid(&dir, &errors))?;
            if rewritten.is_empty() {
                println!("every shipped version already stands alone");
            }
            for file in rewritten {
                println!("froze {file}");
            }
            Ok(true)
        }
    }
}

async fn check(context: &Context, args: CheckArgs) -> anyhow::Result<bool> {
    let history = match SchemaHistory::load(&args.dir) {
        Ok(history) => history,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {}", saga_messaging::error::error_chain(&error));
            }
            return Ok(false);
        }
    };
    let mut passed = true;
    let breaks = history.breaks();
    for event in &history.events {
        let own: Vec<_> = breaks.iter().filter(|b| b.event == event.event).collect();
        let refused = own.iter().any(|b| b.accepted.is_none());
        let newest = event.latest().map_or(0, |v| v.version);
        println!(
            "{:8} {:32} v1..v{newest}  {}",
            if refused { "BROKEN" } else { "ok" },
            event.event,
            event.latest().map_or("", |v| v.full_name.as_str())
        );
        for found in own {
            println!("         {found}");
        }
        passed &= !refused;
    }
    for gap in history.upcast_gaps() {
        println!("BROKEN   {gap}");
        passed = false;
    }
    if args.offline {
        return Ok(passed);
    }

    let registry = context.codec.registry();
    let level = registry
        .compatibility_level()
        .await
        .context("asking the registry for its compatibility level")?;
    if level != REQUIRED_LEVEL {
        println!(
            "BROKEN   registry at {} runs {level}; the saga needs {REQUIRED_LEVEL}",
            registry.base_url()
        );
        passed = false;
    }
    for event in &history.events {
        let Some(latest) = event.latest() else {
            continue;
        };
        let service = event
            .event
            .split('/')
            .next()
            .and_then(Service::from_name)
            .with_context(|| format!("{}: not under a service's directory", event.event))?;
        let subject = format!("{}-{}", context.topics.events(service), latest.full_name);
        let answer = registry
            .check_compatibility(&subject, &latest.json)
            .await
            .with_context(|| format!("asking the registry about {subject}"))?;
        if !answer.compatible {
            println!(
                "BROKEN   {} v{}: the registry refuses it for {subject}: {}",
                event.event,
                latest.version,
                answer.messages.join("; ")
            );
            passed = false;
        }
    }
    if passed {
        println!(
            "every version reads and is read by every earlier one; the registry ({level}) accepts every newest version"
        );
    }
    Ok(passed)
}
