//! Shipping's HTTP API: read an order's shipment. The handler is every participant's
//! ([`saga_participant::http::by_order`]); what is Shipping's is its route and its document.

use crate::store::{self, ShipmentView};

saga_participant::by_order_api! {
    title: "Shipping service",
    description: "Schedules shipments for reserved orders.",
    /// The shipment of an order.
    get_shipment("/shipments/{order_id}") -> ShipmentView = store::FIND, else "shipment for order"
}
