//! What a valid order is and how its total is computed, without I/O: the rules of
//! `POST /orders`.

use saga_runtime::FieldError;
use saga_runtime::validation::Violations;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;
/// One million units of any currency per item: far above any real price, far below overflow.
pub const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    /// Letters, digits, `-`, `_` and `.`; two lines may name the same SKU.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._-]{1,64}$",
        example = "SKU-MUG"
    )]
    pub sku: String,
    /// Units, 1 to 10000.
    #[schema(minimum = 1, maximum = 10000, example = 2)]
    #[serde(deserialize_with = "saga_runtime::validation::integer")]
    pub quantity: i64,
    /// Price of one unit in minor units (cents), 0 to 100000000.
    #[schema(minimum = 0, maximum = 100000000, example = 1250)]
    #[serde(deserialize_with = "saga_runtime::validation::integer")]
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingAddress {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "Ada Lovelace"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "12 Analytical Row"
    )]
    pub line1: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "London"
    )]
    pub city: String,
    #[schema(
        min_length = 1,
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "N1 9GU"
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `GB`.
    #[schema(pattern = r"^[A-Z]{2}$", example = "GB")]
    pub country: String,
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "cust-42"
    )]
    pub customer_id: String,
    /// 1 to 100 lines.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItem>,
    /// ISO 4217, e.g. `EUR`.
    #[schema(pattern = r"^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// A payment token, `tok_…` (`tok_decline` is always declined).
    #[schema(
        max_length = 64,
        pattern = r"^tok_[^\x00-\x1f\x7f-\x9f]*$",
        example = "tok_visa"
    )]
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
    /// Where the receipt and shipping notices go (optional; at most 254 characters, one `@`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f][^@\s\x00-\x1f\x7f-\x9f]*\.[^@\s\x00-\x1f\x7f-\x9f]*[^@\s.\x00-\x1f\x7f-\x9f]$",
        example = "ada@example.org"
    )]
    pub customer_email: Option<String>,
}

/// Checks every rule and computes the total in minor units; all violations are reported at once.
pub fn validate(order: &PlaceOrder) -> Result<i64, Vec<FieldError>> {
    let mut v = Violations::new();
    v.text("customer_id", &order.customer_id, 64);
    if order.items.is_empty() {
        v.add("items", "must contain at least one line");
    } else if order.items.len() > MAX_LINES {
        v.add("items", format!("must contain at most {MAX_LINES} lines"));
    }
    for (i, item) in order.items.iter().enumerate() {
        v.sku(&format!("items[{i}].sku"), &item.sku);
        v.range(
            &format!("items[{i}].quantity"),
            item.quantity,
            1,
            MAX_QUANTITY,
        );
        v.range(
            &format!("items[{i}].unit_price_cents"),
            item.unit_price_cents,
            0,
            MAX_UNIT_PRICE_CENTS,
        );
    }
    v.code("currency", &order.currency, 3, "an ISO 4217 currency code");
    v.text("payment_method", &order.payment_method, 64);
    if !order.payment_method.starts_with("tok_") {
        v.add(
            "payment_method",
            "must be a payment token starting with 'tok_'",
        );
    }
    let address = &order.shipping_address;
    v.text("shipping_address.name", &address.name, 200);
    v.text("shipping_address.line1", &address.line1, 200);
    v.text("shipping_address.city", &address.city, 100);
    v.text("shipping_address.postal_code", &address.postal_code, 20);
    v.code(
        "shipping_address.country",
        &address.country,
        2,
        "an ISO 3166-1 alpha-2 country code",
    );
    if let Some(email) = &order.customer_email {
        v.text("customer_email", email, 254);
        if !looks_like_an_email(email) {
            v.add(
                "customer_email",
                "must be an e-mail address: one '@', a name before it and a domain after it, no spaces",
            );
        }
    }
    v.into_result()?;
    total_cents(&order.items).ok_or_else(|| vec![FieldError::new("items", "total is too large")])
}

/// The shape of an address, not whether it exists: that only a mail sent to it can tell.
fn looks_like_an_email(text: &str) -> bool {
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

/// Sum of quantity × unit price, or None on overflow (impossible within the validated bounds).
pub fn total_cents(items: &[OrderItem]) -> Option<i64> {
    items.iter().try_fold(0i64, |total, item| {
        item.quantity
            .checked_mul(item.unit_price_cents)
            .and_then(|line| total.checked_add(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> PlaceOrder {
        PlaceOrder {
            customer_id: "c-1".into(),
            items: vec![
                OrderItem {
                    sku: "A-1".into(),
                    quantity: 2,
                    unit_price_cents: 1_250,
                },
                OrderItem {
                    sku: "B-2".into(),
                    quantity: 1,
                    unit_price_cents: 999,
                },
            ],
            currency: "EUR".into(),
            payment_method: "tok_visa".into(),
            shipping_address: ShippingAddress {
                name: "Ada".into(),
                line1: "1 Row".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            customer_email: None,
        }
    }

    #[test]
    fn a_valid_order_totals_its_lines_in_cents() {
        assert_eq!(validate(&order()), Ok(3_499));
    }

    #[test]
    fn an_email_is_optional_and_must_look_like_one() {
        let mut with_email = order();
        with_email.customer_email = Some("ada@example.org".into());
        assert_eq!(validate(&with_email), Ok(3_499));
        for bad in [
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
        ] {
            with_email.customer_email = Some(bad.into());
            let errors = validate(&with_email).expect_err(bad);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "customer_email", "{bad}");
        }
        with_email.customer_email = Some(format!("{}@example.org", "a".repeat(250)));
        assert!(validate(&with_email).is_err(), "longer than 254 characters");
    }

    #[test]
    fn every_broken_rule_is_named() {
        let mut bad = order();
        bad.customer_id = " ".into();
        bad.items[0].quantity = 0;
        bad.items[1].sku = "A 1".into();
        bad.items[1].unit_price_cents = -5;
        bad.currency = "euro".into();
        bad.payment_method = "visa".into();
        bad.shipping_address.country = "GBR".into();
        let errors = validate(&bad).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "items[0].quantity",
                "items[1].sku",
                "items[1].unit_price_cents",
                "currency",
                "payment_method",
                "shipping_address.country"
            ]
        );
    }

    #[test]
    fn a_sku_may_appear_on_two_lines_at_two_prices() {
        let mut twice = order();
        twice.items[1].sku = "A-1".into();
        assert_eq!(validate(&twice), Ok(3_499));
    }

    #[test]
    fn empty_and_oversized_orders_are_refused() {
        let mut empty = order();
        empty.items.clear();
        assert!(validate(&empty).is_err());
        let mut many = order();
        many.items = (0..=MAX_LINES)
            .map(|i| OrderItem {
                sku: format!("S{i}"),
                quantity: 1,
                unit_price_cents: 1,
            })
            .collect();
        assert!(validate(&many).is_err());
    }

    #[test]
    fn totals_never_overflow_silently() {
        let huge = vec![OrderItem {
            sku: "X".into(),
            quantity: i64::MAX,
            unit_price_cents: 2,
        }];
        assert_eq!(total_cents(&huge), None);
    }
}
