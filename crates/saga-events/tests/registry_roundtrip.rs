//! Against the running stack (`make up`): real schema registry, real Kafka broker.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use saga_events::*;

fn codec(prefix: &str) -> anyhow::Result<EventCodec> {
    Ok(EventCodec::new(&registry_url(), TopicNames::new(prefix))?)
}

#[tokio::test]
async fn every_schema_registers_under_its_topic_record_name_subject() -> anyhow::Result<()> {
    let prefix = unique_prefix("subjects");
    let codec = codec(&prefix)?;
    let registered = codec.register_all().await?;
    assert_eq!(registered.len(), EventType::ALL.len());

    let subjects = codec.subjects().await?;
    for &event_type in EventType::ALL {
        let expected = format!(
            "{prefix}{}.events-{}",
            event_type.publisher().name(),
            event_type.full_name()
        );
        assert_eq!(codec.subject(event_type), expected);
        assert!(
            subjects.contains(&expected),
            "subject {expected} missing; registry has {subjects:?}"
        );
    }

    // Registering the same schemas again is a no-op that answers with the same ids.
    let again = codec.register_all().await?;
    assert_eq!(registered, again);
    Ok(())
}

#[tokio::test]
async fn one_event_of_each_type_survives_a_trip_through_kafka() -> anyhow::Result<()> {
    let prefix = unique_prefix("roundtrip");
    let topics = TopicNames::new(&prefix);
    create_event_topics(&topics).await?;
    let codec = codec(&prefix)?;

    let sent = one_of_each("order-roundtrip-1");
    assert_eq!(sent.len(), EventType::ALL.len(), "one of each type");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    for event in &sent {
        let encoded = codec.encode(event).await?;
        assert_eq!(encoded.topic, topics.events(event.event_type().publisher()));
        assert_eq!(&encoded.payload[..1], &[0], "Confluent magic byte");
        producer
            .send(
                FutureRecord::to(&encoded.topic)
                    .key(&encoded.key)
                    .payload(&encoded.payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("{prefix}reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for service in Service::ALL {
        for partition in 0..2 {
            assignment.add_partition_offset(
                &topics.events(service),
                partition,
                Offset::Beginning,
            )?;
        }
    }
    consumer.assign(&assignment)?;

    let mut received: HashMap<String, (SagaEvent, String)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.len() < sent.len() {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out: received {} of {} events: {:?}",
                    received.len(),
                    sent.len(),
                    received
                        .values()
                        .map(|(e, _)| e.event_type())
                        .collect::<Vec<_>>()
                )
            })??;
        let payload = message.payload().unwrap_or_default();
        let event = codec.decode(payload).await?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        received.insert(event.metadata().event_id.clone(), (event, key));
    }

    for event in &sent {
        let (got, key) = received
            .get(&event.metadata().event_id)
            .ok_or_else(|| anyhow::anyhow!("{} never came back", event.event_type()))?;
        assert_eq!(got, event, "{} decoded differently", event.event_type());
        assert_eq!(key, event.order_id(), "records are keyed by order id");
    }
    Ok(())
}

#[tokio::test]
async fn an_incompatible_schema_change_is_refused_and_says_so() -> anyhow::Result<()> {
    let prefix = unique_prefix("compat");
    let codec = codec(&prefix)?;
    let topic = format!("{prefix}order.events");
    let name = EventType::OrderConfirmed.full_name();
    let current = &codec.catalogue().get(EventType::OrderConfirmed).json;
    codec.register(&topic, name, current).await?;

    // A field with a default is a compatible change: new readers fill it in for old data.
    let with_default = add_field(current, r#"{"name":"note","type":"string","default":""}"#)?;
    codec.register(&topic, name, &with_default).await?;

    // A new field without a default cannot be read from data the older versions wrote.
    let breaking = add_field(current, r#"{"name":"confirmed_by","type":"string"}"#)?;
    let error = codec
        .register(&topic, name, &breaking)
        .await
        .expect_err("the registry must refuse a field without a default");
    assert!(
        error.is_incompatible(),
        "expected IncompatibleSchema, got {error:?}"
    );
    let message = format!("{:#}", anyhow::Error::from(error));
    assert!(
        message.contains("incompatible") && message.contains(&format!("{topic}-{name}")),
        "the error should name the subject and say incompatible: {message}"
    );
    Ok(())
}

fn add_field(schema_json: &str, field: &str) -> anyhow::Result<String> {
    let mut schema: serde_json::Value = serde_json::from_str(schema_json)?;
    let fields = schema["fields"]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("not a record"))?;
    fields.push(serde_json::from_str(field)?);
    Ok(schema.to_string())
}

#[tokio::test]
async fn payloads_that_are_not_saga_avro_are_typed_errors() -> anyhow::Result<()> {
    let prefix = unique_prefix("decode");
    let codec = codec(&prefix)?;

    let not_avro = codec.decode(b"{\"order_id\": 1}").await;
    assert!(
        matches!(not_avro, Err(DecodeError::NotAvro { len: 15, .. })),
        "{not_avro:?}"
    );
    assert!(matches!(
        codec.decode(&[]).await,
        Err(DecodeError::NotAvro { .. })
    ));

    let unknown_id = codec.decode(&[0, 0x7f, 0xff, 0xff, 0x01, 2, 4, 6]).await;
    assert!(
        matches!(
            unknown_id,
            Err(DecodeError::UnknownSchemaId { id: 0x7fff_ff01 })
        ),
        "{unknown_id:?}"
    );

    let event = &one_of_each("order-truncated")[0];
    let encoded = codec.encode(event).await?;
    for cut in [encoded.payload.len() / 2, 6] {
        let truncated = codec.decode(&encoded.payload[..cut]).await;
        assert!(
            matches!(truncated, Err(DecodeError::Malformed { .. })),
            "cut at {cut}: {truncated:?}"
        );
    }
    let intact = codec.decode(&encoded.payload).await?;
    assert_eq!(&intact, event);

    for error in [not_avro, unknown_id].into_iter().filter_map(Result::err) {
        assert!(!error.is_transient(), "{error} would be retried forever");
    }
    Ok(())
}
