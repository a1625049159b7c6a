//! Rows the broker refuses for good. One row the broker will never take as it is (its topic
//! does not exist, the service may not write it, the record is too large) must not stop the
//! relay for every other row: it is moved aside into `outbox_refused` with the error, counted
//! (`saga_outbox_refused_total`, `saga_outbox_refused_rows`, alert `SagaOutboxRefused`), and
//! `sagactl outbox` lists it and sends it again once the cause is fixed.
//!
//! A topic that is merely not there yet (created a moment after the service started, or its
//! metadata not yet seen) is given [`super::RelaySettings::missing_topic_grace`] first: until
//! then the relay starts over and tries again, as after any failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::error::RDKafkaErrorCode;

use super::RelayError;

/// What a failure to publish one row says about that row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The broker will never take this record as it is.
    ForGood,
    /// Its topic is not there (yet).
    TopicMissing,
    /// Anything else: the broker or the network; start over and try again.
    Transient,
}

pub(super) fn verdict(error: &RelayError) -> Verdict {
    let code = match error {
        RelayError::NoPartitions(_) => return Verdict::TopicMissing,
        RelayError::Kafka(error) => error.rdkafka_error_code(),
        _ => None,
    };
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => Verdict::ForGood,
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition,
        ) => Verdict::TopicMissing,
        _ => Verdict::Transient,
    }
}

/// Since when each topic has been seen missing.
#[derive(Debug, Default)]
pub(super) struct MissingTopics(Mutex<HashMap<String, Instant>>);

impl MissingTopics {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `topic` has been missing, counting from now if this is the first time.
    pub fn missing_for(&self, topic: &str) -> std::time::Duration {
        self.map()
            .entry(topic.to_owned())
            .or_insert_with(Instant::now)
            .elapsed()
    }

    /// `topic` is there.
    pub fn found(&self, topic: &str) {
        self.map().remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[test]
    fn size_and_permission_are_for_good_a_missing_topic_waits_and_the_rest_is_transient() {
        let produce = |code| RelayError::Kafka(KafkaError::MessageProduction(code));
        assert_eq!(
            verdict(&produce(RDKafkaErrorCode::MessageSizeTooLarge)),
            Verdict::ForGood
        );
        assert_eq!(
            verdict(&produce(RDKafkaErrorCode::TopicAuthorizationFailed)),
            Verdict::ForGood
        );
        assert_eq!(
            verdict(&RelayError::Kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition
            ))),
            Verdict::TopicMissing
        );
        assert_eq!(
            verdict(&produce(RDKafkaErrorCode::MessageTimedOut)),
            Verdict::Transient
        );
        assert_eq!(
            verdict(&produce(RDKafkaErrorCode::AllBrokersDown)),
            Verdict::Transient
        );
    }
}
