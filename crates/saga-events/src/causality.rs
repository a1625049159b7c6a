//! Causal order of a saga's events: every cause before its effects.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::SagaEvent;

/// An event in a saga's causal graph.
pub trait CausalEvent {
    fn event_id(&self) -> &str;
    fn causation_id(&self) -> Option<&str>;
    fn occurred_at_millis(&self) -> i64;
}

/// Orders events so that every cause comes before its effects; among events whose causes are all
/// placed, the earliest goes first. Events whose cause is not among them count as roots.
pub fn causal_order<E: CausalEvent>(events: Vec<E>) -> Vec<E> {
    let index: HashMap<String, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id().to_owned(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); events.len()];
    let mut ready = BinaryHeap::new();
    for (i, event) in events.iter().enumerate() {
        match event.causation_id().and_then(|c| index.get(c)) {
            Some(&parent) if parent != i => children[parent].push(i),
            _ => ready.push(Reverse((
                event.occurred_at_millis(),
                event.event_id().to_owned(),
                i,
            ))),
        }
    }
    let mut order = Vec::with_capacity(events.len());
    while let Some(Reverse((_, _, i))) = ready.pop() {
        order.push(i);
        for &child in &children[i] {
            let e = &events[child];
            ready.push(Reverse((
                e.occurred_at_millis(),
                e.event_id().to_owned(),
                child,
            )));
        }
    }
    let mut slots: Vec<Option<E>> = events.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

impl CausalEvent for SagaEvent {
    fn event_id(&self) -> &str {
        &self.metadata().event_id
    }
    fn causation_id(&self) -> Option<&str> {
        self.metadata().causation_id.as_deref()
    }
    fn occurred_at_millis(&self) -> i64 {
        self.metadata().occurred_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(&'static str, Option<&'static str>, i64);

    impl CausalEvent for E {
        fn event_id(&self) -> &str {
            self.0
        }
        fn causation_id(&self) -> Option<&str> {
            self.1
        }
        fn occurred_at_millis(&self) -> i64 {
            self.2
        }
    }

    #[test]
    fn causes_come_before_effects_even_with_skewed_clocks() {
        // ShipmentFailed fans out to StockReleased and PaymentRefunded; the refund's clock says
        // it happened before the failure that caused it.
        let events = vec![
            E("cancelled", Some("refunded"), 50),
            E("released", Some("failed"), 40),
            E("refunded", Some("failed"), 10),
            E("failed", Some("reserved"), 30),
            E("placed", None, 0),
            E("reserved", Some("authorized"), 20),
            E("authorized", Some("placed"), 5),
        ];
        let ids: Vec<&str> = causal_order(events).iter().map(|e| e.0).collect();
        assert_eq!(
            ids,
            [
                "placed",
                "authorized",
                "reserved",
                "failed",
                "refunded",
                "released",
                "cancelled"
            ]
        );
    }
}
