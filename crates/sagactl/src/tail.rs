//! `sagactl tail`: follow a topic, decoded.

use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use saga_messaging::Delivery as RawRecord;
use saga_messaging::inspect::reader::PartitionReader;
use tokio::sync::mpsc;

use crate::Context;
use crate::output::{emit, record_json, record_line};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read, e.g. `order.events` (the topic prefix is not added).
    pub topic: String,
    /// Start at the oldest record instead of only showing new ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// Only records of this order (key), reading only the partition it maps to.
    #[arg(long = "order")]
    pub order_id: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Stop when no record arrived for this many seconds (default: follow until Ctrl-C).
    #[arg(long)]
    pub idle_exit: Option<u64>,
}

pub async fn run(context: &Context, args: TailArgs) -> anyhow::Result<()> {
    let (sender, mut receiver) = mpsc::channel::<RawRecord>(1024);
    let reader = PartitionReader::new(&context.kafka)?;
    let follow = std::thread::spawn({
        let topic = args.topic.clone();
        let order_id = args.order_id.clone();
        let from_beginning = args.from_beginning;
        move || {
            follow(
                reader.consumer(),
                &reader,
                &topic,
                order_id.as_deref(),
                from_beginning,
                sender,
            )
        }
    });
    let idle = args.idle_exit.map(Duration::from_secs);
    let mut shown = 0usize;
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, receiver.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tokio::select! {
                next = receiver.recv() => next,
                _ = tokio::signal::ctrl_c() => break,
            },
        };
        let Some(record) = next else { break };
        let json = record_json(&context.codec, &record).await;
        if context.json {
            emit(json)?;
        } else {
            emit(record_line(&json))?;
        }
        shown += 1;
        if args.limit.is_some_and(|limit| shown >= limit) {
            break;
        }
    }
    drop(receiver);
    if follow.is_finished() {
        follow
            .join()
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    }
    Ok(())
}

/// Reads the topic (or the order's partition) in a blocking thread until the receiver is gone.
fn follow(
    consumer: &BaseConsumer,
    reader: &PartitionReader,
    topic: &str,
    order_id: Option<&str>,
    from_beginning: bool,
    sender: mpsc::Sender<RawRecord>,
) -> anyhow::Result<()> {
    let partitions = reader.partition_count(topic)?;
    anyhow::ensure!(partitions > 0, "topic {topic} does not exist");
    let start = if from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    match order_id {
        Some(key) => {
            let partition = saga_messaging::kafka::partition_for(key.as_bytes(), partitions);
            assignment.add_partition_offset(topic, partition, start)?;
        }
        None => {
            for partition in 0..partitions {
                assignment.add_partition_offset(topic, partition, start)?;
            }
        }
    }
    consumer.assign(&assignment)?;
    let mut last_check = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let record = RawRecord::from_message(&message);
                if order_id.is_some_and(|order| record.key.as_deref() != Some(order.as_bytes())) {
                    continue;
                }
                if sender.blocking_send(record).is_err() {
                    return Ok(());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if last_check.elapsed() > Duration::from_millis(500) {
                    if sender.is_closed() {
                        return Ok(());
                    }
                    last_check = Instant::now();
                }
            }
            Some(Err(error)) => return Err(error.into()),
        }
    }
}
