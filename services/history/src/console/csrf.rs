//! The console's defence against cross-site requests: every page gets a random value in a
//! `SameSite=Strict` cookie, every form carries the same value in a hidden field, and an action
//! is taken only when the two agree and the browser does not say the request came from another
//! site. Another site can make a browser send the cookie with a request (not with `Strict`, but
//! older browsers exist); it cannot read the cookie to put it in the form.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use saga_runtime::auth::TokenCheck;

/// The cookie (and form field) holding the value.
pub const COOKIE: &str = "console-csrf";
pub const FIELD: &str = "csrf";

/// The value this browser holds, if it holds one.
pub fn from_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// The value a page's forms carry: the browser's, or the one [`issue`] sets with this answer.
#[derive(Debug, Clone)]
pub struct Value(pub String);

/// Middleware: gives a browser without the cookie a fresh value (in the cookie, and to the
/// handler as a [`Value`] extension, so that its forms carry it at once).
pub async fn issue(mut request: Request, next: Next) -> Response {
    let held = from_cookie(request.headers());
    let value = held
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    request.extensions_mut().insert(Value(value.clone()));
    let mut response = next.run(request).await;
    if held.is_none()
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; SameSite=Strict; HttpOnly"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Whether an action may go ahead: the form's value is the cookie's, and the browser does not
/// say the request came from elsewhere.
pub fn admits(headers: &HeaderMap, form_value: &str) -> bool {
    let same_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| site == "same-origin" || site == "none");
    let matches = !form_value.trim().is_empty()
        && from_cookie(headers).is_some_and(|cookie| TokenCheck::new(cookie).admits(form_value));
    same_site && matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn an_action_with_the_cookies_value_from_this_site_is_admitted() {
        let given = headers(&[
            ("cookie", "other=1; console-csrf=abc123"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(admits(&given, "abc123"));
    }

    #[test]
    fn an_action_without_the_cookie_or_with_another_value_is_refused() {
        assert!(!admits(&headers(&[]), "abc123"));
        assert!(!admits(
            &headers(&[("cookie", "console-csrf=abc123")]),
            "abc124"
        ));
        assert!(!admits(&headers(&[("cookie", "console-csrf=abc123")]), ""));
    }

    #[test]
    fn an_action_another_site_sent_is_refused_even_with_the_cookie() {
        let given = headers(&[
            ("cookie", "console-csrf=abc123"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(!admits(&given, "abc123"));
    }
}
