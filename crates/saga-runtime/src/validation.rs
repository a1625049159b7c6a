//! Small field rules more than one service applies to what clients send.

use serde::Deserialize;

use crate::problem::FieldError;

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

    /// Required text: not blank, at most `max` characters, and no control characters (Postgres
    /// refuses NUL in `text`, and none of them belongs in a name, an address or an id).
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "must not be blank");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(
                field,
                "must not contain control characters (NUL, tab, newline, …)",
            );
        }
    }

    /// A SKU: 1 to 64 characters of letters, digits, `-`, `_` or `.`.
    pub fn sku(&mut self, field: &str, value: &str) {
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.add(
                field,
                "must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
            );
        }
    }

    /// An integer within `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    /// Exactly `len` upper-case ASCII letters (ISO currency and country codes).
    pub fn code(&mut self, field: &str, value: &str, len: usize, what: &str) {
        if value.len() != len || !value.chars().all(|c| c.is_ascii_uppercase()) {
            self.add(field, format!("must be {what}: {len} upper-case letters"));
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

    #[test]
    fn rules_name_the_field() {
        let mut v = Violations::new();
        v.text("customer_id", "  ", 64);
        v.sku("items[0].sku", "bad sku!");
        v.range("items[0].quantity", 0, 1, 10);
        v.code("currency", "eur", 3, "an ISO 4217 currency code");
        v.sku("items[1].sku", "SKU-1.a_b");
        v.text("shipping_address.name", "nul\u{0}here", 200);
        v.text("shipping_address.city", "line\nbreak", 200);
        v.text("shipping_address.line1", "Straße 1 ✓ שלום", 200);
        v.sku("sku", "abc\u{0}def");
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
}
