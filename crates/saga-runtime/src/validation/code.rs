//! Codes from a standard list (ISO 4217 currencies, ISO 3166-1 countries): exactly so many
//! upper-case ASCII letters. Whether the code is assigned is not checked: the list changes, and a
//! payment provider or carrier refuses what it does not know.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::checked::{FieldOf, FieldRule, example, string};

/// A code, checked against the [`CodeRule`] of the field `F`.
pub type Code<F> = FieldOf<CodeRule, F>;

/// The rule of a code field: `len` upper-case ASCII letters.
#[derive(Debug, Clone, Copy)]
pub struct CodeRule {
    /// How many letters.
    pub len: usize,
    /// What the code is, for the client: "an ISO 4217 currency code".
    pub standard: &'static str,
    pub description: &'static str,
    pub example: &'static str,
}

impl FieldRule for CodeRule {
    type Value = String;
    type Error = CodeError;

    fn broken(&self, value: &String) -> Vec<CodeError> {
        let valid = value.len() == self.len && value.chars().all(|c| c.is_ascii_uppercase());
        let error = CodeError {
            standard: self.standard,
            len: self.len,
        };
        (!valid).then_some(error).into_iter().collect()
    }

    fn schema(&self) -> RefOr<Schema> {
        let schema = string()
            .pattern(Some(format!("^[A-Z]{{{}}}$", self.len)))
            .description(Some(self.description));
        example(schema, self.example).into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be {standard}: {len} upper-case letters")]
pub struct CodeError {
    standard: &'static str,
    len: usize,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    crate::field_types! {
        type Ticker = Code<TickerField>(CodeRule {
            len: 4,
            standard: "a ticker",
            description: "A stock ticker.",
            example: "ABCD",
        });
    }

    #[test]
    fn exactly_the_length_in_upper_case_letters() {
        assert!(Ticker::parse("ABCD".into()).is_ok());
        for bad in [
            "ABC", "ABCDE", "abcd", "AbCD", "AB1D", "ÉBCD", "", "ABC\u{0}",
        ] {
            let broken = Ticker::parse(bad.into()).expect_err(bad);
            assert_eq!(broken.to_string(), "must be a ticker: 4 upper-case letters");
        }
    }

    #[test]
    fn the_schema_says_what_the_check_does() {
        let schema = serde_json::to_value(Ticker::schema()).expect("a schema serializes");
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "string",
                "pattern": "^[A-Z]{4}$",
                "description": "A stock ticker.",
                "example": "ABCD"
            })
        );
    }
}
