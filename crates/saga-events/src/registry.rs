//! A client for the Confluent Schema Registry REST API, only the subset that both Confluent's
//! registry and Apicurio's `ccompat/v7` serve.
//!
//! Why not a general-purpose crate: the codec needs exactly three answers (the schema behind an
//! id, the id of a schema under a subject, and whether a schema is compatible), and it needs one
//! property that off-the-shelf clients get wrong: **only answers are cached, never failures**. A
//! registry that answered 500 while its database was away, or 404 while it was being restored,
//! must be asked again next time; a cached error would send every later record with that schema
//! id to a dead-letter topic, or keep a service refusing requests until it restarts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the registry said, or why it could not say anything.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No answer: refused, reset, timed out. Worth asking again.
    #[error("the schema registry at {url} did not answer")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that says the registry itself is failing (5xx, 429). Worth asking again.
    #[error("the schema registry answered {status} for {url}: {body}")]
    Failing {
        url: String,
        status: u16,
        body: String,
    },
    /// The subject, version or schema id does not exist (404).
    #[error("the schema registry has no {what} ({body})")]
    NotFound { what: String, body: String },
    /// The schema breaks the subject's compatibility rule (409).
    #[error("the schema registry refused the schema for {subject} as incompatible: {body}")]
    Incompatible { subject: String, body: String },
    /// The schema is not a valid schema of its type (422).
    #[error("the schema registry refused the schema for {subject} as invalid: {body}")]
    Invalid { subject: String, body: String },
    /// Any other refusal (4xx).
    #[error("the schema registry answered {status} for {url}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer whose body is not what the API documents.
    #[error("the schema registry's answer from {url} could not be read")]
    Unreadable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("invalid schema registry settings")]
    Settings(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether asking again later may give another answer.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. } | RegistryError::Failing { .. }
        )
    }
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySchema {
    pub id: u32,
    /// The schema text as registered.
    pub schema: String,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

/// The verdict of a compatibility check, with the registry's reasons when it gives any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    pub compatible: bool,
    pub messages: Vec<String>,
}

/// Talks to one registry. Cheap to clone; clones share the cache.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    cache: Arc<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    by_id: RwLock<HashMap<u32, Arc<str>>>,
    /// (subject, schema text) → id.
    ids: RwLock<HashMap<(String, String), u32>>,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Serialize)]
struct SchemaBody<'a> {
    schema: &'a str,
    #[serde(rename = "schemaType")]
    schema_type: &'a str,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

#[derive(Deserialize)]
struct CompatibilityAnswer {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

impl RegistryClient {
    /// `base` is the Confluent API root, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .no_proxy()
            .build()
            .map_err(RegistryError::Settings)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            cache: Arc::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The schema registered under `id`: asked once, then served from memory (ids never change).
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(schema) = read(&self.cache.by_id).get(&id) {
            return Ok(schema.clone());
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let answer: SchemaAnswer = self
            .call(self.http.get(&url), &url, || format!("schema id {id}"))
            .await?;
        let schema: Arc<str> = answer.schema.into();
        write(&self.cache.by_id).insert(id, schema.clone());
        Ok(schema)
    }

    /// Registers `schema` (Avro) under `subject`, or finds it there: the registry answers with
    /// the existing id when it already holds the same schema. The subject's compatibility rule
    /// decides whether a new version is accepted.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = read(&self.cache.ids).get(&key) {
            return Ok(*id);
        }
        let url = format!("{}/subjects/{}/versions", self.base, encode(subject));
        let body = SchemaBody {
            schema,
            schema_type: "AVRO",
        };
        let answer: IdAnswer = self
            .call(self.http.post(&url).json(&body), &url, || {
                format!("subject {subject}")
            })
            .await
            .map_err(|e| refine(e, subject))?;
        write(&self.cache.ids).insert(key, answer.id);
        write(&self.cache.by_id).insert(answer.id, schema.into());
        Ok(answer.id)
    }

    /// Whether `schema` could be registered under `subject` now, with the registry's reasons.
    /// A subject that does not exist yet accepts anything.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Compatibility, RegistryError> {
        let url = format!(
            "{}/compatibility/subjects/{}/versions/latest?verbose=true",
            self.base,
            encode(subject)
        );
        let body = SchemaBody {
            schema,
            schema_type: "AVRO",
        };
        match self
            .call::<CompatibilityAnswer>(self.http.post(&url).json(&body), &url, || {
                format!("subject {subject}")
            })
            .await
        {
            Ok(answer) => Ok(Compatibility {
                compatible: answer.is_compatible,
                messages: answer.messages,
            }),
            Err(RegistryError::NotFound { .. }) => Ok(Compatibility {
                compatible: true,
                messages: vec![format!("{subject} has no versions yet")],
            }),
            Err(error) => Err(error),
        }
    }

    /// Every subject the registry holds.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let url = format!("{}/subjects", self.base);
        self.call(self.http.get(&url), &url, || "subjects".to_owned())
            .await
    }

    /// Every version of `subject`, oldest first.
    pub async fn versions(&self, subject: &str) -> Result<Vec<SubjectVersion>, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base, encode(subject));
        let numbers: Vec<u32> = self
            .call(self.http.get(&url), &url, || format!("subject {subject}"))
            .await?;
        let mut versions = Vec::with_capacity(numbers.len());
        for number in numbers {
            let url = format!(
                "{}/subjects/{}/versions/{number}",
                self.base,
                encode(subject)
            );
            versions.push(
                self.call(self.http.get(&url), &url, || {
                    format!("version {number} of {subject}")
                })
                .await?,
            );
        }
        Ok(versions)
    }

    /// The registry-wide compatibility level (`BACKWARD`, `FULL_TRANSITIVE`, …).
    pub async fn compatibility_level(&self) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "compatibilityLevel", alias = "compatibility")]
            level: String,
        }
        let url = format!("{}/config", self.base);
        let config: Config = self
            .call(self.http.get(&url), &url, || "global config".to_owned())
            .await?;
        Ok(config.level)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        what: impl FnOnce() -> String,
    ) -> Result<T, RegistryError> {
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: url.to_owned(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|source| RegistryError::Unreadable {
                    url: url.to_owned(),
                    source,
                });
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(500).collect();
        Err(match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound { what: what(), body },
            StatusCode::TOO_MANY_REQUESTS => RegistryError::Failing {
                url: url.to_owned(),
                status: status.as_u16(),
                body,
            },
            s if s.is_server_error() => RegistryError::Failing {
                url: url.to_owned(),
                status: s.as_u16(),
                body,
            },
            s => RegistryError::Refused {
                url: url.to_owned(),
                status: s.as_u16(),
                body,
            },
        })
    }
}

/// 409 and 422 on registration mean the schema itself was refused.
fn refine(error: RegistryError, subject: &str) -> RegistryError {
    match error {
        RegistryError::Refused {
            status: 409, body, ..
        } => RegistryError::Incompatible {
            subject: subject.to_owned(),
            body,
        },
        RegistryError::Refused {
            status: 422, body, ..
        } => RegistryError::Invalid {
            subject: subject.to_owned(),
            body,
        },
        other => other,
    }
}

/// Subjects hold dots and dashes only, but a topic prefix could bring anything: escape what a
/// path segment cannot carry.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written map entry: recover the data.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            encode("order.events-saga.order.OrderPlaced"),
            "order.events-saga.order.OrderPlaced"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn only_missing_answers_are_transient() {
        let failing = RegistryError::Failing {
            url: "u".into(),
            status: 500,
            body: String::new(),
        };
        assert!(failing.is_transient());
        let missing = RegistryError::NotFound {
            what: "schema id 7".into(),
            body: String::new(),
        };
        assert!(!missing.is_transient());
    }
}
