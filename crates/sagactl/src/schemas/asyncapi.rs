//! `sagactl schemas asyncapi`: writes the event catalogue (`docs/asyncapi.json`, `docs/events.md`)
//! that `saga-schemas` renders, or with `--check` (run by `make test`) fails when the committed
//! files differ from it, rewriting nothing.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use saga_schemas::{read_topics, render};

use super::load::load;

/// Where the generated files live, and what they are generated from.
#[derive(Debug, Args)]
pub struct AsyncApiArgs {
    /// The schemas directory.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// The topic list.
    #[arg(long, default_value = "deploy/topics.conf")]
    pub topics: PathBuf,
    /// The AsyncAPI document to write.
    #[arg(long, default_value = "docs/asyncapi.json")]
    pub out: PathBuf,
    /// The Markdown page to write.
    #[arg(long, default_value = "docs/events.md")]
    pub markdown: PathBuf,
    /// Write nothing; fail if either file differs from what would be generated.
    #[arg(long)]
    pub check: bool,
}

/// Generates both files, or with `--check` compares them; `Ok(false)` when stale.
pub(super) fn run(args: &AsyncApiArgs) -> anyhow::Result<bool> {
    let history = load(&args.dir)?;
    let topics = read_topics(&args.topics)?;
    let catalogue = render(&history, &topics)?;
    let mut fresh = true;
    for (path, content) in [
        (&args.out, &catalogue.json),
        (&args.markdown, &catalogue.markdown),
    ] {
        if args.check {
            let committed = std::fs::read_to_string(path).unwrap_or_default();
            if &committed != content {
                println!(
                    "{} is stale: run `sagactl schemas asyncapi` and commit the result",
                    path.display()
                );
                fresh = false;
            }
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if args.check && fresh {
        println!(
            "{} and {} are up to date",
            args.out.display(),
            args.markdown.display()
        );
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_stale_catalogue_is_reported_and_not_rewritten() -> anyhow::Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::env::temp_dir().join(format!(
            "saga-catalogue-stale-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&out)?;
        let args = AsyncApiArgs {
            dir: root.join("schemas"),
            topics: root.join("deploy/topics.conf"),
            out: out.join("asyncapi.json"),
            markdown: out.join("events.md"),
            check: false,
        };
        assert!(run(&args)?, "generating");
        let check = AsyncApiArgs {
            check: true,
            ..args
        };
        assert!(run(&check)?, "fresh right after generating");
        std::fs::write(&check.markdown, "# edited by hand\n")?;
        assert!(!run(&check)?, "an edited page is stale");
        assert_eq!(
            std::fs::read_to_string(&check.markdown)?,
            "# edited by hand\n"
        );
        std::fs::remove_dir_all(out)?;
        Ok(())
    }
}
