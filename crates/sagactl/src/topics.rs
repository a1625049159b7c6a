//! `sagactl topics`: the saga's topics, their size, and how far behind each service is.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use saga_events::Service;
use saga_messaging::reader::{PartitionReader, committed_offsets};
use serde_json::{Value, json};

use crate::Context;
use crate::output::emit;

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let kafka = context.kafka.clone();
    let topics = context.topics.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Value>> {
        let reader = PartitionReader::new(&kafka)?;
        let metadata = reader
            .consumer()
            .fetch_metadata(None, Duration::from_secs(10))?;
        let groups: Vec<String> = Service::ALL
            .iter()
            .map(|s| format!("{}{}-service", topics.prefix(), s.name()))
            .collect();
        let mut report = Vec::new();
        for topic in metadata.topics() {
            let name = topic.name();
            if name.starts_with("__") || !name.starts_with(topics.prefix()) {
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
        Ok(report)
    })
    .await??;

    if context.json {
        emit(Value::Array(report))?;
        return Ok(());
    }
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
