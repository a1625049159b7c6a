//! History: the read side. It projects the four event topics, from offset 0, into an event log
//! and views in its own database, and answers what the write side cannot: one order's history
//! as of any moment, orders across customers, statuses and time, and the whole system as of a
//! moment. It never writes an event topic; the topics, which keep every record, are its source
//! of truth, and everything it holds can be rebuilt from them.
//!
//! It also serves the console (`/`): web pages over the same views, for the people who run the
//! saga ([`console`]).
//!
//! A library, so that its parts are tested without the stack; `main.rs` only runs it.

pub mod console;
pub mod http;
pub mod progress;
pub mod projector;
pub mod queries;
pub mod views;

use saga_events::{EventCodec, TopicNames};
use saga_history::projection::{Projection, generation};
use saga_messaging::{Health, Outbox, OutboxRelay};
use saga_runtime::{Process, Readiness, RuntimeError, ServiceConfig, env_parse, openapi_route};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::progress::Progress;
use crate::projector::{Projector, ProjectorError};

/// The database (and role) the read side owns.
pub const DATABASE: &str = "history";
/// Its HTTP port unless `HTTP_ADDR` says otherwise.
pub const PORT: u16 = 8085;

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("starting")]
    Runtime(#[from] RuntimeError),
    #[error("projecting")]
    Projector(#[from] ProjectorError),
    #[error("schema registry")]
    Codec(#[from] saga_events::CodecError),
    #[error("kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http server")]
    Io(#[from] std::io::Error),
    #[error("the console's HTTP client")]
    Http(#[from] reqwest::Error),
}

/// The process: [`run`] on a runtime of its own ([`saga_runtime::block_on`] says why it is
/// here and not in `main.rs`).
pub fn main() -> Result<(), HistoryError> {
    saga_runtime::block_on(run())
}

/// Runs the read side until SIGTERM. Configured as the services are (`DATABASE_URL`, default the
/// `history` database; `HTTP_ADDR`, default `127.0.0.1:8085`; `KAFKA_*`, `SCHEMA_REGISTRY_URL`,
/// `TOPIC_PREFIX`), plus `PROJECTOR_BATCH_SIZE` (default 500: most records per transaction),
/// `CONSUMER_LINGER_MS` (default 20: how long a batch waits for more records after its first)
/// and the console's ([`console::ConsoleConfig`]).
pub async fn run() -> Result<(), HistoryError> {
    let process = Process::install("history")?;
    let config = ServiceConfig::for_database(DATABASE, PORT)?;
    let batch_size = env_parse("PROJECTOR_BATCH_SIZE", 500usize)?;
    let pool = saga_runtime::connect(&config, generation::migrator()).await?;
    let topics = TopicNames::new(config.topic_prefix.clone());
    let codec = EventCodec::new(&config.registry_url, topics.clone())?;
    let relay = OutboxRelay::new(pool.clone(), &config.kafka, config.relay.clone())?;
    let shutdown = CancellationToken::new();
    process.watch(shutdown.clone());
    let health = Health::new();
    let progress = Progress::new();
    let console = console::Console::new(
        console::ConsoleConfig::from_env(),
        pool.clone(),
        progress.clone(),
        config.kafka.clone(),
        topics.clone(),
        codec.clone(),
    )?;

    // The relay publishes the projector's dead letters; it stops after the projector, so that
    // what the last batch wrote is published.
    let relay_shutdown = CancellationToken::new();
    let projector = Projector {
        pool: pool.clone(),
        projection: Projection {
            codec: codec.clone(),
            topics,
        },
        outbox: Outbox::waking(codec, relay.wake()),
        kafka: config.kafka.clone(),
        batch_size,
        linger: config.consumer.linger,
        progress: progress.clone(),
        health: health.clone(),
    };
    let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));
    let projector_task = tokio::spawn(projector.run(shutdown.clone()));

    let readiness = Readiness::new(pool.clone(), &config.kafka, health)?;
    let api = http::router(http::AppState { pool, progress })
        .merge(openapi_route(http::ApiDoc::openapi()))
        .merge(console::router(console));
    let served = process
        .serve(api, readiness, &config.http_addr, shutdown.clone())
        .await;
    shutdown.cancel();

    let projected = saga_runtime::stopped(projector_task, "the projector")
        .await
        .unwrap_or(Ok(()));
    relay_shutdown.cancel();
    saga_runtime::stopped(relay_task, "the outbox relay").await;
    served?;
    Ok(projected?)
}
