use thiserror::Error;

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
    #[error(
        "the schema registry refused the new schema for subject {subject}: it is incompatible with \
         the subject's earlier versions ({detail})"
    )]
    IncompatibleSchema { subject: String, detail: String },
    #[error("the schema registry rejected the schema for subject {subject} as invalid: {detail}")]
    InvalidSchema { subject: String, detail: String },
    #[error("the schema registry is unreachable or failing: {detail}")]
    RegistryUnavailable { detail: String },
    #[error("the schema registry answered with an error for subject {subject}: {detail}")]
    Registry { subject: String, detail: String },
    #[error("{event_type} does not fit its schema: {detail}")]
    Encode { event_type: String, detail: String },
    #[error("invalid schema registry settings: {detail}")]
    Settings { detail: String },
}

impl CodecError {
    /// Whether trying the same thing later may succeed (the registry was away).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable { .. })
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
    #[error(
        "the schema registry is unreachable or failing while fetching schema id {id}: {detail}"
    )]
    RegistryUnavailable { id: u32, detail: String },
}

impl DecodeError {
    /// Transient errors are worth retrying in place; every other one will fail the same way again,
    /// so the message belongs in a dead-letter topic.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }
}
