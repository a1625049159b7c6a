//! The projector: every partition of the four event topics, read from offset 0 by explicit
//! assignment, into the history database.
//!
//! It belongs to no consumer group's bookkeeping and commits no offset to the broker: where it
//! stands is the `checkpoints` table, written in the transaction of the rows it covers, so a
//! crash at any point resumes exactly after what was committed. It writes no event topic; a
//! record it cannot use (not Avro, an unknown schema, an order id that is not a UUID) leaves
//! through its outbox for `history.dlq`, with the reason, in the same transaction, and the
//! partition goes on. A batch that fails for a reason that may pass (the database or the
//! registry away) is tried again, in place, until it goes through: nothing read is ever skipped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use saga_events::{DecodeError, Service};
use saga_history::projection::store::{self, Partition};
use saga_history::projection::{self, NAME, Projection};
use saga_messaging::inspect::reader::PartitionReader;
use saga_messaging::requests::{CountingContext, RequestCounts};
use saga_messaging::{Backoff, Delivery, FailureKind, Health, KafkaSettings, Outbox};
use sqlx::PgPool;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::progress::Progress;

#[derive(Debug, Error)]
pub enum ProjectorError {
    #[error("kafka")]
    Kafka(#[from] KafkaError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("schema registry")]
    Registry(#[source] DecodeError),
    #[error("the reading thread failed")]
    Blocking(#[from] tokio::task::JoinError),
}

impl ProjectorError {
    /// Whether trying again may succeed: anything but a database that refuses the statement.
    fn may_pass(&self) -> bool {
        match self {
            ProjectorError::Database(error) => saga_messaging::error::is_transient_db_error(error),
            _ => true,
        }
    }
}

/// Everything the projector reads with and writes to.
#[derive(Debug, Clone)]
pub struct Projector {
    pub pool: PgPool,
    pub projection: Projection,
    pub outbox: Outbox,
    pub kafka: KafkaSettings,
    /// Most records per transaction.
    pub batch_size: usize,
    /// How long a batch waits for more records after its first: the read side is no hop of
    /// the saga, so a few milliseconds buy batches that hold more of each order's events, each
    /// order folded once for several of them, and fewer transactions.
    pub linger: Duration,
    pub progress: Progress,
    pub health: Health,
}

impl Projector {
    /// The event topics, in the order they are assigned.
    fn event_topics(&self) -> Vec<String> {
        Service::ALL
            .iter()
            .map(|s| self.projection.topics.events(*s))
            .collect()
    }

    /// Every partition of the event topics, waiting for topics that do not exist yet.
    async fn partitions(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Partition>, ProjectorError> {
        let mut backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let kafka = self.kafka.clone();
            let topics = self.event_topics();
            let found = tokio::task::spawn_blocking(move || {
                let reader = PartitionReader::new(&kafka)?;
                let mut partitions = Vec::new();
                for topic in topics {
                    let count = reader.partition_count(&topic)?;
                    if count == 0 {
                        return Ok::<_, KafkaError>(None);
                    }
                    partitions.extend((0..count).map(|p| (topic.clone(), p)));
                }
                Ok(Some(partitions))
            })
            .await?;
            match found {
                Ok(Some(partitions)) => return Ok(partitions),
                Ok(None) => warn!("an event topic does not exist yet"),
                Err(error) => warn!(%error, "cannot read the event topics' partitions yet"),
            }
            if shutdown.is_cancelled() {
                return Ok(Vec::new());
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Projects until `shutdown`: resumes every partition from its checkpoint (offset 0 for one
    /// never read) and commits batch after batch.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let partitions = self.partitions(&shutdown).await?;
        let checkpoints = self.resume_from(&shutdown).await?;
        let consumer: StreamConsumer<CountingContext> = self
            .kafka
            .projector_config(&format!(
                "{}history-projector",
                self.projection.topics.prefix()
            ))
            .create_with_context(CountingContext(RequestCounts::new("projector")))?;
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            let offset = match checkpoints.get(partition) {
                Some(next) => Offset::Offset(*next),
                None => Offset::Beginning,
            };
            assignment.add_partition_offset(&partition.0, partition.1, offset)?;
        }
        consumer.assign(&assignment)?;
        self.progress.resumed(checkpoints);
        self.health.consumer_joined();
        self.health.consumer_fetching();
        tokio::spawn(watch_ends(
            self.kafka.clone(),
            partitions,
            self.progress.clone(),
            self.health.clone(),
            shutdown.clone(),
        ));
        info!(
            partitions = assignment.count(),
            "projecting the event topics"
        );
        let mut records = consumer
            .stream()
            .map(|message| message.map(|m| Delivery::from_message(&m)));
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                first = records.next() => first,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(until, records.next()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            let mut deliveries = Vec::with_capacity(batch.len());
            for delivery in batch {
                match delivery {
                    Ok(delivery) => deliveries.push(delivery),
                    // librdkafka recovers from broker errors by itself; it reports them here.
                    Err(error) => warn!(%error, "reading the event topics"),
                }
            }
            if !deliveries.is_empty() {
                self.project_until_done(&deliveries, &shutdown).await;
            }
        }
        info!("projector stopped");
        Ok(())
    }

    async fn resume_from(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<HashMap<Partition, i64>, ProjectorError> {
        let mut backoff = Backoff::with(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            match store::checkpoints(&self.pool).await {
                Ok(checkpoints) => return Ok(checkpoints),
                Err(error) if !shutdown.is_cancelled() => {
                    warn!(%error, "cannot read the checkpoints yet");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Projects `deliveries`, trying again in place for as long as it fails for a reason that
    /// passes (or until shutdown, which leaves them to the next start: their checkpoints did not
    /// move). A batch the database refuses for good is taken apart: each record is projected on
    /// its own, and one refused on its own is dead-lettered, so that it holds back no other.
    async fn project_until_done(&self, deliveries: &[Delivery], shutdown: &CancellationToken) {
        match self.until_done(shutdown, || self.project(deliveries)).await {
            Some(Ok(())) | None => {}
            Some(Err(refused)) if deliveries.len() > 1 => {
                warn!(error = %refused, records = deliveries.len(), "the database refuses a batch; projecting its records one by one");
                for one in deliveries {
                    let single = std::slice::from_ref(one);
                    if let Some(Err(refused)) =
                        self.until_done(shutdown, || self.project(single)).await
                    {
                        let reason =
                            format!("cannot fold: the history database refuses it: {refused}");
                        self.refuse_until_done(one, &reason, shutdown).await;
                    }
                }
            }
            Some(Err(refused)) => {
                let reason = format!("cannot fold: the history database refuses it: {refused}");
                self.refuse_until_done(&deliveries[0], &reason, shutdown)
                    .await;
            }
        }
    }

    /// Runs `attempt` until it succeeds or fails for good (`Some(Err(reason))`), retrying what
    /// may pass with backoff and saying so on `/readyz`; `None` at shutdown.
    async fn until_done<F, Fut>(
        &self,
        shutdown: &CancellationToken,
        mut attempt: F,
    ) -> Option<Result<(), String>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ProjectorError>>,
    {
        let mut backoff = Backoff::new();
        let since = Instant::now();
        let mut failed = false;
        loop {
            let outcome = attempt().await;
            if failed && !matches!(&outcome, Err(e) if e.may_pass()) {
                self.health.moving("projection");
                info!("projection moves again");
            }
            match outcome {
                Ok(()) => return Some(Ok(())),
                Err(error) if !error.may_pass() => {
                    return Some(Err(saga_messaging::error::error_chain(&error)));
                }
                Err(error) => {
                    failed = true;
                    let reason = saga_messaging::error::error_chain(&error);
                    warn!(error = %reason, "projecting failed; trying again");
                    self.health.stuck("projection", since, &reason);
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    async fn refuse_until_done(
        &self,
        delivery: &Delivery,
        reason: &str,
        shutdown: &CancellationToken,
    ) {
        if let Some(Err(failure)) = self
            .until_done(shutdown, || self.refuse(delivery, reason))
            .await
        {
            // Neither its rows nor its dead letter can be written: the next batch moves the
            // checkpoint past it, so the log says so loudly.
            error!(record = %delivery, reason, %failure, "a record was neither projected nor dead-lettered");
        }
    }

    /// Dead-letters one record the database will not take, moving its checkpoint past it.
    async fn refuse(&self, delivery: &Delivery, reason: &str) -> Result<(), ProjectorError> {
        let read = self.projection.refused(delivery, reason);
        let mut tx = store::begin_projecting(&self.pool).await?;
        let applied = projection::apply(&mut tx, vec![(delivery, read)]).await?;
        let written = self.outbox.write(&mut tx, &applied.dead, &[]).await?;
        self.outbox.commit(tx, written).await?;
        self.progress
            .projected(&applied.next, delivery.timestamp_millis);
        self.count_dead_letters(&applied.dead);
        Ok(())
    }

    async fn project(&self, deliveries: &[Delivery]) -> Result<(), ProjectorError> {
        let mut reads = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let read = self
                .projection
                .read(delivery)
                .await
                .map_err(ProjectorError::Registry)?;
            reads.push((delivery, read));
        }
        let mut tx = store::begin_projecting(&self.pool).await?;
        let applied = projection::apply(&mut tx, reads).await?;
        let written = self.outbox.write(&mut tx, &applied.dead, &[]).await?;
        self.outbox.commit(tx, written).await?;

        let newest = deliveries.iter().filter_map(|d| d.timestamp_millis).max();
        self.progress.projected(&applied.next, newest);
        let now = chrono::Utc::now().timestamp_millis();
        for row in &applied.logged {
            if let Some(recorded) = row.recorded_at {
                let age = (now - recorded.timestamp_millis()).max(0) as f64 / 1000.0;
                metrics::histogram!("saga_history_projection_lag_seconds").record(age);
            }
        }
        metrics::counter!("saga_history_events_total").increment(applied.logged.len() as u64);
        self.count_dead_letters(&applied.dead);
        Ok(())
    }

    fn count_dead_letters(&self, letters: &[saga_messaging::outbox::OutboxRecord]) {
        for letter in letters {
            let source = letter
                .headers
                .get(saga_messaging::headers::SOURCE_TOPIC)
                .unwrap_or("unknown")
                .to_owned();
            let reason = letter
                .headers
                .get(saga_messaging::headers::ERROR)
                .unwrap_or_default()
                .to_owned();
            metrics::counter!("saga_dead_letters_total", "service" => NAME, "topic" => source.clone(), "error_kind" => FailureKind::Undecodable.as_str()).increment(1);
            error!(topic = %source, reason, "dead-lettered");
        }
    }
}

/// Fetches the event partitions' watermarks every second, two requests for all of them: how far
/// behind the projection is (a gauge, and what `/readyz` says until start-up has caught up).
async fn watch_ends(
    kafka: KafkaSettings,
    partitions: Vec<Partition>,
    progress: Progress,
    health: Health,
    shutdown: CancellationToken,
) {
    let reader = match PartitionReader::new(&kafka) {
        Ok(reader) => std::sync::Arc::new(reader),
        Err(error) => {
            error!(%error, "cannot watch the event topics' ends");
            return;
        }
    };
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let reader = reader.clone();
        let wanted = partitions.clone();
        let fetched = tokio::task::spawn_blocking(move || reader.watermarks_of(&wanted)).await;
        match fetched {
            Ok(Ok(ends)) => {
                progress.ends(ends);
                health.catching_up(progress.catching_up());
                metrics::gauge!("saga_history_lag_records").set(progress.behind().records as f64);
            }
            Ok(Err(error)) => warn!(%error, "cannot fetch the event topics' ends"),
            Err(error) => warn!(%error, "fetching the event topics' ends failed"),
        }
    }
}
