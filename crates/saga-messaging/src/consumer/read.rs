//! Step 1 of handling a record: what it is. A saga event this service reacts to, one it ignores
//! (acknowledged unread when its type header says so), or poison: bytes that are not a saga
//! event, or an event whose ids are not ids or whose key is not its order. Only the registry
//! being away is an error here, and the record waits for it.

use std::collections::BTreeSet;

use saga_events::{EventType, SagaEvent};
use uuid::Uuid;

use super::control::LaneControl;
use super::handler::{Handler, Position};
use super::persist::Attempt;
use super::poll::Routed;
use crate::delivery::Delivery;
use crate::error::{FailureKind, HandlerError, error_chain};
use crate::headers;

/// A record as read in step 1.
pub(super) enum Read {
    Event {
        event: Box<SagaEvent>,
        event_id: Uuid,
        order: Uuid,
        /// The record its writer wrote (an older major's name when it was upcast).
        written_as: std::sync::Arc<str>,
    },
    Ignored(EventType),
    Poison {
        kind: FailureKind,
        reason: String,
        /// The order the record's key names, if it names one: parked behind the poison.
        order: Option<Uuid>,
        event_type: Option<EventType>,
    },
}

/// A record of a batch, read, with what its last run said of it.
pub(super) struct Item {
    pub routed: Routed,
    pub read: Read,
    /// Set when its reaction failed in an earlier run of this batch.
    pub failure: Option<HandlerError>,
}

impl Item {
    /// The event type its metrics name: `unknown` for poison.
    pub fn event_type_name(&self) -> &'static str {
        match &self.read {
            Read::Event { event, .. } => event.event_type().name(),
            Read::Ignored(event_type) => event_type.name(),
            Read::Poison { .. } => "unknown",
        }
    }

    pub fn delivery(&self) -> &Delivery {
        &self.routed.delivery
    }

    pub fn position(&self) -> Position {
        let d = self.delivery();
        (d.topic.clone(), d.partition, d.offset)
    }
}

impl Handler {
    /// Reads a record, waiting out a registry that is away. None if shutdown or the record's
    /// revocation came first.
    pub(super) async fn read_until_readable(
        &self,
        routed: &Routed,
        lane: &LaneControl<'_>,
    ) -> Option<Read> {
        let delivery = &routed.delivery;
        let label = format!("{}[{}]", delivery.topic, delivery.partition);
        loop {
            match self.persist(lane, &label, || self.read(delivery)).await {
                Attempt::Done(read) => return Some(read),
                Attempt::Failed(error) => {
                    return Some(Read::Poison {
                        kind: error.kind(),
                        reason: error.reason(),
                        order: delivery.key_order(),
                        event_type: None,
                    });
                }
                Attempt::Interrupted if lane.shutting_down() || !lane.is_current(routed) => {
                    return None;
                }
                // Another partition's revocation woke the lane: keep trying.
                Attempt::Interrupted => {}
            }
        }
    }

    /// Step 1 for one record. Only a transient registry failure is an error.
    pub(super) async fn read(&self, delivery: &Delivery) -> Result<Read, HandlerError> {
        if delivery.headers.contains_key(headers::UNREADABLE_HEADERS) {
            return Ok(Read::Poison {
                kind: FailureKind::Undecodable,
                reason: "the record's header names are not valid UTF-8".to_owned(),
                order: delivery.key_order(),
                event_type: None,
            });
        }
        // The relays that write the event topics name each record's type in a header: what this
        // service ignores is acknowledged without decoding it.
        if let Some(named) = delivery
            .headers
            .get(headers::EVENT_TYPE)
            .and_then(EventType::from_name)
            && !self.reactions.wants(named)
        {
            return Ok(Read::Ignored(named));
        }
        let (event, written_as) = match self.codec.decode_written(&delivery.payload).await {
            Ok(decoded) => (decoded.event, decoded.written_as),
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => {
                return Ok(Read::Poison {
                    kind: FailureKind::Undecodable,
                    reason: error_chain(&error),
                    order: delivery.key_order(),
                    event_type: None,
                });
            }
        };
        let event_type = event.event_type();
        if !self.reactions.wants(event_type) {
            return Ok(Read::Ignored(event_type));
        }
        // Anything larger is not a saga event, and whatever a service would emit in reply to it
        // could outgrow what the event topics take, stopping the relay that sends it.
        if delivery.payload.len() > self.settings.max_event_bytes {
            return Ok(Read::Poison {
                kind: FailureKind::Permanent,
                reason: format!(
                    "the record's value is {} bytes; events are at most {} (MAX_EVENT_BYTES)",
                    delivery.payload.len(),
                    self.settings.max_event_bytes
                ),
                order: delivery.key_order(),
                event_type: Some(event_type),
            });
        }
        let ids =
            crate::error::parse_uuid("event_id", &event.metadata().event_id).and_then(|event_id| {
                crate::error::parse_uuid("order_id", event.order_id()).map(|o| (event_id, o))
            });
        let refusal = match ids {
            // Without usable ids the event can be neither deduplicated nor kept in order.
            Err(error) => error.reason(),
            // The saga keys every record by its order: a record keyed otherwise sits on another
            // order's partition, where its order's events are not kept in order.
            Ok((_, order)) if delivery.key_order() != Some(order) => format!(
                "the record key {:?} is not the event's order id {order}",
                String::from_utf8_lossy(delivery.key.as_deref().unwrap_or_default())
            ),
            Ok((event_id, order)) => {
                return Ok(Read::Event {
                    event: Box::new(event),
                    event_id,
                    order,
                    written_as,
                });
            }
        };
        Ok(Read::Poison {
            kind: FailureKind::Permanent,
            reason: refusal,
            order: delivery.key_order(),
            event_type: Some(event_type),
        })
    }
}

/// `topic[p, q]…` of the records in a batch: how a stuck batch is named.
pub(super) fn describe(items: &[Item]) -> String {
    let mut partitions: BTreeSet<(&str, i32)> = BTreeSet::new();
    for item in items {
        partitions.insert((item.delivery().topic.as_str(), item.delivery().partition));
    }
    let mut text = String::new();
    let mut current: Option<&str> = None;
    for (topic, partition) in partitions {
        if current == Some(topic) {
            text.push_str(&format!(",{partition}"));
        } else {
            if current.is_some() {
                text.push_str("] ");
            }
            text.push_str(&format!("{topic}[{partition}"));
            current = Some(topic);
        }
    }
    if current.is_some() {
        text.push(']');
    }
    text
}
