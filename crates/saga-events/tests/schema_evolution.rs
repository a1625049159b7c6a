//! How `OrderPlaced` changed without breaking anyone, against the real registry and golden
//! fixtures (`tests/fixtures/`, bytes written by v1, v2 and v3):
//!
//! - a compatible change: v3 added `customer_email` (optional, default null): what v3 wrote reads
//!   with the v1 and v2 readers;
//! - a breaking change done right: major 2 (`saga.order.v2.OrderPlaced`, v4 of the history) made
//!   the total `Money`; it is a subject of its own, and every version of major 1 decodes as this
//!   build's `OrderPlaced` through the upcaster chain.

mod common;

use std::path::Path;

use common::*;
use saga_events::apache_avro::Schema;
use saga_events::apache_avro::reader::datum::GenericDatumReader;
use saga_events::*;
use saga_schemas::SchemaHistory;

struct Fixture {
    schema_file: String,
    body: Vec<u8>,
    value: serde_json::Value,
}

fn fixture(version: u32) -> anyhow::Result<Fixture> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/OrderPlaced-v{version}.json"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let hex = json["avro_hex"].as_str().unwrap_or_default();
    let body = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(Fixture {
        schema_file: json["schema"].as_str().unwrap_or_default().to_owned(),
        body,
        value: json["value"].clone(),
    })
}

fn history() -> anyhow::Result<SchemaHistory> {
    SchemaHistory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas"))
        .map_err(|errors| anyhow::anyhow!("{errors:#?}"))
}

fn version_schema(history: &SchemaHistory, version: u32) -> anyhow::Result<String> {
    Ok(history
        .event("order/OrderPlaced")
        .and_then(|e| e.version(version))
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced v{version}"))?
        .json
        .clone())
}

#[tokio::test]
async fn every_version_of_major_1_decodes_as_this_builds_order_placed() -> anyhow::Result<()> {
    let history = history()?;
    let prefix = unique_prefix("evolution-old");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let topic = format!("{prefix}order.events");
    for version in [1, 2, 3] {
        let fixture = fixture(version)?;
        let writer = version_schema(&history, version)?;
        assert!(
            fixture.schema_file.ends_with(&format!("v{version}.avsc")),
            "{}",
            fixture.schema_file
        );
        // The fixture is what that version wrote: it reads back with its own schema alone.
        let schema = Schema::parse_str(&writer)?;
        GenericDatumReader::builder(&schema)
            .build()?
            .read_value(&mut fixture.body.as_slice())?;

        let id = codec
            .register(&topic, "saga.order.OrderPlaced", &writer)
            .await?
            .id;
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&fixture.body);
        let decoded = codec.decode_written(&payload).await?;
        assert_eq!(&*decoded.written_as, "saga.order.OrderPlaced", "v{version}");
        let SagaEvent::OrderPlaced(placed) = decoded.event else {
            anyhow::bail!("v{version} bytes did not decode as OrderPlaced");
        };
        // Upcast to major 2: the money travels as one value.
        assert_eq!(placed.total.amount_minor, 2_500, "v{version}");
        assert_eq!(placed.total.currency, "EUR", "v{version}");
        assert_eq!(
            placed.customer_email.as_deref(),
            (version == 3).then_some("ada@example.org"),
            "v{version}"
        );
        assert_eq!(
            placed.deadline_at,
            (version >= 2).then_some(1_764_000_030_000),
            "v{version}"
        );
        // Every other field the old writer wrote arrives as it wrote it.
        let as_json = serde_json::to_value(&placed)?;
        for (field, written) in fixture.value.as_object().into_iter().flatten() {
            if field != "currency" && field != "total_cents" {
                assert_eq!(&as_json[field], written, "v{version}: {field}");
            }
        }
    }
    Ok(())
}

#[test]
fn what_v3_wrote_reads_with_the_v1_and_v2_readers() -> anyhow::Result<()> {
    let history = history()?;
    let fixture = fixture(3)?;
    let writer = Schema::parse_str(&version_schema(&history, 3)?)?;
    for version in [1, 2] {
        let reader = Schema::parse_str(&version_schema(&history, version)?)?;
        let value = GenericDatumReader::builder(&writer)
            .build()?
            .read_value(&mut fixture.body.as_slice())?
            .resolve(&reader)?;
        let json = serde_json::Value::try_from(value)?;
        assert_eq!(json["order_id"], fixture.value["order_id"], "v{version}");
        assert_eq!(json["total_cents"], 2_500, "v{version}");
        assert!(
            json.get("customer_email").is_none(),
            "a v{version} reader does not see the new field: {json}"
        );
        assert_eq!(
            json.get("deadline_at").is_some(),
            version == 2,
            "v{version}: {json}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn major_2_is_a_subject_of_its_own_and_round_trips() -> anyhow::Result<()> {
    let prefix = unique_prefix("evolution-new");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let event = one_of_each("order-evolution-1")
        .into_iter()
        .find(|e| e.event_type() == EventType::OrderPlaced)
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    let encoded = codec.encode(&event).await?;
    assert_eq!(
        codec.subject(EventType::OrderPlaced),
        format!("{prefix}order.events-saga.order.v2.OrderPlaced")
    );
    let decoded = codec.decode_written(&encoded.payload).await?;
    assert_eq!(&*decoded.written_as, "saga.order.v2.OrderPlaced");
    assert_eq!(decoded.event, event);
    Ok(())
}
