//! Least privilege in the database: each service connects as `<db>_runtime`, which reads and
//! writes its own tables and can change no schema; migrations run as the owner `<db>`; and no
//! role of one service can open another service's database. Roles as `make up` makes them
//! (`deploy/postgres/service-roles.sql`); Kubernetes makes the same ones.

use sqlx::{Connection, PgConnection};

const DATABASES: [&str; 5] = ["orders", "payments", "inventory", "shipping", "history"];

/// One test at a time: each looks at who is connected, and must not see the others.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn url(role: &str, database: &str) -> String {
    let port = std::env::var("PGPORT").unwrap_or_else(|_| "5432".into());
    // Local development passwords equal the role names.
    format!("postgres://{role}:{role}@127.0.0.1:{port}/{database}")
}

/// The SQLSTATE of a refused connection or statement.
fn refusal_code(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

#[tokio::test]
async fn no_role_of_a_service_opens_another_services_database() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut opened = Vec::new();
    for own in DATABASES {
        for other in DATABASES.into_iter().filter(|d| *d != own) {
            for role in [own.to_owned(), format!("{own}_runtime")] {
                match PgConnection::connect(&url(&role, other)).await {
                    Ok(_) => opened.push(format!("{role} opened {other}")),
                    // 28000: no pg_hba entry lets it in; 42501: no CONNECT privilege.
                    Err(error) => {
                        let code = refusal_code(&error);
                        assert!(
                            matches!(code.as_deref(), Some("28000" | "42501")),
                            "{role} into {other} failed for another reason: {error}"
                        );
                    }
                }
            }
        }
        // Its own database it does open, both roles.
        for role in [own.to_owned(), format!("{own}_runtime")] {
            PgConnection::connect(&url(&role, own))
                .await?
                .close()
                .await?;
        }
    }
    assert!(opened.is_empty(), "{opened:?}");
    Ok(())
}

#[tokio::test]
async fn the_runtime_role_reads_and_writes_its_tables_and_changes_no_schema() -> anyhow::Result<()>
{
    let _turn = ONE_AT_A_TIME.lock().await;
    for db in DATABASES {
        let runtime = format!("{db}_runtime");
        let mut conn = PgConnection::connect(&url(&runtime, db)).await?;
        // Reads and writes: a row in the inbox, taken back in the same transaction.
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
             VALUES (gen_random_uuid(), 'Probe', 'probe', 0, 0)",
        )
        .execute(&mut *tx)
        .await?;
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        for statement in [
            "CREATE TABLE intruder (x int)",
            "ALTER TABLE inbox ADD COLUMN intruder int",
            "DROP TABLE outbox",
            "TRUNCATE parked",
            "CREATE SCHEMA intruder",
        ] {
            let refused = sqlx::query(statement).execute(&mut conn).await;
            let code = refused.as_ref().err().and_then(refusal_code);
            assert_eq!(
                code.as_deref(),
                Some("42501"),
                "{runtime} on {db}: `{statement}` was not refused for lack of privilege: {refused:?}"
            );
        }
        conn.close().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_services_connect_as_their_runtime_roles() -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    for db in DATABASES {
        let mut conn = PgConnection::connect(&url(db, db)).await?;
        // Other sessions' user and database are visible to every role (their queries are not).
        // The tests of this file take turns, so the sessions besides this one are the services'.
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND usename <> 'postgres'",
        )
        .bind(db)
        .fetch_all(&mut conn)
        .await?;
        assert_eq!(
            users,
            vec![format!("{db}_runtime")],
            "the services' sessions on {db}"
        );
        conn.close().await?;
    }
    Ok(())
}
