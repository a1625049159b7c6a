//! What an integration test needs to be alone on the shared stack: a Postgres schema of its own
//! in the `saga_test` database, and topics of its own on the broker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Executor, PgPool};

/// `TEST_DATABASE_URL`, default the local stack's `saga_test` database.
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://saga_test:saga_test@127.0.0.1:5432/saga_test".into())
}

/// `KAFKA_BOOTSTRAP`, default the local stack's broker.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// `SCHEMA_REGISTRY_URL`, default the local stack's registry.
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// A topic (and subject) prefix no other test run uses, so runs never see each other's events or
/// subjects.
pub fn unique_prefix(test: &str) -> String {
    format!("it-{test}-{}.", uuid::Uuid::new_v4().simple())
}

/// Creates `schema` in the test database and returns a pool whose connections work in it.
pub async fn schema_pool(schema: &str, connections: u32) -> Result<PgPool, sqlx::Error> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await?;
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await?;
    admin.close().await;
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&schema_url(schema))
        .await
}

/// The test database's URL with `schema` first on the search path: what a tool under test is
/// given instead of a service's database.
pub fn schema_url(schema: &str) -> String {
    format!("{}?options=-c%20search_path%3D{schema}", database_url())
}

/// Creates `topics` with `partitions` partitions each, and waits until the broker's metadata
/// shows them (a topic is usable a moment after it is created).
pub async fn create_topics(
    topics: &[String],
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let specs: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin.create_topics(&specs, &options).await? {
        result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
    }
    let metadata: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let until = std::time::Instant::now() + Duration::from_secs(20);
    for topic in topics {
        loop {
            let seen = metadata
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len()));
            if seen == usize::try_from(partitions).ok() {
                break;
            }
            if std::time::Instant::now() >= until {
                return Err(
                    format!("topic {topic} not in the broker's metadata after 20 s").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
