//! Generations of the read side's tables. The live generation is the tables in `public`, which
//! the service reads and projects into. A rebuild makes a new generation in a schema of its own
//! ([`REBUILD`]) from the same migrations, projects the topics into it from offset 0, checks it
//! equal to the live one at one checkpoint vector ([`fingerprints`]), and [`switch`]es: in one
//! transaction the live tables move aside ([`PREVIOUS`]) and the new ones take their place under
//! the same names, so that readers and the projector go on with the new generation without a
//! restart (Postgres plans statements again when a table they name is moved).
//!
//! Everything here runs as the database's owner: only it may create and move tables.

use std::collections::HashMap;

use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::store::Partition;

/// Where a rebuild projects.
pub const REBUILD: &str = "history_rebuild";
/// Where the live tables go when a rebuild replaces them (kept only when asked).
pub const PREVIOUS: &str = "history_previous";

/// The read side's tables and their keys: what a generation is made of, and the order rows are
/// compared in.
pub const TABLES: [(&str, &str); 4] = [
    ("event_log", "topic, kafka_partition, kafka_offset"),
    ("checkpoints", "topic, kafka_partition"),
    ("order_view", "order_id"),
    ("order_versions", "order_id, valid_from"),
];

/// The read side's migrations (versions 100 and up; the outbox's come first).
pub fn migrator() -> Migrator {
    saga_messaging::embedded_migrations!()
}

/// Makes `schema` anew (dropping what was there) with the tables of the migrations.
pub async fn create(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let schema = quoted(schema);
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut *conn)
        .await?;
    // Unqualified names in the migrations land in the first schema of the path.
    sqlx::query(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut *conn)
        .await?;
    let migrated = async {
        for migration in migrator().iter() {
            sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    sqlx::query("SET search_path TO DEFAULT")
        .execute(&mut *conn)
        .await?;
    migrated
}

/// Points the transaction behind `tx` at the tables of `schema`.
pub async fn enter(tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL search_path TO {}",
        quoted(schema)
    )))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The checkpoints of the generation in `schema`.
pub async fn checkpoints(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<HashMap<Partition, i64>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT topic, kafka_partition, next_offset FROM {}.checkpoints",
        quoted(schema)
    )))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// One table of a generation, summed up: its rows and a hash of all of them in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub table: &'static str,
    pub rows: i64,
    pub hash: String,
}

/// The fingerprint of every table of the generation in `schema`.
pub async fn fingerprints(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<Fingerprint>, sqlx::Error> {
    let mut prints = Vec::with_capacity(TABLES.len());
    for (table, key) in TABLES {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*)::bigint AS rows,
                    coalesce(md5(string_agg(md5(t::text), '' ORDER BY {key})), '') AS hash
             FROM {}.{table} t",
            quoted(schema)
        )))
        .fetch_one(&mut *conn)
        .await?;
        prints.push(Fingerprint {
            table,
            rows: row.try_get("rows")?,
            hash: row.try_get("hash")?,
        });
    }
    Ok(prints)
}

/// Replaces the live tables with those of `schema`, in the transaction behind `tx`: the live
/// ones move to [`PREVIOUS`] (made anew), the new ones to `public`, with the privileges the live
/// ones had.
pub async fn switch(tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let previous = quoted(PREVIOUS);
    let schema = quoted(schema);
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {previous} CASCADE"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {previous}")))
        .execute(&mut *tx)
        .await?;
    for (table, _) in TABLES {
        let grants: Vec<(String, String)> = sqlx::query_as(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants
             WHERE table_schema = 'public' AND table_name = $1 AND grantee <> current_user",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE public.{table} SET SCHEMA {previous}"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {schema}.{table} SET SCHEMA public"
        )))
        .execute(&mut *tx)
        .await?;
        for (grantee, privilege) in grants {
            // information_schema spells privileges as GRANT takes them (SELECT, INSERT, …).
            if privilege
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ')
            {
                let grantee = if grantee == "PUBLIC" {
                    grantee
                } else {
                    quoted(&grantee)
                };
                sqlx::query(AssertSqlSafe(format!(
                    "GRANT {privilege} ON public.{table} TO {grantee}"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Drops `schema` and what is in it.
pub async fn drop(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quoted(schema)
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_the_migrations_is_part_of_a_generation() {
        let sql: String = migrator().iter().map(|m| m.sql.as_str()).collect();
        let created = sql.matches("CREATE TABLE").count();
        assert_eq!(created, TABLES.len(), "tables created vs TABLES");
        for (table, _) in TABLES {
            assert!(sql.contains(&format!("CREATE TABLE {table} (")), "{table}");
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("history_rebuild"), "\"history_rebuild\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
