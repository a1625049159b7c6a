//! The process around a saga service: configuration from the environment, database and schema
//! setup, the HTTP server with its operational routes, the outbox relay and the event consumer,
//! and an orderly shutdown on SIGTERM/SIGINT.

mod config;
mod http;
mod problem;
pub mod validation;

use std::time::{Duration, Instant};

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use saga_events::{EventCodec, Service, TopicNames};
use saga_messaging::{EventConsumer, KafkaSettings, Outbox, OutboxRelay, Reactions};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{ServiceConfig, env_parse};
pub use http::{Readiness, openapi_route};
pub use problem::{ApiJson, FieldError, Problem, path_uuid};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("schema registry: {0}")]
    Codec(#[from] saga_events::CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// A started service: connected, migrated, its schemas registered. Hand it the HTTP API and the
/// event reactions with [`ServiceRuntime::run`].
#[derive(Debug)]
pub struct ServiceRuntime {
    pub service: Service,
    pub config: ServiceConfig,
    pub pool: PgPool,
    pub codec: EventCodec,
    pub outbox: Outbox,
    pub topics: TopicNames,
    pub kafka: KafkaSettings,
    metrics: PrometheusHandle,
    _tracing: saga_messaging::trace::TracingGuard,
}

/// How long startup waits for Postgres and the registry before giving up.
const STARTUP_PATIENCE: Duration = Duration::from_secs(90);

impl ServiceRuntime {
    /// Reads the configuration, connects to Postgres (waiting for it if it is still starting),
    /// applies the outbox/inbox and `migrator` migrations, and registers the schemas of the
    /// events this service publishes.
    pub async fn start(
        service: Service,
        default_port: u16,
        migrator: sqlx::migrate::Migrator,
    ) -> Result<Self, RuntimeError> {
        let tracing_guard = saga_messaging::trace::init(service.name());
        let config = ServiceConfig::from_env(service, default_port)?;
        let metrics = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(config.database_pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&config.database_url)?;

        let started = Instant::now();
        let mut migrator = migrator;
        loop {
            match saga_messaging::migrate(&pool, &mut migrator).await {
                Ok(()) => break,
                Err(sqlx::migrate::MigrateError::Execute(error))
                    if saga_messaging::error::is_transient_db_error(&error)
                        && started.elapsed() < STARTUP_PATIENCE =>
                {
                    warn!(%error, "database not reachable yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let topics = TopicNames::new(config.topic_prefix.clone());
        let codec = EventCodec::new(&config.registry_url, topics.clone())?;
        loop {
            match codec.register_published_by(service).await {
                Ok(_) => break,
                Err(error) if error.is_transient() && started.elapsed() < STARTUP_PATIENCE => {
                    warn!(%error, "schema registry not reachable yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let kafka = KafkaSettings::new(config.kafka_bootstrap.clone());
        Ok(Self {
            service,
            outbox: Outbox::new(codec.clone()),
            codec,
            topics,
            kafka,
            pool,
            config,
            metrics,
            _tracing: tracing_guard,
        })
    }

    /// Serves `api` (plus /healthz, /readyz, /metrics), relays the outbox and consumes the
    /// `subscriptions`' event topics until SIGTERM or SIGINT; then stops taking requests and
    /// messages, lets in-flight transactions finish, publishes what they wrote, flushes the
    /// producer and commits offsets.
    pub async fn run<R: Reactions>(
        self,
        api: Router,
        reactions: R,
        subscriptions: &[Service],
    ) -> Result<(), RuntimeError> {
        let shutdown = CancellationToken::new();
        let relay_shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));

        let relay = OutboxRelay::new(self.pool.clone(), &self.kafka, self.config.relay.clone())?;
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));

        let group = format!("{}{}-service", self.topics.prefix(), self.service.name());
        let topics = subscriptions
            .iter()
            .map(|s| self.topics.events(*s))
            .collect();
        let consumer = EventConsumer::new(
            self.service,
            group,
            topics,
            self.pool.clone(),
            self.outbox.clone(),
            self.kafka.clone(),
            reactions,
            self.config.consumer.clone(),
        );
        let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));

        let readiness = Readiness::new(self.pool.clone(), &self.kafka)?;
        let app = http::service_router(api, readiness, self.metrics.clone());
        let listener = tokio::net::TcpListener::bind(&self.config.http_addr).await?;
        info!(service = self.service.name(), addr = %self.config.http_addr, "listening");
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();

        let deadline = Duration::from_secs(30);
        if tokio::time::timeout(deadline, consumer_task).await.is_err() {
            warn!("consumer did not stop within {deadline:?}");
        }
        relay_shutdown.cancel();
        if tokio::time::timeout(deadline, relay_task).await.is_err() {
            warn!("outbox relay did not stop within {deadline:?}");
        }
        info!(service = self.service.name(), "stopped");
        server.map_err(RuntimeError::Io)
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    info!("shutdown requested");
    shutdown.cancel();
}
