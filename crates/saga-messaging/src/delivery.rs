//! One consumed Kafka record, owned, with every byte of its key, headers and payload kept: what
//! the consumer handles, what a parked message stores, and what a dead letter carries onward.

use rdkafka::message::{BorrowedMessage, Message};

use crate::headers::{self, Headers};

/// A record as it was delivered, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_millis: Option<i64>,
    /// The record key as sent: the saga keys by order id, but anything may arrive.
    pub key: Option<Vec<u8>>,
    pub headers: Headers,
    /// The value; a null value (tombstone) is kept as empty.
    pub payload: Vec<u8>,
}

impl Delivery {
    /// Copies a consumed message. A record whose header names cannot be read keeps its key and
    /// payload, and says so in a header of its own, so that it can still be dead-lettered.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = Headers::from_kafka(message.headers()).unwrap_or_else(|error| {
            let mut headers = Headers::new();
            headers.insert(headers::UNREADABLE_HEADERS, error.to_string());
            headers
        });
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_millis: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            headers,
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        }
    }

    /// The key as text, if it is text.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok())
    }

    /// The order the key names, when it names one.
    pub fn key_order(&self) -> Option<uuid::Uuid> {
        self.key_str()
            .and_then(|key| uuid::Uuid::parse_str(key).ok())
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}
