//! Records no service can use — bytes that are not an event, events whose ids are not ids,
//! values Postgres cannot store, keys that do not match — end in the dead-letter topic of every
//! service that reads them, with their bytes intact, and never stop a partition. A record that
//! names an order holds that order back at the service until an operator redrives or skips it.
//!
//! Black-box: records are produced straight to the topics the services read.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use saga_e2e::*;
use saga_events::{
    Address, EventCodec, EventMetadata, Money, OrderPlaced, PaymentAuthorized, SagaEvent,
    ShipmentScheduled, StockLine, StockReleased, StockReservationFailed, StockReserved, TopicNames,
};
use saga_messaging::inspect::reader::PartitionReader;
use saga_messaging::{Headers, KafkaSettings};
use serde_json::Value;

#[tokio::test]
async fn poison_lands_in_the_right_dead_letter_topics_and_orders_keep_flowing() -> anyhow::Result<()>
{
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;
    let producer: FutureProducer = KafkaSettings::new(bootstrap()).producer_config().create()?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let address = Address {
        name: "P".into(),
        line1: "1".into(),
        city: "C".into(),
        postal_code: "0".into(),
        country: "GB".into(),
    };
    let lines = vec![StockLine {
        sku: "poison".into(),
        quantity: 1,
    }];
    // A valid event whose order id is not an order id: every service that reads it refuses it.
    let impossible = |topic: &str| -> SagaEvent {
        let order_id = format!("poison-{tag}-content-{topic}");
        let metadata = EventMetadata::first(&order_id, "poison");
        match topic {
            "order.events" => OrderPlaced {
                metadata,
                order_id,
                customer_id: "c".into(),
                items: vec![],
                total: Money {
                    amount_minor: 1,
                    currency: "EUR".into(),
                },
                payment_method: "tok_visa".into(),
                shipping_address: address.clone(),
                deadline_at: None,
                customer_email: None,
            }
            .into(),
            "payment.events" => PaymentAuthorized {
                metadata,
                order_id,
                payment_id: "p".into(),
                amount_cents: 1,
                currency: "EUR".into(),
                items: lines.clone(),
                shipping_address: address.clone(),
                deadline_at: None,
            }
            .into(),
            "inventory.events" => StockReserved {
                metadata,
                order_id,
                items: lines.clone(),
                shipping_address: address.clone(),
                deadline_at: None,
            }
            .into(),
            _ => ShipmentScheduled {
                metadata,
                order_id,
                shipment_id: "s".into(),
                country: "GB".into(),
            }
            .into(),
        }
    };
    // Who reads each topic, and who acts on its impossible event.
    let readers: BTreeMap<&str, (Vec<&str>, &str)> = BTreeMap::from([
        ("order.events", (vec!["order", "payment"], "payment")),
        ("payment.events", (vec!["order", "inventory"], "inventory")),
        (
            "inventory.events",
            (vec!["order", "payment", "shipping"], "shipping"),
        ),
        (
            "shipping.events",
            (vec!["order", "payment", "inventory"], "order"),
        ),
    ]);
    // The partitions the poison landed on: each must keep flowing afterwards.
    let mut poisoned = std::collections::BTreeSet::new();
    for topic in readers.keys() {
        let random: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
        let unknown_schema = vec![0, 0x7f, 0xff, 0xff, 0x02, 1, 2, 3, 4];
        let valid = codec.encode(&impossible(topic)).await?;
        for (kind, payload) in [
            ("bytes", random),
            ("schema", unknown_schema),
            ("content", valid.payload.clone()),
        ] {
            let key = if kind == "content" {
                valid.key.clone()
            } else {
                format!("poison-{tag}-{kind}-{topic}")
            };
            let delivered = producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)?;
            poisoned.insert(delivered.partition);
        }
    }

    for (topic, (consumers, acting)) in &readers {
        for service in consumers {
            for kind in ["bytes", "schema"] {
                let letter =
                    wait_for_dead_letter(service, &format!("poison-{tag}-{kind}-{topic}"), topic)
                        .await?;
                assert_eq!(letter["error_kind"], "Undecodable", "{letter}");
                assert_eq!(
                    letter["attempts"], 1,
                    "undecodable goes straight to the DLQ: {letter}"
                );
            }
        }
        let letter =
            wait_for_dead_letter(acting, &format!("poison-{tag}-content-{topic}"), topic).await?;
        assert_eq!(letter["error_kind"], "Permanent", "{letter}");
        assert_eq!(
            letter["attempts"], 1,
            "an event whose order id is not an id can never be handled: no retries: {letter}"
        );
        assert!(
            letter["error"]
                .as_str()
                .unwrap_or("")
                .contains("not a UUID"),
            "{letter}"
        );
        assert!(
            !letter["first_failure"].as_str().unwrap_or("").is_empty(),
            "{letter}"
        );
    }

    // An order whose records travel the very partitions the poison sits on ends as it should:
    // no poisoned partition stopped.
    let api = Api::from_env()?;
    for partition in poisoned {
        let order = an_order_on_partition(&api, partition).await?;
        assert_eq!(
            order["status"], "CONFIRMED",
            "an order on poisoned partition {partition}: {order:#}"
        );
    }
    assert_audit_clean("poison messages")?;
    Ok(())
}

fn refusal(order_id: &str, reason: &str, event_id: Option<String>) -> SagaEvent {
    let mut metadata = EventMetadata::first(order_id, "poison");
    if let Some(event_id) = event_id {
        metadata.event_id = event_id;
    }
    StockReservationFailed {
        metadata,
        order_id: order_id.to_owned(),
        unavailable_skus: vec!["poison".into()],
        reason: reason.into(),
    }
    .into()
}

/// The record at `partition`/`offset` of `topic` was dead-lettered by `service`.
async fn dead_lettered_at(service: &str, topic: &str, landed: &Landed) -> anyhow::Result<Value> {
    let source = format!("{topic}[{}]@{}", landed.partition, landed.offset);
    wait_for_dead_letter_where(service, &source, |l| l["source"] == source.as_str()).await
}

/// Parked rows of an order at a service: (status, event id).
async fn parked(database: &str, order_id: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let pool = service_db(database).await?;
    Ok(
        sqlx::query_as("SELECT status, event_id::text FROM parked WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&pool)
            .await?,
    )
}

/// Postgres refuses NUL in text and jsonb; a key may be any bytes. Each record below once
/// stopped its partition for good (its bookkeeping failed forever); now each is dead-lettered
/// by every service that reads it, with its bytes intact, and later orders on the same
/// partition complete.
#[tokio::test]
async fn records_postgres_cannot_store_are_dead_lettered_and_their_partition_keeps_flowing()
-> anyhow::Result<()> {
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;
    let producer: FutureProducer = KafkaSettings::new(bootstrap()).producer_config().create()?;
    let topic = "inventory.events";
    let partition = 1;
    let on_partition = || order_id_on_partition(partition, 6).to_string();
    // An order id with a NUL after it, whose records land on the same partition.
    let with_nul = || loop {
        let key = format!("{}\0", uuid::Uuid::new_v4());
        if saga_messaging::kafka::partition_for(key.as_bytes(), 6) == partition {
            return key;
        }
    };
    let none = Headers::new();

    // A NUL in the key, in front of bytes that are no event.
    let nul_key = with_nul();
    let junk = produce(&producer, topic, nul_key.as_bytes(), b"\x00\x00junk", &none).await?;

    // A NUL in a header value of an event Payment refuses (the order has no payment).
    let with_header = on_partition();
    let mut nul_header = Headers::new();
    nul_header.insert("note", b"a\0b".to_vec());
    let encoded = codec
        .encode(&refusal(&with_header, "none left", None))
        .await?;
    let header_case = produce(
        &producer,
        topic,
        with_header.as_bytes(),
        &encoded.payload,
        &nul_header,
    )
    .await?;

    // A NUL in a string field of a valid event.
    let with_field = on_partition();
    let encoded = codec
        .encode(&refusal(&with_field, "none\0left", None))
        .await?;
    let field_case = produce(
        &producer,
        topic,
        with_field.as_bytes(),
        &encoded.payload,
        &none,
    )
    .await?;

    // A NUL in the order id itself, which every service would lock and park by.
    let nul_order = with_nul();
    let encoded = codec
        .encode(&refusal(&nul_order, "none left", None))
        .await?;
    let order_case = produce(
        &producer,
        topic,
        nul_order.as_bytes(),
        &encoded.payload,
        &none,
    )
    .await?;

    // A key that is not UTF-8, on an event Order and Shipping act on.
    let bad_key_order = on_partition();
    let reserved: SagaEvent = StockReserved {
        metadata: EventMetadata::first(&bad_key_order, "poison"),
        order_id: bad_key_order.clone(),
        items: vec![StockLine {
            sku: "poison".into(),
            quantity: 1,
        }],
        shipping_address: Address {
            name: "P".into(),
            line1: "1".into(),
            city: "C".into(),
            postal_code: "0".into(),
            country: "GB".into(),
        },
        deadline_at: None,
    }
    .into();
    let encoded = codec.encode(&reserved).await?;
    let mut latin1_key = vec![0xff, 0xfe];
    while saga_messaging::kafka::partition_for(&latin1_key, 6) != partition {
        latin1_key.push(b'x');
    }
    let key_case = produce(&producer, topic, &latin1_key, &encoded.payload, &none).await?;

    // An event id in upper case, delivered twice while its order is parked at Payment.
    let upper = on_partition();
    let head = codec.encode(&refusal(&upper, "first", None)).await?;
    let head_case = produce(&producer, topic, upper.as_bytes(), &head.payload, &none).await?;
    let shouting = uuid::Uuid::new_v4().to_string().to_uppercase();
    let twice = codec
        .encode(&refusal(&upper, "second", Some(shouting.clone())))
        .await?;
    for _ in 0..2 {
        produce(&producer, topic, upper.as_bytes(), &twice.payload, &none).await?;
    }

    for service in ["order", "payment", "shipping"] {
        let letter = dead_lettered_at(service, topic, &junk).await?;
        assert_eq!(letter["error_kind"], "Undecodable", "{letter}");
        assert_eq!(
            letter["order_id"],
            nul_key.as_str(),
            "the key is kept: {letter}"
        );
    }
    let letter = dead_lettered_at("payment", topic, &header_case).await?;
    assert_eq!(letter["attempts"], 3, "{letter}");
    let kept = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Vec<u8>>> {
        let reader = PartitionReader::new(&KafkaSettings::new(bootstrap()))?;
        Ok(reader
            .records_with_key("payment.dlq", &with_header)?
            .iter()
            .filter_map(|r| r.headers.get_bytes("note").map(<[u8]>::to_vec))
            .collect())
    })
    .await??;
    assert_eq!(kept, vec![b"a\0b".to_vec()], "the header's bytes are kept");
    for service in ["order", "payment"] {
        let letter = dead_lettered_at(service, topic, &field_case).await?;
        assert_eq!(letter["error_kind"], "Permanent", "{service}: {letter}");
        let letter = dead_lettered_at(service, topic, &order_case).await?;
        assert!(
            letter["error"]
                .as_str()
                .unwrap_or("")
                .contains("not a UUID"),
            "{service}: {letter}"
        );
    }
    for service in ["order", "shipping"] {
        let letter = dead_lettered_at(service, topic, &key_case).await?;
        assert!(
            letter["error"]
                .as_str()
                .unwrap_or("")
                .contains("record key"),
            "{service}: {letter}"
        );
    }
    dead_lettered_at("payment", topic, &head_case).await?;
    let rows = parked("payments", &upper).await?;
    assert_eq!(
        rows.iter()
            .map(|(status, _)| status.as_str())
            .collect::<Vec<_>>(),
        ["DEAD", "WAITING"],
        "the second copy of the upper-case event is a duplicate, not another row: {rows:?}"
    );
    assert_eq!(rows[1].1.as_deref(), Some(shouting.to_lowercase().as_str()));

    let api = Api::from_env()?;
    let order = an_order_on_partition(&api, partition).await?;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_audit_clean("records Postgres cannot store")?;
    Ok(())
}

/// A record that cannot be decoded but whose key names an order holds that order back, like
/// any other failure: the order's later events wait behind it, and go on, in order, once an
/// operator skips it.
#[tokio::test]
async fn an_undecodable_record_holds_its_order_back_until_it_is_skipped() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let codec = EventCodec::new(&registry_url(), TopicNames::default())?;
    let producer: FutureProducer = KafkaSettings::new(bootstrap()).producer_config().create()?;
    let sku = unique_sku("held-back");
    api.set_stock(&sku, 1).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 100)], "GB", "tok_visa"))
        .await?;
    api.wait_terminal(&order_id, SETTLE).await?;
    // Order reads its own events too, and its API says CONFIRMED as soon as it commits, before
    // it has read that OrderConfirmed back: until then the record would queue behind the junk
    // below like any later one (seen in CI: a second WAITING row, the OrderConfirmed).
    wait_for(
        "Order to have read the order's own OrderConfirmed",
        SETTLE,
        || async {
            let timeline = api.timeline(&order_id).await?.unwrap_or_default();
            let read = timeline.to_string().contains("OrderConfirmed");
            Ok((read.then_some(()), timeline.to_string()))
        },
    )
    .await?;

    // Junk keyed by the order, then a valid event of it on the same partition.
    let topic = "inventory.events";
    let none = Headers::new();
    let junk = produce(
        &producer,
        topic,
        order_id.as_bytes(),
        b"\x00\x00\x00junk",
        &none,
    )
    .await?;
    let late: SagaEvent = StockReleased {
        metadata: EventMetadata::first(&order_id, "poison"),
        order_id: order_id.clone(),
        items: vec![],
    }
    .into();
    let late_id = late.metadata().event_id.clone();
    let encoded = codec.encode(&late).await?;
    produce(
        &producer,
        topic,
        order_id.as_bytes(),
        &encoded.payload,
        &none,
    )
    .await?;

    let letter = dead_lettered_at("order", topic, &junk).await?;
    assert_eq!(letter["error_kind"], "Undecodable", "{letter}");
    wait_for("the valid event parked behind the junk", SETTLE, || async {
        let rows = parked("orders", &order_id).await?;
        let waiting = rows
            == [
                ("DEAD".to_owned(), None),
                ("WAITING".to_owned(), Some(late_id.clone())),
            ];
        Ok((waiting.then_some(()), format!("{rows:?}")))
    })
    .await?;
    let timeline = api.timeline(&order_id).await?.unwrap_or_default();
    assert!(
        !timeline.to_string().contains(&late_id),
        "the later event ran ahead of the junk: {timeline}"
    );

    let id = letter["id"].as_str().unwrap_or_default().to_owned();
    let (skipped, out) = sagactl(&["dlq", "skip", "order", "--id", &id], true)?;
    assert!(skipped, "{out}");
    wait_for("the later event released", SETTLE, || async {
        let timeline = api.timeline(&order_id).await?.unwrap_or_default();
        let rows = parked("orders", &order_id).await?;
        let released = timeline.to_string().contains(&late_id) && rows.is_empty();
        Ok((released.then_some(()), format!("parked {rows:?}")))
    })
    .await?;
    // The other readers of the topic hold the order too; let it go there as well.
    for service in ["payment", "shipping"] {
        let letter = dead_lettered_at(service, topic, &junk).await?;
        let id = letter["id"].as_str().unwrap_or_default().to_owned();
        let (skipped, out) = sagactl(&["dlq", "skip", service, "--id", &id], true)?;
        assert!(skipped, "{out}");
    }
    assert_audit_clean("an undecodable record skipped")?;
    Ok(())
}
