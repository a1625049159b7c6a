//! `sagactl dlq`: list, show, redrive and skip a service's dead letters.
//!
//! Dead letters are records on `<service>.dlq`: the original key, bytes and headers plus where
//! they came from and why they failed. A redrive re-publishes one through `<service>.retry` only —
//! never to the shared topic, so no other service sees the event again — keeping its key and
//! `event_id` (so the inbox still dedupes) and adding who/when/from-where headers.
//!
//! A skip goes the same way with one more header, `saga-skipped-by`: the service gives the dead
//! letter up for good (without applying it) and releases the messages of its order that waited
//! behind it. It is for what no redrive can fix, such as bytes that are not an event at all.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_events::Service;
use saga_messaging::Delivery as RawRecord;
use saga_messaging::headers;
use saga_messaging::inspect::reader::PartitionReader;
use serde_json::{Value, json};

use crate::Context;
use crate::output::{emit, short_name};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: id, order, event type, error, attempts, age.
    List {
        /// order, payment, inventory or shipping.
        service: String,
    },
    /// One dead letter, decoded with its writer schema, with all its headers.
    Show {
        service: String,
        /// `<partition>:<offset>` as `list` prints it.
        id: String,
    },
    /// Re-publishes dead letters through the service's retry topic.
    Redrive(RedriveArgs),
    /// Gives one dead letter up for good: the service drops it and releases its order's
    /// messages that waited behind it.
    Skip(SkipArgs),
}

#[derive(Debug, Args)]
pub struct SkipArgs {
    pub service: String,
    /// The dead letter, `<partition>:<offset>` as `list` prints it.
    #[arg(long)]
    pub id: String,
    /// Show what would be skipped, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    pub service: String,
    /// One dead letter, `<partition>:<offset>`.
    #[arg(long, conflicts_with_all = ["order", "all"])]
    pub id: Option<String>,
    /// Every dead letter of this order.
    #[arg(long, conflicts_with = "all")]
    pub order: Option<String>,
    /// Every dead letter of the service.
    #[arg(long)]
    pub all: bool,
    /// Show what would be redriven, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn service(name: &str) -> anyhow::Result<Service> {
    Service::from_name(name)
        .with_context(|| format!("unknown service {name:?}: order, payment, inventory or shipping"))
}

/// Every record of the service's dead-letter topic.
async fn dead_letters(context: &Context, service: Service) -> anyhow::Result<Vec<RawRecord>> {
    let kafka = context.kafka.clone();
    let topic = context.topics.dlq(service);
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<RawRecord>> {
        let reader = PartitionReader::new(&kafka)?;
        let partitions = reader.partition_count(&topic)?;
        if partitions == 0 {
            bail!("topic {topic} does not exist");
        }
        let mut records = Vec::new();
        for partition in 0..partitions {
            records.extend(reader.read_partition(&topic, partition)?);
        }
        records.sort_by_key(|r| (r.timestamp_millis, r.partition, r.offset));
        Ok(records)
    })
    .await?
}

fn id_of(record: &RawRecord) -> String {
    format!("{}:{}", record.partition, record.offset)
}

fn header<'a>(record: &'a RawRecord, name: &str) -> &'a str {
    record.headers.get(name).unwrap_or("")
}

fn age(record: &RawRecord) -> String {
    let since = DateTime::parse_from_rfc3339(header(record, headers::LAST_FAILURE))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            record
                .timestamp_millis
                .and_then(DateTime::<Utc>::from_timestamp_millis)
        });
    match since {
        Some(since) => {
            let secs = (Utc::now() - since).num_seconds().max(0);
            match secs {
                0..60 => format!("{secs}s"),
                60..3600 => format!("{}m", secs / 60),
                3600..86400 => format!("{}h", secs / 3600),
                _ => format!("{}d", secs / 86400),
            }
        }
        None => "?".into(),
    }
}

fn summary(record: &RawRecord) -> Value {
    json!({
        "id": id_of(record),
        "order_id": record.key_str(),
        "event_type": header(record, headers::EVENT_TYPE),
        "event_id": header(record, headers::EVENT_ID),
        "error_kind": header(record, headers::ERROR_KIND),
        "error": header(record, headers::ERROR),
        "attempts": header(record, headers::ATTEMPTS).parse::<i64>().ok(),
        "source": format!("{}[{}]@{}", header(record, headers::SOURCE_TOPIC),
            header(record, headers::SOURCE_PARTITION), header(record, headers::SOURCE_OFFSET)),
        "first_failure": header(record, headers::FIRST_FAILURE),
        "last_failure": header(record, headers::LAST_FAILURE),
        "age": age(record),
    })
}

pub async fn run(context: &Context, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { service: name } => {
            let records = dead_letters(context, service(&name)?).await?;
            if context.json {
                return emit(Value::Array(records.iter().map(summary).collect()));
            }
            if records.is_empty() {
                return emit(format!("no dead letters at {name}"));
            }
            emit(format!(
                "{:<8} {:<38} {:<24} {:>8} {:>5}  ERROR",
                "ID", "ORDER", "EVENT", "ATTEMPTS", "AGE"
            ))?;
            for record in &records {
                let error: String = header(record, headers::ERROR).chars().take(80).collect();
                emit(format!(
                    "{:<8} {:<38} {:<24} {:>8} {:>5}  {error}",
                    id_of(record),
                    record.key_str().unwrap_or("-"),
                    header(record, headers::EVENT_TYPE),
                    header(record, headers::ATTEMPTS),
                    age(record),
                ))?;
            }
            Ok(())
        }
        DlqCommand::Show { service: name, id } => {
            let records = dead_letters(context, service(&name)?).await?;
            let record = records
                .iter()
                .find(|r| id_of(r) == id)
                .with_context(|| format!("no dead letter {id} at {name}"))?;
            let (writer, value) = match context.codec.decode_json(&record.payload).await {
                Ok((full_name, value)) => (Value::String(full_name), value),
                Err(error) => (
                    Value::Null,
                    json!({ "undecodable": error.to_string(), "bytes": hex(&record.payload) }),
                ),
            };
            let shown = json!({
                "id": id,
                "topic": record.topic,
                "key": record.key.as_deref().map(String::from_utf8_lossy),
                "writer_schema": writer,
                "event_type": writer.as_str().map(short_name),
                "headers": record.headers.to_text_map(),
                "value": value,
            });
            if context.json {
                emit(shown)
            } else {
                emit(serde_json::to_string_pretty(&shown)?)
            }
        }
        DlqCommand::Redrive(args) => redrive(context, args).await,
        DlqCommand::Skip(args) => skip(context, args).await,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn redrive(context: &Context, args: RedriveArgs) -> anyhow::Result<()> {
    if args.id.is_none() && args.order.is_none() && !args.all {
        bail!("say what to redrive: --id <partition:offset>, --order <order id> or --all");
    }
    let service = service(&args.service)?;
    let records = dead_letters(context, service).await?;
    let chosen: Vec<&RawRecord> = records
        .iter()
        .filter(|r| match (&args.id, &args.order) {
            (Some(id), _) => &id_of(r) == id,
            (None, Some(order)) => r.key_str() == Some(order.as_str()),
            (None, None) => true,
        })
        .collect();
    if chosen.is_empty() {
        bail!("no dead letter at {} matches", args.service);
    }
    republish(context, service, &chosen, args.dry_run, Verb::Redrive).await
}

async fn skip(context: &Context, args: SkipArgs) -> anyhow::Result<()> {
    let service = service(&args.service)?;
    let records = dead_letters(context, service).await?;
    let chosen: Vec<&RawRecord> = records.iter().filter(|r| id_of(r) == args.id).collect();
    if chosen.is_empty() {
        bail!("no dead letter {} at {}", args.id, args.service);
    }
    republish(context, service, &chosen, args.dry_run, Verb::Skip).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Redrive,
    Skip,
}

/// Sends `chosen` through the service's retry topic, with who/when/from-where headers.
async fn republish(
    context: &Context,
    service: Service,
    chosen: &[&RawRecord],
    dry_run: bool,
    verb: Verb,
) -> anyhow::Result<()> {
    let retry_topic = context.topics.retry(service);
    let who = std::env::var("USER").unwrap_or_else(|_| "sagactl".into());
    let producer: Option<FutureProducer> = if dry_run {
        None
    } else {
        Some(context.kafka.producer_config().create()?)
    };
    let mut redriven = Vec::new();
    for record in chosen.iter().copied() {
        let mut record_headers = record.headers.clone();
        // The dead letter's own outbox id means nothing on the retry topic, and a relay
        // recovering that topic must never mistake it for one of its rows.
        record_headers.remove(headers::OUTBOX_ID);
        record_headers.remove(headers::NOT_BEFORE);
        record_headers.insert(headers::REDRIVEN_AT, Utc::now().to_rfc3339());
        record_headers.insert(
            headers::REDRIVEN_FROM,
            format!("{}[{}]@{}", record.topic, record.partition, record.offset),
        );
        record_headers.insert(headers::REDRIVEN_BY, who.clone());
        if verb == Verb::Skip {
            record_headers.insert(headers::SKIPPED_BY, who.clone());
        }
        if let Some(producer) = &producer {
            let mut outgoing = FutureRecord::to(&retry_topic)
                .payload(&record.payload)
                .headers(record_headers.to_kafka());
            if let Some(key) = &record.key {
                outgoing = outgoing.key(key);
            }
            producer
                .send(outgoing, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)?;
        }
        redriven.push(json!({
            "id": id_of(record),
            "order_id": record.key_str(),
            "event_type": header(record, headers::EVENT_TYPE),
            "to": retry_topic,
        }));
    }
    if context.json {
        let key = match verb {
            Verb::Redrive => "redriven",
            Verb::Skip => "skipped",
        };
        return emit(json!({ "dry_run": dry_run, key: redriven }));
    }
    for entry in &redriven {
        emit(format!(
            "{} {} {} {} → {}",
            match (verb, dry_run) {
                (Verb::Redrive, true) => "would redrive",
                (Verb::Redrive, false) => "redrove",
                (Verb::Skip, true) => "would skip",
                (Verb::Skip, false) => "skipped",
            },
            entry["id"].as_str().unwrap_or(""),
            entry["order_id"].as_str().unwrap_or("-"),
            entry["event_type"].as_str().unwrap_or(""),
            retry_topic
        ))?;
    }
    Ok(())
}
