//! Decoding: the writer's schema fetched by id (once, then kept parsed), the record resolved
//! against the reader's schema of its event, and a record of an older major carried through the
//! upcasters.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use super::{Decoded, EventCodec, WriterSchema};
use crate::error::DecodeError;
use crate::events::{EventType, SagaEvent};
use crate::registry::RegistryError;
use crate::upcast;

impl EventCodec {
    /// Decodes a payload into the current Rust type of its event, resolving it from the writer's
    /// schema (so older writers with fewer fields still decode, using the defaults) and carrying
    /// a record of an older major through the upcaster chain.
    pub async fn decode(&self, payload: &[u8]) -> Result<SagaEvent, DecodeError> {
        Ok(self.decode_written(payload).await?.event)
    }

    /// [`EventCodec::decode`], also saying which record the writer wrote.
    pub async fn decode_written(&self, payload: &[u8]) -> Result<Decoded, DecodeError> {
        let (id, body) = split_wire(payload)?;
        let writer = self.writer_schema(id).await?;
        let event_type = writer
            .event_type
            .ok_or_else(|| DecodeError::UnknownEventType {
                id,
                full_name: writer.full_name.to_string(),
            })?;
        let reader = &self.inner.catalogue.get(event_type).schema;
        let unreadable = |detail: String| DecodeError::Unreadable {
            id,
            event_type: event_type.name().to_owned(),
            detail,
        };
        let read_failure = |e: ReadFailure| match e {
            ReadFailure::Malformed(detail) => DecodeError::Malformed { id, detail },
            ReadFailure::Resolution(detail) => unreadable(detail),
        };
        let value = match &writer.upcast {
            None => read_value(
                &writer.schema,
                (!writer.same_as_reader).then_some(reader),
                body,
            )
            .map_err(read_failure)?,
            Some((steps, older_reader)) => {
                let mut value =
                    read_value(&writer.schema, Some(older_reader), body).map_err(read_failure)?;
                for step in steps {
                    value = step.convert(value).map_err(|e| unreadable(e.to_string()))?;
                }
                value
                    .resolve(reader)
                    .map_err(|e| unreadable(e.to_string()))?
            }
        };
        let event = SagaEvent::from_avro_value(event_type, &value)
            .map_err(|e| unreadable(e.to_string()))?;
        Ok(Decoded {
            event,
            written_as: writer.full_name.clone(),
        })
    }

    /// Decodes a payload into JSON with its writer schema, without needing a Rust type: what the
    /// operator tools show.
    pub async fn decode_json(
        &self,
        payload: &[u8],
    ) -> Result<(String, serde_json::Value), DecodeError> {
        let (id, body) = split_wire(payload)?;
        let writer = self.writer_schema(id).await?;
        let value = read_value(&writer.schema, None, body).map_err(|e| DecodeError::Malformed {
            id,
            detail: e.detail().to_owned(),
        })?;
        let json = serde_json::Value::try_from(value).map_err(|e| DecodeError::Malformed {
            id,
            detail: e.to_string(),
        })?;
        Ok((writer.full_name.to_string(), json))
    }

    pub(super) async fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>, DecodeError> {
        if let Some(writer) = self
            .inner
            .writers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
        {
            return Ok(writer.clone());
        }
        let text = self
            .inner
            .registry
            .schema_by_id(id)
            .await
            .map_err(|source| match source {
                RegistryError::NotFound { .. } => DecodeError::UnknownSchemaId { id },
                source if source.is_transient() => DecodeError::RegistryUnavailable { id, source },
                source => DecodeError::RegistryRefused { id, source },
            })?;
        let schema = Schema::parse_str(&text).map_err(|e| DecodeError::Malformed {
            id,
            detail: format!("the registry's schema {id} does not parse: {e}"),
        })?;
        let full_name = schema.name().map(|n| n.fullname(None)).unwrap_or_default();
        let steps = upcast::path(&full_name);
        let (event_type, upcast) = match steps.first() {
            None => (EventType::from_full_name(&full_name), None),
            Some(first) => {
                let older_reader =
                    Schema::parse_str(first.reader_source).map_err(|e| DecodeError::Malformed {
                        id,
                        detail: format!(
                            "the upcaster's schema {} does not parse: {e}",
                            first.reader_file
                        ),
                    })?;
                let target = steps.last().map(|s| s.to).unwrap_or_default();
                (
                    EventType::from_full_name(target),
                    Some((steps, older_reader)),
                )
            }
        };
        let same_as_reader = upcast.is_none()
            && event_type.is_some_and(|t| {
                self.inner.catalogue.get(t).schema.canonical_form() == schema.canonical_form()
            });
        let writer = Arc::new(WriterSchema {
            schema,
            full_name: full_name.into(),
            event_type,
            same_as_reader,
            upcast,
        });
        self.inner
            .writers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, writer.clone());
        Ok(writer)
    }
}

enum ReadFailure {
    /// The bytes do not follow the writer schema.
    Malformed(String),
    /// The bytes follow the writer schema, but the reader cannot take what was written.
    Resolution(String),
}

impl ReadFailure {
    fn detail(&self) -> &str {
        match self {
            ReadFailure::Malformed(d) | ReadFailure::Resolution(d) => d,
        }
    }
}

fn read_value(
    writer: &Schema,
    reader: Option<&Schema>,
    mut body: &[u8],
) -> Result<Value, ReadFailure> {
    let value = GenericDatumReader::builder(writer)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .map_err(|e| ReadFailure::Malformed(e.to_string()))?;
    if !body.is_empty() {
        return Err(ReadFailure::Malformed(format!(
            "{} bytes left over after the record",
            body.len()
        )));
    }
    match reader {
        Some(reader) => value
            .resolve(reader)
            .map_err(|e| ReadFailure::Resolution(e.to_string())),
        None => Ok(value),
    }
}

/// The schema id and the Avro body of a wire-format payload, refusing anything that is not one.
fn split_wire(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match payload {
        [0, a, b, c, d, body @ ..] if !body.is_empty() => {
            Ok((u32::from_be_bytes([*a, *b, *c, *d]), body))
        }
        _ => Err(DecodeError::NotAvro {
            len: payload.len(),
            prefix: payload
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_confluent_wire_format_is_accepted() {
        assert!(matches!(split_wire(&[0, 0, 0, 0, 7, 2]), Ok((7, [2]))));
        assert!(matches!(
            split_wire(b"hello world"),
            Err(DecodeError::NotAvro { len: 11, .. })
        ));
        assert!(matches!(
            split_wire(&[0, 0, 0]),
            Err(DecodeError::NotAvro { .. })
        ));
        assert!(matches!(split_wire(&[]), Err(DecodeError::NotAvro { .. })));
    }
}
