//! The process around a saga service: configuration from the environment, logs and trace export,
//! database and schema setup, the HTTP server with its operational routes, the outbox relay and
//! the event consumer, and an orderly shutdown on SIGTERM/SIGINT.

pub mod auth;
mod config;
mod contract;
mod http;
mod problem;
mod telemetry;
pub mod validation;

use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::Router;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use saga_events::{EventCodec, EventType, Service, TopicNames};
use saga_messaging::{
    Backoff, ConsumerSetup, EventConsumer, Health, KafkaSettings, Outbox, OutboxRelay, Reactions,
};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{ServiceConfig, env_parse};
pub use contract::openapi_route;
pub use http::Readiness;
pub use problem::{ApiJson, ApiQuery, FieldError, Problem, path_uuid};

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
    #[error("event consumer")]
    Consumer(#[from] saga_messaging::consumer::ConsumerError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Runs a service's `run()` on a multi-threaded runtime until it returns: what each service's
/// `main` does. Each service's library calls it, not its binary.
///
/// A release build compiles a generic function, and every `async` body polled from it, in the
/// crate that uses it with concrete types, and shares none of those copies across crates. A
/// binary that awaited `run()` itself compiled every future and generic the service uses once
/// more, which took more than half of a release build of each service (Payment: 29 s of 52).
/// For the same reason the entry points a service awaits or spawns ([`ServiceRuntime::start`],
/// [`ServiceRuntime::run`], [`connect`], [`Process::serve`], and the consumer's and the relay's
/// `run`) return futures boxed where they are written: the relay, the consumer's pipeline and
/// the HTTP server are compiled once, not into each of the five services.
pub fn block_on<E: From<std::io::Error>>(
    service: impl Future<Output = Result<(), E>>,
) -> Result<(), E> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(service)
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
    relay: OutboxRelay,
    shutdown: CancellationToken,
    pub topics: TopicNames,
    pub kafka: KafkaSettings,
    /// What the consumer and relay report about themselves (`/readyz`), and what a scanner
    /// beside them may ask (is a reply being retried in place?).
    pub health: Health,
    process: Process,
}

/// What every deployable installs first: its logs and trace export, and the recorder behind its
/// `/metrics`.
#[derive(Debug)]
pub struct Process {
    metrics: PrometheusHandle,
    _tracing: telemetry::TracingGuard,
}

impl Process {
    /// Installs the process-wide tracing subscriber and metrics recorder; once per process.
    pub fn install(name: &'static str) -> Result<Self, RuntimeError> {
        let tracing = telemetry::init(name);
        let metrics = PrometheusBuilder::new()
            // Fixed buckets: histograms Prometheus can aggregate, at a fixed cost per sample.
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ])
            .map_err(|e| RuntimeError::Metrics(e.to_string()))?
            .install_recorder()
            .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
        Ok(Self {
            metrics,
            _tracing: tracing,
        })
    }

    /// Cancels `shutdown` on SIGTERM or SIGINT, and drains the metrics recorder's buffers every
    /// few seconds (without a scrape nothing would, and a process nobody scrapes would grow
    /// without bound).
    pub fn watch(&self, shutdown: CancellationToken) {
        tokio::spawn(wait_for_signal(shutdown));
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
    }

    /// Serves `api` with /healthz, /readyz (`readiness`) and /metrics on `addr` until `shutdown`
    /// is cancelled.
    pub fn serve<'a>(
        &self,
        api: Router,
        readiness: Readiness,
        addr: &'a str,
        shutdown: CancellationToken,
    ) -> BoxFuture<'a, Result<(), std::io::Error>> {
        let app = http::service_router(api, readiness, self.metrics.clone());
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            info!(%addr, "listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        })
    }
}

/// A pool on `config`'s database, after applying the outbox/inbox migrations and `migrator`
/// (as the migration role, when one is configured), waiting for Postgres while it starts. Its
/// connections plan each statement once ([`GENERIC_PLANS`]).
pub fn connect(
    config: &ServiceConfig,
    migrator: sqlx::migrate::Migrator,
) -> BoxFuture<'_, Result<PgPool, RuntimeError>> {
    Box::pin(connect_and_migrate(config, migrator))
}

async fn connect_and_migrate(
    config: &ServiceConfig,
    migrator: sqlx::migrate::Migrator,
) -> Result<PgPool, RuntimeError> {
    let options = PgConnectOptions::from_str(&config.database_url)?.options([GENERIC_PLANS]);
    let pool = pool_options(config.database_pool_size).connect_lazy_with(options);
    let started = Instant::now();
    let mut migrator = migrator;
    let migration_pool = match &config.migration_database_url {
        Some(url) => pool_options(1).connect_lazy(url)?,
        None => pool.clone(),
    };
    let mut backoff = startup_backoff();
    loop {
        match saga_messaging::migrate(&migration_pool, &mut migrator).await {
            Ok(()) => break,
            Err(sqlx::migrate::MigrateError::Execute(error))
                if saga_messaging::error::is_transient_db_error(&error)
                    && started.elapsed() < STARTUP_PATIENCE =>
            {
                warn!(%error, "database not reachable yet");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    if config.migration_database_url.is_some() {
        migration_pool.close().await;
    }
    Ok(pool)
}

/// A connection idle at least this long is pinged before it is handed out; a fresher one is not.
///
/// A ping is a round trip (`Sync`, then `ReadyForQuery`) on every acquire, and one order at a
/// time acquires a connection some fifteen times across the services (fewer per saga when
/// transactions carry batches): under load each connection is back in use within
/// milliseconds, and the pings were a share of Postgres's work and of each hop's time.
/// What a ping catches is a connection the server dropped while it sat idle (Postgres
/// restarted, or killed the backend): after a second idle it is checked. One used less than a
/// second before a restart fails its next statement instead, which every caller already treats
/// as transient (the consumer retries the batch, the relay starts over, HTTP answers `503`), and
/// the pool then drops it.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The setting that has a service's connections plan each prepared statement once, not at every
/// execution. Every statement on the hot path is a lookup by key or a write of arrays
/// (`= ANY($1)`, `unnest($1)`): a plan made for one batch's values is the plan for any other.
/// Left to choose, Postgres kept planning most of them anew each time, because a plan made for
/// the values at hand (one order) is estimated cheaper than one made for none; one order at a
/// time, planning took 2.4 ms of Postgres' CPU per saga against 3.4 ms of execution. The one
/// exception is the retention cleaners' deletes, whose best plan depends on the cutoff: they
/// plan each round for its values (`saga_messaging::inbox::Retention::in_batches`).
pub const GENERIC_PLANS: (&str, &str) = ("plan_cache_mode", "force_generic_plan");

/// The options of every pool a service opens: at most `max_connections`, five seconds to wait
/// for one, and a ping only for a connection idle [`PING_AFTER_IDLE`] or longer.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|connection, metadata| {
            Box::pin(async move {
                if metadata.idle_for < PING_AFTER_IDLE {
                    return Ok(true);
                }
                // A connection that fails its ping is closed, and the pool opens another.
                match sqlx::Connection::ping(connection).await {
                    Ok(()) => Ok(true),
                    Err(error) => {
                        info!(%error, "an idle database connection was lost; opening another");
                        Ok(false)
                    }
                }
            })
        })
}

/// How long startup waits for Postgres and the registry before giving up.
const STARTUP_PATIENCE: Duration = Duration::from_secs(90);

impl ServiceRuntime {
    /// Reads the configuration, connects to Postgres (waiting for it if it is still starting),
    /// applies the outbox/inbox and `migrator` migrations, and registers the schemas of the
    /// events this service publishes.
    pub fn start(
        service: Service,
        default_port: u16,
        migrator: sqlx::migrate::Migrator,
    ) -> BoxFuture<'static, Result<Self, RuntimeError>> {
        Box::pin(Self::start_up(service, default_port, migrator))
    }

    async fn start_up(
        service: Service,
        default_port: u16,
        migrator: sqlx::migrate::Migrator,
    ) -> Result<Self, RuntimeError> {
        let process = Process::install(service.name())?;
        let config = ServiceConfig::from_env(service, default_port)?;
        let started = Instant::now();
        let pool = connect(&config, migrator).await?;
        let topics = TopicNames::new(config.topic_prefix.clone());
        let codec = EventCodec::new(&config.registry_url, topics.clone())?;
        let mut backoff = startup_backoff();
        loop {
            match codec.register_published_by(service).await {
                Ok(_) => break,
                Err(error) if error.is_transient() && started.elapsed() < STARTUP_PATIENCE => {
                    warn!(error = %saga_messaging::error::error_chain(&error), "schema registry not reachable yet");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let kafka = config.kafka.clone();
        let relay = OutboxRelay::new(pool.clone(), &kafka, config.relay.clone())?;
        Ok(Self {
            service,
            outbox: Outbox::waking(codec.clone(), relay.wake()),
            relay,
            shutdown: CancellationToken::new(),
            codec,
            topics,
            kafka,
            pool,
            config,
            health: Health::new(),
            process,
        })
    }

    /// Cancelled when the service begins to stop: what a service runs beside its API and its
    /// consumer (a scanner, say) stops with it.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves `api` (plus /healthz, /readyz, /metrics), relays the outbox and consumes the event
    /// topics of the services this one listens to ([`Service::consumes`]) until SIGTERM or
    /// SIGINT; then stops taking requests and messages, lets in-flight transactions finish,
    /// publishes what they wrote, flushes the producer and commits offsets.
    ///
    /// Only the consumer's construction is generic: the rest is compiled once, here, and not
    /// again into each service (see [`block_on`] for why that matters).
    pub fn run(
        self,
        api: Router,
        reactions: impl Reactions,
    ) -> BoxFuture<'static, Result<(), RuntimeError>> {
        let consumer = EventConsumer::new(self.consumer_setup(), reactions);
        self.run_with(api, consumer)
    }

    fn consumer_setup(&self) -> ConsumerSetup {
        ConsumerSetup {
            service: self.service,
            group: format!("{}{}-service", self.topics.prefix(), self.service.name()),
            subscriptions: self
                .service
                .consumes()
                .iter()
                .map(|s| self.topics.events(*s))
                .collect(),
            pool: self.pool.clone(),
            outbox: self.outbox.clone(),
            kafka: self.kafka.clone(),
            settings: self.config.consumer.clone(),
            health: self.health.clone(),
        }
    }

    fn run_with(
        self,
        api: Router,
        consumer: EventConsumer,
    ) -> BoxFuture<'static, Result<(), RuntimeError>> {
        Box::pin(self.serve_and_consume(api, consumer))
    }

    async fn serve_and_consume(
        self,
        api: Router,
        consumer: EventConsumer,
    ) -> Result<(), RuntimeError> {
        let subscriptions = self.service.consumes();
        let shutdown = self.shutdown.clone();
        let relay_shutdown = CancellationToken::new();
        self.process.watch(shutdown.clone());
        let health = self.health.clone();

        let relay = self.relay.clone();
        self.warm_up(&relay, subscriptions).await;
        let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));

        let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
        tokio::spawn(saga_messaging::inbox::keep_clean(
            self.pool.clone(),
            self.config.inbox_retention.clone(),
            shutdown.clone(),
        ));

        let readiness = Readiness::new(self.pool.clone(), &self.kafka, health)?;
        info!(service = self.service.name(), "serving");
        let server = self
            .process
            .serve(api, readiness, &self.config.http_addr, shutdown.clone())
            .await;
        shutdown.cancel();

        let consumed = stopped(consumer_task, "the consumer")
            .await
            .unwrap_or(Ok(()));
        relay_shutdown.cancel();
        stopped(relay_task, "the outbox relay").await;
        info!(service = self.service.name(), "stopped");
        server.map_err(RuntimeError::Io)?;
        // A consumer that failed (a lane or its poll thread died) stops the service with an
        // error, so that its supervisor starts it again.
        consumed.map_err(RuntimeError::Consumer)
    }

    /// Everything the first saga would otherwise wait for: pooled connections, the broker's
    /// metadata, and the schemas of every event the service reads. Failures only cost that
    /// first saga its speed, so they are logged, not fatal.
    async fn warm_up(&self, relay: &OutboxRelay, subscriptions: &[Service]) {
        let connections: Vec<_> = futures::future::join_all(
            (0..self.config.database_pool_size.min(4)).map(|_| self.pool.acquire()),
        )
        .await;
        drop(connections);
        if let Err(error) = relay.warm_up(&self.outbox_topics()).await {
            warn!(error = %saga_messaging::error::error_chain(&error), "could not reach the broker ahead of time");
        }
        let consumed: Vec<EventType> = EventType::ALL
            .iter()
            .copied()
            .filter(|t| subscriptions.contains(&t.publisher()))
            .collect();
        if let Err(error) = self.codec.warm_up(&consumed).await {
            warn!(error = %saga_messaging::error::error_chain(&error), "could not fetch the consumed schemas ahead of time");
        }
    }

    /// The topics this service's relay writes to.
    fn outbox_topics(&self) -> Vec<String> {
        vec![
            self.topics.events(self.service),
            self.topics.retry(self.service),
            self.topics.dlq(self.service),
        ]
    }
}

/// How long a task is given to finish once its process stops.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for `task`, told to stop, to finish: its result, or `None` (logged) when it failed or
/// took longer than 30 s.
pub async fn stopped<T>(task: tokio::task::JoinHandle<T>, what: &str) -> Option<T> {
    match tokio::time::timeout(STOP_PATIENCE, task).await {
        Ok(Ok(result)) => Some(result),
        Ok(Err(joined)) => {
            error!(%joined, "{what} failed");
            None
        }
        Err(_) => {
            warn!("{what} did not stop within {STOP_PATIENCE:?}");
            None
        }
    }
}

fn startup_backoff() -> Backoff {
    Backoff::with(Duration::from_millis(200), Duration::from_secs(2))
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
