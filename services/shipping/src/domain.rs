//! Shipping's rules without I/O: which destinations are served, and what each event the service
//! hears does to an order's shipment, decided from the event and what Shipping knows of the
//! order ([`Standing`]).
//!
//! - `StockReserved`: schedule a shipment, or fail one to a destination not served, once per
//!   order; never when the order was cancelled first or is past its deadline.
//! - `OrderCancelled`: the order is closed; a scheduled shipment is called off.

use std::collections::BTreeSet;

use saga_events::{
    CancellationReason, EventMetadata, SagaEvent, ShipmentCancelled, ShipmentFailed,
    ShipmentScheduled, StockReserved,
};
use uuid::Uuid;

pub const PRODUCER: &str = "shipping";

/// Destinations served when `SHIPPING_COUNTRIES` is not set: Europe, North America, Oceania and
/// Japan. Anything else (e.g. `AQ`, Antarctica) fails, so the compensation path can be driven.
pub const DEFAULT_COUNTRIES: &str = "AT,AU,BE,BG,CA,CH,CY,CZ,DE,DK,EE,ES,FI,FR,GB,GR,HR,HU,IE,IS,IT,JP,LI,LT,LU,LV,MT,NL,NO,NZ,PL,PT,RO,SE,SI,SK,US";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations(BTreeSet<String>);

impl Destinations {
    /// Parses a comma-separated list of ISO 3166-1 alpha-2 codes.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut codes = BTreeSet::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(format!(
                    "{code:?} is not an ISO 3166-1 alpha-2 country code"
                ));
            }
            codes.insert(code.to_owned());
        }
        if codes.is_empty() {
            return Err("no destination countries".into());
        }
        Ok(Self(codes))
    }

    /// None if the destination is served, else why not.
    pub fn refusal(&self, country: &str) -> Option<String> {
        (!self.0.contains(country)).then(|| format!("{country} is not a destination we ship to"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentStatus {
    Scheduled,
    Failed,
    Cancelled,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Scheduled => "SCHEDULED",
            ShipmentStatus::Failed => "FAILED",
            ShipmentStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ShipmentStatus::Scheduled,
            ShipmentStatus::Failed,
            ShipmentStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An order's shipment (what it carries and where to stay with the reservation that asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub shipment_id: Uuid,
    pub status: ShipmentStatus,
    pub country: String,
    pub failure_reason: Option<String>,
}

/// What Shipping knows of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub shipment: Option<Shipment>,
    /// Set once the order is cancelled (or found past its deadline): nothing is scheduled after.
    pub closed: Option<CancellationReason>,
}

/// The order's standing after the event, and what Shipping tells the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub standing: Standing,
    pub emit: Vec<SagaEvent>,
}

/// Decides Shipping's reaction to `event` for an order standing as `standing`, at `now_ms`.
pub fn react(
    standing: &Standing,
    event: &SagaEvent,
    destinations: &Destinations,
    now_ms: i64,
) -> Decision {
    let unchanged = Decision {
        standing: standing.clone(),
        emit: Vec::new(),
    };
    match event {
        SagaEvent::StockReserved(reserved) => {
            if standing.shipment.is_some() || standing.closed.is_some() {
                return unchanged;
            }
            if reserved
                .deadline_at
                .is_some_and(|deadline| now_ms >= deadline)
            {
                return Decision {
                    standing: Standing {
                        shipment: None,
                        closed: Some(CancellationReason::TIMED_OUT),
                    },
                    emit: Vec::new(),
                };
            }
            schedule(reserved, destinations)
        }
        SagaEvent::OrderCancelled(cancelled) => {
            let mut decision = call_off(standing, event, cancelled.reason);
            decision.standing.closed.get_or_insert(cancelled.reason);
            decision
        }
        _ => unchanged,
    }
}

fn schedule(reserved: &StockReserved, destinations: &Destinations) -> Decision {
    let shipment_id = Uuid::now_v7();
    let country = &reserved.shipping_address.country;
    let refusal = destinations.refusal(country);
    let metadata = EventMetadata::caused_by(&reserved.metadata, PRODUCER);
    let order_id = reserved.order_id.clone();
    let (status, told): (ShipmentStatus, SagaEvent) = match &refusal {
        None => (
            ShipmentStatus::Scheduled,
            ShipmentScheduled {
                metadata,
                order_id,
                shipment_id: shipment_id.to_string(),
                country: country.clone(),
            }
            .into(),
        ),
        Some(reason) => (
            ShipmentStatus::Failed,
            ShipmentFailed {
                metadata,
                order_id,
                reason: reason.clone(),
            }
            .into(),
        ),
    };
    Decision {
        standing: Standing {
            shipment: Some(Shipment {
                shipment_id,
                status,
                country: country.clone(),
                failure_reason: refusal,
            }),
            closed: None,
        },
        emit: vec![told],
    }
}

/// Calls a scheduled shipment off; anything else has nothing to undo.
fn call_off(standing: &Standing, cause: &SagaEvent, reason: CancellationReason) -> Decision {
    let Some(shipment) = standing
        .shipment
        .as_ref()
        .filter(|s| s.status == ShipmentStatus::Scheduled)
    else {
        return Decision {
            standing: standing.clone(),
            emit: Vec::new(),
        };
    };
    Decision {
        standing: Standing {
            shipment: Some(Shipment {
                status: ShipmentStatus::Cancelled,
                ..shipment.clone()
            }),
            closed: standing.closed,
        },
        emit: vec![
            ShipmentCancelled {
                metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
                order_id: cause.order_id().to_owned(),
                shipment_id: shipment.shipment_id.to_string(),
                reason,
            }
            .into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use saga_events::{Address, EventType, OrderCancelled, StockLine};

    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000003";

    fn reserved(country: &str, deadline_at: Option<i64>) -> SagaEvent {
        StockReserved {
            metadata: EventMetadata::first(ORDER, "inventory"),
            order_id: ORDER.into(),
            items: vec![StockLine {
                sku: "MUG".into(),
                quantity: 1,
            }],
            shipping_address: Address {
                name: "A".into(),
                line1: "1".into(),
                city: "C".into(),
                postal_code: "0".into(),
                country: country.into(),
            },
            deadline_at,
        }
        .into()
    }

    fn cancelled() -> SagaEvent {
        OrderCancelled {
            metadata: EventMetadata::first(ORDER, "order"),
            order_id: ORDER.into(),
            reason: CancellationReason::TIMED_OUT,
        }
        .into()
    }

    /// Given what Shipping knows, when an event arrives, then…
    fn when(standing: &Standing, event: SagaEvent) -> Decision {
        let destinations = Destinations::parse("GB,DE").expect("valid");
        react(standing, &event, &destinations, NOW)
    }

    fn emitted(decision: &Decision) -> Vec<EventType> {
        decision.emit.iter().map(SagaEvent::event_type).collect()
    }

    fn status(decision: &Decision) -> Option<ShipmentStatus> {
        decision.standing.shipment.as_ref().map(|s| s.status)
    }

    #[test]
    fn a_reserved_order_to_a_served_country_is_scheduled_once() {
        let scheduled = when(&Standing::default(), reserved("GB", None));
        assert_eq!(status(&scheduled), Some(ShipmentStatus::Scheduled));
        assert_eq!(emitted(&scheduled), [EventType::ShipmentScheduled]);
        let again = when(&scheduled.standing, reserved("GB", None));
        assert!(again.emit.is_empty());
    }

    #[test]
    fn an_unserved_country_fails_the_shipment() {
        let failed = when(&Standing::default(), reserved("AQ", None));
        assert_eq!(status(&failed), Some(ShipmentStatus::Failed));
        assert_eq!(emitted(&failed), [EventType::ShipmentFailed]);
    }

    #[test]
    fn a_reservation_after_the_deadline_or_the_cancellation_schedules_nothing() {
        let late = when(&Standing::default(), reserved("GB", Some(NOW)));
        assert_eq!(late.standing.shipment, None);
        assert_eq!(late.standing.closed, Some(CancellationReason::TIMED_OUT));
        let closed = when(&Standing::default(), cancelled()).standing;
        let after = when(&closed, reserved("GB", None));
        assert_eq!(after.standing.shipment, None);
        assert!(after.emit.is_empty());
    }

    #[test]
    fn a_cancellation_calls_a_scheduled_shipment_off_once() {
        let scheduled = when(&Standing::default(), reserved("GB", None)).standing;
        let called_off = when(&scheduled, cancelled());
        assert_eq!(status(&called_off), Some(ShipmentStatus::Cancelled));
        assert_eq!(emitted(&called_off), [EventType::ShipmentCancelled]);
        assert!(when(&called_off.standing, cancelled()).emit.is_empty());
    }

    #[test]
    fn a_failed_shipment_has_nothing_to_call_off() {
        let failed = when(&Standing::default(), reserved("AQ", None)).standing;
        assert!(when(&failed, cancelled()).emit.is_empty());
    }

    #[test]
    fn only_listed_countries_are_served() -> Result<(), String> {
        let destinations = Destinations::parse(DEFAULT_COUNTRIES)?;
        assert_eq!(destinations.refusal("GB"), None);
        assert!(destinations.refusal("AQ").is_some_and(|r| r.contains("AQ")));
        assert!(destinations.refusal("gb").is_some());
        Ok(())
    }

    #[test]
    fn a_bad_list_is_an_error_not_an_empty_world() {
        assert!(Destinations::parse("").is_err());
        assert!(Destinations::parse("GB,Germany").is_err());
        assert_eq!(
            Destinations::parse(" GB , DE "),
            Destinations::parse("DE,GB")
        );
    }
}
