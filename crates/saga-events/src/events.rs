//! One Rust type per schema in `schemas/`. Field names, order and types mirror the `.avsc` files;
//! `tests/schema_agreement.rs` proves it.

#[cfg(feature = "type-schemas")]
use apache_avro::AvroSchema;
use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use crate::topics::Service;

/// Envelope fields every event carries (`schemas/common/EventMetadata.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
pub struct EventMetadata {
    /// UUID, unique per event: the idempotency key of every consumer.
    pub event_id: String,
    /// UTC epoch milliseconds.
    pub occurred_at: i64,
    /// The order id.
    pub correlation_id: String,
    /// `event_id` of the event this one reacts to; `None` for the saga's first event.
    pub causation_id: Option<String>,
    pub producer: String,
}

impl EventMetadata {
    /// Metadata for the first event of a saga: it has no cause.
    pub fn first(order_id: &str, producer: &str) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: now_millis(),
            correlation_id: order_id.to_owned(),
            causation_id: None,
            producer: producer.to_owned(),
        }
    }

    /// Metadata for an event emitted in reaction to `cause`: same saga, caused by it.
    pub fn caused_by(cause: &EventMetadata, producer: &str) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: now_millis(),
            correlation_id: cause.correlation_id.clone(),
            causation_id: Some(cause.event_id.clone()),
            producer: producer.to_owned(),
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

/// An amount and its currency (`schemas/common/Money.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
pub struct Money {
    /// In the currency's minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
pub struct StockLine {
    pub sku: String,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.common"))]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
/// `TIMED_OUT`: the saga did not end before the order's deadline. `UNKNOWN`: a reason added
/// after this build's schema (the enum's default).
pub enum CancellationReason {
    PAYMENT_DECLINED,
    OUT_OF_STOCK,
    SHIPPING_FAILED,
    TIMED_OUT,
    UNKNOWN,
}

impl CancellationReason {
    pub const ALL: [CancellationReason; 5] = [
        CancellationReason::PAYMENT_DECLINED,
        CancellationReason::OUT_OF_STOCK,
        CancellationReason::SHIPPING_FAILED,
        CancellationReason::TIMED_OUT,
        CancellationReason::UNKNOWN,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CancellationReason::PAYMENT_DECLINED => "PAYMENT_DECLINED",
            CancellationReason::OUT_OF_STOCK => "OUT_OF_STOCK",
            CancellationReason::SHIPPING_FAILED => "SHIPPING_FAILED",
            CancellationReason::TIMED_OUT => "TIMED_OUT",
            CancellationReason::UNKNOWN => "UNKNOWN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Major 2 (`saga.order.v2.OrderPlaced`): the total is [`Money`]. Records of major 1 are upcast
/// on decoding ([`crate::upcast`]), so a consumer only ever sees this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.order.v2"))]
pub struct OrderPlaced {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<OrderLine>,
    pub total: Money,
    pub payment_method: String,
    pub shipping_address: Address,
    /// UTC epoch milliseconds; `None` from writers older than deadlines.
    pub deadline_at: Option<i64>,
    /// Where receipts and shipping notices go, if the customer gave one; `None` from writers
    /// older than v3.
    pub customer_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.order"))]
pub struct OrderConfirmed {
    pub metadata: EventMetadata,
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.order"))]
pub struct OrderCancelled {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub reason: CancellationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.payment"))]
pub struct PaymentAuthorized {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub items: Vec<StockLine>,
    pub shipping_address: Address,
    pub deadline_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.payment"))]
pub struct PaymentDeclined {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub reason: String,
}

/// Payment put the order in manual review instead of charging it. Order moves the order's
/// deadline past `review_deadline_at` ([`PaymentReviewRequested::saga_deadline_at`]), so that a
/// review never times the saga out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.payment"))]
pub struct PaymentReviewRequested {
    pub metadata: EventMetadata,
    pub order_id: String,
    /// UTC epoch milliseconds: the review expires (the payment is declined) unless a reviewer
    /// decided by then.
    pub review_deadline_at: i64,
}

impl PaymentReviewRequested {
    /// The saga's deadline once this review is open: the review's own deadline, plus the time
    /// the saga was given when the order was placed (`budget_ms`), so that an approved order has
    /// the rest of its saga ahead of it. Order moves the order's deadline there, and the
    /// `PaymentAuthorized` of an approval carries it on.
    pub fn saga_deadline_at(&self, budget_ms: i64) -> i64 {
        self.review_deadline_at.saturating_add(budget_ms.max(0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.payment"))]
pub struct PaymentRefunded {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub reason: CancellationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.inventory"))]
pub struct StockReserved {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub items: Vec<StockLine>,
    pub shipping_address: Address,
    pub deadline_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.inventory"))]
pub struct StockReservationFailed {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub unavailable_skus: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.inventory"))]
pub struct StockReleased {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub items: Vec<StockLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.shipping"))]
pub struct ShipmentScheduled {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub shipment_id: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.shipping"))]
pub struct ShipmentFailed {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "type-schemas", derive(AvroSchema))]
#[cfg_attr(feature = "type-schemas", avro(namespace = "saga.shipping"))]
pub struct ShipmentCancelled {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub shipment_id: String,
    pub reason: CancellationReason,
}

/// Declares the event catalogue once: each event's type, the service (and so the topic) that
/// publishes it, the version of its schema this build writes (`schemas/<service>/<Event>/
/// v<version>.avsc`; earlier versions stay beside it, frozen, for the compatibility gate) and its
/// record's namespace (a new major is a new namespace, so a new subject).
macro_rules! saga_events {
    ($($event:ident => $service:ident / $dir:literal / $version:literal / $namespace:literal;)+) => {
        /// Every kind of saga event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($event,)+
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$event,)+];

            /// The short name, e.g. `OrderPlaced`.
            pub fn name(self) -> &'static str {
                match self {
                    $(EventType::$event => stringify!($event),)+
                }
            }

            /// The Avro full name, e.g. `saga.order.OrderPlaced`; subjects are `<topic>-<full name>`.
            pub fn full_name(self) -> &'static str {
                match self {
                    $(EventType::$event => concat!($namespace, ".", stringify!($event)),)+
                }
            }

            /// The service that publishes this event, so the topic it travels on.
            pub fn publisher(self) -> Service {
                match self {
                    $(EventType::$event => Service::$service,)+
                }
            }

            /// The version of this event's schema that this build writes and reads into.
            pub fn schema_version(self) -> u32 {
                match self {
                    $(EventType::$event => $version,)+
                }
            }

            /// Path of the schema file of [`EventType::schema_version`], relative to `schemas/`.
            pub fn schema_path(self) -> &'static str {
                match self {
                    $(EventType::$event => concat!(
                        $dir, "/", stringify!($event), "/v", $version, ".avsc"
                    ),)+
                }
            }

            pub(crate) fn schema_source(self) -> &'static str {
                match self {
                    $(EventType::$event => include_str!(concat!(
                        "../../../schemas/", $dir, "/", stringify!($event), "/v", $version, ".avsc"
                    )),)+
                }
            }

            /// The schema the Rust type describes (derived from the type, not read from the file).
            #[cfg(feature = "type-schemas")]
            pub fn rust_type_schema(self) -> apache_avro::Schema {
                match self {
                    $(EventType::$event => <$event as AvroSchema>::get_schema(),)+
                }
            }

            pub fn from_full_name(full_name: &str) -> Option<EventType> {
                EventType::ALL.iter().copied().find(|t| t.full_name() == full_name)
            }

            /// The type with this short name (`OrderPlaced`).
            pub fn from_name(name: &str) -> Option<EventType> {
                EventType::ALL.iter().copied().find(|t| t.name() == name)
            }
        }

        impl std::fmt::Display for EventType {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        /// Any saga event.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SagaEvent {
            $($event($event),)+
        }

        impl SagaEvent {
            pub fn event_type(&self) -> EventType {
                match self {
                    $(SagaEvent::$event(_) => EventType::$event,)+
                }
            }

            pub fn metadata(&self) -> &EventMetadata {
                match self {
                    $(SagaEvent::$event(e) => &e.metadata,)+
                }
            }

            pub fn order_id(&self) -> &str {
                match self {
                    $(SagaEvent::$event(e) => &e.order_id,)+
                }
            }

            /// The event as JSON, field names as in its schema.
            pub fn to_json(&self) -> serde_json::Value {
                let json = match self {
                    $(SagaEvent::$event(e) => serde_json::to_value(e),)+
                };
                // Plain structs of strings and numbers always serialize.
                json.unwrap_or(serde_json::Value::Null)
            }

            /// The event [`SagaEvent::to_json`] wrote, read back as its type.
            pub fn from_json(
                event_type: EventType,
                json: serde_json::Value,
            ) -> Result<SagaEvent, serde_json::Error> {
                Ok(match event_type {
                    $(EventType::$event => SagaEvent::$event(serde_json::from_value(json)?),)+
                })
            }

            pub(crate) fn to_avro_value(&self) -> Result<Value, apache_avro::Error> {
                match self {
                    $(SagaEvent::$event(e) => apache_avro::to_value(e),)+
                }
            }

            pub(crate) fn from_avro_value(
                event_type: EventType,
                value: &Value,
            ) -> Result<SagaEvent, apache_avro::Error> {
                Ok(match event_type {
                    $(EventType::$event => SagaEvent::$event(apache_avro::from_value(value)?),)+
                })
            }
        }

        $(
            impl From<$event> for SagaEvent {
                fn from(event: $event) -> SagaEvent {
                    SagaEvent::$event(event)
                }
            }
        )+
    };
}

saga_events! {
    OrderPlaced => Order / "order" / 4 / "saga.order.v2";
    OrderConfirmed => Order / "order" / 1 / "saga.order";
    OrderCancelled => Order / "order" / 2 / "saga.order";
    PaymentAuthorized => Payment / "payment" / 2 / "saga.payment";
    PaymentDeclined => Payment / "payment" / 1 / "saga.payment";
    PaymentRefunded => Payment / "payment" / 2 / "saga.payment";
    PaymentReviewRequested => Payment / "payment" / 1 / "saga.payment";
    StockReserved => Inventory / "inventory" / 2 / "saga.inventory";
    StockReservationFailed => Inventory / "inventory" / 1 / "saga.inventory";
    StockReleased => Inventory / "inventory" / 1 / "saga.inventory";
    ShipmentScheduled => Shipping / "shipping" / 1 / "saga.shipping";
    ShipmentFailed => Shipping / "shipping" / 1 / "saga.shipping";
    ShipmentCancelled => Shipping / "shipping" / 1 / "saga.shipping";
}

/// Every schema file compiled into this crate (the current version of each event and the shared
/// types), relative to `schemas/`.
pub fn embedded_schema_files() -> Vec<&'static str> {
    COMMON_SCHEMA_SOURCES
        .iter()
        .map(|(file, _)| *file)
        .chain(EventType::ALL.iter().map(|t| t.schema_path()))
        .collect()
}

/// The shared types the event schemas refer to by name, with their files.
pub(crate) const COMMON_SCHEMA_SOURCES: &[(&str, &str)] = &[
    (
        "common/EventMetadata.avsc",
        include_str!("../../../schemas/common/EventMetadata.avsc"),
    ),
    (
        "common/OrderLine.avsc",
        include_str!("../../../schemas/common/OrderLine.avsc"),
    ),
    (
        "common/StockLine.avsc",
        include_str!("../../../schemas/common/StockLine.avsc"),
    ),
    (
        "common/Address.avsc",
        include_str!("../../../schemas/common/Address.avsc"),
    ),
    (
        "common/Money.avsc",
        include_str!("../../../schemas/common/Money.avsc"),
    ),
    (
        "common/CancellationReason.avsc",
        include_str!("../../../schemas/common/CancellationReason.avsc"),
    ),
];
