//! Manual review, without I/O: a human in the loop before a risky order is charged.
//!
//! An order within the amount limit whose total reaches the review threshold, or paid with
//! `tok_review`, is not charged when it is placed: Payment opens a review and tells the saga
//! (`PaymentReviewRequested`, with the review's deadline). The review is a workflow instance
//! (`saga_workflow`) with one timer, its expiry. Exactly one of these ends it:
//!
//! - a reviewer approves: the order is charged (`PaymentAuthorized`, carrying the saga's deadline
//!   as Order moved it, so that no participant turns the approved order away as late);
//! - a reviewer rejects: `PaymentDeclined`, the reason saying it was rejected in review;
//! - nobody decided by the deadline: `PaymentDeclined`, the reason saying the review expired (a
//!   decision that arrives after the deadline, before the timer fired, expires it too);
//! - the order is cancelled: the review closes, and nothing is charged.
//!
//! After that, the same decision again changes nothing; any other decision is a [`Conflict`].

use saga_events::{
    Address, EventMetadata, OrderPlaced, PaymentAuthorized, PaymentDeclined,
    PaymentReviewRequested, SagaEvent, StockLine,
};
use saga_workflow::{Command, Conflict, Transition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::words::{PRODUCER, PaymentStatus, stock_lines};

/// The one timer of a review.
pub const EXPIRY: &str = "expiry";

/// The payment method that always goes to review, so that reviews can be driven from outside.
pub const REVIEW_TOKEN: &str = "tok_review";

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewStatus {
    Open,
    Approved,
    Rejected,
    Expired,
    Cancelled,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 5] = [
        ReviewStatus::Open,
        ReviewStatus::Approved,
        ReviewStatus::Rejected,
        ReviewStatus::Expired,
        ReviewStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Open => "OPEN",
            ReviewStatus::Approved => "APPROVED",
            ReviewStatus::Rejected => "REJECTED",
            ReviewStatus::Expired => "EXPIRED",
            ReviewStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Approve,
    Reject,
}

/// Who decided, how, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub verdict: Verdict,
    pub reviewer: String,
    pub note: Option<String>,
    pub at_ms: i64,
}

/// A review: what the order asked for, what the outcome will tell the saga, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub status: ReviewStatus,
    /// Why the order went to review.
    pub reason: String,
    pub order_id: String,
    pub payment_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub items: Vec<StockLine>,
    pub shipping_address: Address,
    /// The saga's deadline once the review is open ([`PaymentReviewRequested::saga_deadline_at`]).
    pub saga_deadline_at: Option<i64>,
    /// The `OrderPlaced` the review answers: the outcome is caused by it.
    pub placed: EventMetadata,
    pub opened_at_ms: i64,
    pub deadline_at_ms: i64,
    pub decided: Option<Decided>,
}

/// What moves a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewInput {
    Decide {
        verdict: Verdict,
        reviewer: String,
        note: Option<String>,
    },
    Expire,
    OrderCancelled,
}

/// The review `placed` opens at `now_ms` (why: `reason`), expiring after `timeout_ms`, and what it
/// tells the saga and schedules.
pub fn open(
    placed: &OrderPlaced,
    payment_id: Uuid,
    reason: String,
    now_ms: i64,
    timeout_ms: i64,
) -> (Review, SagaEvent, Vec<Command>) {
    let deadline_at_ms = now_ms.saturating_add(timeout_ms);
    let requested = PaymentReviewRequested {
        metadata: EventMetadata::caused_by(&placed.metadata, PRODUCER),
        order_id: placed.order_id.clone(),
        review_deadline_at: deadline_at_ms,
    };
    let budget = placed
        .deadline_at
        .map(|deadline| deadline.saturating_sub(placed.metadata.occurred_at));
    let review = Review {
        status: ReviewStatus::Open,
        reason,
        order_id: placed.order_id.clone(),
        payment_id,
        amount_cents: placed.total.amount_minor,
        currency: placed.total.currency.clone(),
        items: stock_lines(&placed.items),
        shipping_address: placed.shipping_address.clone(),
        saga_deadline_at: budget.map(|budget| requested.saga_deadline_at(budget)),
        placed: placed.metadata.clone(),
        opened_at_ms: now_ms,
        deadline_at_ms,
        decided: None,
    };
    let timer = Command::Schedule {
        timer: EXPIRY,
        due_at_ms: deadline_at_ms,
    };
    (review, requested.into(), vec![timer])
}

/// How `input` at `now_ms` moves `review`.
pub fn transition(
    review: &Review,
    input: &ReviewInput,
    now_ms: i64,
) -> Result<Transition<Review>, Conflict> {
    use ReviewStatus::*;
    match (review.status, input) {
        (Open, ReviewInput::Decide { .. } | ReviewInput::Expire)
            if now_ms >= review.deadline_at_ms =>
        {
            Ok(expire(review))
        }
        (Open, ReviewInput::Expire) => Ok(Transition::to(review.clone())),
        (
            Open,
            ReviewInput::Decide {
                verdict,
                reviewer,
                note,
            },
        ) => Ok(decide(review, *verdict, reviewer, note.as_deref(), now_ms)),
        (Open, ReviewInput::OrderCancelled) => {
            Ok(Transition::to(with_status(review, Cancelled))
                .then(Command::Cancel { timer: EXPIRY }))
        }
        (
            Approved,
            ReviewInput::Decide {
                verdict: Verdict::Approve,
                ..
            },
        )
        | (
            Rejected,
            ReviewInput::Decide {
                verdict: Verdict::Reject,
                ..
            },
        )
        | (_, ReviewInput::Expire | ReviewInput::OrderCancelled) => {
            Ok(Transition::to(review.clone()))
        }
        (status, ReviewInput::Decide { verdict, .. }) => Err(Conflict(format!(
            "the review of order {} is {} already: it cannot be {}",
            review.order_id,
            status.as_str(),
            match verdict {
                Verdict::Approve => "approved",
                Verdict::Reject => "rejected",
            }
        ))),
    }
}

fn with_status(review: &Review, status: ReviewStatus) -> Review {
    Review {
        status,
        ..review.clone()
    }
}

fn decide(
    review: &Review,
    verdict: Verdict,
    reviewer: &str,
    note: Option<&str>,
    now_ms: i64,
) -> Transition<Review> {
    let decided = Review {
        status: match verdict {
            Verdict::Approve => ReviewStatus::Approved,
            Verdict::Reject => ReviewStatus::Rejected,
        },
        decided: Some(Decided {
            verdict,
            reviewer: reviewer.to_owned(),
            note: note.map(str::to_owned),
            at_ms: now_ms,
        }),
        ..review.clone()
    };
    let told = match verdict {
        Verdict::Approve => authorized(review),
        Verdict::Reject => declined(review, rejection(reviewer, note)),
    };
    Transition::to(decided)
        .then(Command::Cancel { timer: EXPIRY })
        .then(Command::emit(told))
}

/// Why a rejected payment was declined.
fn rejection(reviewer: &str, note: Option<&str>) -> String {
    match note {
        Some(note) => format!("rejected in review by {reviewer}: {note}"),
        None => format!("rejected in review by {reviewer}"),
    }
}

/// Why an expired review's payment was declined.
const EXPIRED: &str = "the review expired: no reviewer decided before its deadline";

fn expire(review: &Review) -> Transition<Review> {
    let told = declined(review, EXPIRED.into());
    Transition::to(with_status(review, ReviewStatus::Expired))
        .then(Command::Cancel { timer: EXPIRY })
        .then(Command::emit(told))
}

fn authorized(review: &Review) -> SagaEvent {
    PaymentAuthorized {
        metadata: EventMetadata::caused_by(&review.placed, PRODUCER),
        order_id: review.order_id.clone(),
        payment_id: review.payment_id.to_string(),
        amount_cents: review.amount_cents,
        currency: review.currency.clone(),
        items: review.items.clone(),
        shipping_address: review.shipping_address.clone(),
        deadline_at: review.saga_deadline_at,
    }
    .into()
}

fn declined(review: &Review, reason: String) -> SagaEvent {
    PaymentDeclined {
        metadata: EventMetadata::caused_by(&review.placed, PRODUCER),
        order_id: review.order_id.clone(),
        amount_cents: review.amount_cents,
        currency: review.currency.clone(),
        reason,
    }
    .into()
}

/// What a review's outcome means for the order's payment: its status and, if declined, why.
/// `None` while the review is open.
pub fn payment_outcome(review: &Review) -> Option<(PaymentStatus, Option<String>)> {
    use PaymentStatus::{Authorized, Declined};
    match review.status {
        ReviewStatus::Open => None,
        ReviewStatus::Approved => Some((Authorized, None)),
        ReviewStatus::Rejected => {
            let decided = review.decided.as_ref();
            let reviewer = decided.map_or("a reviewer", |d| d.reviewer.as_str());
            let note = decided.and_then(|d| d.note.as_deref());
            Some((Declined, Some(rejection(reviewer, note))))
        }
        ReviewStatus::Expired => Some((Declined, Some(EXPIRED.into()))),
        ReviewStatus::Cancelled => Some((
            Declined,
            Some("the order was cancelled before its review ended".into()),
        )),
    }
}

#[cfg(test)]
mod tests;
