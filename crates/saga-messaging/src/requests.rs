//! What each Kafka client asks the broker, by request type, on `/metrics`
//! (`saga_kafka_requests_total{client, request}`), from librdkafka's statistics.
//!
//! The broker's work is per request, not per record: a fetch that brings one record costs it
//! about what a fetch that brings fifty does. At low rates every record wakes every group that
//! reads its topic, so a saga's broker cost follows its requests, and the benchmark reports them
//! per saga beside the records.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::consumer::ConsumerContext;
use rdkafka::{ClientContext, Statistics};

/// Turns the cumulative counts of one client's statistics into increments of the process's
/// counters, so that a client built anew (a producer replaced after a fatal error) counts on
/// from where the last one stopped instead of starting the series over.
#[derive(Debug)]
pub struct RequestCounts {
    client: &'static str,
    seen: Mutex<HashMap<String, i64>>,
}

impl RequestCounts {
    /// Counts for the requests of a client labelled `client` (`consumer`, `producer`,
    /// `projector`).
    pub fn new(client: &'static str) -> Self {
        Self {
            client,
            seen: Mutex::default(),
        }
    }

    /// Adds what the client asked since its last statistics.
    pub fn record(&self, statistics: &Statistics) {
        let mut totals: HashMap<&str, i64> = HashMap::new();
        for broker in statistics.brokers.values() {
            for (request, count) in &broker.req {
                *totals.entry(request.as_str()).or_default() += count;
            }
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (request, total) in totals {
            let before = seen.insert(request.to_owned(), total).unwrap_or(0);
            // A broker connection that went away takes its counts with it: nothing to add then.
            if let Ok(added) = u64::try_from(total - before)
                && added > 0
            {
                metrics::counter!(
                    "saga_kafka_requests_total",
                    "client" => self.client,
                    "request" => request.to_owned()
                )
                .increment(added);
            }
        }
    }
}

/// A client context that does nothing but count its requests: the read side's projector.
#[derive(Debug)]
pub struct CountingContext(pub RequestCounts);

impl ClientContext for CountingContext {
    fn stats(&self, statistics: Statistics) {
        self.0.record(&statistics);
    }
}

impl ConsumerContext for CountingContext {}
