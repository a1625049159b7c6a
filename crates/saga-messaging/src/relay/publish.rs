//! Publishing rows: each row to the partition Kafka's Java clients would choose for its key,
//! with its row id in the `outbox-id` header, through the idempotent producer; a batch's rows are
//! deleted once the broker acknowledged them, and a row the broker refuses for good is moved
//! aside. The relay's lifecycle (election, wake-ups, shutdown) is in [`super`].

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sqlx::PgConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::error;

use std::time::Duration;

use super::{OutboxRelay, RelayError, SHUTDOWN_DRAIN};
use crate::headers::{self, Headers};
use crate::kafka::partition_for;
use crate::outbox::{self, Unpublished};
use crate::producer::{Ack, AckingProducer};
use crate::trace;

impl OutboxRelay {
    pub(super) async fn partition_count(&self, topic: &str) -> Result<i32, RelayError> {
        if let Some(count) = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
        {
            return Ok(*count);
        }
        let producer = self.producer();
        let name = topic.to_owned();
        let count = tokio::task::spawn_blocking(move || -> Result<i32, RelayError> {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(10))?;
            let Some(topic) = metadata.topics().first() else {
                return Err(RelayError::NoPartitions(name));
            };
            if let Some(error) = topic.error() {
                return Err(KafkaError::MetadataFetch(error.into()).into());
            }
            Ok(i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX))
        })
        .await??;
        if count == 0 {
            return Err(RelayError::Kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            )));
        }
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), count);
        self.missing.found(topic);
        Ok(count)
    }

    /// The partition a row's record goes to.
    pub(super) async fn partition_of(
        &self,
        topic: &str,
        key: Option<&[u8]>,
    ) -> Result<i32, RelayError> {
        Ok(partition_for(
            key.unwrap_or_default(),
            self.partition_count(topic).await?,
        ))
    }

    /// Hands one row to the producer, on the partition its key maps to, with its row id, inside
    /// a producer span whose context the record carries onward.
    async fn enqueue(
        &self,
        producer: &AckingProducer,
        row: &Unpublished,
        scope: &str,
    ) -> Result<Sending, RelayError> {
        let partition = self
            .partition_of(&row.topic, row.message_key.as_deref())
            .await?;
        let mut record_headers = Headers::decode(&row.headers).unwrap_or_else(|error| {
            // Never expected (the relay's own encoding), but the row must still go out.
            error!(row = row.id, %error, "stored headers are unreadable; publishing them raw");
            let mut raw = Headers::new();
            raw.insert("saga-stored-headers", row.headers.clone());
            raw
        });
        let span = trace::publish_span(
            &row.topic,
            partition,
            row.message_key.as_deref(),
            &record_headers,
        );
        let context = trace::context_or(&span, &record_headers);
        for name in [trace::TRACEPARENT_HEADER, trace::TRACESTATE_HEADER] {
            match context.get(name) {
                Some(value) => record_headers.insert(name, value),
                None => record_headers.remove(name),
            }
        }
        record_headers.insert(headers::OUTBOX_ID, format!("{scope}/{}", row.id));
        let delivery = producer.send(
            &row.topic,
            Some(partition),
            row.message_key.as_deref(),
            &row.payload,
            record_headers.to_kafka(),
        )?;
        Ok(Sending {
            delivery,
            span,
            since: Instant::now(),
        })
    }

    /// Publishes up to one batch; returns how many rows it published. `published` holds the
    /// rows the broker acknowledged and that are still to be deleted: the round deletes them in
    /// the statement that reads its batch, and leaves its own there for the next round. Shutdown
    /// stops the wait for acknowledgements after [`SHUTDOWN_DRAIN`]: rows not acknowledged stay
    /// for the next relay.
    pub(super) async fn publish_batch(
        &self,
        session: &mut PgConnection,
        published: &mut Vec<i64>,
        shutdown: &CancellationToken,
    ) -> Result<usize, RelayError> {
        let rows = outbox::unpublished_after(session, published, self.settings.batch_size).await?;
        published.clear();
        if rows.is_empty() {
            return Ok(0);
        }
        let scope = self.scope(session).await?;
        let producer = self.producer();
        let mut sending = Vec::with_capacity(rows.len());
        let mut refused = Vec::new();
        let mut failure = None;
        for row in &rows {
            match self.enqueue(&producer, row, &scope).await {
                Ok(sent) => sending.push((row, sent)),
                Err(error) => match self.refused(&row.topic, &error) {
                    Some(reason) => refused.push((row, reason)),
                    None => {
                        // Queue full or a failed producer: settle what is queued, then start
                        // over from the database.
                        failure = Some(error);
                        break;
                    }
                },
            }
        }
        let (sent_rows, sent): (Vec<_>, Vec<_>) = sending.into_iter().unzip();
        let (deliveries, spans): (Vec<_>, Vec<_>) = sent
            .into_iter()
            .map(|s| (s.delivery, (s.span, s.since)))
            .unzip();
        let results = tokio::select! {
            results = join_all(deliveries) => results,
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_DRAIN).await;
            } => return Err(RelayError::Interrupted),
        };
        let mut delivered = Vec::with_capacity(results.len());
        for ((row, result), (span, since)) in sent_rows.into_iter().zip(results).zip(spans) {
            let error = match result {
                Ok(delivery) => {
                    trace::published_at(&span, delivery.offset);
                    metrics::histogram!("saga_relay_publish_seconds", "topic" => row.topic.clone())
                        .record(since.elapsed().as_secs_f64());
                    metrics::histogram!("saga_outbox_delay_seconds", "topic" => row.topic.clone())
                        .record(row.age_seconds + since.elapsed().as_secs_f64());
                    delivered.push(row.id);
                    continue;
                }
                Err(error) => RelayError::Kafka(error),
            };
            match self.refused(&row.topic, &error) {
                Some(reason) => refused.push((row, reason)),
                None => {
                    failure.get_or_insert(error);
                }
            }
        }
        // Every acknowledged row is on its partition, so deleting it is always right (the next
        // round does); a row that failed stays, and the recovery that follows the failure looks
        // at what is really on the broker. A relay that stops before the next round leaves the
        // acknowledged rows to recovery, which finds them on their partitions and deletes them.
        metrics::counter!("saga_events_published_total").increment(delivered.len() as u64);
        let count = delivered.len();
        published.extend(delivered);
        self.move_aside(session, &refused).await?;
        match failure {
            Some(error) => {
                // The relay starts over after this: what is acknowledged goes now, so that its
                // recovery has only the failed rows to look for.
                outbox::mark_published(session, published).await?;
                published.clear();
                Err(error)
            }
            None => Ok(count + refused.len()),
        }
    }

    /// Moves rows refused for good into `outbox_refused`, so that the relay goes on without
    /// them.
    async fn move_aside(
        &self,
        session: &mut PgConnection,
        refused: &[(&Unpublished, String)],
    ) -> Result<(), RelayError> {
        if refused.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, String)> = refused
            .iter()
            .map(|(row, why)| (row.id, why.clone()))
            .collect();
        outbox::refuse(session, &rows).await?;
        for (row, reason) in refused {
            error!(row = row.id, topic = %row.topic, %reason, "the broker refused an outbox row for good; moved it to outbox_refused (see `sagactl outbox`)");
            metrics::counter!("saga_outbox_refused_total", "topic" => row.topic.clone())
                .increment(1);
        }
        Ok(())
    }
}

/// A record handed to the producer, waiting for the broker's acknowledgement.
struct Sending {
    delivery: Ack,
    /// The record's producer span: it ends when the acknowledgement (or failure) is in.
    span: tracing::Span,
    since: Instant,
}

/// Produces every row and waits for the broker's acks, but never deletes them: what a relay that
/// dies between the ack and the delete leaves behind. Only for crash-safety tests.
#[doc(hidden)]
pub async fn produce_without_deleting(relay: &OutboxRelay) -> Result<usize, RelayError> {
    let mut session = relay.pool.acquire().await?;
    let rows = outbox::unpublished(&mut session, relay.settings.batch_size).await?;
    let scope = relay.scope(&mut session).await?;
    let producer = relay.producer();
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        deliveries.push(relay.enqueue(&producer, row, &scope).await?.delivery);
    }
    for delivery in join_all(deliveries).await {
        delivery?;
    }
    Ok(rows.len())
}
