//! Upcasting: a record written by an earlier major of an event becomes the current shape in
//! memory, before any service reacts to it.
//!
//! A breaking change to an event is a new major: a new record name (`saga.order.v2.OrderPlaced`),
//! so a new subject, never a new version of the old one. Records of the old major stay on the
//! topics for their retention, wait in dead-letter topics to be redriven, and come back when a
//! group's offsets are reset; every consumer must handle them exactly like the new ones. The
//! chain below is the one place that knows how: each step reads a record of one major (resolved
//! to that major's last version, so every version of it looks the same) and builds the next
//! major's record. Steps chain, so a major-1 record is carried all the way to the current one.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use thiserror::Error;

/// One step of the chain: records named `from` become records named `to`.
#[derive(Debug)]
pub struct Upcaster {
    /// Record full name of the older major.
    pub from: &'static str,
    /// Record full name of the next major.
    pub to: &'static str,
    /// The older major's last version, self-contained (a frozen file of the schema history):
    /// every version of that major is resolved to it first.
    pub reader_file: &'static str,
    pub reader_source: &'static str,
    convert: fn(Value) -> Result<Value, UpcastError>,
    revert: fn(Value) -> Result<Value, UpcastError>,
}

impl Upcaster {
    /// Builds the next major's record from a record of this step's reader schema.
    pub fn convert(&self, value: Value) -> Result<Value, UpcastError> {
        (self.convert)(value)
    }

    /// The other way: the older major's record of a record of the next major. What a producer
    /// writes while a rollout still has consumers without this step (see
    /// `EventCodec::write_previous_major`).
    pub fn revert(&self, value: Value) -> Result<Value, UpcastError> {
        (self.revert)(value)
    }
}

/// Why a record could not be carried to the next major: it does not have the shape the step
/// expects (never, for a record that resolved to the step's reader schema).
#[derive(Debug, Error)]
pub enum UpcastError {
    #[error("{from} → {to}: the record is not a record")]
    NotARecord {
        from: &'static str,
        to: &'static str,
    },
    #[error("{from} → {to}: field {field} is missing or has an unexpected type")]
    Field {
        from: &'static str,
        to: &'static str,
        field: &'static str,
    },
}

/// Every step, oldest first.
pub static CHAIN: &[Upcaster] = &[Upcaster {
    from: "saga.order.OrderPlaced",
    to: "saga.order.v2.OrderPlaced",
    reader_file: "order/OrderPlaced/v3.avsc",
    reader_source: include_str!("../../../schemas/order/OrderPlaced/v3.avsc"),
    convert: order_placed_1_to_2,
    revert: order_placed_2_to_1,
}];

/// The step that leads to `full_name`, if it is a major that replaced another.
pub fn step_to(full_name: &str) -> Option<&'static Upcaster> {
    CHAIN.iter().find(|s| s.to == full_name)
}

/// The steps that carry a record named `full_name` to the current major (empty when it is
/// current, or unknown).
pub fn path(full_name: &str) -> Vec<&'static Upcaster> {
    let mut steps = Vec::new();
    let mut name = full_name;
    while let Some(step) = CHAIN.iter().find(|s| s.from == name) {
        steps.push(step);
        name = step.to;
        if steps.len() > CHAIN.len() {
            // A cycle in the chain is a bug in this file; refuse rather than loop.
            return Vec::new();
        }
    }
    steps
}

fn fields(
    value: Value,
    from: &'static str,
    to: &'static str,
) -> Result<BTreeMap<String, Value>, UpcastError> {
    match value {
        Value::Record(fields) => Ok(fields.into_iter().collect()),
        _ => Err(UpcastError::NotARecord { from, to }),
    }
}

/// `OrderPlaced` major 1 → 2: `currency` and `total_cents` become `total: Money`.
fn order_placed_1_to_2(value: Value) -> Result<Value, UpcastError> {
    const FROM: &str = "saga.order.OrderPlaced";
    const TO: &str = "saga.order.v2.OrderPlaced";
    let mut old = fields(value, FROM, TO)?;
    let mut take = |field: &'static str| {
        old.remove(field).ok_or(UpcastError::Field {
            from: FROM,
            to: TO,
            field,
        })
    };
    let total_cents = match take("total_cents")? {
        Value::Long(cents) => cents,
        _ => {
            return Err(UpcastError::Field {
                from: FROM,
                to: TO,
                field: "total_cents",
            });
        }
    };
    let currency = take("currency")?;
    let total = Value::Record(vec![
        ("amount_minor".to_owned(), Value::Long(total_cents)),
        ("currency".to_owned(), currency),
    ]);
    let mut new = Vec::new();
    for field in ["metadata", "order_id", "customer_id", "items"] {
        new.push((field.to_owned(), take(field)?));
    }
    new.push(("total".to_owned(), total));
    for field in [
        "payment_method",
        "shipping_address",
        "deadline_at",
        "customer_email",
    ] {
        new.push((field.to_owned(), take(field)?));
    }
    Ok(Value::Record(new))
}

/// `OrderPlaced` major 2 → 1: `total` splits back into `currency` and `total_cents`.
fn order_placed_2_to_1(value: Value) -> Result<Value, UpcastError> {
    const FROM: &str = "saga.order.v2.OrderPlaced";
    const TO: &str = "saga.order.OrderPlaced";
    let mut new = fields(value, FROM, TO)?;
    let mut take = |field: &'static str| {
        new.remove(field).ok_or(UpcastError::Field {
            from: FROM,
            to: TO,
            field,
        })
    };
    let mut total = fields(take("total")?, FROM, TO)?;
    let (Some(amount), Some(currency)) = (total.remove("amount_minor"), total.remove("currency"))
    else {
        return Err(UpcastError::Field {
            from: FROM,
            to: TO,
            field: "total",
        });
    };
    let mut old = Vec::new();
    for field in ["metadata", "order_id", "customer_id", "items"] {
        old.push((field.to_owned(), take(field)?));
    }
    old.push(("currency".to_owned(), currency));
    old.push(("total_cents".to_owned(), amount));
    for field in [
        "payment_method",
        "shipping_address",
        "deadline_at",
        "customer_email",
    ] {
        old.push((field.to_owned(), take(field)?));
    }
    Ok(Value::Record(old))
}

#[cfg(test)]
mod tests {
    use apache_avro::Schema;

    use super::*;
    use crate::{EventType, OrderPlaced, SagaEvent};

    /// A major-1 `OrderPlaced` as its last version (v3) would hold it.
    fn major_1_record() -> Value {
        let text = |s: &str| Value::String(s.to_owned());
        Value::Record(vec![
            (
                "metadata".into(),
                Value::Record(vec![
                    (
                        "event_id".into(),
                        text("0196a4c2-5e0f-7a3b-9c1d-2f4e6a8b0c11"),
                    ),
                    (
                        "occurred_at".into(),
                        Value::TimestampMillis(1_764_000_000_000),
                    ),
                    ("correlation_id".into(), text("order-1")),
                    (
                        "causation_id".into(),
                        Value::Union(0, Box::new(Value::Null)),
                    ),
                    ("producer".into(), text("order")),
                ]),
            ),
            ("order_id".into(), text("order-1")),
            ("customer_id".into(), text("cust-42")),
            (
                "items".into(),
                Value::Array(vec![Value::Record(vec![
                    ("sku".into(), text("SKU-MUG")),
                    ("quantity".into(), Value::Int(2)),
                    ("unit_price_cents".into(), Value::Long(1_250)),
                ])]),
            ),
            ("currency".into(), text("EUR")),
            ("total_cents".into(), Value::Long(2_500)),
            ("payment_method".into(), text("tok_visa")),
            (
                "shipping_address".into(),
                Value::Record(
                    ["name", "line1", "city", "postal_code", "country"]
                        .iter()
                        .map(|f| {
                            (
                                (*f).to_owned(),
                                text(if *f == "country" { "GB" } else { "x" }),
                            )
                        })
                        .collect(),
                ),
            ),
            (
                "deadline_at".into(),
                Value::Union(1, Box::new(Value::TimestampMillis(1_764_000_030_000))),
            ),
            (
                "customer_email".into(),
                Value::Union(0, Box::new(Value::Null)),
            ),
        ])
    }

    #[test]
    fn a_major_1_order_placed_is_carried_to_the_current_shape()
    -> Result<(), Box<dyn std::error::Error>> {
        // Given a record of the old major, resolved to its last version
        let reader = Schema::parse_str(CHAIN[0].reader_source)?;
        let old = major_1_record().resolve(&reader)?;
        // When it is upcast along the chain
        let steps = path("saga.order.OrderPlaced");
        assert_eq!(steps.len(), 1);
        let mut value = old;
        for step in steps {
            value = step.convert(value)?;
        }
        // Then it is this build's OrderPlaced, with the same money
        let catalogue = crate::SchemaCatalogue::load()?;
        let value = value.resolve(&catalogue.get(EventType::OrderPlaced).schema)?;
        let SagaEvent::OrderPlaced(placed) =
            SagaEvent::from_avro_value(EventType::OrderPlaced, &value)?
        else {
            return Err("not an OrderPlaced".into());
        };
        let expected: OrderPlaced = placed.clone();
        assert_eq!(expected.total.amount_minor, 2_500);
        assert_eq!(expected.total.currency, "EUR");
        assert_eq!(expected.deadline_at, Some(1_764_000_030_000));
        assert_eq!(expected.items[0].sku, "SKU-MUG");
        Ok(())
    }

    #[test]
    fn reverting_and_upcasting_again_gives_back_the_same_event()
    -> Result<(), Box<dyn std::error::Error>> {
        // Given this build's OrderPlaced
        let catalogue = crate::SchemaCatalogue::load()?;
        let current = &catalogue.get(EventType::OrderPlaced).schema;
        let older = Schema::parse_str(CHAIN[0].reader_source)?;
        let value = major_1_record().resolve(&older)?;
        let value = CHAIN[0].convert(value)?.resolve(current)?;
        // When it is written as major 1 and read back
        let written = CHAIN[0].revert(value.clone())?.resolve(&older)?;
        let read = CHAIN[0].convert(written)?.resolve(current)?;
        // Then nothing was lost on the way
        assert_eq!(read, value);
        assert_eq!(
            step_to("saga.order.v2.OrderPlaced").map(|s| s.from),
            Some("saga.order.OrderPlaced")
        );
        Ok(())
    }

    #[test]
    fn the_current_major_and_unknown_records_need_no_step() {
        assert!(path(EventType::OrderPlaced.full_name()).is_empty());
        assert!(path("saga.order.Unknown").is_empty());
    }

    #[test]
    fn a_record_missing_a_field_is_refused_by_name() {
        let Value::Record(mut fields) = major_1_record() else {
            unreachable!("a record");
        };
        fields.retain(|(name, _)| name != "total_cents");
        let error = CHAIN[0]
            .convert(Value::Record(fields))
            .expect_err("no total_cents");
        assert!(error.to_string().contains("total_cents"), "{error}");
    }

    #[test]
    fn every_step_ends_at_a_current_event_and_reads_a_frozen_version()
    -> Result<(), Box<dyn std::error::Error>> {
        for step in CHAIN {
            let schema = Schema::parse_str(step.reader_source)?;
            assert_eq!(
                schema.name().map(|n| n.fullname(None)).as_deref(),
                Some(step.from),
                "{}",
                step.reader_file
            );
            let end = path(step.from).last().map(|s| s.to).unwrap_or(step.from);
            assert!(
                EventType::from_full_name(end).is_some(),
                "{} ends at {end}, which no event type is",
                step.from
            );
        }
        Ok(())
    }
}
