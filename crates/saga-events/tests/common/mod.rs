//! Shared by the integration tests: where the stack is, isolated topics, one event of each type.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use saga_events::*;
pub use saga_testkit::isolated::unique_prefix;

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// Creates `<prefix><service>.events` for all four services (the broker refuses auto-creation).
pub async fn create_event_topics(topics: &TopicNames) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let names: Vec<String> = Service::ALL.iter().map(|s| topics.events(*s)).collect();
    let new_topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 2, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("could not create topic {topic}: {code}"),
        }
    }
    Ok(())
}

fn metadata(order_id: &str, producer: &str, causation_id: Option<&str>) -> EventMetadata {
    EventMetadata {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 1_764_000_000_000,
        correlation_id: order_id.to_owned(),
        causation_id: causation_id.map(str::to_owned),
        producer: producer.to_owned(),
    }
}

/// One event of every type for one order, with realistic content.
pub fn one_of_each(order_id: &str) -> Vec<SagaEvent> {
    let lines = vec![
        StockLine {
            sku: "SKU-RED-MUG".into(),
            quantity: 2,
        },
        StockLine {
            sku: "SKU-TEAPOT".into(),
            quantity: 1,
        },
    ];
    let address = Address {
        name: "Ada Lovelace".into(),
        line1: "12 Analytical Row".into(),
        city: "London".into(),
        postal_code: "N1 9GU".into(),
        country: "GB".into(),
    };
    let cause = Some("5b0e2a4e-0000-4000-8000-000000000001");
    let o = order_id.to_owned();
    vec![
        OrderPlaced {
            metadata: metadata(order_id, "order", None),
            order_id: o.clone(),
            customer_id: "cust-42".into(),
            items: vec![
                OrderLine {
                    sku: "SKU-RED-MUG".into(),
                    quantity: 2,
                    unit_price_cents: 1_250,
                },
                OrderLine {
                    sku: "SKU-TEAPOT".into(),
                    quantity: 1,
                    unit_price_cents: 3_999,
                },
            ],
            total: Money {
                amount_minor: 6_499,
                currency: "EUR".into(),
            },
            payment_method: "tok_visa".into(),
            shipping_address: address.clone(),
            deadline_at: Some(1_764_000_030_000),
            customer_email: Some("ada@example.org".into()),
        }
        .into(),
        OrderConfirmed {
            metadata: metadata(order_id, "order", cause),
            order_id: o.clone(),
        }
        .into(),
        OrderCancelled {
            metadata: metadata(order_id, "order", cause),
            order_id: o.clone(),
            reason: CancellationReason::OUT_OF_STOCK,
        }
        .into(),
        PaymentAuthorized {
            metadata: metadata(order_id, "payment", cause),
            order_id: o.clone(),
            payment_id: "pay-1".into(),
            amount_cents: 6_499,
            currency: "EUR".into(),
            items: lines.clone(),
            shipping_address: address.clone(),
            deadline_at: Some(1_764_000_030_000),
        }
        .into(),
        PaymentDeclined {
            metadata: metadata(order_id, "payment", cause),
            order_id: o.clone(),
            amount_cents: 6_499,
            currency: "EUR".into(),
            reason: "card declined".into(),
        }
        .into(),
        PaymentReviewRequested {
            metadata: metadata(order_id, "payment", cause),
            order_id: o.clone(),
            review_deadline_at: 1_764_000_900_000,
        }
        .into(),
        PaymentRefunded {
            metadata: metadata(order_id, "payment", cause),
            order_id: o.clone(),
            payment_id: "pay-1".into(),
            amount_cents: 6_499,
            currency: "EUR".into(),
            reason: CancellationReason::SHIPPING_FAILED,
        }
        .into(),
        StockReserved {
            metadata: metadata(order_id, "inventory", cause),
            order_id: o.clone(),
            items: lines.clone(),
            shipping_address: address.clone(),
            deadline_at: Some(1_764_000_030_000),
        }
        .into(),
        StockReservationFailed {
            metadata: metadata(order_id, "inventory", cause),
            order_id: o.clone(),
            unavailable_skus: vec!["SKU-TEAPOT".into()],
            reason: "0 of 1 available".into(),
        }
        .into(),
        StockReleased {
            metadata: metadata(order_id, "inventory", cause),
            order_id: o.clone(),
            items: lines,
        }
        .into(),
        ShipmentScheduled {
            metadata: metadata(order_id, "shipping", cause),
            order_id: o.clone(),
            shipment_id: "shp-1".into(),
            country: "GB".into(),
        }
        .into(),
        ShipmentFailed {
            metadata: metadata(order_id, "shipping", cause),
            order_id: o.clone(),
            reason: "AQ is not a destination we ship to".into(),
        }
        .into(),
        ShipmentCancelled {
            metadata: metadata(order_id, "shipping", cause),
            order_id: o,
            shipment_id: "shp-1".into(),
            reason: CancellationReason::TIMED_OUT,
        }
        .into(),
    ]
}
