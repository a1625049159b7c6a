//! Latency histograms (HDR, microsecond resolution) and the hop breakdown of sagas.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::watch::Seen;

/// Latencies from 1 µs to 10 minutes, three significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        // The bounds and precision are constants that Histogram always accepts.
        Self(
            Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
            }),
        )
    }

    pub fn record_ms(&mut self, ms: f64) {
        let micros = (ms * 1000.0).round().clamp(1.0, 600_000_000.0) as u64;
        self.0.saturating_record(micros);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn at(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Milliseconds at the usual quantiles.
    pub fn summary(&self) -> Value {
        json!({
            "count": self.count(),
            "p50": self.at(0.50),
            "p90": self.at(0.90),
            "p99": self.at(0.99),
            "p99_9": self.at(0.999),
            "max": self.0.max() as f64 / 1000.0,
        })
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Per hop of the sagas: the outbox wait of each event (its `occurred_at` to its record's
/// timestamp) and the consume + handle time of each reaction (the cause's record timestamp to
/// the effect's `occurred_at`).
pub fn hops(sagas: &[Vec<Seen>]) -> BTreeMap<String, Latencies> {
    let mut hops: BTreeMap<String, Latencies> = BTreeMap::new();
    for events in sagas {
        let by_id: BTreeMap<&str, &Seen> =
            events.iter().map(|e| (e.event_id.as_str(), e)).collect();
        for event in events {
            if let Some(record_ms) = event.record_ms {
                hops.entry(format!("outbox wait: {}", event.event_type))
                    .or_default()
                    .record_ms((record_ms - event.occurred_at_ms) as f64);
            }
            let cause = event.causation_id.as_deref().and_then(|id| by_id.get(id));
            if let Some(cause) = cause
                && let Some(cause_record_ms) = cause.record_ms
            {
                hops.entry(format!(
                    "consume + handle: {} → {}",
                    cause.event_type, event.event_type
                ))
                .or_default()
                .record_ms((event.occurred_at_ms - cause_record_ms) as f64);
            }
        }
    }
    hops
}

#[cfg(test)]
mod tests {
    use super::*;
    use saga_events::EventType;

    #[test]
    fn quantiles_come_from_what_was_recorded() {
        let mut latencies = Latencies::new();
        for ms in 1..=100 {
            latencies.record_ms(f64::from(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary["count"], 100);
        assert!(
            (summary["p50"].as_f64().unwrap_or(0.0) - 50.0).abs() < 0.1,
            "{summary}"
        );
        assert!(
            (summary["max"].as_f64().unwrap_or(0.0) - 100.0).abs() < 0.1,
            "{summary}"
        );
    }

    #[test]
    fn a_saga_splits_into_outbox_waits_and_reactions() {
        let seen = |t, id: &str, cause: Option<&str>, at, record| Seen {
            event_type: t,
            event_id: id.into(),
            causation_id: cause.map(str::to_owned),
            occurred_at_ms: at,
            record_ms: Some(record),
        };
        let saga = vec![
            seen(EventType::OrderPlaced, "a", None, 1_000, 1_002),
            seen(EventType::PaymentAuthorized, "b", Some("a"), 1_007, 1_008),
        ];
        let hops = hops(&[saga]);
        let reaction = &hops["consume + handle: OrderPlaced → PaymentAuthorized"];
        assert_eq!(reaction.count(), 1);
        assert!((reaction.summary()["p50"].as_f64().unwrap_or(0.0) - 5.0).abs() < 0.01);
        assert_eq!(hops["outbox wait: OrderPlaced"].count(), 1);
    }
}
