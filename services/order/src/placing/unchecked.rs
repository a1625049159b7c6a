//! `POST /orders` as the JSON carries it: plain strings and numbers, read by serde before any
//! rule is checked. A typed field that refused its value while the body is deserialized would
//! stop at the first broken rule; reading the shape first lets [`PlaceOrder::check`] report every
//! one. The structs keep the names serde's messages show ("expected struct OrderItem").

use saga_runtime::FieldError;
use saga_runtime::validation::{Sku, Violations};
use serde::Deserialize;

use super::{
    AddressLine, City, Country, Currency, CustomerId, Email, Lines, OrderLines, PaymentMethod,
    PostalCode, Quantity, RecipientName, UnitPriceCents,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    #[serde(deserialize_with = "saga_runtime::validation::integer")]
    pub quantity: i64,
    #[serde(deserialize_with = "saga_runtime::validation::integer")]
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlaceOrder {
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub currency: String,
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
    #[serde(default)]
    pub customer_email: Option<String>,
}

impl PlaceOrder {
    /// The order with every field typed, or every rule its fields break, in field order.
    pub fn check(self) -> Result<super::PlaceOrder, Vec<FieldError>> {
        let mut v = Violations::new();
        let order = self.check_fields(&mut v);
        v.finish(order)
    }

    fn check_fields(self, v: &mut Violations) -> Option<super::PlaceOrder> {
        let customer_id = v.check("customer_id", CustomerId::parse(self.customer_id));
        // How many lines is reported before what is wrong with each, as the fields come.
        let count = v.check("items", Lines::count(self.items.len()));
        let items: Vec<Option<super::OrderItem>> = (self.items.into_iter().enumerate())
            .map(|(i, item)| item.check(&format!("items[{i}]"), v))
            .collect();
        let items = count
            .and(items.into_iter().collect())
            .and_then(|items| v.check("items", OrderLines::parse(items)));
        let currency = v.check("currency", Currency::parse(self.currency));
        let payment_method = v.check("payment_method", PaymentMethod::parse(self.payment_method));
        let shipping_address = self.shipping_address.check("shipping_address", v);
        let customer_email = match self.customer_email {
            None => Some(None),
            Some(email) => v.check("customer_email", Email::parse(email)).map(Some),
        };
        Some(super::PlaceOrder {
            customer_id: customer_id?,
            items: items?,
            currency: currency?,
            payment_method: payment_method?,
            shipping_address: shipping_address?,
            customer_email: customer_email?,
        })
    }
}

impl OrderItem {
    fn check(self, at: &str, v: &mut Violations) -> Option<super::OrderItem> {
        let sku = v.check(&format!("{at}.sku"), Sku::parse(self.sku));
        let quantity = v.check(&format!("{at}.quantity"), Quantity::parse(self.quantity));
        let unit_price_cents = UnitPriceCents::parse(self.unit_price_cents);
        let unit_price_cents = v.check(&format!("{at}.unit_price_cents"), unit_price_cents);
        Some(super::OrderItem {
            sku: sku?,
            quantity: quantity?,
            unit_price_cents: unit_price_cents?,
        })
    }
}

impl ShippingAddress {
    fn check(self, at: &str, v: &mut Violations) -> Option<super::ShippingAddress> {
        let field = |name: &str| format!("{at}.{name}");
        let name = v.check(&field("name"), RecipientName::parse(self.name));
        let line1 = v.check(&field("line1"), AddressLine::parse(self.line1));
        let city = v.check(&field("city"), City::parse(self.city));
        let postal_code = v.check(&field("postal_code"), PostalCode::parse(self.postal_code));
        let country = v.check(&field("country"), Country::parse(self.country));
        Some(super::ShippingAddress {
            name: name?,
            line1: line1?,
            city: city?,
            postal_code: postal_code?,
            country: country?,
        })
    }
}
