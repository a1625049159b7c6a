//! Failing a handler on purpose, for fault tests and demos.
//!
//! Only compiled with the `fault-injection` feature, which release builds never enable: a
//! production binary has no way to turn it on. Rules come from `FAULT_INJECTION`, e.g.
//! `inventory:sku=fault-twice-:2,order:order=01a2…:3:PaymentAuthorized`: at the named service,
//! events (of the named type, if one is given) whose order id, or one of whose SKUs, starts with
//! the given text fail permanently that many times each. A fifth part `panic` makes the handler
//! panic instead of failing, e.g. `payment:sku=boom-:1:OrderPlaced:panic`.

use std::collections::HashMap;
use std::sync::Mutex;

use saga_events::SagaEvent;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Sku(String),
    Order(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    target: Target,
    times: u32,
    event_type: Option<String>,
    panic: bool,
}

/// How an injected fault shows itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The handler returns an error with this reason.
    Fail(String),
    /// The handler panics with this message.
    Panic(String),
}

/// The rules that apply to one service, and how often each event has been failed so far.
#[derive(Debug, Default)]
pub struct FaultInjection {
    rules: Vec<Rule>,
    failed: Mutex<HashMap<String, u32>>,
}

impl FaultInjection {
    /// Parses the rules meant for `service`; rules for other services are ignored.
    pub fn parse(spec: &str, service: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let parts: Vec<&str> = rule.split(':').collect();
            let (rule_service, target, times, event_type, panic) = match parts.as_slice() {
                [s, t, n] => (*s, *t, *n, None, false),
                [s, t, n, e] => (*s, *t, *n, Some((*e).to_owned()), false),
                [s, t, n, e, "panic"] => (*s, *t, *n, Some((*e).to_owned()), true),
                _ => {
                    return Err(format!(
                        "{rule:?}: expected <service>:<sku|order>=<prefix>:<times>[:<EventType>[:panic]]"
                    ));
                }
            };
            let times: u32 = times.parse().map_err(|e| format!("{rule:?}: times: {e}"))?;
            let target = match target.split_once('=') {
                Some(("sku", prefix)) => Target::Sku(prefix.to_owned()),
                Some(("order", prefix)) => Target::Order(prefix.to_owned()),
                _ => {
                    return Err(format!(
                        "{rule:?}: target must be sku=<prefix> or order=<prefix>"
                    ));
                }
            };
            if rule_service == service {
                rules.push(Rule {
                    target,
                    times,
                    event_type,
                    panic,
                });
            }
        }
        Ok(Self {
            rules,
            failed: Mutex::new(HashMap::new()),
        })
    }

    pub fn from_env(service: &str) -> Result<Self, String> {
        match std::env::var("FAULT_INJECTION") {
            Ok(spec) => Self::parse(&spec, service),
            Err(_) => Ok(Self::default()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Some(fault) if this handling of `event` must fail.
    pub fn should_fail(&self, event: &SagaEvent) -> Option<Fault> {
        let rule = self.rules.iter().find(|rule| matches(rule, event))?;
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failed.entry(event.metadata().event_id.clone()).or_insert(0);
        if *count >= rule.times {
            return None;
        }
        *count += 1;
        let reason = format!(
            "injected fault {} of {} ({:?})",
            count, rule.times, rule.target
        );
        Some(if rule.panic {
            Fault::Panic(reason)
        } else {
            Fault::Fail(reason)
        })
    }
}

fn matches(rule: &Rule, event: &SagaEvent) -> bool {
    if rule
        .event_type
        .as_deref()
        .is_some_and(|t| t != event.event_type().name())
    {
        return false;
    }
    match &rule.target {
        Target::Order(prefix) => event.order_id().starts_with(prefix.as_str()),
        Target::Sku(prefix) => {
            let json = event.to_json();
            json["items"].as_array().is_some_and(|items| {
                items.iter().any(|item| {
                    item["sku"]
                        .as_str()
                        .is_some_and(|sku| sku.starts_with(prefix.as_str()))
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saga_events::{EventMetadata, StockLine, StockReleased};

    fn released(sku: &str) -> SagaEvent {
        StockReleased {
            metadata: EventMetadata::first("order-1", "test"),
            order_id: "order-1".into(),
            items: vec![StockLine {
                sku: sku.into(),
                quantity: 1,
            }],
        }
        .into()
    }

    #[test]
    fn a_rule_fails_matching_events_the_given_number_of_times() -> Result<(), String> {
        let faults = FaultInjection::parse("inventory:sku=fault-:2,payment:sku=x:9", "inventory")?;
        let event = released("fault-mug");
        assert!(faults.should_fail(&event).is_some());
        assert!(faults.should_fail(&event).is_some());
        assert!(faults.should_fail(&event).is_none(), "only twice");
        assert!(faults.should_fail(&released("mug")).is_none());
        Ok(())
    }

    #[test]
    fn rules_for_other_services_and_bad_specs() {
        assert!(FaultInjection::parse("payment:sku=a:1", "inventory").is_ok_and(|f| f.is_empty()));
        assert!(FaultInjection::parse("inventory:color=red:1", "inventory").is_err());
        assert!(FaultInjection::parse("inventory:sku=a", "inventory").is_err());
        let typed = FaultInjection::parse("inventory:sku=f:1:StockReserved", "inventory");
        assert!(typed.is_ok_and(|f| f.should_fail(&released("f-1")).is_none()));
        let panicking = FaultInjection::parse("inventory:sku=f:1:StockReleased:panic", "inventory");
        assert!(
            panicking
                .is_ok_and(|f| matches!(f.should_fail(&released("f-1")), Some(Fault::Panic(_))))
        );
    }
}
