//! The SQL migrations of a crate, embedded in its library at build time.
//!
//! A crate's `build.rs` lists its `migrations/*.sql` (`saga_build::embed_migrations`), and
//! [`embedded_migrations!`](crate::embedded_migrations) makes the list a [`Migrator`]. Each
//! migration gets the version, description and checksum that `sqlx::migrate!` gave it, so a
//! database migrated by an earlier build validates against this one. (`sqlx::migrate!` is not
//! used because its macro crate compiles sqlx's Postgres driver once more for the compiler; see
//! `saga-build`.)

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// One embedded migration: its version, its description, its SQL.
pub type Embedded = (i64, &'static str, &'static str);

/// The migrations of the calling crate, from the list its build script wrote.
#[macro_export]
macro_rules! embedded_migrations {
    () => {
        $crate::migrations::migrator(include!(concat!(env!("OUT_DIR"), "/migrations.rs")))
    };
}

/// A migrator of `listed`, each run in a transaction unless its SQL starts with
/// `-- no-transaction` (as sqlx decides).
pub fn migrator(listed: &'static [Embedded]) -> Migrator {
    let migrations = listed
        .iter()
        .map(|&(version, description, sql)| {
            let no_tx = sql.starts_with("-- no-transaction");
            let sql = AssertSqlSafe(sql).into_sql_str();
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql,
                no_tx,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn embedded_migrations_are_what_sqlx_reads_from_the_directory()
    -> Result<(), sqlx::migrate::MigrateError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let read = Migrator::new(dir).await?;
        let embedded = crate::embedded_migrations!();
        let facts = |migrator: &Migrator| {
            migrator
                .iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.checksum.to_vec(),
                        m.no_tx,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(facts(&embedded), facts(&read));
        assert!(
            embedded.iter().count() >= 7,
            "the outbox's migrations are embedded"
        );
        Ok(())
    }
}
