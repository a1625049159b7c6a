//! Projecting records of the event topics into the read side's tables: what the live projector
//! (the `history` service) does batch after batch, and what `sagactl history rebuild` does into
//! a new generation. One implementation, so that the two can only differ by what they read.
//!
//! A batch is applied in the caller's transaction: the records go into the event log, every
//! order they touch is folded again from its whole log (so arrival order never matters), and the
//! checkpoints move past them. A record already below its partition's checkpoint is skipped. A
//! record that cannot be used (not an event, an order id that is not a UUID, a time Postgres
//! cannot hold) becomes a dead letter for the caller to write (the live projector
//! publishes it through its outbox; a rebuild only counts it).

pub mod generation;
pub mod store;

use std::collections::{BTreeSet, HashMap};

use saga_events::{DecodeError, EventCodec, EventType, TopicNames};
use saga_messaging::outbox::OutboxRecord;
use saga_messaging::parking::Failure;
use saga_messaging::{Delivery, FailureKind, headers, trace};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::moments;
use store::{LogRow, Partition};

/// The name the projector's dead letters carry in their `saga-service` header.
pub const NAME: &str = "history";

/// What becomes of one record read.
#[derive(Debug, Clone)]
pub enum Read {
    Event(Box<LogRow>),
    /// The record cannot be used; the reason is in the dead letter's headers.
    DeadLetter(Box<OutboxRecord>),
}

/// What one applied batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Each partition's next offset after the batch.
    pub next: HashMap<Partition, i64>,
    /// Records added to the event log.
    pub logged: Vec<LogRow>,
    /// Dead letters of records the batch could not use (and had not seen before).
    pub dead: Vec<OutboxRecord>,
}

/// Turns records into rows, with the codec that decodes them.
#[derive(Debug, Clone)]
pub struct Projection {
    pub codec: EventCodec,
    pub topics: TopicNames,
}

impl Projection {
    /// Decodes one record into its log row, or into the dead letter that says why it cannot be
    /// one. Only a registry that cannot be reached is an error: that passes.
    pub async fn read(&self, delivery: &Delivery) -> Result<Read, DecodeError> {
        let decoded = match self.codec.decode_written(&delivery.payload).await {
            Ok(decoded) => decoded,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                let reason = format!(
                    "cannot decode: {}",
                    saga_messaging::error::error_chain(&error)
                );
                return Ok(Read::DeadLetter(Box::new(
                    self.dead_letter(delivery, &reason),
                )));
            }
        };
        let event = decoded.event;
        let occurred_at = event.metadata().occurred_at;
        if !store::storable(occurred_at) {
            let reason = format!(
                "cannot fold: occurred_at {occurred_at} ms is outside the times the history can hold"
            );
            return Ok(Read::DeadLetter(Box::new(
                self.dead_letter(delivery, &reason),
            )));
        }
        let Ok(order_id) = Uuid::parse_str(event.order_id()) else {
            let reason = format!(
                "cannot fold: order_id {:?} is not a UUID",
                event.order_id().chars().take(100).collect::<String>()
            );
            return Ok(Read::DeadLetter(Box::new(
                self.dead_letter(delivery, &reason),
            )));
        };
        let trace_id = delivery
            .headers
            .get(trace::TRACEPARENT_HEADER)
            .and_then(trace::trace_id_of_traceparent)
            .map(str::to_owned);
        Ok(Read::Event(Box::new(LogRow {
            topic: delivery.topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
            key: delivery.key_str().map(str::to_owned),
            order_id,
            event,
            recorded_at: delivery
                .timestamp_millis
                .filter(|ms| store::storable(*ms))
                .map(store::millis),
            trace_id,
            written_as: decoded.written_as.to_string(),
        })))
    }

    /// A record the history cannot take (its database refuses it), as a dead letter saying why.
    pub fn refused(&self, delivery: &Delivery, reason: &str) -> Read {
        Read::DeadLetter(Box::new(self.dead_letter(delivery, reason)))
    }

    fn dead_letter(&self, delivery: &Delivery, reason: &str) -> OutboxRecord {
        let now = chrono::Utc::now();
        let headers = Failure {
            service: NAME,
            source: delivery,
            parked_id: None,
            attempts: 1,
            kind: FailureKind::Undecodable,
            error: reason,
            first: now,
            last: now,
            not_before_millis: None,
        }
        .headers();
        OutboxRecord {
            id: Uuid::new_v4(),
            event_type: delivery
                .headers
                .get(headers::EVENT_TYPE)
                .filter(|t| EventType::from_name(t).is_some())
                .unwrap_or("unknown")
                .to_owned(),
            topic: self.topics.history_dlq(),
            key: delivery.key.clone(),
            payload: delivery.payload.clone(),
            headers,
        }
    }
}

/// Applies a batch of records (each with what [`Projection::read`] made of it) in the
/// transaction behind `tx`; see the module documentation.
pub async fn apply(
    tx: &mut PgConnection,
    reads: Vec<(&Delivery, Read)>,
) -> Result<Applied, sqlx::Error> {
    let partitions: Vec<Partition> = reads
        .iter()
        .map(|(d, _)| (d.topic.clone(), d.partition))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let checkpoints = store::lock_checkpoints(tx, &partitions).await?;
    let mut applied = Applied::default();
    for (source, read) in reads {
        let next = applied
            .next
            .entry((source.topic.clone(), source.partition))
            .or_insert(0);
        *next = (*next).max(source.offset + 1);
        let fresh = checkpoints
            .get(&(source.topic.clone(), source.partition))
            .is_none_or(|next| source.offset >= *next);
        if !fresh {
            continue;
        }
        match read {
            Read::Event(row) => applied.logged.push(*row),
            Read::DeadLetter(record) => applied.dead.push(*record),
        }
    }
    let events = store::append(tx, &applied.logged).await?;
    let views: Vec<_> = events
        .into_iter()
        .map(|(order, history)| (order, moments(&history)))
        .collect();
    store::save(tx, &views, &applied.next).await?;
    Ok(applied)
}
