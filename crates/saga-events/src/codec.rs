//! Avro encoding and decoding of saga events in the Confluent wire format (magic byte 0, 4-byte
//! big-endian schema id, Avro binary), with subjects named by the TopicRecordName strategy.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::catalogue::SchemaCatalogue;
use crate::error::{CodecError, DecodeError};
use crate::events::{EventType, SagaEvent};
use crate::topics::TopicNames;

/// An event ready to produce: Kafka key is the order id so one order's events stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub event_type: EventType,
    pub event_id: String,
}

/// A schema the registry holds for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSubject {
    pub subject: String,
    pub id: u32,
    pub version: Option<u32>,
}

/// Encodes and decodes saga events through a Confluent-compatible schema registry. Cheap to clone;
/// schemas and ids are cached after the first use.
#[derive(Debug, Clone)]
pub struct EventCodec {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    catalogue: SchemaCatalogue,
    topics: TopicNames,
}

/// Size of the Confluent wire-format header: magic byte + schema id.
const WIRE_HEADER_LEN: usize = 5;

impl EventCodec {
    /// `registry_url` is the Confluent API base, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn new(registry_url: &str, topics: TopicNames) -> Result<Self, CodecError> {
        let settings = SrSettings::new_builder(registry_url.trim_end_matches('/').to_owned())
            .set_timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| CodecError::Settings {
                detail: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                encoder: AvroEncoder::new(settings.clone()),
                decoder: AvroDecoder::new(settings.clone()),
                settings,
                catalogue: SchemaCatalogue::load()?,
                topics,
            }),
        })
    }

    pub fn topics(&self) -> &TopicNames {
        &self.inner.topics
    }

    pub fn catalogue(&self) -> &SchemaCatalogue {
        &self.inner.catalogue
    }

    /// `<topic>-<record full name>`: several event types share a topic, each with its own subject.
    pub fn subject(&self, event_type: EventType) -> String {
        subject_name(
            &self.inner.topics.events(event_type.publisher()),
            event_type.full_name(),
        )
    }

    /// Registers every event schema under its subject. Registering a schema the registry already
    /// has is a no-op that returns the existing id, so this is safe at every start.
    pub async fn register_all(&self) -> Result<Vec<RegisteredSubject>, CodecError> {
        let mut registered = Vec::with_capacity(EventType::ALL.len());
        for schema in self.inner.catalogue.iter() {
            let topic = self.inner.topics.events(schema.event_type.publisher());
            registered.push(
                self.register(&topic, schema.event_type.full_name(), &schema.json)
                    .await?,
            );
        }
        Ok(registered)
    }

    /// Registers the schemas of the events `service` publishes: what a service checks at start so
    /// that an incompatible change stops it before it writes a single event.
    pub async fn register_published_by(
        &self,
        service: crate::Service,
    ) -> Result<Vec<RegisteredSubject>, CodecError> {
        let mut registered = Vec::new();
        for schema in self.inner.catalogue.iter() {
            if schema.event_type.publisher() == service {
                let topic = self.inner.topics.events(service);
                registered.push(
                    self.register(&topic, schema.event_type.full_name(), &schema.json)
                        .await?,
                );
            }
        }
        Ok(registered)
    }

    /// Registers `schema_json` (a self-contained Avro schema) for `<topic>-<full_name>`. The
    /// registry's compatibility rule decides whether a new version is accepted.
    pub async fn register(
        &self,
        topic: &str,
        full_name: &str,
        schema_json: &str,
    ) -> Result<RegisteredSubject, CodecError> {
        let subject = subject_name(topic, full_name);
        let supplied = SuppliedSchema::new(
            Some(full_name.to_owned()),
            SchemaType::Avro,
            schema_json.to_owned(),
        );
        let registered = post_schema(&self.inner.settings, subject.clone(), supplied)
            .await
            .map_err(|e| registration_error(&subject, &e))?;
        Ok(RegisteredSubject {
            subject,
            id: registered.id,
            version: registered.version,
        })
    }

    /// Encodes `event` for its publisher's topic, registering its schema on first use.
    pub async fn encode(&self, event: &SagaEvent) -> Result<EncodedEvent, CodecError> {
        let event_type = event.event_type();
        let topic = self.inner.topics.events(event_type.publisher());
        let schema = self.inner.catalogue.get(event_type);
        let value = event.to_avro_value().map_err(|e| CodecError::Encode {
            event_type: event_type.name().to_owned(),
            detail: e.to_string(),
        })?;
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.clone(),
            SuppliedSchema::new(
                Some(event_type.full_name().to_owned()),
                SchemaType::Avro,
                schema.json.clone(),
            ),
        );
        let subject = subject_name(&topic, event_type.full_name());
        let payload = self
            .inner
            .encoder
            .encode_value(value, &strategy)
            .await
            .map_err(|e| {
                if e.retriable {
                    CodecError::RegistryUnavailable {
                        detail: describe(&e),
                    }
                } else if http_status(&e).is_some() {
                    registration_error(&subject, &e)
                } else {
                    CodecError::Encode {
                        event_type: event_type.name().to_owned(),
                        detail: describe(&e),
                    }
                }
            })?;
        Ok(EncodedEvent {
            topic,
            key: event.order_id().to_owned(),
            payload,
            event_type,
            event_id: event.metadata().event_id.clone(),
        })
    }

    /// Decodes a payload into the current Rust type of its event, resolving it from the writer's
    /// schema (so older writers with fewer fields still decode, using the defaults).
    pub async fn decode(&self, payload: &[u8]) -> Result<SagaEvent, DecodeError> {
        let (id, event_type, value) = self.decode_value(payload).await?;
        let reader = &self.inner.catalogue.get(event_type).schema;
        let unreadable = |detail: String| DecodeError::Unreadable {
            id,
            event_type: event_type.name().to_owned(),
            detail,
        };
        let resolved = value
            .resolve(reader)
            .map_err(|e| unreadable(e.to_string()))?;
        SagaEvent::from_avro_value(event_type, &resolved).map_err(|e| unreadable(e.to_string()))
    }

    /// Decodes a payload into JSON with its writer schema, without needing a Rust type: what the
    /// operator tools show.
    pub async fn decode_json(
        &self,
        payload: &[u8],
    ) -> Result<(String, serde_json::Value), DecodeError> {
        let id = wire_schema_id(payload)?;
        let decoded = self.decode_with_writer_schema(id, payload).await?;
        let name = decoded.name.map(|n| n.fullname(None)).unwrap_or_default();
        let json =
            serde_json::Value::try_from(decoded.value).map_err(|e| DecodeError::Malformed {
                id,
                detail: e.to_string(),
            })?;
        Ok((name, json))
    }

    /// Every subject the registry holds.
    pub async fn subjects(&self) -> Result<Vec<String>, CodecError> {
        get_all_subjects(&self.inner.settings)
            .await
            .map_err(|e| CodecError::RegistryUnavailable {
                detail: describe(&e),
            })
    }

    async fn decode_value(&self, payload: &[u8]) -> Result<(u32, EventType, Value), DecodeError> {
        let id = wire_schema_id(payload)?;
        let decoded = self.decode_with_writer_schema(id, payload).await?;
        let full_name = decoded.name.map(|n| n.fullname(None)).unwrap_or_default();
        let event_type = EventType::from_full_name(&full_name)
            .ok_or(DecodeError::UnknownEventType { id, full_name })?;
        Ok((id, event_type, decoded.value))
    }

    async fn decode_with_writer_schema(
        &self,
        id: u32,
        payload: &[u8],
    ) -> Result<schema_registry_converter::avro_common::DecodeResult, DecodeError> {
        // Fetch the writer schema first so that a registry problem is never mistaken for a
        // malformed payload: the two end up in very different places (retry vs dead letter).
        if let Err(e) = self.inner.decoder.get_schema(id).await {
            return Err(match http_status(&e) {
                Some(404) => DecodeError::UnknownSchemaId { id },
                Some(status) if status < 500 => DecodeError::Malformed {
                    id,
                    detail: describe(&e),
                },
                _ => DecodeError::RegistryUnavailable {
                    id,
                    detail: describe(&e),
                },
            });
        }
        self.inner
            .decoder
            .decode(Some(payload))
            .await
            .map_err(|e| DecodeError::Malformed {
                id,
                detail: describe(&e),
            })
    }
}

pub(crate) fn subject_name(topic: &str, full_name: &str) -> String {
    format!("{topic}-{full_name}")
}

/// Reads the schema id from the wire-format header, refusing anything that is not one.
fn wire_schema_id(payload: &[u8]) -> Result<u32, DecodeError> {
    match payload {
        [0, a, b, c, d, ..] if payload.len() > WIRE_HEADER_LEN => {
            Ok(u32::from_be_bytes([*a, *b, *c, *d]))
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

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// The HTTP status the registry answered with, when the failure was an HTTP answer at all
/// (schema_registry_converter reports it only in its message).
fn http_status(e: &SRCError) -> Option<u16> {
    let rest = e.error.split("failed with status ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn registration_error(subject: &str, e: &SRCError) -> CodecError {
    let subject = subject.to_owned();
    let detail = describe(e);
    match http_status(e) {
        Some(409) => CodecError::IncompatibleSchema { subject, detail },
        Some(422) => CodecError::InvalidSchema { subject, detail },
        Some(status) if status < 500 => CodecError::Registry { subject, detail },
        _ => CodecError::RegistryUnavailable { detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_confluent_wire_format_is_accepted() {
        assert!(matches!(wire_schema_id(&[0, 0, 0, 0, 7, 2]), Ok(7)));
        assert!(matches!(
            wire_schema_id(b"hello world"),
            Err(DecodeError::NotAvro { len: 11, .. })
        ));
        assert!(matches!(
            wire_schema_id(&[0, 0, 0]),
            Err(DecodeError::NotAvro { .. })
        ));
        assert!(matches!(
            wire_schema_id(&[]),
            Err(DecodeError::NotAvro { .. })
        ));
    }

    #[test]
    fn registry_statuses_are_read_from_converter_errors() {
        let conflict = SRCError::new(
            "HTTP request to schema registry failed with status 409 Conflict",
            Some("incompatible".into()),
            false,
        );
        assert_eq!(http_status(&conflict), Some(409));
        assert!(matches!(
            registration_error("s", &conflict),
            CodecError::IncompatibleSchema { .. }
        ));
        let down = SRCError::new("http call to schema registry failed", None, true);
        assert_eq!(http_status(&down), None);
        assert!(registration_error("s", &down).is_transient());
    }
}
