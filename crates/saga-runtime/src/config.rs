use std::str::FromStr;
use std::time::Duration;

use saga_events::Service;
use saga_messaging::inbox::Retention;
use saga_messaging::{ConsumerSettings, KafkaSettings, RelaySettings};

use crate::RuntimeError;

/// Everything a service reads from its environment. Defaults match `make up`'s local stack.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `DATABASE_URL`, default `postgres://<db>:<db>@127.0.0.1:5432/<db>` for the service's own
    /// database (`orders`, `payments`, `inventory`, `shipping`; `history` for the read side).
    pub database_url: String,
    /// `MIGRATION_DATABASE_URL`, default unset: the migrations run as `DATABASE_URL`'s role.
    /// Set, the migrations run as this (owner) role, and the service itself connects with a role
    /// that may only read and write the tables (least privilege).
    pub migration_database_url: Option<String>,
    /// `DATABASE_POOL_SIZE`, default 10.
    pub database_pool_size: u32,
    /// `KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`; `KAFKA_SECURITY_PROTOCOL`,
    /// `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, unset by default
    /// (plaintext, as the local stack runs).
    pub kafka: KafkaSettings,
    /// `SCHEMA_REGISTRY_URL`, the Confluent API base, default `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub registry_url: String,
    /// `TOPIC_PREFIX`, default empty: lets isolated sagas share one broker.
    pub topic_prefix: String,
    /// `HTTP_ADDR`, default `127.0.0.1:<the service's port>`.
    pub http_addr: String,
    /// `RETRY_MAX_ATTEMPTS` (default 3) and `RETRY_DELAY_MS` (default 1000, doubling per
    /// retry); `CONSUMER_BATCH_SIZE` (default 200: most records per transaction);
    /// `CONSUMER_LANES` (default 1: transactions in flight at once; on two cores one lane with
    /// bigger batches beats several lanes contending); `CONSUMER_LINGER_MS` (default 20: how
    /// long events nothing waits on may wait for company); `CONSUMER_BUSY_LINGER_MS` (default 2:
    /// how long a busy lane lets records gather between batches); `STUCK_AFTER_SECONDS`
    /// (default 300: a retry in place this long marks the service not ready);
    /// `CONSUMER_INSTANCE_ID` (default unset: a stable name per replica makes the consumer a
    /// static group member, so a quick restart moves no partition); `MAX_EVENT_BYTES` (default
    /// 262144: a larger event this service reacts to is dead-lettered).
    pub consumer: ConsumerSettings,
    /// The outbox relay's defaults (batch size, lingers; `RELAY_BUSY_LINGER_MS`,
    /// `OUTBOX_MISSING_TOPIC_GRACE_SECONDS`).
    pub relay: RelaySettings,
    /// `RETENTION_HOURS` (default 192: the retry topics' 7 days plus one): how long inbox entries
    /// are kept; the consumer deletes older ones every minute.
    pub inbox_retention: Retention,
}

/// The database (and role) each service owns.
pub fn database_name(service: Service) -> &'static str {
    match service {
        Service::Order => "orders",
        Service::Payment => "payments",
        Service::Inventory => "inventory",
        Service::Shipping => "shipping",
    }
}

impl ServiceConfig {
    pub fn from_env(service: Service, default_port: u16) -> Result<Self, RuntimeError> {
        Self::for_database(database_name(service), default_port)
    }

    /// The configuration of a deployable that owns database `db` (and a role of that name) and
    /// listens on `default_port` unless told otherwise: the read side's.
    pub fn for_database(db: &str, default_port: u16) -> Result<Self, RuntimeError> {
        let pg_port = env_parse("PGPORT", 5432u16)?;
        Ok(Self {
            database_url: env_or(
                "DATABASE_URL",
                format!("postgres://{db}:{db}@127.0.0.1:{pg_port}/{db}"),
            ),
            migration_database_url: std::env::var("MIGRATION_DATABASE_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            database_pool_size: env_parse("DATABASE_POOL_SIZE", 10)?,
            kafka: KafkaSettings::new(env_or("KAFKA_BOOTSTRAP", "127.0.0.1:9092".into()))
                .with_security_from_env(),
            registry_url: env_or(
                "SCHEMA_REGISTRY_URL",
                "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            ),
            topic_prefix: env_or("TOPIC_PREFIX", String::new()),
            http_addr: env_or("HTTP_ADDR", format!("127.0.0.1:{default_port}")),
            consumer: ConsumerSettings {
                max_attempts: env_parse("RETRY_MAX_ATTEMPTS", 3)?,
                retry_delay: Duration::from_millis(env_parse("RETRY_DELAY_MS", 1000)?),
                batch_size: env_parse("CONSUMER_BATCH_SIZE", 200)?,
                lanes: env_parse("CONSUMER_LANES", 1)?,
                linger: Duration::from_millis(env_parse("CONSUMER_LINGER_MS", 20)?),
                busy_linger: Duration::from_millis(env_parse("CONSUMER_BUSY_LINGER_MS", 2)?),
                stuck_after: Duration::from_secs(env_parse("STUCK_AFTER_SECONDS", 300)?),
                instance_id: std::env::var("CONSUMER_INSTANCE_ID")
                    .ok()
                    .filter(|v| !v.is_empty()),
                max_event_bytes: env_parse(
                    "MAX_EVENT_BYTES",
                    saga_messaging::consumer::DEFAULT_MAX_EVENT_BYTES,
                )?,
            },
            relay: RelaySettings::default(),
            inbox_retention: Retention {
                keep: Duration::from_secs(3600 * env_parse("RETENTION_HOURS", 192u64)?),
                ..Retention::default()
            },
        })
    }
}

fn env_or(name: &str, default: String) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// Reads and parses an environment variable, with a default when it is unset or empty; a value
/// that does not parse is an error naming the variable, never a silent default.
pub fn env_parse<T: FromStr>(name: &str, default: T) -> Result<T, RuntimeError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|e| RuntimeError::Config(format!("{name}={value:?}: {e}"))),
        _ => Ok(default),
    }
}
