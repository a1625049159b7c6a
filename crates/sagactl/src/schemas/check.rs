//! `sagactl schemas check`: reads every version of every event under `schemas/` and checks each
//! against every earlier version of the same record, in both directions (what the registry's
//! `FULL_TRANSITIVE` asks), then asks the running registry whether it would take each newest
//! version. It names the event, the versions, the direction and the field or symbol at fault.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use saga_schemas::{REQUIRED_LEVEL, SchemaHistory};

use crate::Context;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The schemas directory.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Only the local checks: no registry.
    #[arg(long)]
    pub offline: bool,
}

/// Prints each event's verdict; `Ok(false)` when the gate refuses.
pub(super) async fn run(context: &Context, args: CheckArgs) -> anyhow::Result<bool> {
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
            .service()
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
