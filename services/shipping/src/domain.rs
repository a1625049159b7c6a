//! Shipping's rules without I/O: which destinations are served, and what each event the service
//! hears does to an order's shipment, decided from the event and what Shipping knows of the
//! order ([`Standing`]). How a batch of events is loaded, decided and saved is the same for
//! every participant (`saga_participant`); only these rules, and the SQL in [`crate::store`],
//! are Shipping's.
//!
//! - `StockReserved`: schedule a shipment, or fail one to a destination not served, once per
//!   order; never when the order was cancelled first or is past its deadline
//!   ([`saga_participant::Standing::turns_away`]).
//! - `OrderCancelled`: the order is closed; a scheduled shipment is called off.

use std::collections::BTreeSet;

use saga_events::{
    Address, CancellationReason, EventMetadata, SagaEvent, Service, ShipmentCancelled,
    ShipmentFailed, ShipmentScheduled, StockLine, StockReserved,
};
use saga_participant::{Participant, Refused};
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

/// Shipping's rules, with the destinations it serves.
#[derive(Debug, Clone)]
pub struct Rules {
    pub destinations: Destinations,
}

saga_events::status_enum! {
    pub enum ShipmentStatus {
        Scheduled => "SCHEDULED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
    }
}

/// An order's shipment: where it goes and what it carries, as the reservation that asked for
/// it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub shipment_id: Uuid,
    pub status: ShipmentStatus,
    pub country: String,
    pub address: Address,
    pub items: Vec<StockLine>,
    pub failure_reason: Option<String>,
}

/// What Shipping knows of one order: its shipment, and whether it is closed (nothing is
/// scheduled after).
pub type Standing = saga_participant::Standing<Shipment>;

/// The order's standing after the event, and what Shipping tells the saga.
pub type Decision = saga_participant::Decision<Shipment>;

/// What the rules make of an event: a decision, or a refusal.
type Decided = Result<Decision, Refused>;

impl Participant for Rules {
    const SERVICE: Service = Service::Shipping;
    type Step = Shipment;
    type Context = ();

    /// Decides Shipping's reaction to `event` for an order standing as `standing`, at `now_ms`:
    /// nothing Shipping hears contradicts what it knows, so it refuses nothing.
    fn decide(&self, standing: &Standing, event: &SagaEvent, _: &mut (), now_ms: i64) -> Decided {
        Ok(match event {
            SagaEvent::StockReserved(reserved) => {
                match standing.turns_away(reserved.deadline_at, now_ms) {
                    Some(turned_away) => turned_away,
                    None => schedule(standing, reserved, &self.destinations),
                }
            }
            SagaEvent::OrderCancelled(cancelled) => {
                call_off(standing, event, cancelled.reason).closing(cancelled.reason)
            }
            _ => Decision::unchanged(standing),
        })
    }
}

fn schedule(
    standing: &Standing,
    reserved: &StockReserved,
    destinations: &Destinations,
) -> Decision {
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
    let shipment = Shipment {
        shipment_id,
        status,
        country: country.clone(),
        address: reserved.shipping_address.clone(),
        items: reserved.items.clone(),
        failure_reason: refusal,
    };
    Decision::changed(standing, shipment, told)
}

/// Calls a scheduled shipment off; anything else has nothing to undo.
fn call_off(standing: &Standing, cause: &SagaEvent, reason: CancellationReason) -> Decision {
    let Some(shipment) = standing.in_effect(|s| s.status == ShipmentStatus::Scheduled) else {
        return Decision::unchanged(standing);
    };
    let cancelled = Shipment {
        status: ShipmentStatus::Cancelled,
        ..shipment.clone()
    };
    let told = ShipmentCancelled {
        metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
        order_id: cause.order_id().to_owned(),
        shipment_id: shipment.shipment_id.to_string(),
        reason,
    };
    Decision::changed(standing, cancelled, told)
}

#[cfg(test)]
mod tests {
    use saga_events::EventType;
    use saga_participant::scenario::{self, Stage, emitted};

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
            shipping_address: scenario::address(country),
            deadline_at,
        }
        .into()
    }

    fn cancelled() -> SagaEvent {
        scenario::cancelled(ORDER, CancellationReason::TIMED_OUT)
    }

    /// Given what Shipping knows, when an event arrives, then…
    fn shipping() -> Stage<Rules> {
        let destinations = Destinations::parse("GB,DE").expect("valid");
        Stage::new(Rules { destinations }, NOW)
    }

    fn status(decision: &Decision) -> Option<ShipmentStatus> {
        decision.standing.step.as_ref().map(|s| s.status)
    }

    #[test]
    fn a_reserved_order_to_a_served_country_is_scheduled_once() -> Result<(), Refused> {
        let scheduled = shipping()
            .given(Standing::default())
            .when(reserved("GB", None))?;
        assert_eq!(status(&scheduled), Some(ShipmentStatus::Scheduled));
        assert_eq!(emitted(&scheduled), [EventType::ShipmentScheduled]);
        let again = shipping()
            .given(&scheduled.standing)
            .when(reserved("GB", None))?;
        assert!(again.emit.is_empty());
        Ok(())
    }

    #[test]
    fn an_unserved_country_fails_the_shipment() -> Result<(), Refused> {
        let failed = shipping()
            .given(Standing::default())
            .when(reserved("AQ", None))?;
        assert_eq!(status(&failed), Some(ShipmentStatus::Failed));
        assert_eq!(emitted(&failed), [EventType::ShipmentFailed]);
        Ok(())
    }

    #[test]
    fn a_reservation_after_the_deadline_or_the_cancellation_schedules_nothing()
    -> Result<(), Refused> {
        let late = shipping()
            .given(Standing::default())
            .when(reserved("GB", Some(NOW)))?;
        assert_eq!(late.standing.step, None);
        assert_eq!(late.standing.closed, Some(CancellationReason::TIMED_OUT));
        let closed = shipping()
            .given(Standing::default())
            .when(cancelled())?
            .standing;
        let after = shipping().given(&closed).when(reserved("GB", None))?;
        assert_eq!(after.standing.step, None);
        assert!(after.emit.is_empty());
        Ok(())
    }

    #[test]
    fn a_cancellation_calls_a_scheduled_shipment_off_once() -> Result<(), Refused> {
        let scheduled = shipping()
            .given(Standing::default())
            .when(reserved("GB", None))?
            .standing;
        let called_off = shipping().given(&scheduled).when(cancelled())?;
        assert_eq!(status(&called_off), Some(ShipmentStatus::Cancelled));
        assert_eq!(emitted(&called_off), [EventType::ShipmentCancelled]);
        assert!(
            shipping()
                .given(&called_off.standing)
                .when(cancelled())?
                .emit
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn a_failed_shipment_has_nothing_to_call_off() -> Result<(), Refused> {
        let failed = shipping()
            .given(Standing::default())
            .when(reserved("AQ", None))?
            .standing;
        assert!(shipping().given(&failed).when(cancelled())?.emit.is_empty());
        Ok(())
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
