use std::fmt;

/// The four bounded contexts. Each one owns a topic of facts and, as a consumer, a retry and a
/// dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Order,
    Payment,
    Inventory,
    Shipping,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Shipping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Shipping => "shipping",
        }
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether this service reacts to events of `event_type`; it acknowledges the others on the
    /// topics it reads unread. With [`Service::consumes`], the whole wiring of the choreography.
    pub fn reacts_to(self, event_type: crate::EventType) -> bool {
        use crate::EventType::*;
        match self {
            // Every event of every order goes into the timeline.
            Service::Order => true,
            Service::Payment => matches!(
                event_type,
                OrderPlaced | StockReservationFailed | ShipmentFailed | OrderCancelled
            ),
            Service::Inventory => matches!(
                event_type,
                PaymentAuthorized | ShipmentFailed | OrderCancelled
            ),
            Service::Shipping => matches!(event_type, StockReserved | OrderCancelled),
        }
    }

    /// The services whose event topics this service consumes (besides its own retry topic):
    /// the choreography's wiring, in one place for the services, the tools and the tests.
    pub fn consumes(self) -> &'static [Service] {
        match self {
            // Order follows every event of every order, for the timeline.
            Service::Order => &Service::ALL,
            Service::Payment => &[Service::Order, Service::Inventory, Service::Shipping],
            // Order's topic too: a cancelled order's held stock and shipment are undone.
            Service::Inventory => &[Service::Order, Service::Payment, Service::Shipping],
            Service::Shipping => &[Service::Order, Service::Inventory],
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Topic names, optionally behind a prefix so that isolated sagas (tests, demos) can share one
/// broker without seeing each other's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><service>.events`: the facts a service publishes.
    pub fn events(&self, service: Service) -> String {
        format!("{}{}.events", self.prefix, service.name())
    }

    /// `<prefix><service>.retry`: messages a service failed to handle and will try again.
    pub fn retry(&self, service: Service) -> String {
        format!("{}{}.retry", self.prefix, service.name())
    }

    /// `<prefix><service>.dlq`: messages a service gave up on.
    pub fn dlq(&self, service: Service) -> String {
        format!("{}{}.dlq", self.prefix, service.name())
    }

    /// `<prefix>history.dlq`: records the read side's projector cannot use.
    pub fn history_dlq(&self) -> String {
        format!("{}history.dlq", self.prefix)
    }

    /// Every topic the saga uses, in a stable order.
    pub fn all(&self) -> Vec<String> {
        Service::ALL
            .into_iter()
            .flat_map(|s| [self.events(s), self.retry(s), self.dlq(s)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_public_contract() {
        let plain = TopicNames::default();
        assert_eq!(plain.events(Service::Order), "order.events");
        assert_eq!(plain.retry(Service::Payment), "payment.retry");
        assert_eq!(plain.dlq(Service::Shipping), "shipping.dlq");
        let isolated = TopicNames::new("t42.");
        assert_eq!(isolated.events(Service::Inventory), "t42.inventory.events");
        assert_eq!(isolated.all().len(), 12);
    }
}
