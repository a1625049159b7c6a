//! Dead letters as an operator handles them: read back from `<service>.dlq`, chosen (one, an
//! order's, or all), and redriven or skipped through `<service>.retry`. One implementation for
//! every way a person reaches them (`sagactl dlq` and the console), so that a redrive from the
//! browser is the same act as one from the shell.
//!
//! A redrive re-publishes the dead letter through the service's retry topic only, never to the
//! shared event topic, so no other service sees the event again. It keeps the key and the
//! `event_id` (the inbox still dedupes) and adds who, when and from where. A skip goes the same
//! way with one more header, `saga-skipped-by`: the service gives the letter up for good without
//! applying it, and releases the messages of its order that waited behind it.

use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;
use thiserror::Error;

use crate::delivery::Delivery;
use crate::headers;
use crate::inspect::reader::PartitionReader;
use crate::kafka::KafkaSettings;
use crate::producer::AckingProducer;

#[derive(Debug, Error)]
pub enum DeadLetterError {
    #[error("reading {topics}")]
    Read {
        topics: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("re-publishing {letter} to {topic}")]
    Publish {
        letter: String,
        topic: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("the reader task ended before it answered")]
    Reader(#[source] tokio::task::JoinError),
}

/// One record of a dead-letter topic (or of a retry topic, where a redrive put it).
#[derive(Debug, Clone)]
pub struct DeadLetter(pub Delivery);

impl DeadLetter {
    /// `<partition>:<offset>` on its dead-letter topic: how a person names it.
    pub fn id(&self) -> String {
        format!("{}:{}", self.0.partition, self.0.offset)
    }

    /// The order its key names, as text (the key may be anything).
    pub fn order(&self) -> Option<&str> {
        self.0.key_str()
    }

    /// A header's value, empty where it is absent.
    pub fn header(&self, name: &str) -> &str {
        self.0.headers.get(name).unwrap_or("")
    }

    pub fn event_type(&self) -> &str {
        self.header(headers::EVENT_TYPE)
    }

    pub fn error(&self) -> &str {
        self.header(headers::ERROR)
    }

    pub fn attempts(&self) -> Option<i64> {
        self.header(headers::ATTEMPTS).parse().ok()
    }

    /// Where the message was first consumed: `topic[partition]@offset`.
    pub fn source(&self) -> String {
        format!(
            "{}[{}]@{}",
            self.header(headers::SOURCE_TOPIC),
            self.header(headers::SOURCE_PARTITION),
            self.header(headers::SOURCE_OFFSET)
        )
    }

    /// Where it is now: `topic[partition]@offset`, which a redrive names as its origin.
    pub fn position(&self) -> String {
        self.0.to_string()
    }

    /// When it last failed, or else when it was written.
    pub fn failed_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.header(headers::LAST_FAILURE))
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                self.0
                    .timestamp_millis
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
            })
    }

    /// The dead letter a redriven record came from, `topic[partition]@offset`, if it is one.
    pub fn redriven_from(&self) -> Option<&str> {
        self.0.headers.get(headers::REDRIVEN_FROM)
    }
}

/// Which dead letters an operator means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One, by `<partition>:<offset>`.
    One(String),
    /// Every one of an order.
    Order(String),
    All,
}

impl Selection {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        match self {
            Self::One(id) => &letter.id() == id,
            Self::Order(order) => letter.order() == Some(order.as_str()),
            Self::All => true,
        }
    }
}

/// What an operator does with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Handle it again.
    Redrive,
    /// Give it up for good, releasing what waited behind it.
    Skip,
}

/// One dead letter sent (or, on a dry run, that would be sent) to the retry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    pub id: String,
    pub order_id: Option<String>,
    pub event_type: String,
    pub to: String,
}

/// Every record of `topics`, oldest failure first. Reads all partitions side by side.
pub async fn read(
    kafka: &KafkaSettings,
    topics: Vec<String>,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let kafka = kafka.clone();
    let mut records = tokio::task::spawn_blocking(move || {
        let read = PartitionReader::new(&kafka).and_then(|reader| reader.read_topics(&topics));
        read.map_err(|source| DeadLetterError::Read {
            topics: topics.join(", "),
            source: Box::new(source),
        })
    })
    .await
    .map_err(DeadLetterError::Reader)??;
    records.sort_by_key(|r| (r.timestamp_millis, r.partition, r.offset));
    Ok(records.into_iter().map(DeadLetter).collect())
}

/// The records of `topics` keyed by `order`, reading only the partition the key maps to on each:
/// one order's dead letters without reading every letter.
pub async fn of_order(
    kafka: &KafkaSettings,
    topics: Vec<String>,
    order: String,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let kafka = kafka.clone();
    let records = tokio::task::spawn_blocking(move || {
        let read = PartitionReader::new(&kafka)
            .and_then(|reader| reader.records_with_key_on(&topics, &order));
        read.map_err(|source| DeadLetterError::Read {
            topics: topics.join(", "),
            source: Box::new(source),
        })
    })
    .await
    .map_err(DeadLetterError::Reader)??;
    Ok(records.into_iter().map(DeadLetter).collect())
}

/// Sends `chosen` through `retry_topic` with who/when/from-where headers; on a dry run, says
/// what it would send and sends nothing.
pub async fn republish(
    kafka: &KafkaSettings,
    retry_topic: &str,
    chosen: &[&DeadLetter],
    verb: Verb,
    who: &str,
    dry_run: bool,
) -> Result<Vec<Republished>, DeadLetterError> {
    let producer: Option<AckingProducer> = if dry_run {
        None
    } else {
        Some(
            AckingProducer::create(&kafka.producer_config()).map_err(|source| {
                DeadLetterError::Publish {
                    letter: "any".into(),
                    topic: retry_topic.into(),
                    source: Box::new(source),
                }
            })?,
        )
    };
    let mut sent = Vec::with_capacity(chosen.len());
    for letter in chosen.iter().copied() {
        let record = &letter.0;
        let mut outgoing_headers = record.headers.clone();
        // The dead letter's own outbox id means nothing on the retry topic, and a relay
        // recovering that topic must never mistake it for one of its rows.
        outgoing_headers.remove(headers::OUTBOX_ID);
        outgoing_headers.remove(headers::NOT_BEFORE);
        outgoing_headers.insert(headers::REDRIVEN_AT, Utc::now().to_rfc3339());
        outgoing_headers.insert(headers::REDRIVEN_FROM, letter.position());
        outgoing_headers.insert(headers::REDRIVEN_BY, who.to_owned());
        if verb == Verb::Skip {
            outgoing_headers.insert(headers::SKIPPED_BY, who.to_owned());
        }
        if let Some(producer) = &producer {
            let sent = match producer.send(
                retry_topic,
                None,
                record.key.as_deref(),
                &record.payload,
                outgoing_headers.to_kafka(),
            ) {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            sent.map_err(|source| DeadLetterError::Publish {
                letter: letter.position(),
                topic: retry_topic.into(),
                source: Box::new(source),
            })?;
        }
        sent.push(Republished {
            id: letter.id(),
            order_id: letter.order().map(str::to_owned),
            event_type: letter.event_type().to_owned(),
            to: retry_topic.to_owned(),
        });
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    fn letter(partition: i32, offset: i64, key: &str) -> DeadLetter {
        DeadLetter(Delivery {
            topic: "payment.dlq".into(),
            partition,
            offset,
            timestamp_millis: Some(1_000),
            key: Some(key.as_bytes().to_vec()),
            headers: Headers::new(),
            payload: Vec::new(),
        })
    }

    #[test]
    fn a_selection_names_one_letter_an_orders_letters_or_all() {
        let letters = [letter(0, 4, "a"), letter(1, 4, "a"), letter(1, 5, "b")];
        let chosen = |selection: Selection| -> Vec<String> {
            letters
                .iter()
                .filter(|l| selection.matches(l))
                .map(DeadLetter::id)
                .collect()
        };
        assert_eq!(chosen(Selection::One("1:4".into())), ["1:4"]);
        assert_eq!(chosen(Selection::Order("a".into())), ["0:4", "1:4"]);
        assert_eq!(chosen(Selection::All).len(), 3);
        assert!(chosen(Selection::One("4:1".into())).is_empty());
    }

    #[test]
    fn a_letter_without_a_failure_time_is_dated_by_its_record() {
        let dated = letter(0, 1, "a");
        assert_eq!(dated.failed_at().map(|t| t.timestamp_millis()), Some(1_000));
        assert_eq!(dated.position(), "payment.dlq[0]@1");
    }
}
