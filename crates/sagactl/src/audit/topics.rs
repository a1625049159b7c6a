//! What the audit reads from the topics: effects recorded more than once (a double charge, a
//! second refund, …), and which parked rows have their dead letter on a dead-letter topic.

use std::collections::{BTreeMap, HashSet};

use saga_events::{Service, TopicNames};
use saga_messaging::Delivery as RawRecord;
use saga_messaging::KafkaSettings;
use saga_messaging::headers;
use saga_messaging::inspect::reader::PartitionReader;

/// The events a service emits at most once per order: a second distinct one is a double effect.
const ONCE: [&str; 6] = [
    "PaymentAuthorized",
    "PaymentRefunded",
    "StockReserved",
    "StockReleased",
    "ShipmentScheduled",
    "ShipmentCancelled",
];

/// What the topics say.
#[derive(Debug, Default)]
pub struct TopicFacts {
    /// Orders with more than one distinct event of a kind that happens once.
    pub repeated_effects: Vec<String>,
    /// (service, parked row id) of every dead letter that names its parked row.
    pub dead_letters: HashSet<(String, i64)>,
}

pub async fn read(kafka: &KafkaSettings, topics: &TopicNames) -> anyhow::Result<TopicFacts> {
    let kafka = kafka.clone();
    let topics = topics.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<TopicFacts> {
        let reader = PartitionReader::new(&kafka)?;
        let effects = reader.read_topics(
            &[Service::Payment, Service::Inventory, Service::Shipping].map(|s| topics.events(s)),
        )?;
        let letters = reader.read_topics(&Service::ALL.map(|s| topics.dlq(s)))?;
        let mut dead_letters = HashSet::new();
        for service in Service::ALL {
            let dlq = topics.dlq(service);
            for letter in letters.iter().filter(|l| l.topic == dlq) {
                if let Some(id) = letter
                    .headers
                    .get(headers::PARKED_ID)
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    dead_letters.insert((service.name().to_owned(), id));
                }
            }
        }
        Ok(TopicFacts {
            repeated_effects: repeated_effects(&effects),
            dead_letters,
        })
    })
    .await?
}

/// Orders with more than one distinct charge, refund, reservation, release, shipment or shipment
/// cancellation event (the same event delivered twice is one event).
fn repeated_effects(records: &[RawRecord]) -> Vec<String> {
    let mut seen: BTreeMap<(String, String), HashSet<String>> = BTreeMap::new();
    for record in records {
        let event_type = record.headers.get(headers::EVENT_TYPE).unwrap_or("");
        if !ONCE.contains(&event_type) {
            continue;
        }
        let order = record.key_str().unwrap_or_default().to_owned();
        let event_id = record
            .headers
            .get(headers::EVENT_ID)
            .unwrap_or_default()
            .to_owned();
        seen.entry((order, event_type.to_owned()))
            .or_default()
            .insert(event_id);
    }
    seen.into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((order, event_type), ids)| {
            format!("order {order}: {} distinct {event_type} events", ids.len())
        })
        .collect()
}
