//! RFC 9457 problem details: every error a client sees is `application/problem+json` saying what
//! is wrong.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use saga_messaging::{FailureKind, HandlerError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::error;
use utoipa::ToSchema;

/// One violated rule on one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `items[0].quantity`.
    pub field: String,
    /// What the field must satisfy.
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// 422: the request is well-formed JSON but breaks the listed rules.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.rule))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Request breaks validation rules",
                detail,
            )
        }
    }

    /// 401: an operator route called without its bearer token (or with another one).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    /// A failure the client cannot fix; the cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "the request could not be completed; see the service log",
        )
    }

    /// A dependency is briefly away: the client may retry.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        error!(%cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "a dependency (database, broker or schema registry) is unavailable; retry later",
        )
    }

    fn from_json_rejection(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let title = match rejection {
            JsonRejection::JsonDataError(_) => "Request body does not match the expected shape",
            JsonRejection::JsonSyntaxError(_) => "Request body is not valid JSON",
            JsonRejection::MissingJsonContentType(_) => "Request body must be application/json",
            _ => "Request body could not be read",
        };
        Self::new(status, title, rejection.body_text())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme the route wants.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        HandlerError::from(error).into()
    }
}

impl From<HandlerError> for Problem {
    fn from(error: HandlerError) -> Self {
        let reason = error.reason();
        match error.kind() {
            FailureKind::Transient => Problem::unavailable(&reason),
            _ => Problem::internal(&reason),
        }
    }
}

/// Parses an id from a URL path; what is not a UUID names nothing that exists, so it is a 404.
pub fn path_uuid(raw: &str, what: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::parse_str(raw).map_err(|_| Problem::not_found(format!("no {what} {raw}")))
}

/// `Json<T>` whose rejections are problem documents naming what is wrong (e.g.
/// `items[0].quantity: invalid type: string "two", expected i32`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(Problem::from_json_rejection(rejection)),
        }
    }
}

/// `Query<T>` whose rejections are problem documents naming what is wrong with the query string.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Query string does not match the expected parameters",
                rejection.body_text(),
            )),
        }
    }
}
