//! A SKU, as Order's lines and Inventory's stock name it: 1 to 64 ASCII letters, digits, `-`, `_`
//! or `.`, so it is safe in a URL path, a log line and a Kafka key without escaping.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};

use super::checked::{Checked, Rule, string};

/// A stock-keeping unit.
pub type Sku = Checked<SkuFormat>;

/// The rule of a [`Sku`].
#[derive(Debug)]
pub enum SkuFormat {}

impl SkuFormat {
    pub const MIN_LEN: usize = 1;
    pub const MAX_LEN: usize = 64;
    /// What the characters may be, for the document.
    pub const DESCRIPTION: &str = "Letters, digits, `-`, `_` and `.`";

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    }

    /// The schema of a SKU, for a field to add its description and example to.
    pub fn schema_builder() -> ObjectBuilder {
        let (min, max) = (Self::MIN_LEN, Self::MAX_LEN);
        string()
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(format!("^[A-Za-z0-9._-]{{{min},{max}}}$")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be {} to {} characters of letters, digits, '-', '_' or '.'",
    SkuFormat::MIN_LEN,
    SkuFormat::MAX_LEN
)]
pub struct SkuError;

impl Rule for SkuFormat {
    type Value = String;
    type Error = SkuError;
    const NAME: &'static str = "Sku";

    fn broken(value: &String) -> Vec<SkuError> {
        // All ASCII, so bytes are characters.
        let valid = (Self::MIN_LEN..=Self::MAX_LEN).contains(&value.len())
            && value.chars().all(Self::allowed);
        (!valid).then_some(SkuError).into_iter().collect()
    }

    fn schema() -> RefOr<Schema> {
        Self::schema_builder().into()
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn one_to_sixty_four_of_the_allowed_characters() {
        let longest = "x".repeat(SkuFormat::MAX_LEN);
        for sku in ["A", "SKU-1.a_b", "0", longest.as_str()] {
            assert!(Sku::parse(sku.to_owned()).is_ok(), "{sku}");
        }
        let too_long = "x".repeat(SkuFormat::MAX_LEN + 1);
        for bad in [
            "",
            "A 1",
            "A/1",
            "é",
            "abc\u{0}def",
            "a+b",
            too_long.as_str(),
        ] {
            let broken = Sku::parse(bad.to_owned()).expect_err(bad);
            let (min, max) = (SkuFormat::MIN_LEN, SkuFormat::MAX_LEN);
            assert_eq!(
                broken.to_string(),
                format!("must be {min} to {max} characters of letters, digits, '-', '_' or '.'")
            );
        }
    }

    /// Whether the regex class body `class` (ranges and single characters) holds `c`.
    fn class_holds(class: &str, c: char) -> bool {
        let chars: Vec<char> = class.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    }

    #[test]
    fn the_schema_says_what_the_check_does() {
        let schema = serde_json::to_value(Sku::schema()).expect("a schema serializes");
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], SkuFormat::MIN_LEN);
        assert_eq!(schema["maxLength"], SkuFormat::MAX_LEN);
        let pattern = schema["pattern"].as_str().expect("a pattern");
        let (class, repeat) = pattern
            .strip_prefix("^[")
            .and_then(|rest| rest.split_once("]{"))
            .expect("^[class]{min,max}$");
        let (min, max) = (SkuFormat::MIN_LEN, SkuFormat::MAX_LEN);
        assert_eq!(repeat, format!("{min},{max}}}$"));
        for c in (0..=0x7f).filter_map(char::from_u32) {
            assert_eq!(SkuFormat::allowed(c), class_holds(class, c), "{c:?}");
        }
    }
}
