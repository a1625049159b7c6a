//! Why handling a message failed, and what that means for the message.
//!
//! The decisive question is whether the failure says anything about the message. Only a short,
//! explicit list of infrastructure failures (Postgres, the broker or the registry away, a lost
//! race with another transaction) is retried in place, where the partition waits and the offset
//! does not move. Everything else is about this one record: it is retried through the service's
//! retry topic and, in the end, dead-lettered, so that no single record can stop a partition.

use saga_events::{CodecError, DecodeError};
use thiserror::Error;

/// How a failed message should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A dependency (database, broker, registry) is briefly away: retry in place, never give up
    /// on the message because of it.
    Transient,
    /// Handling this message fails on its own merits: retrying right away will fail again.
    Permanent,
    /// The bytes are not a saga event this service can read.
    Undecodable,
}

impl FailureKind {
    /// How the kind is written in headers, the `parked` table and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "Transient",
            FailureKind::Permanent => "Permanent",
            FailureKind::Undecodable => "Undecodable",
        }
    }
}

/// Why a reaction to an event (or an HTTP write) did not commit.
#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("encoding an outgoing event")]
    Encode(#[from] CodecError),
    #[error("decoding the record")]
    Decode(#[from] DecodeError),
    /// The event cannot be applied: it refers to something this service does not know, or asks
    /// for something impossible.
    #[error("{0}")]
    Rejected(String),
    #[error("{field} {value:?} is not a UUID")]
    InvalidId {
        field: &'static str,
        value: String,
        #[source]
        source: uuid::Error,
    },
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

impl HandlerError {
    pub fn rejected(message: impl Into<String>) -> Self {
        HandlerError::Rejected(message.into())
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            HandlerError::Database(error) if is_transient_db_error(error) => FailureKind::Transient,
            HandlerError::Encode(error) if error.is_transient() => FailureKind::Transient,
            HandlerError::Decode(error) if error.is_transient() => FailureKind::Transient,
            HandlerError::Decode(_) => FailureKind::Undecodable,
            _ => FailureKind::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind() == FailureKind::Transient
    }

    /// The error and every cause under it, on one line: what a dead letter's `saga-error` header
    /// and the logs carry.
    pub fn reason(&self) -> String {
        error_chain(self)
    }
}

/// `error: cause: cause …`, each message once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Parses an id carried in an event; an event with a malformed id can never be handled.
pub fn parse_uuid(field: &'static str, value: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::parse_str(value).map_err(|source| HandlerError::InvalidId {
        field,
        value: value.chars().take(100).collect(),
        source,
    })
}

/// Database failures that say nothing about the message: the server is away, restarting,
/// overloaded, or this transaction lost a race it can win next time. An allow-list: anything
/// not named here is about the data, and retrying it in place could stop a partition for good.
pub fn is_transient_db_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of infrastructure failures.
fn is_transient_sqlstate(code: &str) -> bool {
    // 08: connection exception. 53: insufficient resources (too many connections, disk full).
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            // serialization failure, deadlock
            "40001" | "40P01"
            // lock not available, statement timeout / query cancelled
            | "55P03" | "57014"
            // admin shutdown, crash shutdown, cannot connect now, idle session timeout
            | "57P01" | "57P02" | "57P03" | "57P05"
            // idle in transaction session timeout
            | "25P03"
        )
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

    #[test]
    fn timeouts_and_shutdowns_are_infrastructure_and_bad_data_is_not() {
        for code in [
            "57014", "25P03", "57P05", "57P01", "40001", "40P01", "08006", "53300",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        // NUL in text, NUL in jsonb, unique violation, check violation, invalid text.
        for code in ["22021", "22P05", "23505", "23514", "22P02"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn a_reason_names_every_cause() {
        let error = parse_uuid("order_id", "nope").expect_err("not a uuid");
        let reason = error.reason();
        assert!(
            reason.starts_with("order_id \"nope\" is not a UUID: "),
            "{reason}"
        );
    }
}
