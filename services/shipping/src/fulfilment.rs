//! Fulfilment, without I/O: the steps that turn a reserved order into a booked pickup, and the
//! compensation inside Shipping when one fails or the order is cancelled.
//!
//! On `StockReserved`, a fulfilment starts: **allocate** (a depot; a destination Shipping does not
//! serve fails here), **label** (the carrier's label), **pickup** (the carrier books it). Each is
//! a workflow step (`saga_workflow`): its call to the carrier runs outside any transaction under
//! an idempotency key, transient failures are retried, and its outcome comes back here.
//!
//! - The pickup booked: `ShipmentScheduled`.
//! - Allocate or label refused: `ShipmentFailed` (nothing to undo: no label exists).
//! - Pickup refused: the label is voided first (in-domain compensation), then `ShipmentFailed`.
//! - The order cancelled: the steps not started are dropped, and a label made is voided. No
//!   event: a shipment that was never scheduled is not the saga's to undo; one that was is called
//!   off by Shipping's rules (`ShipmentCancelled`), and its label voided here.

use saga_events::{
    Address, EventMetadata, SagaEvent, ShipmentFailed, ShipmentScheduled, StockLine,
};
use saga_workflow::{Command, Conflict, Transition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::words::{PRODUCER, ShipmentStatus};

/// A fulfilment's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Allocate,
    Label,
    Pickup,
    VoidLabel,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Allocate, Step::Label, Step::Pickup, Step::VoidLabel];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Allocate => "allocate",
            Step::Label => "label",
            Step::Pickup => "pickup",
            Step::VoidLabel => "void_label",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Where a fulfilment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Allocating,
    Labelling,
    BookingPickup,
    /// The pickup was refused: the label is being voided before the shipment fails.
    VoidingLabel,
    Scheduled,
    Failed,
    /// The order was cancelled: what was done is being undone.
    Undoing,
    Cancelled,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Allocating => "ALLOCATING",
            Phase::Labelling => "LABELLING",
            Phase::BookingPickup => "BOOKING_PICKUP",
            Phase::VoidingLabel => "VOIDING_LABEL",
            Phase::Scheduled => "SCHEDULED",
            Phase::Failed => "FAILED",
            Phase::Undoing => "UNDOING",
            Phase::Cancelled => "CANCELLED",
        }
    }

    /// Whether the carrier is still being called for it.
    pub fn is_running(self) -> bool {
        !matches!(self, Phase::Scheduled | Phase::Failed | Phase::Cancelled)
    }
}

/// A step done, as `GET /shipments/{order_id}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepDone {
    /// `allocate`, `label`, `pickup` or `void_label`.
    pub step: String,
    /// `DONE`, or `FAILED` with the reason in `detail`.
    pub outcome: String,
    /// The depot, label or pickup the carrier gave, or why it refused.
    pub detail: Option<String>,
    /// UTC epoch milliseconds.
    pub at_ms: i64,
}

/// A fulfilment: what it ships where, what the carrier gave so far, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfilment {
    pub phase: Phase,
    pub order_id: String,
    pub shipment_id: Uuid,
    pub address: Address,
    pub items: Vec<StockLine>,
    /// The `StockReserved` it answers: its outcome is caused by it.
    pub reserved: EventMetadata,
    pub depot: Option<String>,
    pub label_id: Option<String>,
    pub pickup_id: Option<String>,
    /// Why the shipment failed.
    pub failure: Option<String>,
    pub label_voided: bool,
    pub steps: Vec<StepDone>,
}

/// What moves a fulfilment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FulfilmentInput {
    /// A step's call succeeded, with what the carrier answered (`{"id": …}`).
    Succeeded {
        step: Step,
        result: Value,
    },
    /// A step's call failed for good.
    Failed {
        step: Step,
        reason: String,
    },
    OrderCancelled,
}

/// The fulfilment of `shipment_id`, started by `reserved`, and its first step.
pub fn start(
    order_id: &str,
    shipment_id: Uuid,
    address: &Address,
    items: &[StockLine],
    reserved: &EventMetadata,
) -> (Fulfilment, Vec<Command>) {
    let fulfilment = Fulfilment {
        phase: Phase::Allocating,
        order_id: order_id.to_owned(),
        shipment_id,
        address: address.clone(),
        items: items.to_vec(),
        reserved: reserved.clone(),
        depot: None,
        label_id: None,
        pickup_id: None,
        failure: None,
        label_voided: false,
        steps: Vec::new(),
    };
    let first = Command::Run {
        step: Step::Allocate.as_str(),
    };
    (fulfilment, vec![first])
}

/// How `input` at `now_ms` moves `fulfilment`. Nothing is refused: an outcome that comes late
/// (a step dropped by a cancellation that still succeeded) is answered by undoing it.
pub fn transition(
    fulfilment: &Fulfilment,
    input: &FulfilmentInput,
    now_ms: i64,
) -> Result<Transition<Fulfilment>, Conflict> {
    use FulfilmentInput::{Failed, OrderCancelled, Succeeded};
    use Phase::*;
    let mut next = fulfilment.clone();
    if let Succeeded { step, result } = input {
        next.record(*step, "DONE", id_of(result), now_ms);
    }
    if let Failed { step, reason } = input {
        next.record(*step, "FAILED", Some(reason.clone()), now_ms);
    }
    let run = |step: Step| Command::Run {
        step: step.as_str(),
    };
    let drop = |step: Step| Command::Drop {
        step: step.as_str(),
    };
    Ok(match (fulfilment.phase, input) {
        (
            Allocating,
            Succeeded {
                step: Step::Allocate,
                result,
            },
        ) => {
            next.depot = id_of(result);
            next.phase = Labelling;
            Transition::to(next).then(run(Step::Label))
        }
        (
            Labelling,
            Succeeded {
                step: Step::Label,
                result,
            },
        ) => {
            next.label_id = id_of(result);
            next.phase = BookingPickup;
            Transition::to(next).then(run(Step::Pickup))
        }
        (
            BookingPickup,
            Succeeded {
                step: Step::Pickup,
                result,
            },
        ) => {
            next.pickup_id = id_of(result);
            next.phase = Scheduled;
            let told = scheduled(&next);
            Transition::to(next).then(Command::emit(told))
        }
        (Allocating | Labelling, Failed { reason, .. }) => {
            next.phase = Phase::Failed;
            next.failure = Some(reason.clone());
            let told = failed(&next);
            Transition::to(next).then(Command::emit(told))
        }
        (
            BookingPickup,
            Failed {
                step: Step::Pickup,
                reason,
            },
        ) => {
            next.phase = VoidingLabel;
            next.failure = Some(format!("the carrier refused the pickup: {reason}"));
            Transition::to(next).then(run(Step::VoidLabel))
        }
        (
            VoidingLabel,
            Succeeded {
                step: Step::VoidLabel,
                ..
            },
        ) => {
            next.label_voided = true;
            next.phase = Phase::Failed;
            let told = failed(&next);
            Transition::to(next).then(Command::emit(told))
        }
        (
            VoidingLabel,
            Failed {
                step: Step::VoidLabel,
                reason,
            },
        ) => {
            next.phase = Phase::Failed;
            let failure = next.failure.take().unwrap_or_default();
            next.failure = Some(format!(
                "{failure}; the label could not be voided: {reason}"
            ));
            let told = failed(&next);
            Transition::to(next).then(Command::emit(told))
        }
        // Cancelled before any label: nothing to undo.
        (Allocating | Labelling, OrderCancelled) => {
            next.phase = Cancelled;
            Transition::to(next)
                .then(drop(Step::Allocate))
                .then(drop(Step::Label))
        }
        // A label exists (and perhaps a pickup): void it.
        (BookingPickup | Scheduled, OrderCancelled) => {
            next.phase = Undoing;
            Transition::to(next)
                .then(drop(Step::Pickup))
                .then(run(Step::VoidLabel))
        }
        // A label the carrier made after the cancellation: void it too.
        (
            Cancelled,
            Succeeded {
                step: Step::Label,
                result,
            },
        ) => {
            next.label_id = id_of(result);
            next.phase = Undoing;
            Transition::to(next).then(run(Step::VoidLabel))
        }
        (
            Undoing,
            Succeeded {
                step: Step::VoidLabel,
                ..
            },
        ) => {
            next.label_voided = true;
            next.phase = Cancelled;
            Transition::to(next)
        }
        (
            Undoing,
            Failed {
                step: Step::VoidLabel,
                ..
            },
        ) => {
            next.phase = Cancelled;
            Transition::to(next)
        }
        // A cancellation that finds the pickup being voided already has nothing more to
        // do; any other late outcome is recorded and changes nothing more.
        _ => Transition::to(next),
    })
}

impl Fulfilment {
    fn record(&mut self, step: Step, outcome: &str, detail: Option<String>, at_ms: i64) {
        self.steps.push(StepDone {
            step: step.as_str().to_owned(),
            outcome: outcome.to_owned(),
            detail,
            at_ms,
        });
    }

    /// The shipment status the fulfilment means: `FULFILLING` while it runs.
    pub fn shipment_status(&self) -> ShipmentStatus {
        match self.phase {
            Phase::Scheduled => ShipmentStatus::Scheduled,
            Phase::Failed => ShipmentStatus::Failed,
            Phase::Undoing | Phase::Cancelled => ShipmentStatus::Cancelled,
            _ => ShipmentStatus::Fulfilling,
        }
    }
}

fn id_of(result: &Value) -> Option<String> {
    result.get("id").and_then(Value::as_str).map(str::to_owned)
}

fn scheduled(fulfilment: &Fulfilment) -> SagaEvent {
    ShipmentScheduled {
        metadata: EventMetadata::caused_by(&fulfilment.reserved, PRODUCER),
        order_id: fulfilment.order_id.clone(),
        shipment_id: fulfilment.shipment_id.to_string(),
        country: fulfilment.address.country.clone(),
    }
    .into()
}

fn failed(fulfilment: &Fulfilment) -> SagaEvent {
    ShipmentFailed {
        metadata: EventMetadata::caused_by(&fulfilment.reserved, PRODUCER),
        order_id: fulfilment.order_id.clone(),
        reason: fulfilment.failure.clone().unwrap_or_default(),
    }
    .into()
}

#[cfg(test)]
mod tests;
