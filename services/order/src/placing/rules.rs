//! The rules of `POST /orders` that only Order has: a payment token, the customer's e-mail
//! address, and how many lines an order may have. Each is written once, here, and gives the
//! check, the message and the OpenAPI schema (see `saga_runtime::validation`).

use saga_runtime::validation::{
    Broken, CONTROL, Checked, Rule, TextError, example, printable, string,
};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, Ref, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::{MAX_LINES, OrderItem};

/// A payment token the payment provider issued, `tok_…`.
pub type PaymentMethod = Checked<PaymentToken>;

/// The rule of a [`PaymentMethod`].
#[derive(Debug)]
pub enum PaymentToken {}

impl PaymentToken {
    pub const MAX_CHARS: usize = 64;
    pub const PREFIX: &str = "tok_";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentMethodError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("must be a payment token starting with '{}'", PaymentToken::PREFIX)]
    NotAToken,
}

impl Rule for PaymentToken {
    type Value = String;
    type Error = PaymentMethodError;
    const NAME: &'static str = "PaymentMethod";

    fn broken(value: &String) -> Vec<PaymentMethodError> {
        let not_a_token = !value.starts_with(Self::PREFIX);
        printable_and(
            value,
            Self::MAX_CHARS,
            not_a_token.then_some(Self::Error::NotAToken),
        )
    }

    fn schema() -> RefOr<Schema> {
        let prefix = Self::PREFIX;
        let description =
            format!("A payment token, `{prefix}…` (`tok_decline` is always declined).");
        let pattern = format!("^{prefix}[^{CONTROL}]*$");
        printable_and_schema(Self::MAX_CHARS, pattern, description, "tok_visa")
    }
}

/// Where the receipt and shipping notices go.
pub type Email = Checked<EmailAddress>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(
        "must be an e-mail address: one '@', a name before it and a domain after it, no spaces"
    )]
    NotAnAddress,
}

/// The rule of an [`Email`]: the shape of an address, not whether it exists — only a mail sent
/// to it can tell.
#[derive(Debug)]
pub enum EmailAddress {}

impl EmailAddress {
    /// The longest address SMTP carries (RFC 5321's path limit, less the angle brackets).
    pub const MAX_CHARS: usize = 254;

    /// One `@`, a name before it, and after it a domain with a dot neither first nor last; no
    /// white space.
    fn looks_like_one(text: &str) -> bool {
        let mut parts = text.split('@');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(local), Some(domain), None) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !text.chars().any(char::is_whitespace)
            }
            _ => false,
        }
    }
}

impl Rule for EmailAddress {
    type Value = String;
    type Error = EmailError;
    const NAME: &'static str = "Email";

    fn broken(value: &String) -> Vec<EmailError> {
        let shape = (!Self::looks_like_one(value)).then_some(EmailError::NotAnAddress);
        printable_and(value, Self::MAX_CHARS, shape)
    }

    fn schema() -> RefOr<Schema> {
        let max = Self::MAX_CHARS;
        // A name, `@`, then a domain: no `@`, white space or control character anywhere, and
        // the domain neither starts nor ends with its dot.
        let pattern = format!(
            r"^[^@\s{CONTROL}]+@[^@\s.{CONTROL}][^@\s{CONTROL}]*\.[^@\s{CONTROL}]*[^@\s.{CONTROL}]$"
        );
        printable_and_schema(
            max,
            pattern,
            format!(
                "Where the receipt and shipping notices go (optional; at most {max} characters, one `@`)."
            ),
            "ada@example.org",
        )
    }
}

/// Printable text of at most `max_chars` characters that must also have a shape of its own
/// (`misshapen` when it has not): both rules are reported, text first.
fn printable_and<E: From<TextError>>(
    value: &str,
    max_chars: usize,
    misshapen: Option<E>,
) -> Vec<E> {
    let text = printable(value, max_chars).err().map(E::from);
    text.into_iter().chain(misshapen).collect()
}

/// The schema of [`printable_and`]: `pattern` says both rules.
fn printable_and_schema(
    max_chars: usize,
    pattern: String,
    description: String,
    shown: &str,
) -> RefOr<Schema> {
    let schema = string()
        .max_length(Some(max_chars))
        .pattern(Some(pattern))
        .description(Some(description));
    example(schema, shown).into()
}

/// The lines of an order: at least one, at most [`Lines::MAX`].
pub type OrderLines = Checked<Lines>;

/// The rule of [`OrderLines`]. Two lines may name the same SKU (at two prices, say).
#[derive(Debug)]
pub enum Lines {}

impl Lines {
    pub const MIN: usize = 1;
    pub const MAX: usize = MAX_LINES;

    /// The rule on how many lines there are, checked before the lines themselves are.
    pub fn count(len: usize) -> Result<(), Broken<LinesError>> {
        let rule = if len < Self::MIN {
            Some(LinesError::TooFew)
        } else if len > Self::MAX {
            Some(LinesError::TooMany { max: Self::MAX })
        } else {
            None
        };
        Broken::unless((), [rule])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinesError {
    #[error("must contain at least one line")]
    TooFew,
    #[error("must contain at most {max} lines")]
    TooMany { max: usize },
}

impl Rule for Lines {
    type Value = Vec<OrderItem>;
    type Error = LinesError;
    const NAME: &'static str = "OrderLines";

    fn broken(lines: &Vec<OrderItem>) -> Vec<LinesError> {
        Self::count(lines.len())
            .err()
            .into_iter()
            .flatten()
            .collect()
    }

    fn schema() -> RefOr<Schema> {
        let (min, max) = (Self::MIN, Self::MAX);
        ArrayBuilder::new()
            .items(Ref::from_schema_name(OrderItem::name()))
            .min_items(Some(min))
            .max_items(Some(max))
            .description(Some(format!("{min} to {max} lines.")))
            .into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((OrderItem::name().into_owned(), OrderItem::schema()));
        OrderItem::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules<R: Rule<Value = String>>(value: &str) -> Vec<String> {
        match Checked::<R>::parse(value.to_owned()) {
            Ok(_) => Vec::new(),
            Err(broken) => broken.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    const NOT_A_TOKEN: PaymentMethodError = PaymentMethodError::NotAToken;
    const NOT_AN_ADDRESS: &str =
        "must be an e-mail address: one '@', a name before it and a domain after it, no spaces";

    fn too_long(max: usize) -> [String; 1] {
        [TextError::TooLong { max }.to_string()]
    }

    #[test]
    fn a_payment_method_is_a_printable_token() {
        let longest = format!("tok_{}", "v".repeat(PaymentToken::MAX_CHARS - 4));
        for ok in ["tok_visa", "tok_decline", "tok_ x", longest.as_str()] {
            assert!(rules::<PaymentToken>(ok).is_empty(), "{ok}");
        }
        let not_a_token = NOT_A_TOKEN.to_string();
        assert_eq!(
            not_a_token,
            format!(
                "must be a payment token starting with '{}'",
                PaymentToken::PREFIX
            )
        );
        assert_eq!(rules::<PaymentToken>("visa"), [not_a_token.as_str()]);
        assert_eq!(rules::<PaymentToken>(" tok_x"), [not_a_token.as_str()]);
        assert_eq!(
            rules::<PaymentToken>("tok_\n"),
            ["must not contain control characters (NUL, tab, newline, …)"]
        );
        assert_eq!(
            rules::<PaymentToken>(&format!("{longest}v")),
            too_long(PaymentToken::MAX_CHARS)
        );
        assert_eq!(
            rules::<PaymentToken>(""),
            ["must not be blank", not_a_token.as_str()],
            "both rules are reported"
        );
    }

    #[test]
    fn an_email_has_the_shape_of_an_address() {
        let longest = format!("{}@example.org", "a".repeat(EmailAddress::MAX_CHARS - 12));
        for ok in ["ada@example.org", "a@b.c", "a@b..c", longest.as_str()] {
            assert!(rules::<EmailAddress>(ok).is_empty(), "{ok}");
        }
        for bad in [
            "a",
            "a@",
            "@b.c",
            "a@b",
            "a@b@c.d",
            "a@.b.c",
            "a@b.c.",
            "a\u{a0}@b.c",
        ] {
            assert_eq!(rules::<EmailAddress>(bad), [NOT_AN_ADDRESS], "{bad}");
        }
        assert_eq!(
            rules::<EmailAddress>(&format!("a{longest}")),
            too_long(EmailAddress::MAX_CHARS)
        );
        assert_eq!(
            rules::<EmailAddress>(" "),
            ["must not be blank", NOT_AN_ADDRESS]
        );
        assert_eq!(
            rules::<EmailAddress>("ada\n@x.org"),
            [
                "must not contain control characters (NUL, tab, newline, …)",
                NOT_AN_ADDRESS
            ]
        );
    }

    #[test]
    fn an_order_has_one_to_a_hundred_lines() {
        assert!(Lines::count(Lines::MIN).is_ok());
        assert!(Lines::count(Lines::MAX).is_ok());
        let refused = |len| Lines::count(len).map_err(|broken| broken.to_string());
        assert_eq!(refused(0), Err("must contain at least one line".to_owned()));
        assert_eq!(
            refused(Lines::MAX + 1),
            Err(format!("must contain at most {} lines", Lines::MAX))
        );
    }
}
