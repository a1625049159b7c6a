//! Integers within bounds: quantities, prices in minor units, stock levels. The bounds keep every
//! sum and product the services compute far from overflow, and the document states them.

use serde::Deserializer;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use super::checked::{FieldOf, FieldRule, example};

/// An integer, checked against the [`BoundedRule`] of the field `F`. Read from JSON as
/// [`super::integer`] reads it (a zero fraction is allowed).
pub type Bounded<F> = FieldOf<BoundedRule, F>;

/// The rule of an integer field: within `min..=max`.
#[derive(Debug, Clone, Copy)]
pub struct BoundedRule {
    pub min: i64,
    pub max: i64,
    pub example: i64,
    /// What the field is; `{min}` and `{max}` stand for the bounds.
    pub description: &'static str,
}

impl FieldRule for BoundedRule {
    type Value = i64;
    type Error = OutOfRange;

    fn broken(&self, value: &i64) -> Vec<OutOfRange> {
        let (min, max) = (self.min, self.max);
        let out = !(min..=max).contains(value);
        out.then_some(OutOfRange { min, max }).into_iter().collect()
    }

    fn schema(&self) -> RefOr<Schema> {
        let (min, max) = (self.min, self.max);
        let description = self
            .description
            .replace("{min}", &min.to_string())
            .replace("{max}", &max.to_string());
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description));
        example(schema, self.example).into()
    }

    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        super::integer(deserializer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between {min} and {max}")]
pub struct OutOfRange {
    min: i64,
    max: i64,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    crate::field_types! {
        type Dozen = Bounded<DozenField>(BoundedRule {
            min: 1,
            max: 12,
            example: 6,
            description: "Eggs, {min} to {max}.",
        });
    }

    #[test]
    fn the_bounds_are_accepted_and_one_past_either_is_not() {
        for within in [1, 6, 12] {
            assert_eq!(Dozen::parse(within).map(|d| *d), Ok(within));
        }
        for outside in [0, 13, -1, i64::MIN, i64::MAX] {
            let broken = Dozen::parse(outside).expect_err("out of range");
            assert_eq!(broken.to_string(), "must be between 1 and 12");
        }
    }

    #[test]
    fn json_may_write_the_integer_with_a_zero_fraction() {
        let read = |json: &str| serde_json::from_str::<Dozen>(json).map(|d| *d);
        assert_eq!(read("12").ok(), Some(12));
        assert_eq!(read("12.0").ok(), Some(12));
        assert!(read("12.5").is_err());
        assert!(read("13").is_err());
    }

    #[test]
    fn the_schema_says_what_the_check_does() {
        let schema = serde_json::to_value(Dozen::schema()).expect("a schema serializes");
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "integer",
                "format": "int64",
                "minimum": 1,
                "maximum": 12,
                "description": "Eggs, 1 to 12.",
                "example": 6
            })
        );
    }
}
