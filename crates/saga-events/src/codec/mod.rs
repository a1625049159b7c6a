//! Avro encoding and decoding of saga events in the Confluent wire format (magic byte 0, 4-byte
//! big-endian schema id, Avro binary), with subjects named by the TopicRecordName strategy.
//!
//! Writer schemas are fetched from the registry by id once and kept parsed; nothing that failed
//! is remembered (see [`crate::registry`]), so a registry that was briefly away or wrong is asked
//! again on the next record.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::catalogue::SchemaCatalogue;
use crate::error::{CodecError, DecodeError};
use crate::events::{EventType, SagaEvent};
use crate::registry::RegistryClient;
use crate::topics::{Service, TopicNames};
use crate::upcast::{self, Upcaster};

mod decode;

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
}

/// Encodes and decodes saga events through a Confluent-compatible schema registry. Cheap to clone;
/// schemas and ids are cached after the first use.
#[derive(Debug, Clone)]
pub struct EventCodec {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: RegistryClient,
    catalogue: SchemaCatalogue,
    topics: TopicNames,
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// Ids of this build's schemas, once registered.
    ids: RwLock<HashMap<EventType, u32>>,
    /// Events written as their previous major during a rollout, with that major's schema and
    /// id once registered.
    previous_major: RwLock<HashMap<EventType, Option<Registered>>>,
}

/// A schema this codec registered, with its id.
type Registered = (u32, Arc<Schema>);

/// A writer schema fetched by id, parsed once.
#[derive(Debug)]
struct WriterSchema {
    schema: Schema,
    full_name: Arc<str>,
    /// The current event its records become (through the upcaster chain for an older major).
    event_type: Option<EventType>,
    /// Whether values written with it can be read without schema resolution.
    same_as_reader: bool,
    /// For a record of an older major: the steps to the current one, and the older major's last
    /// version, which every record of it is resolved to first.
    upcast: Option<(Vec<&'static Upcaster>, Schema)>,
}

/// A decoded event and the record it was written as (an older major's name for an upcast one).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: SagaEvent,
    /// The writer's record full name, e.g. `saga.order.OrderPlaced` (major 1) or
    /// `saga.order.v2.OrderPlaced`.
    pub written_as: Arc<str>,
}

/// Size of the Confluent wire-format header: magic byte + schema id.
const WIRE_HEADER_LEN: usize = 5;

impl EventCodec {
    /// `registry_url` is the Confluent API base, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn new(registry_url: &str, topics: TopicNames) -> Result<Self, CodecError> {
        let registry =
            RegistryClient::new(registry_url, Duration::from_secs(10)).map_err(|source| {
                CodecError::Registry {
                    subject: String::new(),
                    source,
                }
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                catalogue: SchemaCatalogue::load()?,
                topics,
                writers: RwLock::default(),
                ids: RwLock::default(),
                previous_major: RwLock::default(),
            }),
        })
    }

    pub fn topics(&self) -> &TopicNames {
        &self.inner.topics
    }

    pub fn catalogue(&self) -> &SchemaCatalogue {
        &self.inner.catalogue
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.inner.registry
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
        for &event_type in EventType::ALL {
            registered.push(self.register_event(event_type).await?);
        }
        Ok(registered)
    }

    /// Registers the schemas of the events `service` publishes: what a service checks at start so
    /// that an incompatible change stops it before it writes a single event.
    pub async fn register_published_by(
        &self,
        service: Service,
    ) -> Result<Vec<RegisteredSubject>, CodecError> {
        let mut registered = Vec::new();
        for &event_type in EventType::ALL {
            if event_type.publisher() == service {
                registered.push(self.register_event(event_type).await?);
            }
        }
        Ok(registered)
    }

    /// Fetches and parses the current schema of every event `service` consumes, so that the
    /// first record after a start is decoded from memory rather than after a registry round trip.
    pub async fn warm_up(&self, consumed: &[EventType]) -> Result<(), CodecError> {
        for &event_type in consumed {
            let id = self.register_event(event_type).await?.id;
            self.writer_schema(id).await.map_err(|e| match e {
                DecodeError::RegistryUnavailable { source, .. } => CodecError::Registry {
                    subject: self.subject(event_type),
                    source,
                },
                other => CodecError::Encode {
                    event_type: event_type.name().to_owned(),
                    detail: other.to_string(),
                },
            })?;
        }
        Ok(())
    }

    async fn register_event(&self, event_type: EventType) -> Result<RegisteredSubject, CodecError> {
        let topic = self.inner.topics.events(event_type.publisher());
        let json = &self.inner.catalogue.get(event_type).json;
        let registered = self.register(&topic, event_type.full_name(), json).await?;
        self.inner
            .ids
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(event_type, registered.id);
        Ok(registered)
    }

    /// The id of `event_type`'s schema: from memory after the first registration.
    async fn schema_id(&self, event_type: EventType) -> Result<u32, CodecError> {
        let known = self
            .inner
            .ids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&event_type)
            .copied();
        match known {
            Some(id) => Ok(id),
            None => Ok(self.register_event(event_type).await?.id),
        }
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
        let id = self
            .inner
            .registry
            .register(&subject, schema_json)
            .await
            .map_err(|source| CodecError::Registry {
                subject: subject.clone(),
                source,
            })?;
        Ok(RegisteredSubject { subject, id })
    }

    /// From now on, writes `event_type` as its previous major (the older record its upcaster
    /// step reads). For a rollout in which some consumers do not upcast yet: producers keep
    /// writing the old major until every consumer carries the step, then switch. Fails for an
    /// event that has no previous major.
    pub fn write_previous_major(&self, event_type: EventType) -> Result<(), CodecError> {
        if upcast::step_to(event_type.full_name()).is_none() {
            return Err(CodecError::Encode {
                event_type: event_type.name().to_owned(),
                detail: "it has no previous major to write".to_owned(),
            });
        }
        self.inner
            .previous_major
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(event_type)
            .or_insert(None);
        Ok(())
    }

    /// The previous major's schema and id, when `event_type` is written as it.
    async fn previous_major(
        &self,
        event_type: EventType,
    ) -> Result<Option<Registered>, CodecError> {
        let known = self
            .inner
            .previous_major
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&event_type)
            .cloned();
        match known {
            None => Ok(None),
            Some(Some(registered)) => Ok(Some(registered)),
            Some(None) => {
                let Some(step) = upcast::step_to(event_type.full_name()) else {
                    return Ok(None);
                };
                let schema = Schema::parse_str(step.reader_source).map_err(|source| {
                    crate::error::SchemaFileError::Invalid {
                        file: step.reader_file.to_owned(),
                        source: Box::new(source),
                    }
                })?;
                let topic = self.inner.topics.events(event_type.publisher());
                // Minified, as the major's own producers registered it when it was current.
                let json = serde_json::from_str::<serde_json::Value>(step.reader_source)
                    .map(|json| json.to_string())
                    .map_err(|source| crate::error::SchemaFileError::NotJson {
                        file: step.reader_file.to_owned(),
                        source,
                    })?;
                let id = self.register(&topic, step.from, &json).await?.id;
                let registered = (id, Arc::new(schema));
                self.inner
                    .previous_major
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(event_type, Some(registered.clone()));
                Ok(Some(registered))
            }
        }
    }

    /// Encodes `event` for its publisher's topic, registering its schema on first use.
    pub async fn encode(&self, event: &SagaEvent) -> Result<EncodedEvent, CodecError> {
        let event_type = event.event_type();
        let encode_error = |detail: String| CodecError::Encode {
            event_type: event_type.name().to_owned(),
            detail,
        };
        let current = &self.inner.catalogue.get(event_type).schema;
        let value = event
            .to_avro_value()
            .map_err(|e| encode_error(e.to_string()))?;
        let (id, schema, value) = match self.previous_major(event_type).await? {
            None => (self.schema_id(event_type).await?, current, value),
            Some((id, older)) => {
                let step = upcast::step_to(event_type.full_name())
                    .ok_or_else(|| encode_error("no previous major".to_owned()))?;
                let value = value
                    .resolve(current)
                    .map_err(|e| encode_error(e.to_string()))
                    .and_then(|v| step.revert(v).map_err(|e| encode_error(e.to_string())))?;
                let body = GenericDatumWriter::builder(&older)
                    .build()
                    .and_then(|writer| writer.write_value_to_vec(value))
                    .map_err(|e| encode_error(e.to_string()))?;
                return Ok(self.wire(event, id, &body));
            }
        };
        let body = GenericDatumWriter::builder(schema)
            .build()
            .and_then(|writer| writer.write_value_to_vec(value))
            .map_err(|e| encode_error(e.to_string()))?;
        Ok(self.wire(event, id, &body))
    }

    /// The Confluent wire format of `body` written with schema `id`, addressed like `event`.
    fn wire(&self, event: &SagaEvent, id: u32, body: &[u8]) -> EncodedEvent {
        let event_type = event.event_type();
        let mut payload = Vec::with_capacity(WIRE_HEADER_LEN + body.len());
        payload.push(0);
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(body);
        EncodedEvent {
            topic: self.inner.topics.events(event_type.publisher()),
            key: event.order_id().to_owned(),
            payload,
            event_type,
            event_id: event.metadata().event_id.clone(),
        }
    }

    /// Every subject the registry holds.
    pub async fn subjects(&self) -> Result<Vec<String>, CodecError> {
        self.inner
            .registry
            .subjects()
            .await
            .map_err(|source| CodecError::Registry {
                subject: String::new(),
                source,
            })
    }
}

pub(crate) fn subject_name(topic: &str, full_name: &str) -> String {
    format!("{topic}-{full_name}")
}
