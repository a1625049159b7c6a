//! The trace each order of a consumer's batch belongs to, for the instances the batch starts.

use std::collections::HashMap;

use saga_messaging::Arrival;
use saga_messaging::headers::TRACEPARENT;
use uuid::Uuid;

/// The `traceparent` each order's latest record in a batch carried. An instance started in a
/// batch keeps its own order's trace this way: the batch's transaction span is shared by all its
/// orders, so the current span would put every instance in one order's trace.
#[derive(Debug, Clone, Default)]
pub struct Traces(HashMap<Uuid, String>);

impl Traces {
    pub fn of(arrivals: &[Arrival<'_>]) -> Self {
        let traces = arrivals
            .iter()
            .filter_map(|a| {
                let traceparent = a.delivery.headers.get(TRACEPARENT)?;
                Some((a.order_id, traceparent.to_owned()))
            })
            .collect();
        Self(traces)
    }

    /// The trace of `order`, if its record carried one.
    pub fn get(&self, order: Uuid) -> Option<&str> {
        self.0.get(&order).map(String::as_str)
    }
}
