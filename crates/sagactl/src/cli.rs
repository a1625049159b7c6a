//! The command line: its arguments, and which command each runs.

use crate::{
    Context, audit, bench, dlq, history, outbox, replay, saga, schemas, stuck, tail, topics,
    workflows,
};
use clap::{Parser, Subcommand};
use saga_events::{EventCodec, TopicNames};
use saga_messaging::KafkaSettings;

#[derive(Debug, Parser)]
#[command(
    name = "sagactl",
    version,
    about = "Operate the order saga: topics, tails, sagas"
)]
struct Cli {
    /// Kafka bootstrap servers. Authentication as the services take it, from
    /// `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME` and
    /// `KAFKA_SASL_PASSWORD` (unset: plaintext, as the local stack runs).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap: String,
    /// Confluent-compatible schema registry API.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7",
        global = true
    )]
    registry: String,
    /// Prefix of the saga's topic names (isolated sagas share a broker this way).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "", global = true)]
    topic_prefix: String,
    /// Machine-readable output: JSON (one document, or one line per record when tailing).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Topics with their partitions, end offsets and each service's consumer-group lag; each
    /// group's members (one per replica) and the partitions each owns.
    Topics(topics::TopicsArgs),
    /// Records of a topic, decoded from Avro through the registry into JSON.
    Tail(tail::TailArgs),
    /// A service's dead letters: list, show, redrive.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Outbox rows a broker refused for good: list them, and send them again once fixed.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Cross-service consistency: every order ended or explained, money and stock conserved.
    Audit(audit::AuditArgs),
    /// Places a load of orders through the running services and reports throughput and latency.
    Bench(Box<bench::BenchArgs>),
    /// Sagas that have not ended: what each waits for and which service owes it, and any of
    /// its messages parked or dead-lettered anywhere.
    Stuck(stuck::StuckArgs),
    /// The events' schema history: the compatibility gate, what changed, freezing shipped versions.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
    /// One order's saga: its events across the four topics, causes before effects.
    Saga {
        /// The order id.
        order_id: String,
    },
    /// Root cause: one order's records across the topics (partition, offset, record and event
    /// time, trace id) in the order the read side folds them, and its state after each.
    Replay {
        /// The order id.
        order_id: String,
    },
    /// The read side: rebuild it from the topics, checked equal to the live one.
    #[command(subcommand)]
    History(history::HistoryCommand),
    /// The durable workflows inside the services (Payment's reviews, Shipping's fulfilments):
    /// each instance, its state,
    /// what it waits for and its next timer.
    Workflows(workflows::WorkflowsArgs),
}

/// Parses the command line and runs the command, on a runtime built here rather than in
/// `main.rs`: the commands' futures are then compiled once, with the library, not again in the
/// binary.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let topics = TopicNames::new(cli.topic_prefix.clone());
    let context = Context {
        kafka: KafkaSettings::new(cli.bootstrap.clone()).with_security_from_env(),
        codec: EventCodec::new(&cli.registry, topics.clone())?,
        topics,
        json: cli.json,
    };
    match cli.command {
        Command::Topics(args) => topics::run(&context, args).await,
        Command::Tail(args) => tail::run(&context, args).await,
        Command::Saga { order_id } => saga::run(&context, &order_id).await,
        Command::Replay { order_id } => replay::run(&context, &order_id).await,
        Command::History(command) => {
            if !history::run(&context, command).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Bench(args) => bench::run(&context, *args).await,
        Command::Stuck(args) => stuck::run(&context, args).await,
        Command::Workflows(args) => workflows::run(&context, args).await,
        Command::Dlq(command) => dlq::run(&context, command).await,
        Command::Outbox(command) => outbox::run(&context, command).await,
        Command::Schemas(command) => {
            if !schemas::run(&context, command).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit(args) => {
            let clean = audit::run(&context, args).await?;
            if !clean {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
