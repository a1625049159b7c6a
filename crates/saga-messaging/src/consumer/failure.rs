//! Where a failed record goes, for the event lanes and the retry lane alike: its next retry on
//! `<service>.retry` (not before an exponentially growing delay), or, once attempts run out or
//! no attempt can help, the dead-letter topic `<service>.dlq` with its raw bytes and the reason
//! in its headers. Both are outbox records, written in the transaction that parks the record.

use saga_events::EventType;
use tracing::{error, warn};
use uuid::Uuid;

use super::handler::{Handler, Outcome};
use crate::delivery::Delivery;
use crate::error::{FailureKind, HandlerError};
use crate::headers;
use crate::outbox::OutboxRecord;
use crate::parking::Failure;

/// One failed attempt at a record: what its retry or dead-letter record says.
pub(super) struct FailedAttempt<'a> {
    pub parked_id: Option<i64>,
    pub source: &'a Delivery,
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub kind: FailureKind,
    pub error: &'a str,
    pub first: chrono::DateTime<chrono::Utc>,
    pub last: chrono::DateTime<chrono::Utc>,
    /// No retry can help (the record is not a usable event): dead-letter it now.
    pub hopeless: bool,
}

impl<'a> FailedAttempt<'a> {
    /// The first attempt, failed just now.
    pub fn first(source: &'a Delivery, kind: FailureKind, error: &'a str) -> Self {
        let now = chrono::Utc::now();
        Self {
            parked_id: None,
            source,
            attempts: 1,
            kind,
            error,
            first: now,
            last: now,
            hopeless: false,
        }
    }

    pub fn parked(mut self, id: i64) -> Self {
        self.parked_id = Some(id);
        self
    }

    pub fn hopeless(mut self) -> Self {
        self.hopeless = true;
        self
    }
}

impl Handler {
    /// Whether a message that failed `attempts` times this way goes to the dead-letter topic.
    pub(super) fn gives_up(&self, kind: FailureKind, attempts: i32) -> bool {
        kind == FailureKind::Undecodable || attempts >= self.settings.max_attempts
    }

    /// The retry or dead-letter record of a failed attempt, and which of the two it is.
    pub(super) fn failure_record(&self, failed: FailedAttempt<'_>) -> (OutboxRecord, Outcome) {
        let FailedAttempt {
            parked_id,
            source,
            attempts,
            kind,
            error,
            first,
            last,
            hopeless,
        } = failed;
        let dead = hopeless || self.gives_up(kind, attempts);
        let delay = self.settings.retry_delay
            * 2u32.saturating_pow(u32::try_from(attempts - 1).unwrap_or(0));
        let (topic, not_before) = if dead {
            (self.topics.dlq(self.service), None)
        } else {
            let due = chrono::Utc::now().timestamp_millis()
                + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (self.topics.retry(self.service), Some(due))
        };
        let headers = Failure {
            service: self.service.name(),
            source,
            parked_id,
            attempts,
            kind,
            error,
            first,
            last,
            not_before_millis: not_before,
        }
        .headers();
        let labels = [
            ("service", self.service.name().to_owned()),
            ("topic", source.topic.clone()),
            ("error_kind", kind.as_str().to_owned()),
        ];
        let outcome = if dead {
            metrics::counter!("saga_dead_letters_total", &labels).increment(1);
            error!(record = %source, attempts, error, "dead-lettered");
            Outcome::DeadLettered
        } else {
            metrics::counter!("saga_retries_scheduled_total", &labels).increment(1);
            warn!(record = %source, attempts, error, retry_in = ?delay, "handling failed; scheduled a retry");
            Outcome::RetryScheduled
        };
        let record = OutboxRecord {
            id: Uuid::new_v4(),
            event_type: source
                .headers
                .get(headers::EVENT_TYPE)
                .filter(|t| EventType::ALL.iter().any(|e| e.name() == *t))
                .unwrap_or("unknown")
                .to_owned(),
            topic,
            key: source.key.clone(),
            payload: source.payload.clone(),
            headers,
        };
        (record, outcome)
    }

    /// A record whose bookkeeping cannot be written, straight to the dead-letter topic.
    pub(super) async fn dead_letter_raw(
        &self,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let (record, _) = self.failure_record(
            FailedAttempt::first(delivery, FailureKind::Permanent, reason).hopeless(),
        );
        let mut tx = self.pool.begin().await?;
        let written = self.outbox.write(&mut tx, &[record], &[]).await?;
        self.outbox.commit(tx, written).await?;
        Ok(())
    }
}
