//! Reviews as a durable workflow (`saga_workflow`): the instance behind each review, what its
//! outcome writes to the payment, the reads the reviewer API serves, and that API ([`http`]).

pub mod http;

use chrono::{DateTime, Utc};
use saga_workflow::{Conflict, Deferred, Transition, Workflow};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::review::{self, Review, ReviewInput, ReviewStatus, Verdict};

/// The review workflow, as `saga_workflow` runs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reviews;

impl Workflow for Reviews {
    const NAME: &'static str = "payment_review";
    type State = Review;
    type Input = ReviewInput;

    fn transition(
        &self,
        state: &Review,
        input: &ReviewInput,
        now_ms: i64,
    ) -> Result<Transition<Review>, Conflict> {
        review::transition(state, input, now_ms)
    }

    fn label(&self, state: &Review) -> &'static str {
        state.status.as_str()
    }

    fn waiting_for(&self, state: &Review) -> Option<&'static str> {
        (state.status == ReviewStatus::Open).then_some("reviewer")
    }

    fn timer_fired(&self, timer: &str) -> Option<ReviewInput> {
        (timer == crate::review::EXPIRY).then_some(ReviewInput::Expire)
    }

    /// The payment of a decided review leaves `IN_REVIEW`: authorized, or declined and why.
    fn persist(&self, order_id: Uuid, state: &Review) -> Option<Deferred> {
        let (status, decline_reason) = review::payment_outcome(state)?;
        Some(Deferred::new(
            "UPDATE payments SET status = $1, decline_reason = $2, updated_at = now()
             WHERE order_id = $3 AND status = 'IN_REVIEW'",
            move |query| {
                query
                    .bind(status.as_str())
                    .bind(decline_reason)
                    .bind(order_id)
            },
        ))
    }
}

/// A review as the reviewer API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewView {
    pub order_id: Uuid,
    pub status: ReviewStatus,
    /// Why the order went to review.
    pub reason: String,
    pub amount_cents: i64,
    pub currency: String,
    pub opened_at: DateTime<Utc>,
    /// When the review expires (the payment is then declined) unless a reviewer decides.
    pub deadline_at: DateTime<Utc>,
    /// Seconds since the review opened.
    pub age_seconds: f64,
    /// Seconds until `deadline_at` (0 once it passed).
    pub seconds_left: f64,
    pub decision: Option<Verdict>,
    pub reviewer: Option<String>,
    pub note: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// How `review` of order `order_id` reads at `now`.
pub fn view(order_id: Uuid, review: &Review, now: DateTime<Utc>) -> ReviewView {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let now_ms = now.timestamp_millis();
    let decided = review.decided.as_ref();
    ReviewView {
        order_id,
        status: review.status,
        reason: review.reason.clone(),
        amount_cents: review.amount_cents,
        currency: review.currency.clone(),
        opened_at: at(review.opened_at_ms),
        deadline_at: at(review.deadline_at_ms),
        age_seconds: seconds(now_ms.saturating_sub(review.opened_at_ms)),
        seconds_left: seconds(review.deadline_at_ms.saturating_sub(now_ms).max(0)),
        decision: decided.map(|d| d.verdict),
        reviewer: decided.map(|d| d.reviewer.clone()),
        note: decided.and_then(|d| d.note.clone()),
        decided_at: decided.map(|d| at(d.at_ms)),
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The reviews in `status` (all, if `None`), oldest first, at most `limit`.
pub async fn list(
    conn: &mut PgConnection,
    status: Option<ReviewStatus>,
    limit: i64,
) -> Result<Vec<(Uuid, Review)>, sqlx::Error> {
    let rows: Vec<(Uuid, sqlx::types::Json<Review>)> = sqlx::query_as(
        "SELECT instance_id, state FROM workflow_instances
         WHERE workflow = $1 AND ($2::text IS NULL OR label = $2)
         ORDER BY created_at, instance_id LIMIT $3",
    )
    .bind(Reviews::NAME)
    .bind(status.map(ReviewStatus::as_str))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, review)| (id, review.0))
        .collect())
}
