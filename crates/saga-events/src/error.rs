use thiserror::Error;

use crate::registry::RegistryError;

/// A schema file in `schemas/` that cannot be used. Only a broken checkout produces one.
#[derive(Debug, Error)]
pub enum SchemaFileError {
    #[error("schema file {file} is not valid JSON: {source}")]
    NotJson {
        file: String,
        source: serde_json::Error,
    },
    #[error("schema file {file} does not define a named type")]
    Unnamed { file: String },
    #[error("schema file {file} is not a valid Avro schema: {source}")]
    Invalid {
        file: String,
        source: Box<apache_avro::Error>,
    },
}

/// Registering a schema or encoding an event failed.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error(transparent)]
    SchemaFile(#[from] SchemaFileError),
    #[error("schema registry, subject {subject}")]
    Registry {
        subject: String,
        #[source]
        source: RegistryError,
    },
    #[error("{event_type} does not fit its schema: {detail}")]
    Encode { event_type: String, detail: String },
}

impl CodecError {
    /// Whether trying the same thing later may succeed (the registry was away).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::Registry { source, .. } if source.is_transient())
    }

    /// Whether the registry refused a schema as incompatible with the subject's history.
    pub fn is_incompatible(&self) -> bool {
        matches!(
            self,
            CodecError::Registry {
                source: RegistryError::Incompatible { .. },
                ..
            }
        )
    }
}

/// A Kafka payload that could not be turned into a [`crate::SagaEvent`].
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(
        "payload is not in the Confluent Avro wire format (magic byte 0 and a 4-byte schema id): \
         {len} bytes, starting {prefix}"
    )]
    NotAvro { len: usize, prefix: String },
    #[error("schema id {id} is unknown to the schema registry")]
    UnknownSchemaId { id: u32 },
    #[error("payload does not match its writer schema (id {id}): {detail}")]
    Malformed { id: u32, detail: String },
    #[error("record {full_name} (schema id {id}) is not a saga event")]
    UnknownEventType { id: u32, full_name: String },
    #[error(
        "{event_type} written with schema id {id} cannot be read as the current type: {detail}"
    )]
    Unreadable {
        id: u32,
        event_type: String,
        detail: String,
    },
    #[error("the schema registry is unreachable or failing while fetching schema id {id}")]
    RegistryUnavailable {
        id: u32,
        #[source]
        source: RegistryError,
    },
    #[error("the schema registry refused to give schema id {id}")]
    RegistryRefused {
        id: u32,
        #[source]
        source: RegistryError,
    },
}

impl DecodeError {
    /// Transient errors are worth retrying in place; every other one will fail the same way again,
    /// so the message belongs in a dead-letter topic.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }
}
