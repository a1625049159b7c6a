//! A compatible change, shipped: `OrderPlaced` v3 added `customer_email` (optional, default
//! null). Against the real registry: bytes written by v1 and v2 (golden fixtures, committed under
//! `tests/fixtures/`) decode with this build's v3 reader, and what this build writes decodes with
//! the v1 and v2 readers.

mod common;

use std::path::Path;

use common::*;
use saga_events::apache_avro::Schema;
use saga_events::apache_avro::reader::datum::GenericDatumReader;
use saga_events::history::SchemaHistory;
use saga_events::*;

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
async fn bytes_written_by_v1_and_v2_decode_with_the_v3_reader() -> anyhow::Result<()> {
    let history = history()?;
    let prefix = unique_prefix("evolution-old");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let topic = format!("{prefix}order.events");
    for version in [1, 2] {
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
        let SagaEvent::OrderPlaced(decoded) = codec.decode(&payload).await? else {
            anyhow::bail!("v{version} bytes did not decode as OrderPlaced");
        };
        assert_eq!(decoded.customer_email, None, "v{version} had no e-mail");
        assert_eq!(
            decoded.deadline_at,
            (version == 2).then_some(1_764_000_030_000),
            "v{version}"
        );
        // Every field the old writer wrote arrives as it wrote it.
        let as_json = serde_json::to_value(&decoded)?;
        for (field, written) in fixture.value.as_object().into_iter().flatten() {
            assert_eq!(&as_json[field], written, "v{version}: {field}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn what_v3_writes_decodes_with_the_v1_and_v2_readers() -> anyhow::Result<()> {
    let history = history()?;
    let prefix = unique_prefix("evolution-new");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let SagaEvent::OrderPlaced(event) = one_of_each("order-evolution-1")
        .into_iter()
        .find(|e| e.event_type() == EventType::OrderPlaced)
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?
    else {
        anyhow::bail!("not an OrderPlaced");
    };
    assert!(
        event.customer_email.is_some(),
        "the sample carries an e-mail"
    );
    let encoded = codec.encode(&event.clone().into()).await?;
    let id = u32::from_be_bytes([
        encoded.payload[1],
        encoded.payload[2],
        encoded.payload[3],
        encoded.payload[4],
    ]);
    // The writer schema as any consumer would get it: from the registry, by id.
    let writer = Schema::parse_str(&codec.registry().schema_by_id(id).await?)?;
    for version in [1, 2] {
        let reader = Schema::parse_str(&version_schema(&history, version)?)?;
        let value = GenericDatumReader::builder(&writer)
            .build()?
            .read_value(&mut &encoded.payload[5..])?
            .resolve(&reader)?;
        let json = serde_json::Value::try_from(value)?;
        assert_eq!(json["order_id"], event.order_id.as_str(), "v{version}");
        assert_eq!(json["total_cents"], event.total_cents, "v{version}");
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
