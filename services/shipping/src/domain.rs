//! Shipping's rules without I/O: which destinations are served, and what each event the service
//! hears does to an order's shipment, decided from the event and what Shipping knows of the
//! order ([`Standing`]). How a batch of events is loaded, decided and saved is the same for
//! every participant (`saga_participant`); only these rules, and the SQL in [`crate::store`],
//! are Shipping's.
//!
//! - `StockReserved`: start the shipment's fulfilment ([`crate::fulfilment`]: allocate, label,
//!   pickup), once per order; never when the order was cancelled first or is past its deadline
//!   ([`saga_participant::Standing::turns_away`]). The shipment is `FULFILLING` until the
//!   fulfilment schedules it or fails it.
//! - `OrderCancelled`: the order is closed; a scheduled shipment is called off (and the
//!   fulfilment, running or done, undoes what it did with the carrier).

use std::collections::BTreeSet;

use saga_events::{
    Address, CancellationReason, EventMetadata, SagaEvent, Service, ShipmentCancelled, StockLine,
    StockReserved,
};
use saga_participant::{Participant, Refused};
use uuid::Uuid;

use crate::fulfilment::{self, Fulfilment};
pub use crate::words::{PRODUCER, ShipmentStatus};

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

/// Shipping's rules. Which destinations are served is the fulfilment's first step's to say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules;

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
    /// The fulfilment this decision started, for the ledger to start with its first step (never
    /// read back: the fulfilment lives in its workflow instance from then on).
    pub opened: Option<Box<OpenedFulfilment>>,
}

/// A fulfilment as the decision that started it hands it to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedFulfilment {
    pub fulfilment: Fulfilment,
    pub commands: Vec<saga_workflow::Command>,
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
    /// The batch's orders' traces, which the fulfilments it starts keep.
    type Context = saga_workflow::Traces;

    /// Decides Shipping's reaction to `event` for an order standing as `standing`, at `now_ms`:
    /// nothing Shipping hears contradicts what it knows, so it refuses nothing.
    fn decide(
        &self,
        standing: &Standing,
        event: &SagaEvent,
        _: &mut saga_workflow::Traces,
        now_ms: i64,
    ) -> Decided {
        Ok(match event {
            SagaEvent::StockReserved(reserved) => {
                match standing.turns_away(reserved.deadline_at, now_ms) {
                    Some(turned_away) => turned_away,
                    None => fulfil(standing, reserved),
                }
            }
            SagaEvent::OrderCancelled(cancelled) => {
                call_off(standing, event, cancelled.reason).closing(cancelled.reason)
            }
            _ => Decision::unchanged(standing),
        })
    }
}

/// Starts the fulfilment of a reserved order: nothing to tell the saga until it ends.
fn fulfil(standing: &Standing, reserved: &StockReserved) -> Decision {
    let shipment_id = Uuid::now_v7();
    let (fulfilment, commands) = fulfilment::start(
        &reserved.order_id,
        shipment_id,
        &reserved.shipping_address,
        &reserved.items,
        &reserved.metadata,
    );
    let shipment = Shipment {
        shipment_id,
        status: ShipmentStatus::Fulfilling,
        country: reserved.shipping_address.country.clone(),
        address: reserved.shipping_address.clone(),
        items: reserved.items.clone(),
        failure_reason: None,
        opened: Some(Box::new(OpenedFulfilment {
            fulfilment,
            commands,
        })),
    };
    Decision {
        standing: saga_participant::Standing {
            step: Some(shipment),
            closed: standing.closed,
        },
        emit: Vec::new(),
    }
}

/// Calls a scheduled shipment off; anything else has nothing to undo.
fn call_off(standing: &Standing, cause: &SagaEvent, reason: CancellationReason) -> Decision {
    let Some(shipment) = standing.in_effect(|s| s.status == ShipmentStatus::Scheduled) else {
        return Decision::unchanged(standing);
    };
    let cancelled = Shipment {
        status: ShipmentStatus::Cancelled,
        opened: None,
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
        Stage::new(Rules, NOW)
    }

    /// The shipment as its fulfilment scheduled it.
    fn scheduled_by_its_fulfilment(standing: &Standing) -> Standing {
        let mut standing = standing.clone();
        if let Some(shipment) = standing.step.as_mut() {
            shipment.status = ShipmentStatus::Scheduled;
            shipment.opened = None;
        }
        standing
    }

    fn status(decision: &Decision) -> Option<ShipmentStatus> {
        decision.standing.step.as_ref().map(|s| s.status)
    }

    #[test]
    fn a_reserved_order_starts_its_fulfilment_once() -> Result<(), Refused> {
        let fulfilling = shipping()
            .given(Standing::default())
            .when(reserved("GB", None))?;
        assert_eq!(status(&fulfilling), Some(ShipmentStatus::Fulfilling));
        assert!(fulfilling.emit.is_empty(), "nothing told until it ends");
        let opened = fulfilling
            .standing
            .step
            .as_ref()
            .and_then(|s| s.opened.as_ref())
            .expect("a fulfilment to start");
        assert_eq!(
            opened.commands,
            [saga_workflow::Command::Run { step: "allocate" }]
        );
        let again = shipping()
            .given(&fulfilling.standing)
            .when(reserved("GB", None))?;
        assert!(again.emit.is_empty());
        assert_eq!(again.standing, fulfilling.standing);
        Ok(())
    }

    #[test]
    fn a_cancellation_leaves_a_running_fulfilment_to_undo_itself() -> Result<(), Refused> {
        let fulfilling = shipping()
            .given(Standing::default())
            .when(reserved("GB", None))?
            .standing;
        let cancelled = shipping().given(&fulfilling).when(cancelled())?;
        assert!(cancelled.emit.is_empty(), "nothing was scheduled");
        assert_eq!(
            cancelled.standing.closed,
            Some(CancellationReason::TIMED_OUT)
        );
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
        let scheduled = scheduled_by_its_fulfilment(
            &shipping()
                .given(Standing::default())
                .when(reserved("GB", None))?
                .standing,
        );
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
