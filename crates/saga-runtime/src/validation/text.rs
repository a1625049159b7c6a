//! Printable text: the rule of every name, address line and id a client sends. Not blank, at most
//! so many characters, and no control characters — Postgres refuses NUL in `text`, and none of
//! them belongs in a name, an address or an id.
//!
//! JSON Schema has no "not blank" or "no control character": the schema says both as one
//! pattern, written here beside the check it describes.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::checked::{FieldOf, FieldRule, example, string};

/// The control characters (`char::is_control`: C0, DEL and C1) as the body of a regex class.
pub const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// The rule of a text field: [`printable`], within `max_chars`.
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// Most characters (not bytes).
    pub max_chars: usize,
    /// What the document shows as a valid value.
    pub example: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be blank")]
    Blank,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters (NUL, tab, newline, …)")]
    Control,
}

/// Checks printable text of at most `max_chars` characters; the first rule broken.
pub fn printable(value: &str, max_chars: usize) -> Result<(), TextError> {
    if value.trim().is_empty() {
        Err(TextError::Blank)
    } else if value.chars().count() > max_chars {
        Err(TextError::TooLong { max: max_chars })
    } else if value.chars().any(char::is_control) {
        Err(TextError::Control)
    } else {
        Ok(())
    }
}

/// [`printable`] as a pattern: no control character, and one that is not white space.
pub fn printable_pattern() -> String {
    format!(r"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*$")
}

/// Printable text, checked against the [`TextRule`] of the field `F`.
pub type Text<F> = FieldOf<TextRule, F>;

impl FieldRule for TextRule {
    type Value = String;
    type Error = TextError;

    fn broken(&self, value: &String) -> Vec<TextError> {
        printable(value, self.max_chars).err().into_iter().collect()
    }

    fn schema(&self) -> RefOr<Schema> {
        // Not blank: at least one character.
        let schema = string()
            .min_length(Some(1))
            .max_length(Some(self.max_chars))
            .pattern(Some(printable_pattern()));
        example(schema, self.example).into()
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    crate::field_types! {
        type Short = Text<ShortField>(TextRule { max_chars: 5, example: "abc" });
    }

    fn rules(value: &str) -> Vec<String> {
        match Short::parse(value.to_owned()) {
            Ok(_) => Vec::new(),
            Err(broken) => broken.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn text_up_to_the_limit_is_accepted_and_one_more_character_is_not() {
        assert_eq!(rules("a"), Vec::<String>::new());
        assert_eq!(rules("abcde"), Vec::<String>::new());
        assert_eq!(
            rules(" ab "),
            Vec::<String>::new(),
            "inner and outer spaces"
        );
        assert_eq!(
            rules("ééééé"),
            Vec::<String>::new(),
            "characters, not bytes"
        );
        assert_eq!(rules("abcdef"), ["must be at most 5 characters"]);
    }

    #[test]
    fn blank_text_and_control_characters_are_refused() {
        for blank in ["", " ", "\u{a0}\u{2003}"] {
            assert_eq!(rules(blank), ["must not be blank"], "{blank:?}");
        }
        let control = "must not contain control characters (NUL, tab, newline, …)";
        for bad in ["a\u{0}", "a\tb", "a\nb", "a\u{7f}", "a\u{85}", "a\u{9f}"] {
            assert_eq!(rules(bad), [control], "{bad:?}");
        }
        assert_eq!(
            rules("\t"),
            ["must not be blank"],
            "blank is reported first"
        );
        assert_eq!(
            rules("a\u{a0}"),
            Vec::<String>::new(),
            "NBSP is not a control"
        );
    }

    #[test]
    fn the_pattern_names_exactly_the_control_characters() {
        let bounds: Vec<u32> = CONTROL
            .split(r"\x")
            .filter(|hex| !hex.is_empty())
            .filter_map(|hex| u32::from_str_radix(hex.trim_end_matches('-'), 16).ok())
            .collect();
        let in_class = |c: char| {
            bounds
                .chunks(2)
                .any(|r| (r[0]..=r[1]).contains(&(c as u32)))
        };
        for c in (0..=0x2000).filter_map(char::from_u32) {
            assert_eq!(c.is_control(), in_class(c), "{c:?}");
        }
    }

    #[test]
    fn the_schema_says_what_the_check_does() {
        let schema = serde_json::to_value(Short::schema()).expect("a schema serializes");
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "string",
                "minLength": 1,
                "maxLength": 5,
                "pattern": printable_pattern(),
                "example": "abc"
            })
        );
    }
}
