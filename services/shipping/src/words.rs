//! The words Shipping's rules and its fulfilment share: who Shipping is on the saga's events, and
//! the statuses of a shipment. Their own module, so that the fulfilment's rules and the
//! shipment's rules need not import each other.

pub const PRODUCER: &str = "shipping";

saga_events::status_enum! {
    pub enum ShipmentStatus {
        Scheduled => "SCHEDULED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
        Fulfilling => "FULFILLING",
    }
}
