//! Kafka record headers: the names the saga writes, and a header list that keeps every byte.
//!
//! Headers are copied from records into Postgres (parked messages, retry and dead-letter records
//! in the outbox) and back onto the broker. A value may hold any bytes, NUL and invalid UTF-8
//! included, and Postgres refuses NUL in `text` and `jsonb`, so headers are stored as `bytea` in
//! a small length-prefixed encoding ([`Headers::encode`]) that Postgres itself can produce (the
//! migration that introduced it converts older JSON headers in SQL).

use std::collections::BTreeMap;

use rdkafka::message::{Header, OwnedHeaders};
use thiserror::Error;

/// W3C trace context of the span that wrote the event.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// Short event type name (`OrderPlaced`), so tools can filter without decoding.
pub const EVENT_TYPE: &str = "event-type";
/// The event's `event_id`, the consumers' idempotency key.
pub const EVENT_ID: &str = "event-id";
/// Id of the outbox row the record was published from; the relay reads it back after a crash
/// to learn what already reached the broker.
pub const OUTBOX_ID: &str = "outbox-id";

/// Added to records on `<service>.retry` and `<service>.dlq`.
pub const ATTEMPTS: &str = "saga-attempts";
pub const NOT_BEFORE: &str = "saga-not-before";
pub const SERVICE: &str = "saga-service";
/// Row of the service's `parked` table the record stands for: a retry (or a redriven dead
/// letter) finds its parked message by it.
pub const PARKED_ID: &str = "saga-parked-id";
pub const SOURCE_TOPIC: &str = "saga-source-topic";
pub const SOURCE_PARTITION: &str = "saga-source-partition";
pub const SOURCE_OFFSET: &str = "saga-source-offset";
pub const SOURCE_TIMESTAMP: &str = "saga-source-timestamp";
pub const ERROR_KIND: &str = "saga-error-kind";
pub const ERROR: &str = "saga-error";
pub const FIRST_FAILURE: &str = "saga-first-failure";
pub const LAST_FAILURE: &str = "saga-last-failure";
/// Set on a record whose header names could not be read (they are not UTF-8); the record can
/// only be dead-lettered.
pub const UNREADABLE_HEADERS: &str = "saga-unreadable-headers";
/// Added by `sagactl dlq redrive`: when, from which dead letter, by whom.
pub const REDRIVEN_AT: &str = "saga-redriven-at";
pub const REDRIVEN_FROM: &str = "saga-redriven-from";
pub const REDRIVEN_BY: &str = "saga-redriven-by";
/// Added by `sagactl dlq skip`: the service gives the dead letter up for good and releases the
/// messages of its order that waited behind it.
pub const SKIPPED_BY: &str = "saga-skipped-by";

/// A record's headers in their original order, values as raw bytes (`None` is Kafka's null).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Option<Vec<u8>>)>,
}

/// Stored header bytes that are not in [`Headers::encode`]'s format.
#[derive(Debug, Error)]
#[error("stored headers are corrupt at byte {at}")]
pub struct CorruptHeaders {
    at: usize,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies a record's headers. librdkafka hands header names over as C strings, which the
    /// Kafka client library turns into `&str` by panicking on invalid UTF-8: such a record must
    /// not take the consumer down, so the panic is contained and reported as an error.
    pub fn from_kafka<H: rdkafka::message::Headers>(
        headers: Option<&H>,
    ) -> Result<Self, UnreadableHeaders> {
        let Some(headers) = headers else {
            return Ok(Self::default());
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect::<Vec<_>>()
        }))
        .map(|entries| Self { entries })
        .map_err(|_| UnreadableHeaders)
    }

    pub fn to_kafka(&self) -> OwnedHeaders {
        self.entries.iter().fold(
            OwnedHeaders::new_with_capacity(self.entries.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            },
        )
    }

    /// The last value of `name`, if it is UTF-8 text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The last value of `name`, as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.entries.iter().any(|(key, _)| key == name)
    }

    /// Sets `name` to `value`, replacing every earlier value of it.
    pub fn insert(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.remove(name);
        self.entries.push((name.to_owned(), Some(value.into())));
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(key, _)| key != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// For people: text values as they are, anything else escaped.
    pub fn to_text_map(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    None => "(null)".to_owned(),
                    Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                (key.clone(), text)
            })
            .collect()
    }

    /// The storage form: per header, a 4-byte big-endian name length and the name, then a 4-byte
    /// big-endian value length (-1 for null) and the value.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut out = Vec::with_capacity(size);
        for (key, value) in &self.entries {
            out.extend_from_slice(&length(key.len()).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
            match value {
                Some(value) => {
                    out.extend_from_slice(&length(value.len()).to_be_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, CorruptHeaders> {
        let total = bytes.len();
        let mut entries = Vec::new();
        let at = |rest: &[u8]| CorruptHeaders {
            at: total - rest.len(),
        };
        while !bytes.is_empty() {
            let (name_len, rest) = take_i32(bytes).ok_or_else(|| at(bytes))?;
            let name_len = usize::try_from(name_len).map_err(|_| at(bytes))?;
            let name = rest.get(..name_len).ok_or_else(|| at(rest))?;
            let name = std::str::from_utf8(name).map_err(|_| at(rest))?.to_owned();
            let rest = &rest[name_len..];
            let (value_len, rest) = take_i32(rest).ok_or_else(|| at(rest))?;
            let (value, rest) = if value_len < 0 {
                (None, rest)
            } else {
                let len = value_len as usize;
                let value = rest.get(..len).ok_or_else(|| at(rest))?;
                (Some(value.to_vec()), &rest[len..])
            };
            entries.push((name, value));
            bytes = rest;
        }
        Ok(Self { entries })
    }
}

/// A record whose header names could not be read as text.
#[derive(Debug, Error)]
#[error("the record's header names are not valid UTF-8")]
pub struct UnreadableHeaders;

fn take_i32(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*head), rest))
}

fn length(len: usize) -> i32 {
    // Kafka caps a record far below 2 GiB.
    i32::try_from(len).unwrap_or(i32::MAX)
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (key, value) in iter {
            headers.insert(key, value.as_bytes());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_survives_storage() {
        let mut headers = Headers::new();
        headers.insert("traceparent", "00-abc-def-01");
        headers.insert("nul", b"a\0b".to_vec());
        headers.insert("latin1", vec![0xff, 0xfe]);
        headers.entries.push(("null".into(), None));
        headers.insert("", Vec::new());
        let decoded = Headers::decode(&headers.encode()).expect("round trip");
        assert_eq!(decoded, headers);
        assert_eq!(decoded.get("traceparent"), Some("00-abc-def-01"));
        assert_eq!(decoded.get("latin1"), None, "not text");
        assert_eq!(decoded.get_bytes("nul"), Some(&b"a\0b"[..]));
    }

    #[test]
    fn the_encoding_is_what_the_migration_writes() {
        // int4send(octet_length(name)) || name || int4send(octet_length(value)) || value
        let headers: Headers = [("k", "vv")].into_iter().collect();
        assert_eq!(headers.encode(), b"\0\0\0\x01k\0\0\0\x02vv".to_vec());
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        assert!(Headers::decode(b"\0\0\0\x05ab").is_err());
        assert!(Headers::decode(b"\0\0").is_err());
        assert!(Headers::decode(b"\xff\xff\xff\xff").is_err());
        assert!(Headers::decode(b"").is_ok_and(|h| h.is_empty()));
    }

    #[test]
    fn insert_replaces() {
        let mut headers: Headers = [("a", "1"), ("b", "2")].into_iter().collect();
        headers.insert("a", "3");
        assert_eq!(headers.get("a"), Some("3"));
        assert_eq!(headers.len(), 2);
    }
}
