//! Given a review, when an input arrives, then… Without I/O: the workflow engine only stores
//! what these transitions decide.

use saga_events::{EventType, Money, OrderLine};
use saga_participant::scenario;

use super::*;

const NOW: i64 = 1_800_000_000_000;
const TIMEOUT: i64 = 60_000;
const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000001";

fn placed() -> OrderPlaced {
    let mut metadata = EventMetadata::first(ORDER, "order");
    metadata.occurred_at = NOW - 10;
    OrderPlaced {
        metadata,
        order_id: ORDER.into(),
        customer_id: "c".into(),
        items: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 2,
            unit_price_cents: 150_000,
        }],
        total: Money {
            amount_minor: 300_000,
            currency: "EUR".into(),
        },
        payment_method: "tok_visa".into(),
        shipping_address: scenario::address("GB"),
        deadline_at: Some(NOW - 10 + 30_000),
        customer_email: None,
    }
}

fn opened() -> Review {
    let (review, _, _) = open(&placed(), Uuid::nil(), "amount".into(), NOW, TIMEOUT);
    review
}

fn decide(verdict: Verdict) -> ReviewInput {
    ReviewInput::Decide {
        verdict,
        reviewer: "ada".into(),
        note: Some("checked".into()),
    }
}

fn events(transition: &Transition<Review>) -> Vec<&SagaEvent> {
    transition
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Emit(event) => Some(event.as_ref()),
            _ => None,
        })
        .collect()
}

fn emitted(transition: &Transition<Review>) -> Vec<EventType> {
    events(transition).iter().map(|e| e.event_type()).collect()
}

fn cancels_expiry(transition: &Transition<Review>) -> bool {
    transition
        .commands
        .contains(&Command::Cancel { timer: EXPIRY })
}

#[test]
fn opening_a_review_tells_the_saga_its_deadline_and_sets_the_expiry() {
    let order = placed();
    let (review, told, commands) = open(&order, Uuid::nil(), "amount".into(), NOW, TIMEOUT);
    assert_eq!(review.status, ReviewStatus::Open);
    let SagaEvent::PaymentReviewRequested(requested) = told else {
        panic!("not a review request: {told:?}");
    };
    assert_eq!(requested.review_deadline_at, NOW + TIMEOUT);
    assert_eq!(
        requested.metadata.causation_id,
        Some(order.metadata.event_id)
    );
    assert_eq!(
        commands,
        [Command::Schedule {
            timer: EXPIRY,
            due_at_ms: NOW + TIMEOUT
        }]
    );
    // The saga gets its whole first budget (30 s) again after the review's deadline.
    assert_eq!(review.saga_deadline_at, Some(NOW + TIMEOUT + 30_000));
}

#[test]
fn an_approval_charges_the_order_with_the_moved_deadline() -> Result<(), Conflict> {
    let approved = transition(&opened(), &decide(Verdict::Approve), NOW + 5)?;
    assert_eq!(approved.state.status, ReviewStatus::Approved);
    assert_eq!(emitted(&approved), [EventType::PaymentAuthorized]);
    assert!(cancels_expiry(&approved));
    let [SagaEvent::PaymentAuthorized(authorized)] = events(&approved)[..] else {
        panic!("no authorization");
    };
    assert_eq!(authorized.deadline_at, Some(NOW + TIMEOUT + 30_000));
    assert_eq!(authorized.amount_cents, 300_000);
    assert_eq!(authorized.items.len(), 1);
    Ok(())
}

#[test]
fn a_rejection_declines_it_saying_so() -> Result<(), Conflict> {
    let rejected = transition(&opened(), &decide(Verdict::Reject), NOW + 5)?;
    assert_eq!(rejected.state.status, ReviewStatus::Rejected);
    let [SagaEvent::PaymentDeclined(declined)] = events(&rejected)[..] else {
        panic!("no decline");
    };
    assert!(
        declined.reason.contains("rejected in review"),
        "{}",
        declined.reason
    );
    assert!(cancels_expiry(&rejected));
    Ok(())
}

#[test]
fn no_decision_by_the_deadline_expires_it() -> Result<(), Conflict> {
    let expired = transition(&opened(), &ReviewInput::Expire, NOW + TIMEOUT)?;
    assert_eq!(expired.state.status, ReviewStatus::Expired);
    let [SagaEvent::PaymentDeclined(declined)] = events(&expired)[..] else {
        panic!("no decline");
    };
    assert!(declined.reason.contains("expired"), "{}", declined.reason);
    Ok(())
}

#[test]
fn a_decision_after_the_deadline_expires_it_instead() -> Result<(), Conflict> {
    let late = transition(&opened(), &decide(Verdict::Approve), NOW + TIMEOUT + 1)?;
    assert_eq!(late.state.status, ReviewStatus::Expired);
    assert_eq!(emitted(&late), [EventType::PaymentDeclined]);
    Ok(())
}

#[test]
fn a_cancelled_order_closes_its_review_with_nothing_told() -> Result<(), Conflict> {
    let closed = transition(&opened(), &ReviewInput::OrderCancelled, NOW + 5)?;
    assert_eq!(closed.state.status, ReviewStatus::Cancelled);
    assert!(emitted(&closed).is_empty());
    assert!(cancels_expiry(&closed));
    assert_eq!(
        payment_outcome(&closed.state).map(|(status, _)| status),
        Some(PaymentStatus::Declined),
        "nothing is charged"
    );
    Ok(())
}

#[test]
fn the_same_decision_again_changes_nothing() -> Result<(), Conflict> {
    for verdict in [Verdict::Approve, Verdict::Reject] {
        let decided = transition(&opened(), &decide(verdict), NOW + 5)?.state;
        let again = transition(&decided, &decide(verdict), NOW + 6)?;
        assert_eq!(again, Transition::to(decided));
    }
    Ok(())
}

#[test]
fn another_decision_after_the_first_expiry_or_cancellation_is_a_conflict() -> Result<(), Conflict> {
    let approved = transition(&opened(), &decide(Verdict::Approve), NOW + 5)?.state;
    let expired = transition(&opened(), &ReviewInput::Expire, NOW + TIMEOUT)?.state;
    let cancelled = transition(&opened(), &ReviewInput::OrderCancelled, NOW + 5)?.state;
    assert!(transition(&approved, &decide(Verdict::Reject), NOW + 6).is_err());
    for ended in [expired, cancelled] {
        for verdict in [Verdict::Approve, Verdict::Reject] {
            assert!(transition(&ended, &decide(verdict), NOW + 6).is_err());
        }
    }
    Ok(())
}

#[test]
fn a_late_timer_or_cancellation_leaves_a_decided_review_alone() -> Result<(), Conflict> {
    let approved = transition(&opened(), &decide(Verdict::Approve), NOW + 5)?.state;
    for input in [ReviewInput::Expire, ReviewInput::OrderCancelled] {
        let after = transition(&approved, &input, NOW + TIMEOUT + 1)?;
        assert_eq!(after, Transition::to(approved.clone()));
    }
    Ok(())
}

#[test]
fn the_review_states_round_trip_through_their_names() {
    for status in ReviewStatus::ALL {
        assert_eq!(ReviewStatus::parse(status.as_str()), Some(status));
        let json = serde_json::to_value(status).unwrap_or_default();
        assert_eq!(json, status.as_str());
    }
}
