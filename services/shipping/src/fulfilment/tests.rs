//! Given a fulfilment, when a step's outcome (or the order's cancellation) arrives, then…
//! Without I/O: the step runner only carries out what these transitions decide.

use saga_events::EventType;
use saga_participant::scenario;
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000_000;
const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000003";

fn started() -> Fulfilment {
    let reserved = EventMetadata::first(ORDER, "inventory");
    let (fulfilment, _) = start(
        ORDER,
        Uuid::nil(),
        &scenario::address("GB"),
        &[StockLine {
            sku: "MUG".into(),
            quantity: 1,
        }],
        &reserved,
    );
    fulfilment
}

fn ok(step: Step, id: &str) -> FulfilmentInput {
    FulfilmentInput::Succeeded {
        step,
        result: json!({ "id": id }),
    }
}

fn refused(step: Step) -> FulfilmentInput {
    FulfilmentInput::Failed {
        step,
        reason: format!("{} refused", step.as_str()),
    }
}

/// Feeds `inputs` in order; returns the last transition.
fn when(given: Fulfilment, inputs: &[FulfilmentInput]) -> Transition<Fulfilment> {
    let mut transition = Transition::to(given);
    for input in inputs {
        transition = match super::transition(&transition.state, input, NOW) {
            Ok(next) => next,
            Err(conflict) => panic!("{input:?} refused: {conflict}"),
        };
    }
    transition
}

fn emitted(transition: &Transition<Fulfilment>) -> Vec<EventType> {
    transition
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Emit(event) => Some(event.event_type()),
            _ => None,
        })
        .collect()
}

fn runs(transition: &Transition<Fulfilment>) -> Vec<&'static str> {
    transition
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Run { step } => Some(*step),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fulfilment_starts_by_allocating() {
    let reserved = EventMetadata::first(ORDER, "inventory");
    let (fulfilment, commands) =
        start(ORDER, Uuid::nil(), &scenario::address("GB"), &[], &reserved);
    assert_eq!(fulfilment.phase, Phase::Allocating);
    assert_eq!(commands, [Command::Run { step: "allocate" }]);
}

#[test]
fn allocate_label_pickup_schedules_the_shipment() {
    let allocated = when(started(), &[ok(Step::Allocate, "depot-1")]);
    assert_eq!(runs(&allocated), ["label"]);
    let labelled = when(allocated.state, &[ok(Step::Label, "label-1")]);
    assert_eq!(runs(&labelled), ["pickup"]);
    let booked = when(labelled.state, &[ok(Step::Pickup, "pickup-1")]);
    assert_eq!(booked.state.phase, Phase::Scheduled);
    assert_eq!(emitted(&booked), [EventType::ShipmentScheduled]);
    assert_eq!(booked.state.label_id.as_deref(), Some("label-1"));
    let steps: Vec<&str> = booked.state.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["allocate", "label", "pickup"]);
}

#[test]
fn a_refused_allocation_or_label_fails_with_nothing_to_undo() {
    for inputs in [
        vec![refused(Step::Allocate)],
        vec![ok(Step::Allocate, "depot-1"), refused(Step::Label)],
    ] {
        let failed = when(started(), &inputs);
        assert_eq!(failed.state.phase, Phase::Failed);
        assert_eq!(emitted(&failed), [EventType::ShipmentFailed]);
        assert!(runs(&failed).is_empty(), "no label to void");
    }
}

#[test]
fn a_refused_pickup_voids_the_label_before_the_shipment_fails() {
    let labelled = [ok(Step::Allocate, "depot-1"), ok(Step::Label, "label-1")];
    let refused_pickup = when(
        started(),
        &[labelled.as_slice(), &[refused(Step::Pickup)]].concat(),
    );
    assert_eq!(refused_pickup.state.phase, Phase::VoidingLabel);
    assert_eq!(runs(&refused_pickup), ["void_label"]);
    assert!(
        emitted(&refused_pickup).is_empty(),
        "not failed before the label is voided"
    );
    let voided = when(refused_pickup.state, &[ok(Step::VoidLabel, "void-1")]);
    assert_eq!(voided.state.phase, Phase::Failed);
    assert!(voided.state.label_voided);
    assert_eq!(emitted(&voided), [EventType::ShipmentFailed]);
    assert!(
        voided
            .state
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("pickup")),
        "{:?}",
        voided.state.failure
    );
}

#[test]
fn a_cancellation_before_any_label_drops_the_steps_and_tells_nothing() {
    let cancelled = when(started(), &[FulfilmentInput::OrderCancelled]);
    assert_eq!(cancelled.state.phase, Phase::Cancelled);
    assert!(emitted(&cancelled).is_empty());
    assert!(
        cancelled
            .commands
            .contains(&Command::Drop { step: "allocate" })
    );
    // A late allocation changes nothing more.
    let late = when(cancelled.state, &[ok(Step::Allocate, "depot-1")]);
    assert_eq!(late.state.phase, Phase::Cancelled);
    assert!(runs(&late).is_empty());
}

#[test]
fn a_label_made_after_the_cancellation_is_voided() {
    let cancelled = when(
        started(),
        &[
            ok(Step::Allocate, "depot-1"),
            FulfilmentInput::OrderCancelled,
        ],
    );
    let late_label = when(cancelled.state, &[ok(Step::Label, "label-1")]);
    assert_eq!(late_label.state.phase, Phase::Undoing);
    assert_eq!(runs(&late_label), ["void_label"]);
    let voided = when(late_label.state, &[ok(Step::VoidLabel, "void-1")]);
    assert_eq!(voided.state.phase, Phase::Cancelled);
    assert!(voided.state.label_voided);
    assert!(emitted(&voided).is_empty());
}

#[test]
fn a_cancellation_after_the_label_or_the_pickup_voids_the_label() {
    let labelled = vec![ok(Step::Allocate, "depot-1"), ok(Step::Label, "label-1")];
    let booked = [labelled.clone(), vec![ok(Step::Pickup, "pickup-1")]].concat();
    for inputs in [labelled, booked] {
        let cancelled = when(
            started(),
            &[inputs, vec![FulfilmentInput::OrderCancelled]].concat(),
        );
        assert_eq!(cancelled.state.phase, Phase::Undoing);
        assert_eq!(runs(&cancelled), ["void_label"]);
        assert!(
            emitted(&cancelled).is_empty(),
            "ShipmentCancelled is Shipping's rules' to tell"
        );
        assert_eq!(cancelled.state.shipment_status(), ShipmentStatus::Cancelled);
    }
}

#[test]
fn a_repeated_cancellation_changes_nothing() {
    let cancelled = when(started(), &[FulfilmentInput::OrderCancelled]).state;
    let again = when(cancelled.clone(), &[FulfilmentInput::OrderCancelled]);
    assert_eq!(again, Transition::to(cancelled));
}

#[test]
fn the_shipment_is_fulfilling_while_the_carrier_is_called() {
    let fulfilment = started();
    assert_eq!(fulfilment.shipment_status(), ShipmentStatus::Fulfilling);
    for step in Step::ALL {
        assert_eq!(Step::parse(step.as_str()), Some(step));
    }
}
