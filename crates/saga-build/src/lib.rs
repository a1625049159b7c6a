//! What the crates' build scripts share: embedding a crate's SQL migrations in its library.
//!
//! `sqlx::migrate!` does the same, but it is a procedural macro, and sqlx's macro crate compiles
//! sqlx's Postgres driver (and tokio, and the rest below it) a second time, for the compiler to
//! run. That second copy was about 45 of the roughly 700 slot-seconds of a release build of the
//! services from nothing, and nothing else needs it. Here a build script lists the migrations
//! instead, and `saga_messaging::embedded_migrations!` turns the list into a `Migrator` with the
//! same versions, descriptions and checksums, so databases migrated before keep validating.
//!
//! A crate with migrations calls [`embed_migrations`] from its `build.rs` (`fn main() {
//! saga_build::embed_migrations(); }`) and names `saga-build` among its build-dependencies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Writes `$OUT_DIR/migrations.rs`: the crate's `migrations/*.sql`, ordered by version, as
/// `(version, description, sql)`, each SQL `include_str!`-ed so that the file is part of the
/// build. Names follow sqlx's: `<version>_<description>.sql`, underscores in the description
/// read as spaces. Fails the build, naming the file, on anything else in the directory (sqlx's
/// reversible `.up.sql`/`.down.sql` pairs are not used here, so they are refused too).
pub fn embed_migrations() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = manifest_dir.join("migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let listed = list(&dir).unwrap_or_else(|problem| panic!("{problem}"));
    fs::write(out_dir.join("migrations.rs"), render(&listed))
        .unwrap_or_else(|error| panic!("writing {}/migrations.rs: {error}", out_dir.display()));
}

/// One migration file, as its name reads.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    version: i64,
    description: String,
    /// UTF-8, for `include_str!`.
    path: String,
}

fn list(dir: &Path) -> Result<Vec<Listed>, String> {
    let entries =
        fs::read_dir(dir).map_err(|error| format!("reading {}: {error}", dir.display()))?;
    let mut listed = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| format!("reading {}: {error}", dir.display()))?
            .path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let (version, description) = parse(name)
            .ok_or_else(|| format!("{}: not <version>_<description>.sql", path.display()))?;
        let path = path
            .to_str()
            .ok_or_else(|| format!("{}: not a UTF-8 path", path.display()))?;
        listed.push(Listed {
            version,
            description,
            path: path.to_owned(),
        });
    }
    listed.sort();
    if let Some(pair) = listed
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        return Err(format!(
            "{} and {} have the same version",
            pair[0].path, pair[1].path
        ));
    }
    Ok(listed)
}

/// `0100_orders_and_items.sql` → `(100, "orders and items")`, as sqlx reads it.
fn parse(name: &str) -> Option<(i64, String)> {
    let stem = name.strip_suffix(".sql")?;
    if stem.ends_with(".up") || stem.ends_with(".down") {
        return None;
    }
    let (version, description) = stem.split_once('_')?;
    Some((version.parse().ok()?, description.replace('_', " ")))
}

fn render(listed: &[Listed]) -> String {
    let mut out = String::from("&[\n");
    for Listed {
        version,
        description,
        path,
    } in listed
    {
        let _ = writeln!(
            out,
            "    ({version}, {description:?}, include_str!({path:?})),"
        );
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_sqlx_reads_them() {
        assert_eq!(parse("0100_orders.sql"), Some((100, "orders".to_owned())));
        assert_eq!(
            parse("0005_delete_on_publish.sql"),
            Some((5, "delete on publish".to_owned()))
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for name in [
            "0100.sql",
            "orders_0100.sql",
            "0100_orders.up.sql",
            "0100_orders.txt",
            "README",
        ] {
            assert_eq!(parse(name), None, "{name}");
        }
    }

    #[test]
    fn the_list_is_an_expression_of_versions_descriptions_and_files() {
        let listed = [Listed {
            version: 7,
            description: "outbox refused".into(),
            path: "/m/0007_outbox_refused.sql".into(),
        }];
        assert_eq!(
            render(&listed),
            "&[\n    (7, \"outbox refused\", include_str!(\"/m/0007_outbox_refused.sql\")),\n]"
        );
    }
}
