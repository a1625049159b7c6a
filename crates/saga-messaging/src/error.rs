use saga_events::{CodecError, DecodeError};
use thiserror::Error;

/// How a failed message should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A dependency (database, broker, registry) is briefly away: retry in place, never give up
    /// on the message because of it.
    Transient,
    /// Handling this message fails on its own merits: retrying right away will fail again.
    Permanent,
    /// The bytes are not a saga event at all.
    Undecodable,
}

/// Why a reaction to an event (or an HTTP write) did not commit.
#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
    #[error("undecodable message: {0}")]
    Undecodable(String),
}

impl HandlerError {
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError::Permanent(message.into())
    }

    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError::Transient(message.into())
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            HandlerError::Transient(_) => FailureKind::Transient,
            HandlerError::Permanent(_) => FailureKind::Permanent,
            HandlerError::Undecodable(_) => FailureKind::Undecodable,
        }
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        if is_transient_db_error(&error) {
            HandlerError::Transient(format!("database: {error}"))
        } else {
            HandlerError::Permanent(format!("database: {error}"))
        }
    }
}

impl From<CodecError> for HandlerError {
    fn from(error: CodecError) -> Self {
        if error.is_transient() {
            HandlerError::Transient(error.to_string())
        } else {
            HandlerError::Permanent(error.to_string())
        }
    }
}

impl From<DecodeError> for HandlerError {
    fn from(error: DecodeError) -> Self {
        if error.is_transient() {
            HandlerError::Transient(error.to_string())
        } else {
            HandlerError::Undecodable(error.to_string())
        }
    }
}

/// Parses an id carried in an event; an event with a malformed id can never be handled.
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::parse_str(value)
        .map_err(|e| HandlerError::permanent(format!("{field} {value:?} is not a UUID: {e}")))
}

/// Database failures that say nothing about the message: the server is away, restarting,
/// overloaded, or this transaction lost a race it can win next time.
pub fn is_transient_db_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 40001 serialization failure; 40P01 deadlock;
            // 53: insufficient resources; 55P03 lock not available; 57P0x: shutdown/restart.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    code.as_ref(),
                    "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
                )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_transient_and_missing_rows_are_not() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(HandlerError::from(io).kind(), FailureKind::Transient);
        assert_eq!(
            HandlerError::from(sqlx::Error::PoolTimedOut).kind(),
            FailureKind::Transient
        );
        assert_eq!(
            HandlerError::from(sqlx::Error::RowNotFound).kind(),
            FailureKind::Permanent
        );
    }
}
