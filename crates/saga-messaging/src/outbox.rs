//! The writing half of the transactional outbox: events are encoded and stored in the same
//! transaction as the state change that produced them, so either both happen or neither does.

use std::collections::BTreeMap;

use saga_events::{EventCodec, SagaEvent};
use sqlx::PgConnection;
use tracing::instrument;

use crate::error::HandlerError;
use crate::headers;
use crate::trace;

/// Postgres channel the relay listens on; a notification is delivered when the writing
/// transaction commits, never before.
pub const NOTIFY_CHANNEL: &str = "saga_outbox";

/// Appends events to the outbox table within a caller's transaction.
#[derive(Debug, Clone)]
pub struct Outbox {
    codec: EventCodec,
}

impl Outbox {
    pub fn new(codec: EventCodec) -> Self {
        Self { codec }
    }

    pub fn codec(&self) -> &EventCodec {
        &self.codec
    }

    /// Encodes `events` (registering their schemas on first use) and inserts them, in order, into
    /// the outbox of the transaction behind `conn`. The current span's trace context goes into
    /// each row's headers, so consumers continue this trace.
    #[instrument(skip_all, fields(events = events.len()))]
    pub async fn append(
        &self,
        conn: &mut PgConnection,
        events: &[SagaEvent],
    ) -> Result<(), HandlerError> {
        if events.is_empty() {
            return Ok(());
        }
        let trace_headers = trace::current_context_headers();
        for event in events {
            let encoded = self.codec.encode(event).await?;
            let event_id = uuid::Uuid::parse_str(&encoded.event_id).map_err(|e| {
                HandlerError::permanent(format!("event_id {} is not a UUID: {e}", encoded.event_id))
            })?;
            let mut row_headers: BTreeMap<String, String> = trace_headers.clone();
            row_headers.insert(headers::EVENT_TYPE.into(), encoded.event_type.name().into());
            row_headers.insert(headers::EVENT_ID.into(), encoded.event_id.clone());
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, topic, message_key, payload, headers)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(event_id)
            .bind(encoded.event_type.name())
            .bind(&encoded.topic)
            .bind(&encoded.key)
            .bind(&encoded.payload)
            .bind(sqlx::types::Json(&row_headers))
            .execute(&mut *conn)
            .await?;
            metrics::counter!("saga_events_written_total", "event_type" => encoded.event_type.name())
                .increment(1);
        }
        notify(conn).await
    }

    /// Appends a record that is not a new event (a retry or a dead letter: original bytes, new
    /// headers). It gets a message id of its own; the event's id stays in its headers.
    pub async fn append_raw(
        &self,
        conn: &mut PgConnection,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &BTreeMap<String, String>,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, topic, message_key, payload, headers)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(
            headers
                .get(headers::EVENT_TYPE)
                .map(String::as_str)
                .unwrap_or("unknown"),
        )
        .bind(topic)
        .bind(key)
        .bind(payload)
        .bind(sqlx::types::Json(headers))
        .execute(&mut *conn)
        .await?;
        notify(conn).await
    }
}

async fn notify(conn: &mut PgConnection) -> Result<(), HandlerError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
