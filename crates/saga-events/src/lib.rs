//! The saga's events: Rust types for every Avro schema in `schemas/`, the names of the topics they
//! travel on, and a codec that speaks the Confluent wire format through a schema registry.
//!
//! The `.avsc` files are the single source of truth. The types here are written to match them and
//! `tests/schema_agreement.rs` fails the build's tests the moment a type and its file disagree.

mod catalogue;
mod causality;
mod codec;
mod error;
mod events;
pub mod progress;
pub mod registry;
pub mod status;
mod topics;
pub mod upcast;

pub use catalogue::{
    EventSchema, SchemaCatalogue, parse_common, self_contained, self_contained_schema,
};
pub use causality::{CausalEvent, causal_order};
pub use codec::{Decoded, EncodedEvent, EventCodec, RegisteredSubject};
pub use error::{CodecError, DecodeError, SchemaFileError};
pub use events::*;
pub use registry::{RegistryClient, RegistryError};
pub use topics::{Service, TopicNames};

/// Re-exported so that callers can build values and schemas with the exact Avro version the codec
/// uses: two apache-avro versions in one tree do not interoperate.
pub use apache_avro;
