//! Step 3 of a batch: the service's reactions, inside the batch's transaction. A panicking
//! reaction fails like an error; what each event emits is encoded with the trace context of
//! its own handling, so that each saga stays one trace however its events were batched.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use sqlx::PgConnection;

use super::erased::Loaded;
use super::handler::Handler;
use super::{Arrival, Refusal};
use crate::deferred::DeferredWrites;
use crate::error::HandlerError;
use crate::headers::Headers;
use crate::outbox::OutboxRecord;

impl Handler {
    /// Runs the service's reactions to a batch, and encodes what each event emits with the trace
    /// context in `contexts` (one per arrival, that of its handling): each saga stays one trace
    /// however its events were batched. A panicking reaction fails the batch like an error (one
    /// event's, when the batch holds one).
    pub(super) async fn react(
        &self,
        tx: &mut PgConnection,
        arrivals: &[Arrival<'_>],
        contexts: &[Headers],
        loaded: Loaded,
        deferred: &mut DeferredWrites,
    ) -> Result<Vec<Vec<OutboxRecord>>, Refusal> {
        let started = Instant::now();
        let reaction = async {
            #[cfg(feature = "fault-injection")]
            for (index, arrival) in arrivals.iter().enumerate() {
                match self.faults.should_fail(arrival.event) {
                    Some(crate::faults::Fault::Fail(reason)) => {
                        return Err(Refusal::at(index, HandlerError::rejected(reason)));
                    }
                    Some(crate::faults::Fault::Panic(reason)) => panic!("{reason}"),
                    None => {}
                }
            }
            self.reactions.react(tx, arrivals, loaded, deferred).await
        };
        let emitted = AssertUnwindSafe(reaction)
            .catch_unwind()
            .await
            .map_err(|panic| Refusal {
                index: (arrivals.len() == 1).then_some(0),
                error: HandlerError::Panicked(panic_message(&panic)),
            })??;
        if emitted.len() != arrivals.len() {
            return Err(Refusal::from(HandlerError::rejected(format!(
                "the reactions answered for {} of {} events",
                emitted.len(),
                arrivals.len()
            ))));
        }
        let elapsed = started.elapsed().as_secs_f64() / arrivals.len() as f64;
        let now_millis = chrono::Utc::now().timestamp_millis();
        let mut records = Vec::with_capacity(arrivals.len());
        for (index, ((arrival, events), context)) in
            arrivals.iter().zip(emitted).zip(contexts).enumerate()
        {
            let event = arrival.event;
            let event_type = event.event_type().name();
            metrics::histogram!("saga_event_handling_seconds", "event_type" => event_type)
                .record(elapsed);
            // How old the event is when it takes effect: every hop's queueing and retries.
            let age_millis = now_millis
                .saturating_sub(event.metadata().occurred_at)
                .max(0);
            metrics::histogram!(
                "saga_event_age_seconds",
                "topic" => arrival.delivery.topic.clone(),
                "event_type" => event_type
            )
            .record(age_millis as f64 / 1000.0);
            let mut encoded = Vec::with_capacity(events.len());
            for outgoing in &events {
                encoded.push(
                    self.outbox
                        .encode(outgoing, context)
                        .await
                        .map_err(|error| Refusal::at(index, error))?,
                );
            }
            records.push(encoded);
        }
        Ok(records)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
