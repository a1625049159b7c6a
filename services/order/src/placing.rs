//! What a valid order is and how its total is computed, without I/O: the rules of
//! `POST /orders`.
//!
//! Every field of a [`PlaceOrder`] has its own type ([`CustomerId`], [`Sku`], [`Quantity`], …),
//! so code past the HTTP edge holds values that obey their rule, and each rule — the check, the
//! message a client reads and the OpenAPI schema — is written once. A body is first read as an
//! [`unchecked::PlaceOrder`] (plain strings and numbers), then [`validate`]d field by field, so
//! that a client learns every broken rule at once.

mod rules;
pub mod unchecked;

use saga_runtime::FieldError;
use saga_runtime::validation::{SkuFormat, example, nullable};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::ObjectBuilder;

pub use rules::{
    Email, EmailAddress, EmailError, Lines, LinesError, OrderLines, PaymentMethod,
    PaymentMethodError, PaymentToken,
};
pub use saga_runtime::validation::Sku;

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;
/// One million units of any currency per item: far above any real price, far below overflow.
pub const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000;

saga_runtime::field_types! {
    /// Units of one line.
    pub type Quantity = Bounded<QuantityField>(BoundedRule {
        min: 1,
        max: MAX_QUANTITY,
        example: 2,
        description: "Units, {min} to {max}.",
    });
    /// What one unit costs, in minor units.
    pub type UnitPriceCents = Bounded<UnitPriceCentsField>(BoundedRule {
        min: 0,
        max: MAX_UNIT_PRICE_CENTS,
        example: 1250,
        description: "Price of one unit in minor units (cents), {min} to {max}.",
    });
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    #[schema(schema_with = sku_of_a_line)]
    pub sku: Sku,
    #[schema(inline)]
    pub quantity: Quantity,
    #[schema(inline)]
    pub unit_price_cents: UnitPriceCents,
}

/// The schema of a line's SKU: a [`Sku`], and what it means on a line.
fn sku_of_a_line() -> ObjectBuilder {
    let description = format!(
        "{}; two lines may name the same SKU.",
        SkuFormat::DESCRIPTION
    );
    example(
        SkuFormat::schema_builder().description(Some(description)),
        "SKU-MUG",
    )
}

saga_runtime::field_types! {
    /// Who the parcel is for.
    pub type RecipientName = Text<RecipientNameField>(TextRule { max_chars: 200, example: "Ada Lovelace" });
    pub type AddressLine = Text<AddressLineField>(TextRule { max_chars: 200, example: "12 Analytical Row" });
    pub type City = Text<CityField>(TextRule { max_chars: 100, example: "London" });
    pub type PostalCode = Text<PostalCodeField>(TextRule { max_chars: 20, example: "N1 9GU" });
    pub type Country = Code<CountryField>(CodeRule {
        len: 2,
        standard: "an ISO 3166-1 alpha-2 country code",
        description: "ISO 3166-1 alpha-2, e.g. `GB`.",
        example: "GB",
    });
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingAddress {
    #[schema(inline)]
    pub name: RecipientName,
    #[schema(inline)]
    pub line1: AddressLine,
    #[schema(inline)]
    pub city: City,
    #[schema(inline)]
    pub postal_code: PostalCode,
    #[schema(inline)]
    pub country: Country,
}

saga_runtime::field_types! {
    pub type Currency = Code<CurrencyField>(CodeRule {
        len: 3,
        standard: "an ISO 4217 currency code",
        description: "ISO 4217, e.g. `EUR`.",
        example: "EUR",
    });
    /// The shop's id of whoever places the order.
    pub type CustomerId = Text<CustomerIdField>(TextRule { max_chars: 64, example: "cust-42" });
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    #[schema(inline)]
    pub customer_id: CustomerId,
    #[schema(inline)]
    pub items: OrderLines,
    #[schema(inline)]
    pub currency: Currency,
    #[schema(inline)]
    pub payment_method: PaymentMethod,
    pub shipping_address: ShippingAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable::<Email>)]
    pub customer_email: Option<Email>,
}

/// Checks every rule and computes the total in minor units; all violations are reported at once.
pub fn validate(body: unchecked::PlaceOrder) -> Result<(PlaceOrder, i64), Vec<FieldError>> {
    let order = body.check()?;
    let lines = order
        .items
        .iter()
        .map(|item| (*item.quantity, *item.unit_price_cents));
    let total =
        total_cents(lines).ok_or_else(|| vec![FieldError::new("items", "total is too large")])?;
    Ok((order, total))
}

/// Sum of quantity × unit price over `(quantity, unit price)` lines, or None on overflow
/// (impossible within the bounds of [`Quantity`], [`UnitPriceCents`] and [`OrderLines`]).
pub fn total_cents(lines: impl IntoIterator<Item = (i64, i64)>) -> Option<i64> {
    lines
        .into_iter()
        .try_fold(0i64, |total, (quantity, unit_price_cents)| {
            quantity
                .checked_mul(unit_price_cents)
                .and_then(|line| total.checked_add(line))
        })
}

#[cfg(test)]
mod tests {
    use saga_runtime::validation::{
        Bounded, BoundedRule, Checked, Code, CodeRule, Field, Text, TextRule,
    };

    use super::*;

    fn order() -> unchecked::PlaceOrder {
        unchecked::PlaceOrder {
            customer_id: "c-1".into(),
            items: vec![
                unchecked::OrderItem {
                    sku: "A-1".into(),
                    quantity: 2,
                    unit_price_cents: 1_250,
                },
                unchecked::OrderItem {
                    sku: "B-2".into(),
                    quantity: 1,
                    unit_price_cents: 999,
                },
            ],
            currency: "EUR".into(),
            payment_method: "tok_visa".into(),
            shipping_address: unchecked::ShippingAddress {
                name: "Ada".into(),
                line1: "1 Row".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            customer_email: None,
        }
    }

    /// The total of a valid order.
    fn total(body: unchecked::PlaceOrder) -> Result<i64, Vec<FieldError>> {
        validate(body).map(|(_, total)| total)
    }

    #[test]
    fn a_valid_order_totals_its_lines_in_cents() {
        assert_eq!(total(order()), Ok(3_499));
    }

    #[test]
    fn an_email_is_optional_and_must_look_like_one() {
        let mut with_email = order();
        with_email.customer_email = Some("ada@example.org".into());
        assert_eq!(total(with_email.clone()), Ok(3_499));
        for bad in [
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
        ] {
            with_email.customer_email = Some(bad.into());
            let errors = total(with_email.clone()).expect_err(bad);
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "customer_email", "{bad}");
        }
        with_email.customer_email = Some(format!("{}@example.org", "a".repeat(250)));
        assert!(total(with_email).is_err(), "longer than 254 characters");
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
        let errors = total(bad).expect_err("invalid");
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
        assert_eq!(total(twice), Ok(3_499));
    }

    #[test]
    fn empty_and_oversized_orders_are_refused() {
        let mut empty = order();
        empty.items.clear();
        assert!(total(empty).is_err());
        let mut many = order();
        many.items = (0..=MAX_LINES)
            .map(|i| unchecked::OrderItem {
                sku: format!("S{i}"),
                quantity: 1,
                unit_price_cents: 1,
            })
            .collect();
        assert!(total(many).is_err());
    }

    #[test]
    fn totals_never_overflow_silently() {
        let huge = [(i64::MAX, 2)];
        assert_eq!(total_cents(huge), None);
    }

    #[test]
    fn the_largest_order_totals_without_overflow() {
        let lines = (0..MAX_LINES).map(|_| (MAX_QUANTITY, MAX_UNIT_PRICE_CENTS));
        assert!(total_cents(lines).is_some());
    }

    /// A text field takes its example and its longest value, and refuses one more character,
    /// blank text and a control character.
    fn text_edges<F: Field<TextRule>>() {
        let TextRule { max_chars, example } = F::RULE;
        let parse = |text: String| Checked::<Text<F>>::parse(text).is_ok();
        assert!(parse(example.to_owned()), "{}: {example}", F::NAME);
        assert!(parse("x".repeat(max_chars)), "{}: longest", F::NAME);
        assert!(!parse("x".repeat(max_chars + 1)), "{}: too long", F::NAME);
        assert!(!parse(" ".into()), "{}: blank", F::NAME);
        assert!(!parse("a\u{0}b".into()), "{}: NUL", F::NAME);
    }

    /// An integer field takes its example and its bounds, and refuses one past either.
    fn bounded_edges<F: Field<BoundedRule>>() {
        let BoundedRule {
            min, max, example, ..
        } = F::RULE;
        let parse = |n: i64| Checked::<Bounded<F>>::parse(n).is_ok();
        assert!(parse(example) && parse(min) && parse(max), "{}", F::NAME);
        assert!(!parse(min - 1) && !parse(max + 1), "{}", F::NAME);
    }

    /// A code field takes its example, and refuses a letter more or less and lower case.
    fn code_edges<F: Field<CodeRule>>() {
        let example = F::RULE.example;
        let parse = |code: String| Checked::<Code<F>>::parse(code).is_ok();
        assert!(parse(example.to_owned()), "{}", F::NAME);
        assert!(!parse(format!("{example}A")), "{}: longer", F::NAME);
        assert!(!parse(example[1..].to_owned()), "{}: shorter", F::NAME);
        assert!(!parse(example.to_lowercase()), "{}: lower case", F::NAME);
    }

    #[test]
    fn every_field_takes_its_edges_and_refuses_one_past_them() {
        text_edges::<CustomerIdField>();
        text_edges::<RecipientNameField>();
        text_edges::<AddressLineField>();
        text_edges::<CityField>();
        text_edges::<PostalCodeField>();
        bounded_edges::<QuantityField>();
        bounded_edges::<UnitPriceCentsField>();
        code_edges::<CountryField>();
        code_edges::<CurrencyField>();
    }

    #[test]
    fn a_checked_order_reads_and_writes_the_json_it_was_read_from() {
        let json = serde_json::json!({
            "customer_id": "c-1",
            "items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250}],
            "currency": "EUR",
            "payment_method": "tok_visa",
            "shipping_address": {
                "name": "Ada", "line1": "1 Row", "city": "London", "postal_code": "N1",
                "country": "GB"
            },
            "customer_email": "ada@example.org"
        });
        let body: unchecked::PlaceOrder =
            serde_json::from_value(json.clone()).expect("the body's shape");
        let (order, _) = validate(body).expect("a valid order");
        assert_eq!(serde_json::to_value(&order).ok(), Some(json.clone()));
        let stored: PlaceOrder = serde_json::from_value(json).expect("a stored order reads back");
        assert_eq!(stored, order);
    }

    #[test]
    fn a_stored_order_that_breaks_a_rule_does_not_read_back() {
        let mut json = serde_json::to_value(validate(order()).expect("a valid order").0)
            .expect("an order serializes");
        json["items"][0]["quantity"] = serde_json::json!(0);
        assert!(serde_json::from_value::<PlaceOrder>(json).is_err());
    }
}
