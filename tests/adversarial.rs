//! Consumers under adversarial events. Several hundred generated records go straight to each
//! event topic: valid Avro carrying hostile values (NUL and other control characters, 1 MB
//! strings, emoji and right-to-left text, negative and extreme numbers, empty and 10,000-line
//! item lists, ids that are not UUIDs, an enum symbol from a newer schema), and random bytes
//! behind a valid magic byte and schema id. Then every consumer group catches up, every record
//! is accounted for at every service that reads it (applied: in its inbox; refused: on its
//! dead-letter topic with the reason; held behind a refused record of its order: parked; not its
//! business: nothing), no service logged a panic, and the audit is clean.
//!
//! The values come from proptest strategies driven by a seed (`ADVERSARIAL_SEED`, printed at the
//! start), so a failing run is replayed with the same seed; `ADVERSARIAL_RECORDS` sets how many
//! records go to each topic (default 250). There is no shrinking: each case is a run of a live
//! system. Ids are fresh on every run, so the test can run again on the same stack.
//!
//! What is hostile is the values, not the facts. A well-formed `StockReservationFailed` for a
//! confirmed order tells Payment to refund it, and Payment rightly does; a well-formed
//! `OrderPlaced` for an order Order never accepted is a charge. Who may write a topic is settled
//! by ACLs (`deploy/k8s`), not by consumers second-guessing facts. So the generator gives the
//! events that take a step (`OrderPlaced`, `PaymentAuthorized`, `StockReserved`) the id of an
//! order already confirmed (each step is taken once per order) or an id that is not an order's,
//! and the events that undo one (`StockReservationFailed`, `ShipmentFailed`, `OrderCancelled`)
//! an id no service knows or one that is not an order's; reports may name anything.

use std::collections::BTreeMap;
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rdkafka::producer::FutureProducer;
use saga_e2e::*;
use saga_events::{
    Address, CancellationReason, EventCodec, EventMetadata, EventType, Money, OrderLine, SagaEvent,
    Service, StockLine, TopicNames,
};
use saga_messaging::{Headers, KafkaSettings};
use serde_json::Value;

const DEFAULT_SEED: u64 = 0x5a6a_2026_1127;
const DEFAULT_RECORDS_PER_TOPIC: usize = 250;
/// "1 MB": what fits, with the rest of a record, under the broker's default maximum of 1 MiB.
const HUGE_TEXT_BYTES: usize = 1_000_000;
const HUGE_LIST_LINES: usize = 10_000;
/// The symbol a newer `CancellationReason` has that this build's does not.
/// Orders confirmed first, for the events that take a step to name.
const CONFIRMED_ORDERS: usize = 30;
const NEWER_SYMBOL: &str = "RECALLED_BY_MANUFACTURER";

#[tokio::test]
async fn consumers_survive_adversarial_events_and_account_for_every_record() -> anyhow::Result<()> {
    let seed = env_or("ADVERSARIAL_SEED", DEFAULT_SEED)?;
    let per_topic = env_or("ADVERSARIAL_RECORDS", DEFAULT_RECORDS_PER_TOPIC as u64)? as usize;
    println!("adversarial events: ADVERSARIAL_SEED={seed} ADVERSARIAL_RECORDS={per_topic}");
    let logs = LogMarks::now()?;
    let api = Api::from_env()?;
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;

    // The confirmed orders that events taking a step may name.
    let sku = unique_sku("adversarial");
    api.set_stock(&sku, 100).await?;
    let mut confirmed = Vec::new();
    for _ in 0..CONFIRMED_ORDERS {
        let order_id = api
            .place(&order_body(&[(&sku, 1, 250)], "GB", "tok_visa"))
            .await?;
        confirmed.push(order_id);
    }
    for order_id in &confirmed {
        let order = api.wait_terminal(order_id, SETTLE).await?;
        anyhow::ensure!(order["status"] == "CONFIRMED", "{order}");
    }

    let writers = Writers::register(&codec).await?;
    let mut generator = Generator::new(seed, confirmed);
    let mut records = Vec::new();
    for publisher in Service::ALL {
        for _ in 0..per_topic {
            records.push(generator.record(publisher, &codec, &writers).await?);
        }
    }
    let landed = produce_all(&records).await?;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *tally.entry(record.what.as_str()).or_default() += 1;
    }
    println!("produced {} records: {tally:?}", records.len());

    // What each reader should leave of each record: a decodable event it does not react to
    // leaves nothing; anything else leaves exactly one trace.
    let mut expected: Vec<Expectation> = Vec::new();
    for (record, at) in records.iter().zip(&landed) {
        let decoded = codec.decode(&record.payload).await.ok();
        for service in readers_of(record.publisher) {
            let ignored = decoded
                .as_ref()
                .is_some_and(|event| !service.reacts_to(event.event_type()));
            expected.push(Expectation {
                service,
                source: Source {
                    topic: record.topic.clone(),
                    partition: at.partition,
                    offset: at.offset,
                },
                ignored,
                what: record.what.clone(),
            });
        }
    }

    for service in Service::ALL {
        wait_caught_up(service).await?;
    }
    let accounts = wait_for(
        "every record accounted for at every reader",
        SETTLE,
        || async {
            let traces = Traces::read().await?;
            let accounts = account(&expected, &traces);
            let pending = accounts.unaccounted.len() + traces.retrying;
            let seen = format!(
                "{} retrying, {} unaccounted, e.g. {:?}",
                traces.retrying,
                accounts.unaccounted.len(),
                accounts.unaccounted.iter().take(5).collect::<Vec<_>>()
            );
            if pending > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(((pending == 0).then_some(accounts), seen))
        },
    )
    .await?;
    println!(
        "outcomes per reader: {:?}",
        accounts.outcomes.iter().collect::<Vec<_>>()
    );
    assert!(
        accounts.twice.is_empty(),
        "records with more than one fate at one service: {:?}",
        accounts.twice
    );
    assert!(
        accounts.oversized_applied.is_empty(),
        "events over MAX_EVENT_BYTES reacted to: {:?}",
        accounts.oversized_applied
    );
    assert!(
        accounts.unexplained.is_empty(),
        "dead letters without a reason: {:?}",
        accounts.unexplained
    );
    for service in Service::ALL {
        wait_caught_up(service).await?;
    }
    let panics = logs.panics_since()?;
    assert!(
        panics.is_empty(),
        "services panicked:\n{}",
        panics.join("\n")
    );

    assert_a_new_order_confirms(&api, "adversarial-events").await?;
    assert_audit_clean("adversarial events")?;
    Ok(())
}

fn env_or(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) => Ok(text.parse()?),
        Err(_) => Ok(default),
    }
}

/// The services that read `publisher`'s event topic.
fn readers_of(publisher: Service) -> Vec<Service> {
    Service::ALL
        .into_iter()
        .filter(|reader| reader.consumes().contains(&publisher))
        .collect()
}

/// One generated record.
#[derive(Debug)]
struct Produced {
    publisher: Service,
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    /// What it is, for the report: an event type, or `garbage`.
    what: String,
}

async fn produce_all(records: &[Produced]) -> anyhow::Result<Vec<Landed>> {
    let producer: FutureProducer = KafkaSettings::new(bootstrap())
        .producer_config()
        // The broker's default maximum, so that the 1 MB values get there.
        .set("message.max.bytes", "1048588")
        .create()?;
    let none = Headers::new();
    let mut landed = Vec::with_capacity(records.len());
    for chunk in records.chunks(64) {
        let sent = futures::future::join_all(chunk.iter().map(|record| {
            produce(
                &producer,
                &record.topic,
                &record.key,
                &record.payload,
                &none,
            )
        }))
        .await;
        for result in sent {
            landed.push(result?);
        }
    }
    Ok(landed)
}

/// Where a record sits: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

#[derive(Debug)]
struct Expectation {
    service: Service,
    source: Source,
    ignored: bool,
    what: String,
}

/// What the services hold of records: per service, the fates each record met.
#[derive(Debug, Default)]
struct Traces {
    fates: BTreeMap<(Service, Source), Vec<Fate>>,
    /// Dead letters whose reason is empty.
    unexplained: Vec<String>,
    /// Parked messages still being retried, anywhere.
    retrying: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    /// In the inbox: the service reacted to it.
    Applied,
    /// On the service's dead-letter topic.
    DeadLettered,
    /// Parked behind a dead-lettered message of its order.
    Waiting,
}

impl Traces {
    async fn read() -> anyhow::Result<Self> {
        let mut traces = Traces::default();
        for service in Service::ALL {
            let pool = service_db(database(service)).await?;
            let applied: Vec<(String, i32, i64)> =
                sqlx::query_as("SELECT topic, kafka_partition, kafka_offset FROM inbox")
                    .fetch_all(&pool)
                    .await?;
            let parked: Vec<(String, i32, i64, String)> = sqlx::query_as(
                "SELECT source_topic, source_partition, source_offset, status FROM parked",
            )
            .fetch_all(&pool)
            .await?;
            pool.close().await;
            for (topic, partition, offset) in applied {
                traces.add(service, topic, partition, offset, Fate::Applied);
            }
            for (topic, partition, offset, status) in parked {
                match status.as_str() {
                    "WAITING" => traces.add(service, topic, partition, offset, Fate::Waiting),
                    "RETRYING" => traces.retrying += 1,
                    // The dead letter itself is counted from the topic.
                    _ => {}
                }
            }
            let letters =
                tokio::task::spawn_blocking(move || dead_letters(service.name())).await??;
            for letter in letters {
                let Some(source) = parse_source(&letter) else {
                    continue;
                };
                if letter["error"].as_str().unwrap_or("").trim().is_empty() {
                    traces.unexplained.push(format!("{service} {source}"));
                }
                traces
                    .fates
                    .entry((service, source))
                    .or_default()
                    .push(Fate::DeadLettered);
            }
        }
        Ok(traces)
    }

    fn add(&mut self, service: Service, topic: String, partition: i32, offset: i64, fate: Fate) {
        let source = Source {
            topic,
            partition,
            offset,
        };
        self.fates.entry((service, source)).or_default().push(fate);
    }
}

fn database(service: Service) -> &'static str {
    match service {
        Service::Order => "orders",
        Service::Payment => "payments",
        Service::Inventory => "inventory",
        Service::Shipping => "shipping",
    }
}

/// `topic[partition]@offset`, as `sagactl dlq list` writes a letter's source.
fn parse_source(letter: &Value) -> Option<Source> {
    let text = letter["source"].as_str()?;
    let (topic, rest) = text.split_once('[')?;
    let (partition, offset) = rest.split_once("]@")?;
    Some(Source {
        topic: topic.to_owned(),
        partition: partition.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

#[derive(Debug, Default)]
struct Accounts {
    /// (service, fate) → how many records.
    outcomes: BTreeMap<String, usize>,
    unaccounted: Vec<String>,
    twice: Vec<String>,
    /// 1 MB events a service reacted to instead of dead-lettering them.
    oversized_applied: Vec<String>,
    unexplained: Vec<String>,
}

fn account(expected: &[Expectation], traces: &Traces) -> Accounts {
    let mut accounts = Accounts {
        unexplained: traces.unexplained.clone(),
        ..Accounts::default()
    };
    for expectation in expected {
        let key = (expectation.service, expectation.source.clone());
        let fates = traces.fates.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let label = |fate: &str| format!("{} {fate}", expectation.service);
        match (expectation.ignored, fates) {
            (true, []) => *accounts.outcomes.entry(label("ignored")).or_default() += 1,
            (false, [fate]) => {
                if *fate == Fate::Applied && expectation.what.ends_with("with 1 MB") {
                    accounts
                        .oversized_applied
                        .push(format!("{} {}", expectation.service, expectation.source));
                }
                *accounts
                    .outcomes
                    .entry(label(&format!("{fate:?}").to_lowercase()))
                    .or_default() += 1
            }
            (false, []) => accounts.unaccounted.push(format!(
                "{} {} ({}): no trace",
                expectation.service, expectation.source, expectation.what
            )),
            (_, fates) => accounts.twice.push(format!(
                "{} {} ({}): {fates:?}{}",
                expectation.service,
                expectation.source,
                expectation.what,
                if expectation.ignored {
                    " though it does not react to it"
                } else {
                    ""
                }
            )),
        }
    }
    accounts
}

/// Lengths of the services' logs when the test started, to read only what it caused.
#[derive(Debug)]
struct LogMarks(Vec<(std::path::PathBuf, u64)>);

impl LogMarks {
    fn now() -> anyhow::Result<Self> {
        let dir = repo_root().join(".local/logs");
        let mut marks = Vec::new();
        for service in Service::ALL {
            let path = dir.join(format!("{}.log", service.name()));
            let length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            marks.push((path, length));
        }
        Ok(Self(marks))
    }

    /// Lines mentioning a panic written since [`LogMarks::now`].
    fn panics_since(&self) -> anyhow::Result<Vec<String>> {
        let mut found = Vec::new();
        for (path, from) in &self.0 {
            let bytes = std::fs::read(path)?;
            let since = bytes.get(*from as usize..).unwrap_or(&[]);
            for line in String::from_utf8_lossy(since).lines() {
                if line.contains("panicked") {
                    found.push(format!("{}: {}", path.display(), truncate(line)));
                }
            }
        }
        Ok(found)
    }
}

fn truncate(line: &str) -> String {
    line.chars().take(400).collect()
}

/// Schemas the generator writes with besides this build's: `CancellationReason` with a symbol
/// this build does not know, for each event that carries one, registered under subjects of
/// their own so that the saga's subjects stay as they are.
struct Writers {
    newer: BTreeMap<EventType, (u32, apache_avro::Schema)>,
}

impl Writers {
    async fn register(codec: &EventCodec) -> anyhow::Result<Self> {
        let mut newer = BTreeMap::new();
        for event_type in [
            EventType::OrderCancelled,
            EventType::PaymentRefunded,
            EventType::ShipmentCancelled,
        ] {
            let json = &codec.catalogue().get(event_type).json;
            let widened = json.replace(
                r#""UNKNOWN"],"#,
                &format!(r#""UNKNOWN","{NEWER_SYMBOL}"],"#),
            );
            anyhow::ensure!(
                widened != *json,
                "no CancellationReason symbols in {event_type}'s schema: {json}"
            );
            let schema = apache_avro::Schema::parse_str(&widened)?;
            let subject = format!("adversarial-newer-{}", event_type.full_name());
            let id = codec.registry().register(&subject, &widened).await?;
            newer.insert(event_type, (id, schema));
        }
        Ok(Self { newer })
    }

    /// `event` written with the newer schema, its reason the symbol this build lacks.
    async fn with_newer_reason(
        &self,
        codec: &EventCodec,
        event: &SagaEvent,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((id, schema)) = self.newer.get(&event.event_type()) else {
            return Ok(None);
        };
        // The event as this build writes it, read back as a generic record.
        let current = &codec.catalogue().get(event.event_type()).schema;
        let encoded = codec.encode(event).await?;
        let Avro::Record(fields) = GenericDatumReader::builder(current)
            .build()?
            .read_value(&mut &encoded.payload[5..])?
        else {
            anyhow::bail!("{} is not a record", event.event_type());
        };
        let newest = match schema {
            apache_avro::Schema::Record(record) => record
                .fields
                .iter()
                .find(|f| f.name == "reason")
                .and_then(|f| match &f.schema {
                    apache_avro::Schema::Enum(e) => Some(e.symbols.len() - 1),
                    _ => None,
                }),
            _ => None,
        }
        .ok_or_else(|| anyhow::anyhow!("no reason enum in {}", event.event_type()))?;
        let fields: Vec<(String, Avro)> = fields
            .into_iter()
            .map(|(name, value)| {
                let value = if name == "reason" {
                    Avro::Enum(
                        u32::try_from(newest).unwrap_or(u32::MAX),
                        NEWER_SYMBOL.to_owned(),
                    )
                } else {
                    value
                };
                (name, value)
            })
            .collect();
        let body = GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(Avro::Record(fields))?;
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&body);
        Ok(Some(payload))
    }
}

/// Draws hostile values from proptest strategies, from one seeded generator.
struct Generator {
    runner: TestRunner,
    confirmed: Vec<String>,
    /// A 1 MB value is due in this record's next text field (or the one after…).
    huge_text: bool,
    /// The next item list of this record has 10,000 lines.
    huge_list: bool,
}

/// How an event's order id is chosen.
#[derive(Debug, Clone, Copy)]
enum Naming {
    /// Takes a step: a confirmed order, or no order at all.
    Confirmed,
    /// Undoes a step: an order no service knows, or no order at all.
    Unknown,
    /// A report: anything.
    Any,
}

impl Generator {
    fn new(seed: u64, confirmed: Vec<String>) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        Self {
            runner: TestRunner::new_with_rng(Config::default(), rng),
            confirmed,
            huge_text: false,
            huge_list: false,
        }
    }

    fn draw<S: Strategy>(&mut self, strategy: S) -> S::Value {
        loop {
            // The strategies here never reject a value; the loop only satisfies the type.
            if let Ok(tree) = strategy.new_tree(&mut self.runner) {
                return tree.current();
            }
        }
    }

    async fn record(
        &mut self,
        publisher: Service,
        codec: &EventCodec,
        writers: &Writers,
    ) -> anyhow::Result<Produced> {
        let topic = codec.topics().events(publisher);
        let types: Vec<EventType> = EventType::ALL
            .iter()
            .copied()
            .filter(|t| t.publisher() == publisher)
            .collect();
        let event_type = self.draw(prop::sample::select(types));
        let shape = self.draw(prop_oneof![
            16 => Just(Shape::Normal),
            1 => Just(Shape::HugeText),
            1 => Just(Shape::HugeList),
            2 => Just(Shape::Garbage),
        ]);
        self.huge_text = shape == Shape::HugeText;
        self.huge_list = shape == Shape::HugeList;
        if shape == Shape::Garbage {
            // Random bytes behind the magic byte and the id of one of the topic's schemas.
            let valid = codec.encode(&self.event(event_type)).await?;
            let mut payload = valid.payload[..5].to_vec();
            payload.extend(self.draw(prop::collection::vec(any::<u8>(), 0..300)));
            // Not keyed by a confirmed order: it would hold that order back at every reader, and
            // the events that follow it would wait instead of meeting the services.
            let key = self.order_id(Naming::Unknown);
            return Ok(Produced {
                publisher,
                topic,
                key: key.into_bytes(),
                payload,
                what: "garbage".into(),
            });
        }
        let event = self.event(event_type);
        let newer = self.draw(prop::bool::weighted(0.3));
        let mut payload = match writers.with_newer_reason(codec, &event).await? {
            Some(payload) if newer => payload,
            _ => codec.encode(&event).await?.payload,
        };
        if self.draw(prop::bool::weighted(0.1)) {
            let event_id = self.draw(not_a_uuid());
            payload = with_event_id(&payload, &event_id)?;
        }
        Ok(Produced {
            publisher,
            topic,
            key: event.order_id().as_bytes().to_vec(),
            payload,
            what: match shape {
                // The 1 MB value did land in one of its strings.
                Shape::HugeText if !self.huge_text => format!("{event_type} with 1 MB"),
                _ => event_type.name().to_owned(),
            },
        })
    }

    fn event(&mut self, event_type: EventType) -> SagaEvent {
        use EventType::*;
        let naming = match event_type {
            OrderPlaced | PaymentAuthorized | StockReserved => Naming::Confirmed,
            StockReservationFailed | ShipmentFailed | OrderCancelled => Naming::Unknown,
            _ => Naming::Any,
        };
        let order_id = self.order_id(naming);
        let metadata = EventMetadata {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: self.i64(),
            correlation_id: self.text(),
            causation_id: self.causation_id(),
            producer: self.text(),
        };
        match event_type {
            OrderPlaced => saga_events::OrderPlaced {
                metadata,
                order_id,
                customer_id: self.text(),
                items: self.order_lines(),
                total: Money {
                    amount_minor: self.i64(),
                    currency: self.text(),
                },
                payment_method: self.text(),
                shipping_address: self.address(),
                deadline_at: self.draw(prop::option::of(Just(()))).map(|()| self.i64()),
                customer_email: self.draw(prop::option::of(Just(()))).map(|()| self.text()),
            }
            .into(),
            OrderConfirmed => saga_events::OrderConfirmed { metadata, order_id }.into(),
            OrderCancelled => saga_events::OrderCancelled {
                metadata,
                order_id,
                reason: self.reason(),
            }
            .into(),
            PaymentAuthorized => saga_events::PaymentAuthorized {
                metadata,
                order_id,
                payment_id: self.text(),
                amount_cents: self.i64(),
                currency: self.text(),
                items: self.stock_lines(),
                shipping_address: self.address(),
                deadline_at: self.draw(prop::option::of(Just(()))).map(|()| self.i64()),
            }
            .into(),
            PaymentDeclined => saga_events::PaymentDeclined {
                metadata,
                order_id,
                amount_cents: self.i64(),
                currency: self.text(),
                reason: self.text(),
            }
            .into(),
            PaymentReviewRequested => saga_events::PaymentReviewRequested {
                metadata,
                order_id,
                review_deadline_at: self.i64(),
            }
            .into(),
            PaymentRefunded => saga_events::PaymentRefunded {
                metadata,
                order_id,
                payment_id: self.text(),
                amount_cents: self.i64(),
                currency: self.text(),
                reason: self.reason(),
            }
            .into(),
            StockReserved => saga_events::StockReserved {
                metadata,
                order_id,
                items: self.stock_lines(),
                shipping_address: self.address(),
                deadline_at: self.draw(prop::option::of(Just(()))).map(|()| self.i64()),
            }
            .into(),
            StockReservationFailed => saga_events::StockReservationFailed {
                metadata,
                order_id,
                unavailable_skus: if std::mem::take(&mut self.huge_list) {
                    vec!["sku".into(); HUGE_LIST_LINES]
                } else {
                    self.draw(prop::collection::vec(hostile_short_text(), 0..4))
                },
                reason: self.text(),
            }
            .into(),
            StockReleased => saga_events::StockReleased {
                metadata,
                order_id,
                items: self.stock_lines(),
            }
            .into(),
            ShipmentScheduled => saga_events::ShipmentScheduled {
                metadata,
                order_id,
                shipment_id: self.text(),
                country: self.text(),
            }
            .into(),
            ShipmentFailed => saga_events::ShipmentFailed {
                metadata,
                order_id,
                reason: self.text(),
            }
            .into(),
            ShipmentCancelled => saga_events::ShipmentCancelled {
                metadata,
                order_id,
                shipment_id: self.text(),
                reason: self.reason(),
            }
            .into(),
        }
    }

    fn order_id(&mut self, naming: Naming) -> String {
        let confirmed = self.draw(prop::sample::select(self.confirmed.clone()));
        let fresh = uuid::Uuid::new_v4().to_string();
        let not_an_id = self.draw(not_a_uuid());
        let pick = self.draw(0..3u8);
        match (naming, pick) {
            (_, 0) => not_an_id,
            (Naming::Confirmed, _) => confirmed,
            (Naming::Unknown, _) => fresh,
            (Naming::Any, 1) => confirmed,
            (Naming::Any, _) => fresh,
        }
    }

    /// Mostly none or a UUID: a cause that is not an event id is refused by Order, which would
    /// then hold the order back and keep the rest of the values from its reactions.
    fn causation_id(&mut self) -> Option<String> {
        match self.draw(0..10u8) {
            0..=4 => None,
            5..=8 => Some(uuid::Uuid::new_v4().to_string()),
            _ => Some(self.text()),
        }
    }

    fn text(&mut self) -> String {
        if self.huge_text && self.draw(prop::bool::weighted(0.3)) {
            self.huge_text = false;
            return self.draw(any::<u64>().prop_map(huge_text));
        }
        self.draw(hostile_text())
    }

    fn i64(&mut self) -> i64 {
        self.draw(prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0i64),
            1i64..100_000,
            any::<i64>(),
        ])
    }

    fn i32(&mut self) -> i32 {
        self.draw(prop_oneof![
            Just(i32::MIN),
            Just(i32::MAX),
            Just(-1i32),
            Just(0i32),
            1i32..1000,
            any::<i32>(),
        ])
    }

    fn reason(&mut self) -> CancellationReason {
        self.draw(prop::sample::select(vec![
            CancellationReason::PAYMENT_DECLINED,
            CancellationReason::OUT_OF_STOCK,
            CancellationReason::SHIPPING_FAILED,
            CancellationReason::TIMED_OUT,
            CancellationReason::UNKNOWN,
        ]))
    }

    fn line_count(&mut self) -> usize {
        if std::mem::take(&mut self.huge_list) {
            HUGE_LIST_LINES
        } else {
            self.draw(prop_oneof![1 => Just(0usize), 4 => 1usize..5])
        }
    }

    fn order_lines(&mut self) -> Vec<OrderLine> {
        let count = self.line_count();
        (0..count)
            .map(|i| OrderLine {
                sku: self.line_sku(i, count),
                quantity: self.i32(),
                unit_price_cents: self.i64(),
            })
            .collect()
    }

    fn stock_lines(&mut self) -> Vec<StockLine> {
        let count = self.line_count();
        (0..count)
            .map(|i| StockLine {
                sku: self.line_sku(i, count),
                quantity: self.i32(),
            })
            .collect()
    }

    /// Short hostile SKUs, except in a 10,000-line list, where they are plain and distinct (a
    /// list that long is the hostile part).
    fn line_sku(&mut self, index: usize, count: usize) -> String {
        if count == HUGE_LIST_LINES {
            format!("sku-{index}")
        } else {
            self.draw(hostile_short_text())
        }
    }

    fn address(&mut self) -> Address {
        Address {
            name: self.text(),
            line1: self.text(),
            city: self.text(),
            postal_code: self.text(),
            country: self.text(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Normal,
    /// One of the record's strings is 1 MB.
    HugeText,
    /// Its item list has 10,000 lines.
    HugeList,
    /// Random bytes behind a valid magic byte and schema id.
    Garbage,
}

/// Strings people and programs do not expect: control characters (NUL among them), emoji,
/// right-to-left and combining text, blanks, and long ones.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 _.-]{1,24}",
        2 => hostile_short_text(),
        1 => "[a-z]{2000,6000}",
    ]
}

fn hostile_short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,24}",
        2 => prop::sample::select(vec![
            "שלום עולם",
            "مرحبا بالعالم",
            "\u{202E}txt.exe",
            "👩‍👩‍👧‍👦🚀🇬🇧",
            "Z\u{0351}\u{0360}a\u{0353}l\u{0361}g\u{035C}o",
            "𝕳𝖊𝖑𝖑𝖔",
            "\u{FEFF}bom",
            "'; DROP TABLE orders; --",
            "%00%0d%0a",
        ])
        .prop_map(String::from),
        2 => "[a-z]{0,6}[\\x00-\\x1f\\x7f][a-z]{0,6}",
        1 => Just(String::new()),
        1 => Just("   ".to_owned()),
    ]
}

/// Order and event ids that are not UUIDs: some almost are.
fn not_a_uuid() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,12}-[0-9]{1,6}",
        Just(String::new()),
        Just("00000000-0000-0000-0000-00000000000g".to_owned()),
        any::<u128>().prop_map(|n| format!("{}\0", uuid::Uuid::from_u128(n))),
        any::<u128>().prop_map(|n| format!(" {}", uuid::Uuid::from_u128(n))),
        "\\PC{1,12}",
    ]
}

/// `payload` with another event id. The schemas give `event_id` the `uuid` logical type, which
/// this build's writer enforces but the wire does not: it is a string, the first field of the
/// metadata record that opens every event, as any other writer may fill it.
fn with_event_id(payload: &[u8], event_id: &str) -> anyhow::Result<Vec<u8>> {
    let body = payload.get(5..).unwrap_or_default();
    let (length, used) = read_varint(body).ok_or_else(|| anyhow::anyhow!("no event id"))?;
    let old_end = used + usize::try_from(length / 2)?;
    let mut spliced = payload[..5].to_vec();
    let mut zigzag = (event_id.len() as u64) << 1;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            spliced.push(byte);
            break;
        }
        spliced.push(byte | 0x80);
    }
    spliced.extend_from_slice(event_id.as_bytes());
    spliced.extend_from_slice(body.get(old_end..).unwrap_or_default());
    Ok(spliced)
}

/// An Avro varint (zig-zag not undone) and how many bytes it took.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// 1 MB of ASCII letters from a seed (cheap to make, poor to compress).
fn huge_text(seed: u64) -> String {
    let mut state = seed | 1;
    (0..HUGE_TEXT_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}
