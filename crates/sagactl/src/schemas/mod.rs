//! `sagactl schemas check|diff|asyncapi|freeze`: the gate an event's schema passes before it
//! ships, what changed between two versions, and what is generated from `schemas/`. The work is
//! `saga-schemas`'; what is here reads the arguments and prints the answers.

mod asyncapi;
mod check;
mod load;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use saga_schemas::{diff, freeze};

pub use asyncapi::AsyncApiArgs;
pub use check::CheckArgs;
pub use load::load;

use crate::Context;

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Checks every version against every earlier one, locally and against the registry.
    Check(CheckArgs),
    /// What changed between two versions of an event (default: the newest and the one before).
    Diff(DiffArgs),
    /// Generates the AsyncAPI 3 catalogue and its Markdown page (`--check`: fail if stale).
    Asyncapi(AsyncApiArgs),
    /// Rewrites every shipped version (all but each event's newest) in self-contained form.
    Freeze {
        /// The schemas directory.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
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

/// Runs a `schemas` command; `Ok(false)` when the gate refuses.
pub async fn run(context: &Context, command: SchemasCommand) -> anyhow::Result<bool> {
    match command {
        SchemasCommand::Check(args) => check::run(context, args).await,
        SchemasCommand::Asyncapi(args) => asyncapi::run(&args),
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
            let rewritten = freeze(&dir).map_err(|errors| load::invalid(&dir, &errors))?;
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
