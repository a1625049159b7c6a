//! What clients send, checked once at the HTTP edge. Each field's rule is written once, in the
//! rule of the type that holds it ([`Checked`] with [`Text`], [`Code`], [`Bounded`], [`Sku`], or
//! a service's own rule): the check, the message a client reads, and the OpenAPI schema come from
//! the same constants, so the document and the server cannot disagree.
//!
//! A body is read in two steps so that a client learns every broken rule at once, not the first:
//! serde reads its shape (plain strings and numbers), then each field is parsed into its type and
//! [`Violations`] collects what each one breaks.

mod bounded;
mod checked;
mod code;
mod sku;
mod text;

use std::fmt;

use serde::Deserialize;

use crate::problem::FieldError;

pub use bounded::{Bounded, BoundedRule, OutOfRange};
pub use checked::{Checked, Field, FieldOf, FieldRule, Rule, example, nullable, string};
pub use code::{Code, CodeError, CodeRule};
pub use sku::{Sku, SkuError, SkuFormat};
pub use text::{CONTROL, Text, TextError, TextRule, printable, printable_pattern};

/// Every rule a value broke, in the order they were checked; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken<E>(Vec<E>);

impl<E> Broken<E> {
    pub(crate) fn new(broken: Vec<E>) -> Self {
        Self(broken)
    }

    /// `value`, unless a rule in `rules` is broken (`Some`): then every broken one.
    pub fn unless<T>(value: T, rules: impl IntoIterator<Item = Option<E>>) -> Result<T, Self> {
        let broken: Vec<E> = rules.into_iter().flatten().collect();
        if broken.is_empty() {
            Ok(value)
        } else {
            Err(Self(broken))
        }
    }

    pub fn rules(&self) -> &[E] {
        &self.0
    }
}

impl<E> IntoIterator for Broken<E> {
    type Item = E;
    type IntoIter = std::vec::IntoIter<E>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<E: fmt::Display> fmt::Display for Broken<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            rule.fmt(f)?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Broken<E> {}

/// Collects every violated rule of a request, so the client learns all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(FieldError::new(field, rule));
    }

    /// The parsed value, or `None` with each rule it broke recorded against `field`.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: &str,
        parsed: Result<T, Broken<E>>,
    ) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(broken) => {
                for rule in broken {
                    self.add(field, rule.to_string());
                }
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// The value assembled from the parsed fields when no rule was broken, or every broken rule.
    /// `value` is `None` only when a field was refused, i.e. when a violation was recorded.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}

/// Deserializes a JSON integer, also written as a number with no fraction (`362881.0`): JSON
/// Schema's `integer` (what the API documents promise) is any number whose fraction is zero.
/// Use with `#[serde(deserialize_with = "saga_runtime::validation::integer")]`.
pub fn integer<'de, D>(deserializer: D) -> Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{Error, Unexpected};
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(value) = number.as_i64() {
        return Ok(value);
    }
    match number.as_f64() {
        // Within ±2^53 every integral f64 is exact, and the API's limits are far inside it.
        Some(value) if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_992.0 => {
            Ok(value as i64)
        }
        Some(value) => Err(D::Error::invalid_value(
            Unexpected::Float(value),
            &"an integer",
        )),
        None => Err(D::Error::custom("an integer out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Count {
        #[serde(deserialize_with = "integer")]
        n: i64,
    }

    #[test]
    fn an_integer_may_be_written_with_a_zero_fraction_but_not_with_another() {
        let read = |json: &str| serde_json::from_str::<Count>(json).map(|c| c.n);
        assert_eq!(read(r#"{"n": 42}"#).ok(), Some(42));
        assert_eq!(read(r#"{"n": 362881.0}"#).ok(), Some(362_881));
        assert_eq!(read(r#"{"n": -3e2}"#).ok(), Some(-300));
        assert!(read(r#"{"n": 1.5}"#).is_err());
        assert!(read(r#"{"n": "7"}"#).is_err());
        assert!(read(r#"{"n": 1e300}"#).is_err());
    }

    crate::field_types! {
        type Id = Text<IdField>(TextRule { max_chars: 64, example: "c-1" });
        type Name = Text<NameField>(TextRule { max_chars: 200, example: "Ada" });
        type Units = Bounded<UnitsField>(BoundedRule {
            min: 1,
            max: 10,
            example: 1,
            description: "Units.",
        });
        type Currency = Code<CurrencyField>(CodeRule {
            len: 3,
            standard: "an ISO 4217 currency code",
            description: "A currency.",
            example: "EUR",
        });
    }

    #[test]
    fn rules_name_the_field() {
        let mut v = Violations::new();
        v.check("customer_id", Id::parse("  ".into()));
        v.check("items[0].sku", Sku::parse("bad sku!".into()));
        v.check("items[0].quantity", Units::parse(0));
        v.check("currency", Currency::parse("eur".into()));
        v.check("items[1].sku", Sku::parse("SKU-1.a_b".into()));
        v.check("shipping_address.name", Name::parse("nul\u{0}here".into()));
        v.check("shipping_address.city", Name::parse("line\nbreak".into()));
        v.check(
            "shipping_address.line1",
            Name::parse("Straße 1 ✓ שלום".into()),
        );
        v.check("sku", Sku::parse("abc\u{0}def".into()));
        let errors = v.into_result().expect_err("seven violations");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "items[0].sku",
                "items[0].quantity",
                "currency",
                "shipping_address.name",
                "shipping_address.city",
                "sku"
            ]
        );
    }

    #[test]
    fn a_value_is_kept_only_when_no_rule_is_broken() {
        let mut v = Violations::new();
        let id = v.check("customer_id", Id::parse("c-1".into()));
        assert_eq!(id.as_deref().map(String::as_str), Some("c-1"));
        assert_eq!(v.finish(id).map(Checked::into_inner), Ok("c-1".to_owned()));

        let mut v = Violations::new();
        let id = v.check("customer_id", Id::parse("c-1".into()));
        let units = v.check("quantity", Units::parse(11));
        let errors = v.finish(id.zip(units)).expect_err("one violation");
        assert_eq!(
            errors,
            [FieldError::new("quantity", "must be between 1 and 10")]
        );
    }

    #[test]
    fn broken_rules_read_as_one_sentence_each() {
        let broken = Broken::new(vec![TextError::Blank, TextError::TooLong { max: 3 }]);
        assert_eq!(
            broken.to_string(),
            "must not be blank; must be at most 3 characters"
        );
        assert_eq!(broken.rules().len(), 2);
    }
}
