//! Dead letters per service, each decoded with the schema its writer used, and redriven (one, an
//! order's, or all; a dry run first) behind the operator's token. Reading, choosing and
//! re-publishing go through [`saga_messaging::inspect::dead_letters`], as `sagactl dlq` does.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use saga_events::Service;
use saga_messaging::inspect::dead_letters::{self, DeadLetter, Selection, Verb};
use saga_runtime::ApiQuery;
use serde::Deserialize;

use super::layout::{self, Section};
use super::{Console, ConsoleError, csrf};

/// The services with a dead-letter topic: every one that consumes.
pub const SERVICES: [Service; 4] = [
    Service::Order,
    Service::Payment,
    Service::Inventory,
    Service::Shipping,
];

/// Most letters one page decodes and lists: the newest.
const SHOWN: usize = 100;
/// Most characters of one decoded letter shown (forged events can be megabytes).
const DECODED_CHARS: usize = 4_000;

#[derive(Debug, Default, Deserialize)]
pub struct LettersQuery {
    service: Option<String>,
    order: Option<String>,
}

pub async fn page(
    State(console): State<Console>,
    Extension(csrf_value): Extension<csrf::Value>,
    ApiQuery(query): ApiQuery<LettersQuery>,
) -> Result<Response, ConsoleError> {
    let topics: Vec<String> = SERVICES.iter().map(|s| console.topics.dlq(*s)).collect();
    let letters = dead_letters::read(&console.kafka, topics.clone()).await?;
    let order = query
        .order
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty());
    let service = query
        .service
        .as_deref()
        .and_then(Service::from_name)
        .filter(|s| SERVICES.contains(s))
        .or_else(|| {
            order.and_then(|order| {
                SERVICES.iter().copied().find(|s| {
                    letters
                        .iter()
                        .any(|l| l.0.topic == console.topics.dlq(*s) && l.order() == Some(order))
                })
            })
        })
        .or_else(|| {
            SERVICES
                .iter()
                .copied()
                .find(|s| letters.iter().any(|l| l.0.topic == console.topics.dlq(*s)))
        })
        .unwrap_or(Service::Order);
    let topic = console.topics.dlq(service);
    let matching: Vec<&DeadLetter> = letters
        .iter()
        .filter(|l| l.0.topic == topic && order.is_none_or(|o| l.order() == Some(o)))
        .collect();
    let shown: Vec<&DeadLetter> = matching.iter().rev().take(SHOWN).copied().collect();
    let mut decoded = Vec::with_capacity(shown.len());
    for letter in &shown {
        decoded.push(decode(&console, letter).await);
    }
    let mut orders: Vec<&str> = shown.iter().filter_map(|l| l.order()).collect();
    orders.sort_unstable();
    orders.dedup();
    let body = html! {
        nav aria-label="Services" class="tabs" {
            ul {
                @for s in SERVICES {
                    @let count = letters.iter().filter(|l| l.0.topic == console.topics.dlq(s)).count();
                    li {
                        @let href = format!("/console/dead-letters?service={}", s.name());
                        @if s == service {
                            a href=(href) aria-current="page" { (s.name()) " (" (count) ")" }
                        } @else {
                            a href=(href) { (s.name()) " (" (count) ")" }
                        }
                    }
                }
            }
        }
        h2 { "At " (service.name()) @if let Some(order) = order { ", of order " code { (order) } } }
        @if shown.is_empty() {
            p { "No dead letter here." }
        } @else {
            table {
                caption {
                    (topic) ", newest failure first"
                    @if matching.len() > shown.len() { ": the " (shown.len()) " newest of " (matching.len()) }
                }
                thead { tr {
                    th scope="col" { "Letter" }
                    th scope="col" { "Order" }
                    th scope="col" { "Event" }
                    th scope="col" { "Why" }
                    th scope="col" class="num" { "Attempts" }
                    th scope="col" { "Failed (UTC)" }
                } }
                tbody {
                    @for (letter, (writer, value)) in shown.iter().zip(&decoded) {
                        tr {
                            th scope="row" {
                                code { (letter.id()) }
                                details {
                                    summary { "Decoded" }
                                    p { "Writer schema: " code { (writer) } }
                                    pre { (value) }
                                    p { "Headers" }
                                    pre { (serde_json::to_string_pretty(&letter.0.headers.to_text_map()).unwrap_or_default()) }
                                }
                            }
                            td { (order_cell(letter)) }
                            td { (letter.event_type()) }
                            td { (letter.error()) }
                            td class="num" { (letter.attempts().unwrap_or(0)) }
                            td { (letter.failed_at().map(layout::time).unwrap_or_default()) }
                        }
                    }
                }
            }
            (redrive_form(service, &shown, &orders, &csrf_value.0))
        }
    };
    Ok(layout::respond(layout::page(
        "Dead letters",
        Section::DeadLetters,
        body,
    )))
}

/// The order a letter's key names, linked to its page; a key that names no order (forged or
/// empty) is shown as it is.
fn order_cell(letter: &DeadLetter) -> Markup {
    match (letter.0.key_order(), letter.order()) {
        (Some(order), _) => html! { a href={ "/console/orders/" (order) } { code { (order) } } },
        (None, Some(key)) if !key.is_empty() => html! { code { (key) } " (not an order id)" },
        _ => html! { "no key" },
    }
}

/// The letter's event as JSON through the registry, or why it cannot be decoded.
async fn decode(console: &Console, letter: &DeadLetter) -> (String, String) {
    match console.codec.decode_json(&letter.0.payload).await {
        Ok((writer, value)) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            let shown: String = text.chars().take(DECODED_CHARS).collect();
            let left = text.chars().count().saturating_sub(DECODED_CHARS);
            if left > 0 {
                (writer, format!("{shown}\n… ({left} more characters)"))
            } else {
                (writer, shown)
            }
        }
        Err(error) => (
            "none: the bytes are not an event this registry knows".into(),
            format!(
                "{} ({} bytes)",
                saga_messaging::error::error_chain(&error),
                letter.0.payload.len()
            ),
        ),
    }
}

fn redrive_form(service: Service, shown: &[&DeadLetter], orders: &[&str], csrf: &str) -> Markup {
    html! {
        form method="post" action="/console/dead-letters/redrive" class="action" {
            fieldset {
                legend { "Redrive through " (service.name()) "'s retry topic" }
                input type="hidden" name="service" value=(service.name());
                input type="hidden" name=(csrf::FIELD) value=(csrf);
                div {
                    label for="what" { "What" }
                    select id="what" name="what" {
                        @for letter in shown {
                            option value={ "letter:" (letter.id()) } {
                                "letter " (letter.id()) " (" (letter.event_type()) ")"
                            }
                        }
                        @for order in orders {
                            option value={ "order:" (order) } { "every letter of order " (order) }
                        }
                        option value="all" { "every letter at " (service.name()) }
                    }
                }
                div {
                    input id="dry-run" type="checkbox" name="dry_run" value="on" checked;
                    label for="dry-run" { "Dry run: show what would be redriven, change nothing" }
                }
                div {
                    label for="operator-token" { "Operator token" }
                    input id="operator-token" type="password" name="token" autocomplete="off" required;
                }
                div { button type="submit" { "Redrive" } }
            }
        }
    }
}

/// The redrive form. Its token is compared and dropped, never printed.
#[derive(Deserialize)]
pub struct RedriveForm {
    service: String,
    what: String,
    #[serde(default)]
    dry_run: Option<String>,
    token: String,
    csrf: String,
}

impl std::fmt::Debug for RedriveForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedriveForm")
            .field("service", &self.service)
            .field("what", &self.what)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// An action's answer: a page that says what happened, with the status that says so too.
pub fn outcome(status: StatusCode, title: &str, section: Section, body: Markup) -> Response {
    let mut response = layout::respond(layout::page(title, section, body));
    *response.status_mut() = status;
    response
}

/// The refusal of a form that did not come from the console's own page.
pub fn stale_form(section: Section) -> Response {
    outcome(
        StatusCode::FORBIDDEN,
        "Not done",
        section,
        html! { p role="alert" { "This form is stale or was not sent from the console: reload the page and try again. Nothing was changed." } },
    )
}

pub async fn redrive(
    State(console): State<Console>,
    headers: HeaderMap,
    form: Result<Form<RedriveForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(form) = form.map_err(|rejection| ConsoleError::BadRequest(rejection.body_text()))?;
    let back = html! { p { a href={ "/console/dead-letters?service=" (form.service) } { "Back to the dead letters" } } };
    if !csrf::admits(&headers, &form.csrf) {
        return Ok(stale_form(Section::DeadLetters));
    }
    if !console.operator.admits(&form.token) {
        return Ok(outcome(
            StatusCode::UNAUTHORIZED,
            "Not redriven",
            Section::DeadLetters,
            html! {
                p role="alert" { "The operator token is wrong: nothing was redriven. It is the value of CONSOLE_OPERATOR_TOKEN where the history service runs." }
                (back)
            },
        ));
    }
    let service = Service::from_name(&form.service)
        .filter(|s| SERVICES.contains(s))
        .ok_or_else(|| ConsoleError::BadRequest(format!("no service {:?}", form.service)))?;
    let selection = match form.what.split_once(':') {
        Some(("letter", id)) => Selection::One(id.to_owned()),
        Some(("order", order)) => Selection::Order(order.to_owned()),
        _ if form.what == "all" => Selection::All,
        _ => {
            return Err(ConsoleError::BadRequest(format!(
                "{:?} names no dead letter",
                form.what
            )));
        }
    };
    let dry_run = form.dry_run.is_some();
    let letters = dead_letters::read(&console.kafka, vec![console.topics.dlq(service)]).await?;
    let chosen: Vec<&DeadLetter> = letters.iter().filter(|l| selection.matches(l)).collect();
    if chosen.is_empty() {
        return Ok(outcome(
            StatusCode::NOT_FOUND,
            "Not redriven",
            Section::DeadLetters,
            html! { p role="alert" { "No dead letter at " (service.name()) " matches: nothing was redriven." } (back) },
        ));
    }
    let retry_topic = console.topics.retry(service);
    let sent = dead_letters::republish(
        &console.kafka,
        &retry_topic,
        &chosen,
        Verb::Redrive,
        "console",
        dry_run,
    )
    .await?;
    tracing::info!(
        service = service.name(),
        letters = sent.len(),
        dry_run,
        "dead letters redriven from the console"
    );
    let title = if dry_run {
        "Dry run: nothing was redriven"
    } else {
        "Redriven"
    };
    Ok(outcome(
        StatusCode::OK,
        title,
        Section::DeadLetters,
        html! {
            p role="status" {
                @if dry_run { "These " (sent.len()) " would go through " code { (retry_topic) } ":" }
                @else { (sent.len()) " went through " code { (retry_topic) } ":" }
            }
            ul class="redriven" {
                @for s in &sent {
                    li {
                        "letter " code { (s.id) } " (" (s.event_type) ") of order "
                        @match s.order_id.as_deref().filter(|o| uuid::Uuid::parse_str(o).is_ok()) {
                            Some(o) => a href={ "/console/orders/" (o) } { code { (o) } },
                            None => code { (s.order_id.as_deref().unwrap_or("(no key)")) },
                        }
                    }
                }
            }
            (back)
        },
    ))
}
