//! The frame every console page shares (navigation, skip link, the one stylesheet and script),
//! and the small formatting rules they all use, so that a time or an amount reads the same on
//! every page.

use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};

/// The part of the console a page belongs to: its navigation entry is marked current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Orders,
    Stuck,
    DeadLetters,
    Reviews,
    System,
    None,
}

const NAVIGATION: [(Section, &str, &str); 5] = [
    (Section::Orders, "/", "Orders"),
    (Section::Stuck, "/console/stuck", "Stuck sagas"),
    (
        Section::DeadLetters,
        "/console/dead-letters",
        "Dead letters",
    ),
    (Section::Reviews, "/console/reviews", "Reviews"),
    (Section::System, "/console/system", "System as of"),
];

/// A whole page: `title` is its heading and the window's title.
pub fn page(title: &str, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Saga console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    p class="brand" { "Order saga console" }
                    nav aria-label="Console" {
                        ul {
                            @for (entry, href, label) in NAVIGATION {
                                li {
                                    @if entry == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// What a console page may load and who may frame it: only its own stylesheet and script, and
/// nobody (a framed page could be tricked into an action: clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; \
     base-uri 'none'";

/// An HTML answer that no cache keeps (every page shows the system now), under the console's
/// content security policy.
pub fn respond(markup: Markup) -> axum::response::Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        axum::response::Html(markup.into_string()),
    )
        .into_response()
}

/// A moment as people read it here: UTC to the millisecond.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A moment as the API and the forms take it.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Cents as an amount with its currency.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", cents / 100, cents % 100)
}

/// A duration in milliseconds, short.
pub fn millis(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// A span of seconds, short: `42 s`, `3 min`, `2 h`.
pub fn seconds(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// A status as a badge whose words, not only its colour, say what it is.
pub fn status_badge(status: &str) -> Markup {
    let class = match status {
        "CONFIRMED" | "COMPLETED" | "AUTHORIZED" | "RESERVED" | "SCHEDULED" => "ok",
        "CANCELLED" | "DECLINED" | "FAILED" => "bad",
        _ => "wait",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.css"),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_with_two_decimals_and_their_currency() {
        assert_eq!(money(123_456, "EUR"), "1234.56 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-250, "EUR"), "-2.50 EUR");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(millis(4), "4 ms");
        assert_eq!(millis(2_500), "2.5 s");
        assert_eq!(seconds(30.2), "30 s");
        assert_eq!(seconds(600.0), "10 min");
    }

    #[test]
    fn the_current_section_is_marked_for_assistive_technology() {
        let markup = page("Dead letters", Section::DeadLetters, html! {}).into_string();
        assert!(markup.contains(r#"<a href="/console/dead-letters" aria-current="page">"#));
        assert_eq!(markup.matches("aria-current").count(), 1);
    }
}
