//! `sagactl topics`: the saga's topics, their size, and how far behind each service is; then each
//! service's consumer group: its members (one per replica) and the partitions each owns, and any
//! partition of what the service reads that no member owns.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use saga_events::Service;
use saga_messaging::inspect::groups;
use saga_messaging::inspect::reader::{PartitionReader, committed_offsets};
use serde_json::{Value, json};

use crate::Context;
use crate::output::emit;

#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    /// Only the consumer groups: members and the partitions each owns (what `make status` shows).
    #[arg(long)]
    pub groups: bool,
}

pub async fn run(context: &Context, args: TopicsArgs) -> anyhow::Result<()> {
    let kafka = context.kafka.clone();
    let topics = context.topics.clone();
    let report =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
            let reader = PartitionReader::new(&kafka)?;
            let metadata = reader
                .consumer()
                .fetch_metadata(None, Duration::from_secs(10))?;
            let groups: Vec<String> = Service::ALL
                .iter()
                .map(|s| format!("{}{}-service", topics.prefix(), s.name()))
                .collect();
            let saga_topics = topics.all();
            let mut report = Vec::new();
            for topic in metadata.topics() {
                let name = topic.name();
                // The saga's own topics: not the broker's, not other sagas' behind other prefixes.
                if !saga_topics.iter().any(|t| t == name) {
                    continue;
                }
                let mut end_offsets = Vec::new();
                for partition in topic.partitions() {
                    let (_, high) = reader.consumer().fetch_watermarks(
                        name,
                        partition.id(),
                        Duration::from_secs(10),
                    )?;
                    end_offsets.push((partition.id(), high));
                }
                let mut lag = serde_json::Map::new();
                for group in &groups {
                    if let Some(group_lag) = group_lag(&kafka, group, name, &end_offsets)? {
                        lag.insert(group.clone(), json!(group_lag));
                    }
                }
                report.push(json!({
                    "topic": name,
                    "partitions": end_offsets.len(),
                    "end_offsets": end_offsets.iter().map(|(_, o)| o).sum::<i64>(),
                    "lag": lag,
                }));
            }
            report.sort_by(|a, b| a["topic"].as_str().cmp(&b["topic"].as_str()));
            let partitions_of = |topic: &str| {
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(0, |t| t.partitions().len() as i32)
            };
            let mut groups_report = Vec::new();
            for service in Service::ALL {
                let group = format!("{}{}-service", topics.prefix(), service.name());
                let mut read: Vec<String> = service
                    .consumes()
                    .iter()
                    .map(|&source| topics.events(source))
                    .collect();
                read.push(topics.retry(service));
                groups_report.push(group_report(&kafka, &group, &read, partitions_of)?);
            }
            Ok((report, groups_report))
        })
        .await??;
    let (report, groups_report) = report;

    if context.json {
        emit(json!({ "topics": report, "groups": groups_report }))?;
        return Ok(());
    }
    if !args.groups {
        print_topics(&report)?;
        emit(String::new())?;
    }
    print_groups(&groups_report)
}

fn print_topics(report: &[Value]) -> anyhow::Result<()> {
    emit(format!(
        "{:<28} {:>10} {:>12}  CONSUMER GROUP LAG",
        "TOPIC", "PARTITIONS", "END OFFSETS"
    ))?;
    for row in report {
        let lag = row["lag"]
            .as_object()
            .map(|groups| {
                groups
                    .iter()
                    .map(|(group, lag)| format!("{group}={lag}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        emit(format!(
            "{:<28} {:>10} {:>12}  {}",
            row["topic"].as_str().unwrap_or(""),
            row["partitions"].as_u64().unwrap_or(0),
            row["end_offsets"].as_i64().unwrap_or(0),
            if lag.is_empty() { "-".to_owned() } else { lag }
        ))?;
    }
    Ok(())
}

fn print_groups(groups_report: &[Value]) -> anyhow::Result<()> {
    emit(format!(
        "{:<22} {:<20} {:<44} OWNS",
        "GROUP", "STATE", "MEMBER"
    ))?;
    for group in groups_report {
        let name = group["group"].as_str().unwrap_or("");
        let state = group["state"].as_str().unwrap_or("");
        let members = group["members"].as_array().cloned().unwrap_or_default();
        if members.is_empty() {
            emit(format!("{name:<22} {state:<20} -"))?;
        }
        for member in members {
            let owns = member["owns"]
                .as_object()
                .map(|topics| {
                    topics
                        .iter()
                        .map(|(topic, partitions)| format!("{topic}{partitions}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            emit(format!(
                "{name:<22} {state:<20} {:<44} {}",
                member["member"].as_str().unwrap_or(""),
                if owns.is_empty() { "-" } else { owns.as_str() }
            ))?;
        }
        if let Some(unowned) = group["unowned"].as_object()
            && !unowned.is_empty()
        {
            let list: Vec<String> = unowned
                .iter()
                .map(|(topic, partitions)| format!("{topic}{partitions}"))
                .collect();
            emit(format!(
                "{name:<22} {state:<20} {:<44} {}",
                "UNOWNED",
                list.join(" ")
            ))?;
        }
    }
    Ok(())
}

/// A group's members, what each owns of the topics it reads, and what no member owns.
fn group_report(
    kafka: &saga_messaging::KafkaSettings,
    group: &str,
    read: &[String],
    partitions_of: impl Fn(&str) -> i32,
) -> anyhow::Result<Value> {
    let found = groups::members(kafka, group)?;
    let mut unowned = serde_json::Map::new();
    for topic in read {
        let owned: Vec<i32> = found
            .members
            .iter()
            .flat_map(|m| m.partitions_of(topic))
            .collect();
        let missing: Vec<i32> = (0..partitions_of(topic))
            .filter(|p| !owned.contains(p))
            .collect();
        if !missing.is_empty() {
            unowned.insert(topic.clone(), json!(missing));
        }
    }
    let members: Vec<Value> = found
        .members
        .iter()
        .map(|m| {
            let owns: serde_json::Map<String, Value> = m
                .assignment
                .iter()
                .map(|(topic, partitions)| (topic.clone(), json!(partitions)))
                .collect();
            json!({ "member": m.member_id, "client_id": m.client_id, "host": m.host, "owns": owns })
        })
        .collect();
    Ok(json!({ "group": group, "state": found.state, "members": members, "unowned": unowned }))
}

/// Records of `topic` the group has not committed yet, or None if it never consumed the topic.
fn group_lag(
    kafka: &saga_messaging::KafkaSettings,
    group: &str,
    topic: &str,
    end_offsets: &[(i32, i64)],
) -> anyhow::Result<Option<i64>> {
    let partitions: Vec<i32> = end_offsets.iter().map(|(p, _)| *p).collect();
    let committed = committed_offsets(kafka, group, topic, &partitions)?;
    let mut any = false;
    let mut lag = 0;
    for ((_, end), (_, offset)) in end_offsets.iter().zip(committed) {
        match offset {
            Some(offset) => {
                any = true;
                lag += (end - offset).max(0);
            }
            None => lag += end,
        }
    }
    Ok(any.then_some(lag))
}
