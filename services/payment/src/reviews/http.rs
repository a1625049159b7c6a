//! The reviewer API: the inbox of open reviews (`GET /reviews?status=OPEN`, oldest first), one
//! review (`GET /reviews/{order_id}`), and a decision (`POST /reviews/{order_id}/decision`, with
//! `Authorization: Bearer <PAYMENT_REVIEWER_TOKEN>`).
//!
//! A decision is handled under the review's lock and commits with its outcome event. The same
//! decision again answers 200 and changes nothing; a different one, or any after the review
//! expired or its order was cancelled, is a 409. A decision that arrives after the deadline
//! before the expiry timer fired expires the review (the timer's outcome, committed) and is
//! answered 409 too: exactly one outcome, whichever comes first.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use chrono::Utc;
use saga_messaging::headers::{Headers, TRACEPARENT};
use saga_messaging::{Outbox, trace};
use saga_runtime::auth::{BearerGuard, require_bearer};
use saga_runtime::validation::Violations;
use saga_runtime::{ApiJson, ApiQuery, FieldError, Problem, path_uuid};
use saga_workflow::WorkflowError;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::{Instrument, info_span};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::{ReviewView, Reviews, list, view};
use crate::review::{ReviewInput, ReviewStatus, Verdict};

#[derive(Debug, OpenApi)]
#[openapi(
    paths(list_reviews, get_review, decide),
    components(schemas(ReviewView, ReviewList, Decision, ReviewStatus, Verdict, Problem, FieldError)),
    modifiers(&ReviewerScheme)
)]
pub struct ApiDoc;

/// The `reviewer_token` security scheme decisions name.
struct ReviewerScheme;

impl utoipa::Modify for ReviewerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        saga_runtime::auth::bearer_scheme(openapi, "reviewer_token");
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ReviewState {
    pub pool: PgPool,
    pub outbox: Outbox,
}

/// The reviewer API; decisions admit `reviewer_token` only.
pub fn router(state: ReviewState, reviewer_token: String) -> Router {
    let reviewer = BearerGuard::new(
        reviewer_token,
        "deciding a review is a reviewer's action: send Authorization: Bearer <PAYMENT_REVIEWER_TOKEN>",
    );
    Router::new()
        .route("/reviews", get(list_reviews))
        .route("/reviews/{order_id}", get(get_review))
        .route(
            "/reviews/{order_id}/decision",
            post(decide.layer(from_fn_with_state(reviewer, require_bearer))),
        )
        .with_state(state)
}

saga_runtime::field_types! {
    /// Who decided.
    pub type Reviewer = Text<ReviewerField>(TextRule { max_chars: 200, example: "ada@example.org" });
    /// Why, in the reviewer's words.
    pub type Note = Text<NoteField>(TextRule { max_chars: 2000, example: "known customer, verified by phone" });
}

/// Body of `POST /reviews/{order_id}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Decision {
    pub decision: Verdict,
    #[schema(schema_with = Reviewer::schema)]
    pub reviewer: String,
    #[schema(schema_with = saga_runtime::validation::nullable::<Note>)]
    #[serde(default)]
    pub note: Option<String>,
}

/// Query of `GET /reviews`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewFilter {
    /// Only reviews in this state (`OPEN`: the inbox); all if absent.
    #[param(inline)]
    pub status: Option<ReviewStatus>,
    /// At most this many, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Reviews, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
}

/// Reviews, oldest first: `?status=OPEN` is a reviewer's inbox.
#[utoipa::path(
    get,
    path = "/reviews",
    params(ReviewFilter),
    responses(
        (status = 200, body = ReviewList),
        (status = 400, description = "Not a status, or a limit that is not a number", body = Problem),
        (status = 422, description = "A limit out of range", body = Problem)
    )
)]
async fn list_reviews(
    State(state): State<ReviewState>,
    ApiQuery(filter): ApiQuery<ReviewFilter>,
) -> Result<Json<ReviewList>, Problem> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid(vec![FieldError::new(
            "limit",
            "must be 1 to 1000",
        )]));
    }
    let mut conn = state.pool.acquire().await?;
    let now = Utc::now();
    let reviews = list(&mut conn, filter.status, limit)
        .await?
        .iter()
        .map(|(order, review)| view(*order, review, now))
        .collect();
    Ok(Json(ReviewList { reviews }))
}

/// The review of an order.
#[utoipa::path(
    get,
    path = "/reviews/{order_id}",
    params(("order_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, body = ReviewView),
        (status = 404, description = "No review for this order", body = Problem)
    )
)]
async fn get_review(
    State(state): State<ReviewState>,
    Path(order_id): Path<String>,
) -> Result<Json<ReviewView>, Problem> {
    let order_id = path_uuid(&order_id, "review for order")?;
    let mut conn = state.pool.acquire().await?;
    let instance = saga_workflow::load::<Reviews>(&mut conn, order_id)
        .await
        .map_err(problem)?
        .ok_or_else(|| Problem::not_found(format!("no review for order {order_id}")))?;
    Ok(Json(view(order_id, &instance.state, Utc::now())))
}

/// A reviewer's decision: `APPROVE` charges the order, `REJECT` declines it.
#[utoipa::path(
    post,
    path = "/reviews/{order_id}/decision",
    params(("order_id" = uuid::Uuid, Path)),
    request_body = Decision,
    security(("reviewer_token" = [])),
    responses(
        (status = 200, description = "Decided (or the same decision again)", body = ReviewView),
        (status = 401, description = "No or another bearer token", body = Problem),
        (status = 404, description = "No review for this order", body = Problem),
        (status = 400, description = "Body is not JSON", body = Problem),
        (status = 409, description = "Decided otherwise, expired, or the order was cancelled", body = Problem),
        (status = 422, description = "Body breaks a rule", body = Problem),
        (status = 503, description = "A dependency is unavailable", body = Problem)
    )
)]
async fn decide(
    State(state): State<ReviewState>,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<Decision>,
) -> Result<Json<ReviewView>, Problem> {
    let order_id = path_uuid(&order_id, "review for order")?;
    let mut v = Violations::new();
    let reviewer = v.check("reviewer", Reviewer::parse(body.reviewer));
    let note = body.note.map(|note| v.check("note", Note::parse(note)));
    if !v.is_empty() {
        return Err(Problem::invalid(v.into_result().err().unwrap_or_default()));
    }
    let (Some(reviewer), note) = (reviewer, note.flatten()) else {
        return Err(Problem::internal(&"a checked reviewer went missing"));
    };
    let mut tx = saga_workflow::begin(&state.pool, order_id).await?;
    let instance = saga_workflow::load::<Reviews>(&mut tx, order_id)
        .await
        .map_err(problem)?
        .ok_or_else(|| Problem::not_found(format!("no review for order {order_id}")))?;
    let span = info_span!(
        "review decision",
        order_id = %order_id,
        verdict = ?body.decision,
        otel.kind = "client",
    );
    if let Some(traceparent) = &instance.traceparent {
        let mut carried = Headers::new();
        carried.insert(TRACEPARENT, traceparent.as_str());
        trace::continue_trace(&span, &carried);
    }
    let input = ReviewInput::Decide {
        verdict: body.decision,
        reviewer: reviewer.into_inner(),
        note: note.map(|n| n.into_inner()),
    };
    let now = Utc::now();
    let handled = async {
        let handled =
            saga_workflow::handle(&mut tx, &Reviews, order_id, &input, now.timestamp_millis())
                .await
                .map_err(problem)?;
        let written = state.outbox.append(&mut tx, &handled.emit).await?;
        Ok::<_, Problem>((handled, written))
    }
    .instrument(span)
    .await;
    let (handled, written) = handled?;
    state.outbox.commit(tx, written).await?;
    let review = handled.after;
    let wanted = match body.decision {
        Verdict::Approve => ReviewStatus::Approved,
        Verdict::Reject => ReviewStatus::Rejected,
    };
    if review.status != wanted {
        return Err(Problem::conflict(format!(
            "the review of order {order_id} is {}: it was not decided in time",
            review.status.as_str()
        )));
    }
    Ok(Json(view(order_id, &review, now)))
}

fn problem(error: WorkflowError) -> Problem {
    match error {
        WorkflowError::Database(error) => error.into(),
        WorkflowError::Conflict(conflict) => Problem::conflict(conflict.0),
        WorkflowError::Unknown { instance, .. } => {
            Problem::not_found(format!("no review for order {instance}"))
        }
        other => Problem::internal(&saga_messaging::error::error_chain(&other)),
    }
}
