//! Inventory's rules without I/O: reservation arithmetic, and what each event the service hears
//! does to an order's reservation and to the stock, decided from the event, what Inventory knows
//! of the order ([`Standing`]) and the stock of the SKUs involved (the batch's context, locked
//! by [`crate::store`] before anything is decided). How a batch is loaded, decided and saved is
//! the same for every participant (`saga_participant`).
//!
//! - `PaymentAuthorized`: reserve every line or none, once per order; never when the order was
//!   cancelled first or is past its deadline ([`saga_participant::Standing::turns_away`]).
//! - `ShipmentFailed`: give the reserved units back.
//! - `OrderCancelled`: the order is closed; reserved units go back.

use std::collections::BTreeMap;

use saga_events::{
    EventMetadata, PaymentAuthorized, SagaEvent, Service, StockLine, StockReleased,
    StockReservationFailed, StockReserved,
};
use saga_participant::{Participant, Refused};
use serde::{Deserialize, Serialize};

pub const PRODUCER: &str = "inventory";

pub const MAX_ON_HAND: i64 = 1_000_000_000;

/// Units of one SKU as the database holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub on_hand: i64,
    pub reserved: i64,
}

impl Level {
    pub fn available(self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// Units of every SKU a batch touches.
pub type Levels = BTreeMap<String, Level>;

saga_events::status_enum! {
    pub enum ReservationStatus {
        Reserved => "RESERVED",
        Failed => "FAILED",
        Released => "RELEASED",
    }
}

/// One line of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub quantity: i64,
}

/// What an order holds (or was refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub status: ReservationStatus,
    pub lines: Vec<ReservedLine>,
}

/// What Inventory knows of one order: its reservation, and whether it is closed (nothing is
/// reserved after).
pub type Standing = saga_participant::Standing<Reservation>;

/// The order's standing after the event, and what Inventory tells the saga. Stock changes are
/// made to the `levels` the decision was given.
pub type Decision = saga_participant::Decision<Reservation>;

/// What the rules make of an event: a decision, or a refusal.
type Decided = Result<Decision, Refused>;

/// Merges lines of the same SKU, so that one order asking twice for a SKU is checked against
/// its total.
pub fn merge_lines<'a>(lines: impl IntoIterator<Item = (&'a str, i64)>) -> BTreeMap<String, i64> {
    let mut merged = BTreeMap::new();
    for (sku, quantity) in lines {
        *merged.entry(sku.to_owned()).or_insert(0) += quantity;
    }
    merged
}

/// All lines or none: Ok with the new level of every SKU, or Err with every SKU that cannot be
/// served (unknown, not enough available, or a non-positive quantity).
pub fn reserve(wanted: &BTreeMap<String, i64>, levels: &Levels) -> Result<Levels, Vec<String>> {
    let mut after = BTreeMap::new();
    let mut unavailable = Vec::new();
    for (sku, &quantity) in wanted {
        match levels.get(sku) {
            Some(level) if quantity > 0 && quantity <= level.available() => {
                after.insert(
                    sku.clone(),
                    Level {
                        on_hand: level.on_hand,
                        reserved: level.reserved + quantity,
                    },
                );
            }
            _ => unavailable.push(sku.clone()),
        }
    }
    if unavailable.is_empty() {
        Ok(after)
    } else {
        Err(unavailable)
    }
}

/// Inventory's rules. The stock they reserve from and release to is the batch's context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules;

impl Participant for Rules {
    const SERVICE: Service = Service::Inventory;
    type Step = Reservation;
    type Context = Levels;

    /// Decides Inventory's reaction to `event` for an order standing as `standing`, at `now_ms`,
    /// changing `levels` as stock is reserved or released.
    fn decide(
        &self,
        standing: &Standing,
        event: &SagaEvent,
        levels: &mut Levels,
        now_ms: i64,
    ) -> Decided {
        match event {
            SagaEvent::PaymentAuthorized(paid) => Ok(reserve_for(standing, paid, levels, now_ms)),
            SagaEvent::ShipmentFailed(_) => {
                if standing.step.is_none() {
                    return Err(Refused(format!(
                        "ShipmentFailed for order {}, which holds no reservation",
                        event.order_id()
                    )));
                }
                release(standing, event, levels)
            }
            SagaEvent::OrderCancelled(cancelled) => {
                Ok(release(standing, event, levels)?.closing(cancelled.reason))
            }
            _ => Ok(Decision::unchanged(standing)),
        }
    }
}

fn reserve_for(
    standing: &Standing,
    paid: &PaymentAuthorized,
    levels: &mut Levels,
    now_ms: i64,
) -> Decision {
    if let Some(turned_away) = standing.turns_away(paid.deadline_at, now_ms) {
        return turned_away;
    }
    let wanted = merge_lines(
        paid.items
            .iter()
            .map(|l| (l.sku.as_str(), i64::from(l.quantity))),
    );
    let lines: Vec<ReservedLine> = wanted
        .iter()
        .map(|(sku, &quantity)| ReservedLine {
            sku: sku.clone(),
            quantity,
        })
        .collect();
    let metadata = EventMetadata::caused_by(&paid.metadata, PRODUCER);
    match reserve(&wanted, levels) {
        Ok(after) => {
            levels.extend(after);
            let reserved = Reservation {
                status: ReservationStatus::Reserved,
                lines: lines.clone(),
            };
            let told = StockReserved {
                metadata,
                order_id: paid.order_id.clone(),
                items: stock_lines(&lines),
                shipping_address: paid.shipping_address.clone(),
                deadline_at: paid.deadline_at,
            };
            Decision::changed(standing, reserved, told)
        }
        Err(unavailable) => {
            let reason = unavailable
                .iter()
                .map(|sku| {
                    let available = levels.get(sku).map(|l| l.available()).unwrap_or(0);
                    format!(
                        "{sku}: {} wanted, {available} available",
                        wanted.get(sku).copied().unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let failed = Reservation {
                status: ReservationStatus::Failed,
                lines,
            };
            let told = StockReservationFailed {
                metadata,
                order_id: paid.order_id.clone(),
                unavailable_skus: unavailable,
                reason,
            };
            Decision::changed(standing, failed, told)
        }
    }
}

/// Gives reserved units back; what was never reserved, or already released, owes nothing.
fn release(standing: &Standing, cause: &SagaEvent, levels: &mut Levels) -> Decided {
    let Some(reservation) = standing.in_effect(|r| r.status == ReservationStatus::Reserved) else {
        return Ok(Decision::unchanged(standing));
    };
    for line in &reservation.lines {
        let level = levels
            .get_mut(&line.sku)
            .ok_or_else(|| Refused(format!("reserved SKU {} no longer exists", line.sku)))?;
        level.reserved -= line.quantity;
    }
    let released = Reservation {
        status: ReservationStatus::Released,
        lines: reservation.lines.clone(),
    };
    let told = StockReleased {
        metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
        order_id: cause.order_id().to_owned(),
        items: stock_lines(&reservation.lines),
    };
    Ok(Decision::changed(standing, released, told))
}

fn stock_lines(lines: &[ReservedLine]) -> Vec<StockLine> {
    lines
        .iter()
        .map(|line| StockLine {
            sku: line.sku.clone(),
            // Quantities come from an event's i32 lines and are merged per order: a sum over
            // i32::MAX means an order nobody could place.
            quantity: i32::try_from(line.quantity).unwrap_or(i32::MAX),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use saga_events::{CancellationReason, EventType};
    use saga_participant::scenario::{self, Stage, emitted};

    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    /// Given what Inventory knows and the stock, when an event arrives, then…
    const INVENTORY: Stage<Rules> = Stage::new(Rules, NOW);
    const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000002";

    fn levels(entries: &[(&str, i64, i64)]) -> Levels {
        entries
            .iter()
            .map(|(sku, on_hand, reserved)| {
                (
                    (*sku).to_owned(),
                    Level {
                        on_hand: *on_hand,
                        reserved: *reserved,
                    },
                )
            })
            .collect()
    }

    fn paid(lines: &[(&str, i32)], deadline_at: Option<i64>) -> SagaEvent {
        PaymentAuthorized {
            metadata: EventMetadata::first(ORDER, "payment"),
            order_id: ORDER.into(),
            payment_id: "p".into(),
            amount_cents: 100,
            currency: "EUR".into(),
            items: lines
                .iter()
                .map(|(sku, quantity)| StockLine {
                    sku: (*sku).into(),
                    quantity: *quantity,
                })
                .collect(),
            shipping_address: scenario::address("GB"),
            deadline_at,
        }
        .into()
    }

    fn cancelled() -> SagaEvent {
        scenario::cancelled(ORDER, CancellationReason::TIMED_OUT)
    }

    fn shipment_failed() -> SagaEvent {
        scenario::shipment_failed(ORDER)
    }

    #[test]
    fn a_paid_order_reserves_every_line_and_carries_its_deadline_on() -> Result<(), Refused> {
        let mut stock = levels(&[("A", 5, 3), ("B", 1, 0)]);
        let decision = INVENTORY
            .given(Standing::default())
            .when_with(&mut stock, paid(&[("A", 2), ("B", 1)], Some(NOW + 1)))?;
        assert_eq!(emitted(&decision), [EventType::StockReserved]);
        assert_eq!(stock["A"].reserved, 5);
        assert_eq!(stock["B"].reserved, 1);
        let SagaEvent::StockReserved(reserved) = &decision.emit[0] else {
            panic!("not a reservation");
        };
        assert_eq!(reserved.deadline_at, Some(NOW + 1));
        Ok(())
    }

    #[test]
    fn one_short_line_refuses_the_whole_order() -> Result<(), Refused> {
        let mut stock = levels(&[("A", 5, 0), ("B", 3, 2)]);
        let decision = INVENTORY
            .given(Standing::default())
            .when_with(&mut stock, paid(&[("A", 1), ("B", 2), ("C", 1)], None))?;
        assert_eq!(emitted(&decision), [EventType::StockReservationFailed]);
        assert_eq!(stock, levels(&[("A", 5, 0), ("B", 3, 2)]), "nothing held");
        Ok(())
    }

    #[test]
    fn repeated_skus_are_checked_against_their_sum() {
        let wanted = merge_lines([("A", 2), ("A", 2)]);
        assert_eq!(wanted["A"], 4);
        assert!(reserve(&wanted, &levels(&[("A", 3, 0)])).is_err());
    }

    #[test]
    fn nonsense_quantities_are_never_reserved() {
        assert!(reserve(&merge_lines([("A", 0)]), &levels(&[("A", 3, 0)])).is_err());
        assert!(reserve(&merge_lines([("A", -1)]), &levels(&[("A", 3, 0)])).is_err());
    }

    #[test]
    fn a_payment_after_the_deadline_reserves_nothing() -> Result<(), Refused> {
        let mut stock = levels(&[("A", 5, 0)]);
        let decision = INVENTORY
            .given(Standing::default())
            .when_with(&mut stock, paid(&[("A", 1)], Some(NOW)))?;
        assert!(decision.emit.is_empty());
        assert_eq!(
            decision.standing.closed,
            Some(CancellationReason::TIMED_OUT)
        );
        assert_eq!(stock["A"].reserved, 0);
        Ok(())
    }

    #[test]
    fn a_payment_after_the_cancellation_reserves_nothing() -> Result<(), Refused> {
        let mut stock = levels(&[("A", 5, 0)]);
        let closed = INVENTORY
            .given(Standing::default())
            .when_with(&mut stock, cancelled())?
            .standing;
        let decision = INVENTORY
            .given(&closed)
            .when_with(&mut stock, paid(&[("A", 1)], None))?;
        assert!(decision.emit.is_empty());
        assert_eq!(stock["A"].reserved, 0);
        Ok(())
    }

    #[test]
    fn a_cancellation_releases_what_is_held_once() -> Result<(), Refused> {
        let mut stock = levels(&[("A", 5, 0)]);
        let held = INVENTORY
            .given(Standing::default())
            .when_with(&mut stock, paid(&[("A", 2)], None))?
            .standing;
        let released = INVENTORY.given(&held).when_with(&mut stock, cancelled())?;
        assert_eq!(emitted(&released), [EventType::StockReleased]);
        assert_eq!(stock["A"].reserved, 0);
        let again = INVENTORY
            .given(&released.standing)
            .when_with(&mut stock, cancelled())?;
        assert!(again.emit.is_empty());
        let after_failure = INVENTORY
            .given(&released.standing)
            .when_with(&mut stock, shipment_failed())?;
        assert!(after_failure.emit.is_empty(), "released twice");
        assert_eq!(stock["A"].reserved, 0);
        Ok(())
    }

    #[test]
    fn a_failed_shipment_for_an_order_holding_nothing_is_refused() {
        let mut stock = levels(&[]);
        assert!(
            INVENTORY
                .given(Standing::default())
                .when_with(&mut stock, shipment_failed())
                .is_err()
        );
    }
}
