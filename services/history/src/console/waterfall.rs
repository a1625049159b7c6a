//! One order's saga on one time axis: each event in the lane of the service that emitted it,
//! with the two costs of its hop. The outbox wait is from the moment the event occurred (its
//! transaction) to the moment its record reached the topic; consume and handle is from the
//! moment its cause reached the topic to the moment this event occurred. The figures are a pure
//! function of the log, so that they are tested without a page.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use saga_events::{EventType, Service};

use super::layout;
use crate::queries::Logged;

/// One event of the saga, placed on the axis (milliseconds from the first event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub event_type: EventType,
    pub service: Service,
    pub occurred_at: DateTime<Utc>,
    /// From the saga's first event.
    pub occurred_ms: i64,
    /// When its record was written, if the broker stamped it.
    pub recorded_ms: Option<i64>,
    pub outbox_wait_ms: Option<i64>,
    /// From its cause's record to this event: the next service's consume and handle.
    pub handled_ms: Option<i64>,
    /// An undo, or the cancellation that asks for undoes.
    pub compensation: bool,
    pub trace_id: Option<String>,
    pub position: String,
}

fn is_compensation(event_type: EventType) -> bool {
    matches!(
        event_type,
        EventType::PaymentRefunded
            | EventType::StockReleased
            | EventType::ShipmentCancelled
            | EventType::OrderCancelled
    )
}

/// The hops of `log` (first records of each event, in the fold's order).
pub fn hops(log: &[Logged]) -> Vec<Hop> {
    let ordered = saga_history::in_fold_order(log.iter().map(|l| &l.event));
    let first = |id: &str| log.iter().find(|l| l.event.metadata().event_id == id);
    let Some(start) = ordered
        .iter()
        .filter_map(|e| first(&e.metadata().event_id))
        .map(|l| l.occurred_at.timestamp_millis())
        .min()
    else {
        return Vec::new();
    };
    ordered
        .into_iter()
        .filter_map(|event| {
            let logged = first(&event.metadata().event_id)?;
            let occurred = logged.occurred_at.timestamp_millis();
            let recorded = logged.recorded_at.map(|t| t.timestamp_millis());
            let cause_recorded = event
                .metadata()
                .causation_id
                .as_deref()
                .and_then(first)
                .and_then(|cause| cause.recorded_at)
                .map(|t| t.timestamp_millis());
            let event_type = event.event_type();
            Some(Hop {
                event_type,
                service: event_type.publisher(),
                occurred_at: logged.occurred_at,
                occurred_ms: occurred - start,
                recorded_ms: recorded.map(|r| r - start),
                outbox_wait_ms: recorded.map(|r| r - occurred),
                handled_ms: cause_recorded.map(|c| occurred - c),
                compensation: is_compensation(event_type),
                trace_id: logged.trace_id.clone(),
                position: format!("{}[{}]@{}", logged.topic, logged.partition, logged.offset),
            })
        })
        .collect()
}

const LANES: [Service; 4] = [
    Service::Order,
    Service::Payment,
    Service::Inventory,
    Service::Shipping,
];

/// The waterfall: a drawing for the eye, and the same figures as a table for everyone.
pub fn render(hops: &[Hop]) -> Markup {
    if hops.is_empty() {
        return html! { p { "No event of this order is on the read side yet." } };
    }
    let end = hops
        .iter()
        .map(|h| h.recorded_ms.unwrap_or(h.occurred_ms).max(h.occurred_ms))
        .max()
        .unwrap_or(0)
        .max(1);
    let width = 1000.0;
    let left = 110.0;
    let x = |ms: i64| left + (width - left - 10.0) * (ms as f64 / end as f64);
    let lane_height = 34.0;
    let height = lane_height * LANES.len() as f64 + 24.0;
    let lane_of = |service: Service| LANES.iter().position(|s| *s == service).unwrap_or(0) as f64;
    html! {
        figure class="waterfall" {
            svg viewBox={ "0 0 " (width) " " (height) } role="img" aria-labelledby="waterfall-caption" {
                @for (i, lane) in LANES.iter().enumerate() {
                    @let y = i as f64 * lane_height;
                    rect class={ "lane lane-" (i % 2) } x="0" y=(y) width=(width) height=(lane_height) {}
                    text class="lane-name" x="8" y=(y + 21.0) { (lane.name()) }
                }
                @for hop in hops {
                    @let y = lane_of(hop.service) * lane_height;
                    @let from = x(hop.occurred_ms);
                    @let to = x(hop.recorded_ms.unwrap_or(hop.occurred_ms).max(hop.occurred_ms));
                    rect class={ "hop" @if hop.compensation { " compensation" } }
                        x=(from) y=(y + 8.0) width=((to - from).max(3.0)) height="18" {
                        title { (hop.event_type.name()) }
                    }
                }
                text class="axis" x=(left) y=(height - 6.0) { "0 ms" }
                text class="axis" x=(width - 10.0) y=(height - 6.0) text-anchor="end" { (layout::millis(end)) }
            }
            figcaption id="waterfall-caption" {
                "The saga across Order, Payment, Inventory and Shipping over "
                (layout::millis(end)) "; each bar runs from when an event occurred to when its record reached the topic. Compensations are red, and marked in the table below."
            }
        }
        table class="hops" {
            caption { "Its events, causes first" }
            thead { tr {
                th scope="col" { "Event" }
                th scope="col" { "Service" }
                th scope="col" class="num" { "Occurred at" }
                th scope="col" class="num" { "Consume and handle" }
                th scope="col" class="num" { "Outbox wait" }
                th scope="col" { "Record" }
            } }
            tbody {
                @for hop in hops {
                    tr class=[hop.compensation.then_some("compensation")] {
                        th scope="row" {
                            (hop.event_type.name())
                            @if hop.compensation { " " span class="badge bad" { "compensation" } }
                        }
                        td { (hop.service.name()) }
                        td class="num" { "+" (layout::millis(hop.occurred_ms)) }
                        td class="num" { @if let Some(ms) = hop.handled_ms { (layout::millis(ms)) } @else { "—" } }
                        td class="num" { @if let Some(ms) = hop.outbox_wait_ms { (layout::millis(ms)) } @else { "—" } }
                        td { code { (hop.position) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use saga_events::{
        CancellationReason, EventMetadata, OrderCancelled, PaymentDeclined, SagaEvent,
    };

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    fn logged(event: SagaEvent, occurred: i64, recorded: i64) -> Logged {
        Logged {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            occurred_at: at(occurred),
            recorded_at: Some(at(recorded)),
            trace_id: None,
            written_as: String::new(),
            event,
        }
    }

    #[test]
    fn each_hop_is_split_into_the_handling_and_the_outbox_wait() {
        // Given a decline at t=1000 (on the topic at 1004), and the cancellation it caused at
        // t=1010 (on the topic at 1013)
        let mut declined_meta = EventMetadata::first("o-1", "payment");
        declined_meta.occurred_at = 1_000;
        let mut cancelled_meta = EventMetadata::caused_by(&declined_meta, "order");
        cancelled_meta.occurred_at = 1_010;
        let declined = SagaEvent::from(PaymentDeclined {
            metadata: declined_meta,
            order_id: "o-1".into(),
            amount_cents: 1_000,
            currency: "EUR".into(),
            reason: "card declined".into(),
        });
        let cancelled = SagaEvent::from(OrderCancelled {
            metadata: cancelled_meta,
            order_id: "o-1".into(),
            reason: CancellationReason::PAYMENT_DECLINED,
        });
        // When its hops are measured, in whatever order the records arrived
        let hops = hops(&[
            logged(cancelled, 1_010, 1_013),
            logged(declined, 1_000, 1_004),
        ]);
        // Then the decline comes first; the cancellation is 6 ms of handling after the decline
        // reached the topic, then 3 ms in the outbox, in Order's lane, and a compensation
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0].event_type, EventType::PaymentDeclined);
        assert_eq!(hops[0].handled_ms, None);
        assert_eq!(hops[0].outbox_wait_ms, Some(4));
        assert_eq!(hops[1].service, Service::Order);
        assert_eq!(hops[1].occurred_ms, 10);
        assert_eq!(hops[1].handled_ms, Some(6));
        assert_eq!(hops[1].outbox_wait_ms, Some(3));
        assert!(hops[1].compensation);
    }

    #[test]
    fn undoes_and_the_cancellation_are_compensations() {
        assert!(is_compensation(EventType::PaymentRefunded));
        assert!(is_compensation(EventType::OrderCancelled));
        assert!(!is_compensation(EventType::ShipmentScheduled));
    }
}
