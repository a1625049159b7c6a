//! `sagactl schemas asyncapi`: the event catalogue as an AsyncAPI 3 document, and a Markdown page
//! rendered from that document, both generated from the schema history, `deploy/topics.conf`
//! and the choreography's wiring (`Service::consumes`, `Service::reacts_to`). Never edited by
//! hand: `--check` (run by `make test`) fails when the committed files are stale.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use saga_events::history::{EventHistory, SchemaHistory};
use saga_events::{EventType, Service, TopicNames};
use serde_json::{Value, json};

/// Where the generated files live, and what they are generated from.
#[derive(Debug, Args)]
pub struct AsyncApiArgs {
    /// The schemas directory.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// The topic list.
    #[arg(long, default_value = "deploy/topics.conf")]
    pub topics: PathBuf,
    /// The AsyncAPI document to write.
    #[arg(long, default_value = "docs/asyncapi.json")]
    pub out: PathBuf,
    /// The Markdown page to write.
    #[arg(long, default_value = "docs/events.md")]
    pub markdown: PathBuf,
    /// Write nothing; fail if either file differs from what would be generated.
    #[arg(long)]
    pub check: bool,
}

/// One line of `deploy/topics.conf`.
#[derive(Debug, Clone)]
pub struct Topic {
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
}

pub fn read_topics(path: &Path) -> anyhow::Result<BTreeMap<String, Topic>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut topics = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(partitions)) = (parts.next(), parts.next()) else {
            bail!(
                "{}:{}: expected `name partitions [configs]`",
                path.display(),
                index + 1
            );
        };
        let partitions = partitions.parse().with_context(|| {
            format!(
                "{}:{}: partitions must be a number",
                path.display(),
                index + 1
            )
        })?;
        let configs = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        topics.insert(
            name.to_owned(),
            Topic {
                partitions,
                configs,
            },
        );
    }
    Ok(topics)
}

fn channel_id(service: Service) -> String {
    format!("{}Events", service.name())
}

fn title(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn message(
    event_type: EventType,
    history: &EventHistory,
    topics: &TopicNames,
) -> anyhow::Result<Value> {
    let latest = history
        .latest()
        .with_context(|| format!("{}: no versions", history.event))?;
    let schema: Value = serde_json::from_str(&latest.json)?;
    let receivers: Vec<&str> = Service::ALL
        .iter()
        .filter(|s| s.consumes().contains(&event_type.publisher()) && s.reacts_to(event_type))
        .map(|s| s.name())
        .collect();
    let summary = schema
        .get("doc")
        .and_then(Value::as_str)
        .unwrap_or("(no doc in its schema)")
        .to_owned();
    Ok(json!({
        "name": event_type.name(),
        "title": event_type.name(),
        "summary": summary,
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {
                "traceparent": {"type": "string", "description": "W3C trace context of the cause: one order is one trace."},
                "event-type": {"type": "string", "const": event_type.name()},
                "event-id": {"type": "string", "format": "uuid", "description": "The idempotency key of every consumer."},
                "outbox-id": {"type": "string", "description": "The row of the producer's outbox this record was published from."}
            }
        },
        "payload": {
            "schemaFormat": "application/vnd.apache.avro;version=1.9.0",
            "schema": schema
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "format": "uuid", "description": "The order id: one order's events stay in order."},
                "schemaIdLocation": "payload",
                "schemaIdPayloadEncoding": "confluent",
                "schemaLookupStrategy": "TopicRecordNameStrategy",
                "bindingVersion": "0.5.0"
            }
        },
        "x-saga": {
            "publisher": event_type.publisher().name(),
            "receivers": receivers,
            "subject": format!("{}-{}", topics.events(event_type.publisher()), event_type.full_name()),
            "version": latest.version,
            "versions": history.versions.iter().map(|v| json!({
                "version": v.version,
                "file": format!("schemas/{}", v.file),
                "record": v.full_name,
            })).collect::<Vec<_>>(),
        }
    }))
}

/// The AsyncAPI 3 document of the saga's events.
pub fn document(
    history: &SchemaHistory,
    topics_conf: &BTreeMap<String, Topic>,
) -> anyhow::Result<Value> {
    let names = TopicNames::default();
    let mut problems = Vec::new();
    for event in &history.events {
        let known = EventType::ALL
            .iter()
            .any(|t| format!("{}/{}", t.publisher().name(), t.name()) == event.event);
        if !known {
            problems.push(format!(
                "schemas/{} has no event type in crates/saga-events: nothing publishes it",
                event.event
            ));
        }
    }
    let mut messages = serde_json::Map::new();
    for &event_type in EventType::ALL {
        let dir = format!("{}/{}", event_type.publisher().name(), event_type.name());
        match history.event(&dir) {
            Some(found) => {
                messages.insert(
                    event_type.name().to_owned(),
                    message(event_type, found, &names)?,
                );
            }
            None => problems.push(format!(
                "catalogue entry {} ({}) has no schema: schemas/{dir}/v1.avsc is missing",
                event_type.name(),
                names.events(event_type.publisher())
            )),
        }
    }
    let mut channels = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    for &service in &Service::ALL {
        let address = names.events(service);
        let Some(topic) = topics_conf.get(&address) else {
            problems.push(format!("{address} is not in deploy/topics.conf"));
            continue;
        };
        let events: Vec<EventType> = EventType::ALL
            .iter()
            .copied()
            .filter(|t| t.publisher() == service)
            .collect();
        let channel_messages: serde_json::Map<String, Value> = events
            .iter()
            .map(|t| {
                (
                    t.name().to_owned(),
                    json!({"$ref": format!("#/components/messages/{}", t.name())}),
                )
            })
            .collect();
        let configs: serde_json::Map<String, Value> = topic
            .configs
            .iter()
            .map(|(k, v)| {
                let value = match k.as_str() {
                    "cleanup.policy" => json!(v.split(',').collect::<Vec<_>>()),
                    _ => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
                };
                (k.clone(), value)
            })
            .collect();
        let id = channel_id(service);
        channels.insert(
            id.clone(),
            json!({
                "address": address,
                "title": format!("{} events", title(service.name())),
                "description": format!("Facts the {} service publishes, keyed by order id.", service.name()),
                "messages": channel_messages,
                "bindings": {"kafka": {
                    "topic": address,
                    "partitions": topic.partitions,
                    "topicConfiguration": configs,
                    "bindingVersion": "0.5.0"
                }}
            }),
        );
        let refs = |list: &[EventType]| -> Vec<Value> {
            list.iter()
                .map(|t| json!({"$ref": format!("#/channels/{id}/messages/{}", t.name())}))
                .collect()
        };
        operations.insert(
            format!("{}Publishes", service.name()),
            json!({
                "action": "send",
                "title": format!("{} publishes", service.name()),
                "summary": format!("The {} service publishes these through its transactional outbox.", service.name()),
                "channel": {"$ref": format!("#/channels/{id}")},
                "messages": refs(&events),
            }),
        );
        for &receiver in &Service::ALL {
            if !receiver.consumes().contains(&service) {
                continue;
            }
            let handled: Vec<EventType> = events
                .iter()
                .copied()
                .filter(|t| receiver.reacts_to(*t))
                .collect();
            if handled.is_empty() {
                continue;
            }
            operations.insert(
                format!("{}Receives{}", receiver.name(), title(&id)),
                json!({
                    "action": "receive",
                    "title": format!("{} reacts to {}", receiver.name(), address),
                    "summary": format!("The {} service's consumer group `{}-service`: each record once, in order per order.", receiver.name(), receiver.name()),
                    "channel": {"$ref": format!("#/channels/{id}")},
                    "messages": refs(&handled),
                }),
            );
        }
    }
    if !problems.is_empty() {
        bail!(
            "the event catalogue cannot be generated:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Order saga events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The facts four services (Order, Payment, Inventory, Shipping) publish and react to in a choreography saga. Avro in the Confluent wire format, schemas in a registry (FULL_TRANSITIVE). Generated by `sagactl schemas asyncapi` from schemas/, deploy/topics.conf and the wiring in crates/saga-events: do not edit."
        },
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker `make up` starts; the schema registry is at http://127.0.0.1:8081/apis/ccompat/v7."
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages}
    }))
}

fn avro_type(ty: &Value) -> String {
    match ty {
        Value::String(name) => name.rsplit('.').next().unwrap_or(name).to_owned(),
        Value::Array(branches) => branches
            .iter()
            .map(avro_type)
            .collect::<Vec<_>>()
            .join(" | "),
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("record" | "enum" | "fixed") => object
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            Some("array") => format!("array of {}", avro_type(&object["items"])),
            Some(primitive) => object
                .get("logicalType")
                .and_then(Value::as_str)
                .map_or_else(|| primitive.to_owned(), |l| format!("{primitive} ({l})")),
            None => "?".to_owned(),
        },
        _ => "?".to_owned(),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown page, rendered from the AsyncAPI document alone.
pub fn markdown(document: &Value) -> String {
    let mut page = String::from(
        "# The saga's events\n\n\
         Generated by `sagactl schemas asyncapi` from [`asyncapi.json`](asyncapi.json) (AsyncAPI 3), \
         which is generated from `schemas/`, `deploy/topics.conf` and the wiring in \
         `crates/saga-events`. Do not edit: `make test` fails when it is stale.\n\n",
    );
    page.push_str(
        "| topic | partitions | events | published by | read by |\n|---|---|---|---|---|\n",
    );
    let channels = document["channels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let operations = document["operations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (id, channel) in &channels {
        let events: Vec<String> = channel["messages"]
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|k| format!("[`{k}`](#{})", k.to_lowercase()))
                    .collect()
            })
            .unwrap_or_default();
        let on_channel = |action: &str| -> Vec<String> {
            operations
                .values()
                .filter(|op| {
                    op["action"] == action
                        && op["channel"]["$ref"] == format!("#/channels/{id}").as_str()
                })
                .filter_map(|op| op["title"].as_str())
                .map(|t| t.split(' ').next().unwrap_or(t).to_owned())
                .collect()
        };
        page.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            channel["address"].as_str().unwrap_or(""),
            channel["bindings"]["kafka"]["partitions"],
            events.join(", "),
            on_channel("send").join(", "),
            on_channel("receive").join(", "),
        ));
    }
    page.push_str(
        "\nEvery record is keyed by its order id and carries `traceparent`, `event-type`, \
         `event-id` and `outbox-id` headers; its value is Avro in the Confluent wire format \
         (magic byte, 4-byte schema id, body), subject `<topic>-<record full name>`.\n",
    );
    let messages = document["components"]["messages"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, message) in &messages {
        let saga = &message["x-saga"];
        let schema = &message["payload"]["schema"];
        page.push_str(&format!("\n## {name}\n\n"));
        if let Some(summary) = message["summary"].as_str() {
            page.push_str(&format!("{summary}\n\n"));
        }
        let current_record = schema.get("namespace").and_then(Value::as_str).map_or_else(
            || schema["name"].as_str().unwrap_or("").to_owned(),
            |ns| format!("{ns}.{}", schema["name"].as_str().unwrap_or("")),
        );
        let receivers: Vec<&str> = saga["receivers"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        page.push_str(&format!(
            "- published by **{}** on `{}`, read by {}\n- subject `{}`, record `{}`\n- versions: {}\n\n",
            saga["publisher"].as_str().unwrap_or(""),
            saga["subject"].as_str().unwrap_or("").split("-saga.").next().unwrap_or(""),
            receivers.iter().map(|r| format!("**{r}**")).collect::<Vec<_>>().join(", "),
            saga["subject"].as_str().unwrap_or(""),
            current_record,
            saga["versions"]
                .as_array()
                .map(|versions| versions
                    .iter()
                    .map(|v| {
                        let link = format!(
                            "[v{}](../{})",
                            v["version"],
                            v["file"].as_str().unwrap_or("")
                        );
                        let record = v["record"].as_str().unwrap_or("");
                        if record == current_record {
                            link
                        } else {
                            format!("{link} (`{record}`, upcast on reading)")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
        ));
        page.push_str(&field_table(schema));
    }
    page.push_str("\n## Shared types\n\nDefined once in `schemas/common/`, inlined where an event first uses them.\n");
    let mut shared = BTreeMap::new();
    for message in messages.values() {
        named_types(&message["payload"]["schema"], true, &mut shared);
    }
    for (name, definition) in &shared {
        page.push_str(&format!("\n### {name}\n\n"));
        if let Some(doc) = definition["doc"].as_str() {
            page.push_str(&format!("{doc}\n\n"));
        }
        if let Some(symbols) = definition["symbols"].as_array() {
            let symbols: Vec<String> = symbols
                .iter()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect();
            page.push_str(&format!("Symbols: {}", symbols.join(", ")));
            if let Some(default) = definition["default"].as_str() {
                page.push_str(&format!(
                    " (default `{default}`: what a reader gets for a symbol it does not know)"
                ));
            }
            page.push('\n');
            continue;
        }
        page.push_str(&field_table(definition));
    }
    page
}

/// A record's fields as a Markdown table: name, type, default, meaning.
fn field_table(record: &Value) -> String {
    let mut table = String::from("| field | type | default | meaning |\n|---|---|---|---|\n");
    for field in record["fields"].as_array().into_iter().flatten() {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            field["name"].as_str().unwrap_or(""),
            cell(&avro_type(&field["type"])),
            field
                .get("default")
                .map_or(String::new(), |d| format!("`{d}`")),
            cell(field["doc"].as_str().unwrap_or("")),
        ));
    }
    table
}

/// Every named type inside `schema` (but not the top-level record), by short name.
fn named_types(schema: &Value, top: bool, found: &mut BTreeMap<String, Value>) {
    match schema {
        Value::Array(branches) => branches.iter().for_each(|b| named_types(b, false, found)),
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) if kind == "record" || kind == "enum" => {
                if !top && let Some(name) = object.get("name").and_then(Value::as_str) {
                    found
                        .entry(name.to_owned())
                        .or_insert_with(|| schema.clone());
                }
                for field in object
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    named_types(&field["type"], false, found);
                }
            }
            Some(Value::String(kind)) if kind == "array" => {
                named_types(&object["items"], false, found);
            }
            Some(other @ (Value::Object(_) | Value::Array(_))) => named_types(other, false, found),
            _ => {}
        },
        _ => {}
    }
}

/// Generates both files, or with `--check` compares them; `Ok(false)` when stale.
pub fn run(args: &AsyncApiArgs) -> anyhow::Result<bool> {
    let history = crate::schemas::load(&args.dir)?;
    let topics = read_topics(&args.topics)?;
    let document = document(&history, &topics)?;
    let json = format!("{}\n", serde_json::to_string_pretty(&document)?);
    let page = markdown(&document);
    let mut fresh = true;
    for (path, content) in [(&args.out, &json), (&args.markdown, &page)] {
        if args.check {
            let committed = std::fs::read_to_string(path).unwrap_or_default();
            if &committed != content {
                println!(
                    "{} is stale: run `sagactl schemas asyncapi` and commit the result",
                    path.display()
                );
                fresh = false;
            }
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if args.check && fresh {
        println!(
            "{} and {} are up to date",
            args.out.display(),
            args.markdown.display()
        );
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }

    fn scratch(test: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "saga-catalogue-{test}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    #[test]
    fn every_event_is_a_message_sent_by_its_publisher_and_received_by_who_reacts()
    -> anyhow::Result<()> {
        let history =
            SchemaHistory::load(&root().join("schemas")).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let document = document(&history, &read_topics(&root().join("deploy/topics.conf"))?)?;
        let placed = &document["components"]["messages"]["OrderPlaced"];
        assert_eq!(placed["x-saga"]["publisher"], "order");
        assert_eq!(placed["x-saga"]["receivers"], json!(["order", "payment"]));
        assert_eq!(
            document["operations"]["paymentReceivesOrderEvents"]["messages"],
            json!([
                {"$ref": "#/channels/orderEvents/messages/OrderPlaced"},
                {"$ref": "#/channels/orderEvents/messages/OrderCancelled"}
            ])
        );
        assert_eq!(
            document["channels"]["orderEvents"]["bindings"]["kafka"]["partitions"],
            6
        );
        Ok(())
    }

    #[test]
    fn an_event_without_a_schema_is_named() -> anyhow::Result<()> {
        let dir = scratch("missing");
        copy_dir(&root().join("schemas"), &dir)?;
        std::fs::remove_dir_all(dir.join("order/OrderConfirmed"))?;
        let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let error = document(&history, &read_topics(&root().join("deploy/topics.conf"))?)
            .expect_err("a catalogue entry without a schema");
        assert!(
            error.to_string().contains(
                "catalogue entry OrderConfirmed (order.events) has no schema: schemas/order/OrderConfirmed/v1.avsc is missing"
            ),
            "{error}"
        );
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_stale_catalogue_is_reported_and_not_rewritten() -> anyhow::Result<()> {
        let out = scratch("stale");
        std::fs::create_dir_all(&out)?;
        let args = AsyncApiArgs {
            dir: root().join("schemas"),
            topics: root().join("deploy/topics.conf"),
            out: out.join("asyncapi.json"),
            markdown: out.join("events.md"),
            check: false,
        };
        assert!(run(&args)?, "generating");
        let check = AsyncApiArgs {
            check: true,
            ..args
        };
        assert!(run(&check)?, "fresh right after generating");
        std::fs::write(&check.markdown, "# edited by hand\n")?;
        assert!(!run(&check)?, "an edited page is stale");
        assert_eq!(
            std::fs::read_to_string(&check.markdown)?,
            "# edited by hand\n"
        );
        std::fs::remove_dir_all(out)?;
        Ok(())
    }
}
