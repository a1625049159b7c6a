//! The open manual reviews, oldest first with the time each has left, and a reviewer's
//! decision. Both go through Payment's reviews API: Payment owns the reviews and checks the
//! reviewer's token; the console passes the token on for one request and keeps nothing.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dead_letters::{outcome, stale_form};
use super::layout::{self, Section};
use super::{Console, ConsoleError, csrf};

/// One open review as Payment lists it.
#[derive(Debug, Deserialize)]
struct Review {
    order_id: String,
    reason: String,
    amount_cents: i64,
    currency: String,
    age_seconds: f64,
    seconds_left: f64,
}

#[derive(Debug, Deserialize)]
struct ReviewList {
    reviews: Vec<Review>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(csrf_value): Extension<csrf::Value>,
) -> Result<Response, ConsoleError> {
    let url = format!("{}/reviews?status=OPEN&limit=200", console.payment_url);
    let listed = async {
        let response = console.http.get(&url).send().await?.error_for_status()?;
        response.json::<ReviewList>().await
    }
    .await;
    let body = match listed {
        Err(error) => html! {
            p role="alert" {
                "Payment's reviews API does not answer at " code { (console.payment_url) } ": "
                (saga_messaging::error::error_chain(&error))
            }
        },
        Ok(list) if list.reviews.is_empty() => html! { p { "No review is open." } },
        Ok(list) => html! {
            table {
                caption { "Open reviews, oldest first" }
                thead { tr {
                    th scope="col" { "Order" }
                    th scope="col" class="num" { "Amount" }
                    th scope="col" { "Why" }
                    th scope="col" class="num" { "Waiting" }
                    th scope="col" class="num" { "Time left" }
                } }
                tbody {
                    @for review in &list.reviews {
                        tr {
                            td { a href={ "/console/orders/" (review.order_id) } { code { (review.order_id) } } }
                            td class="num" { (layout::money(review.amount_cents, &review.currency)) }
                            td { (review.reason) }
                            td class="num" { (layout::seconds(review.age_seconds)) }
                            td class="num" { (layout::seconds(review.seconds_left)) }
                        }
                    }
                }
            }
            (decision_form(&list.reviews, &csrf_value.0))
        },
    };
    Ok(layout::respond(layout::page(
        "Reviews",
        Section::Reviews,
        body,
    )))
}

fn decision_form(reviews: &[Review], csrf: &str) -> Markup {
    html! {
        form method="post" action="/console/reviews/decision" class="action" {
            fieldset {
                legend { "Decide a review" }
                input type="hidden" name=(csrf::FIELD) value=(csrf);
                div {
                    label for="review" { "Order" }
                    select id="review" name="order_id" {
                        @for review in reviews {
                            option value=(review.order_id) {
                                (review.order_id) " (" (layout::money(review.amount_cents, &review.currency)) ")"
                            }
                        }
                    }
                }
                fieldset class="choice" {
                    legend { "Decision" }
                    input id="approve" type="radio" name="decision" value="APPROVE" checked;
                    label for="approve" { "Approve: charge and go on" }
                    input id="reject" type="radio" name="decision" value="REJECT";
                    label for="reject" { "Reject: decline the payment" }
                }
                div {
                    label for="reviewer" { "Reviewer" }
                    input id="reviewer" type="text" name="reviewer" required maxlength="200" autocomplete="username";
                }
                div {
                    label for="note" { "Note (optional)" }
                    textarea id="note" name="note" maxlength="2000" rows="2" {}
                }
                div {
                    label for="reviewer-token" { "Reviewer token" }
                    input id="reviewer-token" type="password" name="token" autocomplete="off" required;
                }
                div { button type="submit" { "Send the decision" } }
            }
        }
    }
}

/// A reviewer's decision from the page. The token goes to Payment, not into any log.
#[derive(Deserialize)]
pub struct DecisionForm {
    order_id: String,
    decision: String,
    reviewer: String,
    #[serde(default)]
    note: String,
    token: String,
    csrf: String,
}

impl std::fmt::Debug for DecisionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionForm")
            .field("order_id", &self.order_id)
            .field("decision", &self.decision)
            .field("reviewer", &self.reviewer)
            .finish_non_exhaustive()
    }
}

pub async fn decide(
    State(console): State<Console>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(form) = form.map_err(|rejection| ConsoleError::BadRequest(rejection.body_text()))?;
    if !csrf::admits(&headers, &form.csrf) {
        return Ok(stale_form(Section::Reviews));
    }
    let back = html! { p { a href="/console/reviews" { "Back to the reviews" } } };
    let order = uuid::Uuid::parse_str(form.order_id.trim())
        .map_err(|_| ConsoleError::BadRequest(format!("{:?} is not an order id", form.order_id)))?;
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    let sent = console
        .http
        .post(format!("{}/reviews/{order}/decision", console.payment_url))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", form.token.trim()),
        )
        .json(&json!({ "decision": form.decision, "reviewer": form.reviewer, "note": note }))
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            return Ok(outcome(
                StatusCode::BAD_GATEWAY,
                "Not decided",
                Section::Reviews,
                html! { p role="alert" { "Payment did not answer: " (saga_messaging::error::error_chain(&error)) ". Nothing was decided." } (back) },
            ));
        }
    };
    let status = response.status();
    if status.is_success() {
        tracing::info!(%order, decision = %form.decision, "review decided from the console");
        return Ok(outcome(
            StatusCode::OK,
            "Decided",
            Section::Reviews,
            html! {
                p role="status" {
                    "Order " a href={ "/console/orders/" (order) } { code { (order) } } ": "
                    (if form.decision == "REJECT" { "rejected" } else { "approved" }) " by " (form.reviewer) ". Its saga goes on."
                }
                (back)
            },
        ));
    }
    let detail = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| status.to_string());
    let said = if status == StatusCode::UNAUTHORIZED {
        "The reviewer token is wrong: nothing was decided.".to_owned()
    } else {
        format!("Payment refused the decision: {detail}")
    };
    let shown = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok(outcome(
        shown,
        "Not decided",
        Section::Reviews,
        html! { p role="alert" { (said) } (back) },
    ))
}
