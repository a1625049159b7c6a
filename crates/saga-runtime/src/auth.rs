//! Bearer tokens for the routes that are a person's action rather than a client's request
//! (Inventory's `PUT /stock`, Payment's review decisions): one check, one refusal, one entry in
//! the OpenAPI document, whatever the route. The console's actions, which take their token from a
//! form rather than a header, use the same comparison ([`TokenCheck`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::Problem;

/// A secret a person types (a token), and the one comparison of a guess against it.
#[derive(Clone)]
pub struct TokenCheck(Arc<str>);

/// Never prints the token itself.
impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck").finish_non_exhaustive()
    }
}

impl TokenCheck {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// Whether `given` (trimmed) is the token, compared in time that does not depend on where a
    /// guess goes wrong.
    pub fn admits(&self, given: &str) -> bool {
        let expected = self.0.as_bytes();
        let given = given.trim().as_bytes();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// A bearer token a route requires, and what a request without it is told.
#[derive(Debug, Clone)]
pub struct BearerGuard {
    token: TokenCheck,
    refusal: &'static str,
}

impl BearerGuard {
    /// Admits `Authorization: Bearer <token>`; anything else is a 401 saying `refusal`.
    pub fn new(token: impl Into<Arc<str>>, refusal: &'static str) -> Self {
        Self {
            token: TokenCheck::new(token),
            refusal,
        }
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| self.token.admits(given))
    }
}

/// The middleware: `route.layer(from_fn_with_state(guard, require_bearer))`.
pub async fn require_bearer(
    State(guard): State<BearerGuard>,
    request: Request,
    next: Next,
) -> Result<Response, Problem> {
    if !guard.admits(request.headers()) {
        return Err(Problem::unauthorized(guard.refusal));
    }
    Ok(next.run(request).await)
}

/// Adds the bearer security scheme `name` to a service's OpenAPI document, for the guarded
/// operations to name in their `security(...)`.
pub fn bearer_scheme(openapi: &mut utoipa::openapi::OpenApi, name: &str) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            name,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
}

/// The token in variable `variable`, or `dev_default` (with a warning) when it is not set.
pub fn token_from_env(variable: &str, dev_default: &str) -> String {
    match std::env::var(variable) {
        Ok(token) if !token.trim().is_empty() => token,
        _ => {
            tracing::warn!("{variable} is not set: the dev token {dev_default:?} is accepted");
            dev_default.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert(axum::http::header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        let guard = BearerGuard::new("dev-inventory-admin", "no");
        assert!(guard.admits(&with_authorization("Bearer dev-inventory-admin")));
        for refused in [
            "",
            "dev-inventory-admin",
            "Bearer dev-inventory-admi",
            "Bearer dev-inventory-admin2",
            "Basic dev-inventory-admin",
        ] {
            assert!(!guard.admits(&with_authorization(refused)), "{refused:?}");
        }
        assert!(!guard.admits(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_never_printed() {
        let guard = BearerGuard::new("secret-token", "no");
        assert!(!format!("{guard:?}").contains("secret-token"));
    }
}
