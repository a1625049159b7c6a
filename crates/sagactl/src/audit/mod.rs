//! `sagactl audit`: does the system keep its promises? Reads the four services' databases and
//! the event and dead-letter topics and checks, strictly (a fault test's oracle must be able to
//! fail), for every order:
//! - it ended (CONFIRMED or CANCELLED), or is explained: a message of it is DEAD at a named
//!   service and its dead letter is on that service's dead-letter topic, for a person to act on.
//!   A retry, however close, explains nothing: once sagas have settled, none is left;
//! - confirmed: an authorized payment of the order's total, a reservation of exactly its lines,
//!   a scheduled shipment;
//! - cancelled, its compensation COMPLETED: no payment still authorized, no stock held, no
//!   shipment still scheduled, and the reason matches what happened (a `TIMED_OUT` order may have
//!   been charged, reserved or shipped late, as long as each was undone);
//! - cancelled, its compensation still PENDING: explained by a dead letter, as above;
//! - a reservation only after a charge, a shipment only after a reservation;
//! - per SKU, reserved units equal the lines of the reservations still held;
//! - no order charged, refunded, reserved, released or shipped twice (distinct events on the
//!   topics), and nothing exists for an order Order never saw;
//! - parked messages at every service follow their rules ([`parked`]): one head per order, no
//!   retry long past its schedule, no dead row without its dead letter, nothing waiting behind
//!   no head.
//!
//! Exits non-zero on any violation, listing each. The fault tests use it as their oracle.

mod parked;
mod topics;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::Context;
use crate::databases::{DatabaseArgs, Databases};
use crate::output::emit;

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub databases: DatabaseArgs,
    /// Re-check for up to this many seconds while violations remain (sagas still in flight
    /// settle); 0 checks once.
    #[arg(long, default_value_t = 0)]
    pub settle: u64,
    /// Skip reading the topics: no check for duplicate charges, refunds, reservations,
    /// shipments, and a DEAD parked row is taken at its word that its dead letter exists.
    #[arg(long)]
    pub skip_topics: bool,
    /// How long past its last failure a parked message may still be RETRYING (its retry record
    /// on the way) before the audit calls its retry lost.
    #[arg(long, default_value_t = 60)]
    pub retry_grace: u64,
}

/// What an audit found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub orders: usize,
    pub confirmed: usize,
    pub cancelled: usize,
    /// Orders not ended, with the dead letters that explain why.
    pub explained: Vec<String>,
    /// Orders not ended because a person has yet to decide (an open payment review).
    pub waiting: Vec<String>,
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "orders": self.orders, "confirmed": self.confirmed, "cancelled": self.cancelled,
            "explained": self.explained, "waiting": self.waiting,
            "violations": self.violations, "clean": self.is_clean(),
        })
    }
}

/// Runs the audit, re-checking while `args.settle` allows and violations remain.
pub async fn audit(context: &Context, args: &AuditArgs) -> anyhow::Result<AuditReport> {
    let databases = args.databases.connect().await?;
    let started = Instant::now();
    loop {
        let report = check(context, &databases, args).await?;
        if report.is_clean() || started.elapsed() >= Duration::from_secs(args.settle) {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Prints the report; true when there is no violation.
pub async fn run(context: &Context, args: AuditArgs) -> anyhow::Result<bool> {
    let report = audit(context, &args).await?;
    if context.json {
        emit(report.to_json())?;
        return Ok(report.is_clean());
    }
    emit(format!(
        "{} orders: {} confirmed, {} cancelled, {} explained (dead-lettered), {} waiting for a reviewer, {} violations",
        report.orders,
        report.confirmed,
        report.cancelled,
        report.explained.len(),
        report.waiting.len(),
        report.violations.len()
    ))?;
    for line in &report.explained {
        emit(format!("  explained: {line}"))?;
    }
    for line in &report.waiting {
        emit(format!("  waiting: {line}"))?;
    }
    for line in &report.violations {
        emit(format!("  VIOLATION: {line}"))?;
    }
    Ok(report.is_clean())
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Line {
    sku: String,
    quantity: i64,
}

/// Where a review was opened, the payment follows its outcome: charged only once approved,
/// declined once rejected, expired or closed by a cancellation, uncharged while it is open.
fn review_violation(order_id: &str, review: Option<&str>, payment: Option<&str>) -> Option<String> {
    let review = review?;
    let consistent = match review {
        "OPEN" => payment == Some("IN_REVIEW"),
        "APPROVED" => matches!(payment, Some("AUTHORIZED" | "REFUNDED")),
        "REJECTED" | "EXPIRED" | "CANCELLED" => payment == Some("DECLINED"),
        _ => false,
    };
    (!consistent).then(|| {
        format!("order {order_id}: its payment review is {review} but the payment is {payment:?}")
    })
}

/// A fulfilment ends with its order, and a label it voided never leaves a scheduled shipment.
fn fulfilment_violation(
    order_id: &str,
    order_status: &str,
    fulfilment: Option<(&str, bool)>,
    shipment: Option<&str>,
) -> Option<String> {
    let (phase, label_voided) = fulfilment?;
    if label_voided && shipment == Some("SCHEDULED") {
        return Some(format!(
            "order {order_id}: its label was voided but its shipment is SCHEDULED"
        ));
    }
    let running = !matches!(phase, "SCHEDULED" | "FAILED" | "CANCELLED");
    (running && order_status != "PENDING")
        .then(|| format!("order {order_id} is {order_status} but its fulfilment is still {phase}"))
}

/// order_id, status, cancellation_reason, compensation, total_cents, items.
type OrderRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Json<Vec<Line>>,
);

fn lines_by_sku(lines: &[Line]) -> BTreeMap<String, i64> {
    let mut merged = BTreeMap::new();
    for line in lines {
        *merged.entry(line.sku.clone()).or_insert(0) += line.quantity;
    }
    merged
}

async fn check(context: &Context, db: &Databases, args: &AuditArgs) -> anyhow::Result<AuditReport> {
    let orders: Vec<OrderRow> = sqlx::query_as(
        "SELECT order_id::text, status, cancellation_reason, compensation, total_cents, items
         FROM orders",
    )
    .fetch_all(&db.orders)
    .await?;
    let payments: HashMap<String, (String, i64)> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT order_id::text, status, amount_cents FROM payments",
    )
    .fetch_all(&db.payments)
    .await?
    .into_iter()
    .map(|(order, status, amount)| (order, (status, amount)))
    .collect();
    let reservations: HashMap<String, (String, Vec<Line>)> =
        sqlx::query_as::<_, (String, String, Json<Vec<Line>>)>(
            "SELECT order_id::text, status, items FROM reservations",
        )
        .fetch_all(&db.inventory)
        .await?
        .into_iter()
        .map(|(order, status, items)| (order, (status, items.0)))
        .collect();
    let stock: Vec<(String, i64, i64)> = sqlx::query_as("SELECT sku, on_hand, reserved FROM stock")
        .fetch_all(&db.inventory)
        .await?;
    let shipments: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT order_id::text, status FROM shipments")
            .fetch_all(&db.shipping)
            .await?
            .into_iter()
            .collect();
    let reviews: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT instance_id::text, label FROM workflow_instances WHERE workflow = 'payment_review'",
    )
    .fetch_all(&db.payments)
    .await?
    .into_iter()
    .collect();
    // Fulfilments: (phase, whether the label was voided).
    let fulfilments: HashMap<String, (String, bool)> =
        sqlx::query_as::<_, (String, String, Option<bool>)>(
            "SELECT instance_id::text, label, (state->>'label_voided')::bool
             FROM workflow_instances WHERE workflow = 'fulfilment'",
        )
        .fetch_all(&db.shipping)
        .await?
        .into_iter()
        .map(|(order, phase, voided)| (order, (phase, voided.unwrap_or(false))))
        .collect();
    let facts = if args.skip_topics {
        None
    } else {
        Some(topics::read(&context.kafka, &context.topics).await?)
    };
    let parked = parked::check(
        db,
        facts.as_ref().map(|f| &f.dead_letters),
        args.retry_grace,
    )
    .await?;
    let unexplained = |order_id: &str, what: String| match parked.parked.get(order_id) {
        Some(why) => format!("{what}; parked: {}", why.join("; ")),
        None => what,
    };

    let mut report = AuditReport {
        orders: orders.len(),
        ..AuditReport::default()
    };
    let known: HashSet<&str> = orders.iter().map(|o| o.0.as_str()).collect();
    let v = &mut report.violations;
    for (order_id, status, reason, compensation, total, items) in &orders {
        let payment = payments.get(order_id);
        let reservation = reservations.get(order_id);
        let shipment = shipments.get(order_id).map(String::as_str);
        let payment_status = payment.map(|p| p.0.as_str());
        let reservation_status = reservation.map(|r| r.0.as_str());
        let review = reviews.get(order_id).map(String::as_str);
        if let Some(violation) = review_violation(order_id, review, payment_status) {
            v.push(violation);
        }
        let fulfilment = fulfilments
            .get(order_id)
            .map(|(p, voided)| (p.as_str(), *voided));
        if let Some(violation) = fulfilment_violation(order_id, status, fulfilment, shipment) {
            v.push(violation);
        }
        match status.as_str() {
            "CONFIRMED" => {
                report.confirmed += 1;
                if let Some(compensation) = compensation {
                    v.push(format!(
                        "order {order_id} CONFIRMED but its compensation is {compensation}"
                    ));
                }
                match payment {
                    Some((s, amount)) if s == "AUTHORIZED" && amount == total => {}
                    other => v.push(format!(
                        "order {order_id} CONFIRMED but payment is {other:?}, total {total}"
                    )),
                }
                match reservation {
                    Some((s, lines))
                        if s == "RESERVED" && lines_by_sku(lines) == lines_by_sku(&items.0) => {}
                    other => v.push(format!(
                        "order {order_id} CONFIRMED but reservation is {:?}",
                        other.map(|r| &r.0)
                    )),
                }
                if shipment != Some("SCHEDULED") {
                    v.push(format!(
                        "order {order_id} CONFIRMED but shipment is {shipment:?}"
                    ));
                }
            }
            "CANCELLED" if compensation.as_deref() != Some("COMPLETED") => {
                report.cancelled += 1;
                match parked.explained.get(order_id) {
                    Some(why) => report.explained.push(format!(
                        "order {order_id} CANCELLED, compensation {compensation:?}: {}",
                        why.join("; ")
                    )),
                    None => v.push(unexplained(
                        order_id,
                        format!(
                            "order {order_id} CANCELLED with compensation {compensation:?} and no dead letter explains it"
                        ),
                    )),
                }
            }
            "CANCELLED" => {
                report.cancelled += 1;
                if payment_status == Some("AUTHORIZED") {
                    v.push(format!(
                        "order {order_id} CANCELLED but its payment is still AUTHORIZED (charged)"
                    ));
                }
                if reservation_status == Some("RESERVED") {
                    v.push(format!("order {order_id} CANCELLED but still holds stock"));
                }
                if shipment == Some("SCHEDULED") {
                    v.push(format!(
                        "order {order_id} CANCELLED but a shipment is scheduled"
                    ));
                }
                let consistent = match reason.as_deref() {
                    Some("PAYMENT_DECLINED") => payment_status == Some("DECLINED"),
                    Some("OUT_OF_STOCK") => {
                        payment_status == Some("REFUNDED") && reservation_status == Some("FAILED")
                    }
                    Some("SHIPPING_FAILED") => {
                        payment_status == Some("REFUNDED")
                            && reservation_status == Some("RELEASED")
                            && shipment == Some("FAILED")
                    }
                    // Anything may have happened before or after the deadline; the checks
                    // above say that all of it was undone.
                    Some("TIMED_OUT") => true,
                    _ => false,
                };
                if !consistent {
                    v.push(format!(
                        "order {order_id} CANCELLED({reason:?}) but payment {payment_status:?}, reservation {reservation_status:?}, shipment {shipment:?}"
                    ));
                }
            }
            "PENDING" if review == Some("OPEN") => report.waiting.push(format!(
                "order {order_id} PENDING: its payment waits for a reviewer"
            )),
            _ => match parked.explained.get(order_id) {
                Some(why) => report
                    .explained
                    .push(format!("order {order_id} {status}: {}", why.join("; "))),
                None => v.push(unexplained(
                    order_id,
                    format!("order {order_id} is {status} and no dead letter explains it"),
                )),
            },
        }
        // Each step of the saga follows the one before it, whatever became of the order.
        if let Some((status, _)) = reservation
            && !matches!(payment_status, Some("AUTHORIZED" | "REFUNDED"))
        {
            v.push(format!(
                "order {order_id}: a reservation ({status}) without a charge (payment {payment_status:?})"
            ));
        }
        if let Some(status) = shipment
            && !matches!(reservation_status, Some("RESERVED" | "RELEASED"))
        {
            v.push(format!(
                "order {order_id}: a shipment ({status}) without reserved stock (reservation {reservation_status:?})"
            ));
        }
    }
    for (what, ids) in [
        ("payment", payments.keys().collect::<Vec<_>>()),
        ("reservation", reservations.keys().collect()),
        ("shipment", shipments.keys().collect()),
    ] {
        for id in ids {
            if !known.contains(id.as_str()) {
                v.push(format!(
                    "a {what} exists for order {id}, which Order never accepted"
                ));
            }
        }
    }
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for (status, lines) in reservations.values() {
        if status == "RESERVED" {
            for (sku, quantity) in lines_by_sku(lines) {
                *held.entry(sku).or_insert(0) += quantity;
            }
        }
    }
    for (sku, on_hand, reserved) in &stock {
        let expected = held.get(sku).copied().unwrap_or(0);
        if *reserved != expected {
            v.push(format!(
                "SKU {sku}: {reserved} reserved, but held reservations add up to {expected}"
            ));
        }
        if reserved > on_hand {
            v.push(format!(
                "SKU {sku}: {reserved} reserved of {on_hand} on hand (oversold)"
            ));
        }
    }
    if let Some(facts) = facts {
        v.extend(facts.repeated_effects);
    }
    v.extend(parked.violations);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::review_violation;

    #[test]
    fn a_charge_needs_an_approval_where_a_review_was_opened() {
        for (review, payment) in [
            ("OPEN", "AUTHORIZED"),
            ("REJECTED", "AUTHORIZED"),
            ("EXPIRED", "REFUNDED"),
            ("CANCELLED", "AUTHORIZED"),
            ("APPROVED", "DECLINED"),
            ("OPEN", "DECLINED"),
        ] {
            assert!(
                review_violation("o", Some(review), Some(payment)).is_some(),
                "{review} with {payment}"
            );
        }
        for (review, payment) in [
            ("OPEN", "IN_REVIEW"),
            ("APPROVED", "AUTHORIZED"),
            ("APPROVED", "REFUNDED"),
            ("REJECTED", "DECLINED"),
            ("EXPIRED", "DECLINED"),
            ("CANCELLED", "DECLINED"),
        ] {
            assert_eq!(review_violation("o", Some(review), Some(payment)), None);
        }
        assert_eq!(review_violation("o", None, Some("AUTHORIZED")), None);
    }

    #[test]
    fn a_fulfilment_ends_with_its_order_and_a_voided_label_ships_nothing() {
        use super::fulfilment_violation as check;
        assert!(
            check(
                "o",
                "CANCELLED",
                Some(("CANCELLED", true)),
                Some("SCHEDULED")
            )
            .is_some()
        );
        assert!(
            check(
                "o",
                "CONFIRMED",
                Some(("BOOKING_PICKUP", false)),
                Some("FULFILLING")
            )
            .is_some()
        );
        assert_eq!(
            check(
                "o",
                "PENDING",
                Some(("LABELLING", false)),
                Some("FULFILLING")
            ),
            None
        );
        assert_eq!(
            check(
                "o",
                "CANCELLED",
                Some(("CANCELLED", true)),
                Some("CANCELLED")
            ),
            None
        );
        assert_eq!(
            check(
                "o",
                "CONFIRMED",
                Some(("SCHEDULED", false)),
                Some("SCHEDULED")
            ),
            None
        );
        assert_eq!(check("o", "CONFIRMED", None, Some("SCHEDULED")), None);
    }
}
