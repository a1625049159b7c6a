//! Payment's HTTP API: read an order's payment. The handler is every participant's
//! ([`saga_participant::http::by_order`]); what is Payment's is its route and its document.

use crate::store::{self, PaymentView};

saga_participant::by_order_api! {
    title: "Payment service",
    description: "Authorizes, declines and refunds order payments.",
    /// The payment of an order.
    get_payment("/payments/{order_id}") -> PaymentView = store::FIND, else "payment for order"
}
