//! Everything Kafka-shaped that the four services share, written once: the transactional outbox
//! and its relay, the idempotent consumer with its inbox, per-order parking, retries and dead
//! letters, failure classification, and W3C trace context carried in Kafka headers; and, apart
//! from the per-message path, reading topics back and inspecting consumer groups ([`inspect`]).
//! Every crate with tables also takes two small things from here in place of sqlx's macros:
//! its migrations, embedded at build time ([`migrations`]), and [`from_row!`] for its rows.

pub mod backoff;
pub mod consumer;
pub mod deferred;
pub mod delivery;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod headers;
pub mod health;
pub mod inbox;
pub mod inspect;
pub mod kafka;
pub mod migrations;
pub mod outbox;
pub mod parking;
pub mod producer;
pub mod relay;
pub mod requests;
pub mod row;
pub mod trace;

pub use backoff::Backoff;
pub use consumer::{Arrival, ConsumerSettings, ConsumerSetup, EventConsumer, Reactions, Refusal};
pub use deferred::{Deferred, DeferredWrites};
pub use delivery::Delivery;
pub use error::{FailureKind, HandlerError, parse_uuid};
pub use headers::Headers;
pub use health::Health;
pub use kafka::KafkaSettings;
pub use outbox::Outbox;
pub use relay::{OutboxRelay, RelaySettings, RelayStatus};

/// Applies the outbox/inbox migrations (versions below 100) and then the service's own (100 and
/// up) to one database. Each migrator ignores the other's versions in the shared history table.
pub async fn migrate(
    pool: &sqlx::PgPool,
    service_migrator: &mut sqlx::migrate::Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut shared = embedded_migrations!();
    shared.set_ignore_missing(true);
    shared.run(pool).await?;
    service_migrator.set_ignore_missing(true);
    service_migrator.run(pool).await
}
