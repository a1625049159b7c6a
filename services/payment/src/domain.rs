//! Payment's rules without I/O: what each event the service hears does to an order's payment,
//! decided from the event and what Payment already knows of that order ([`Standing`]). How a
//! batch of events is loaded, decided and saved is the same for every participant
//! (`saga_participant`); only these rules, and the SQL in [`crate::store`], are Payment's.
//!
//! - `OrderPlaced`: authorize or decline, once per order; never when the order was cancelled
//!   first, or is past its deadline (a reply that comes too late is not acted on:
//!   [`saga_participant::Standing::turns_away`]). A risky order is neither: it goes to manual
//!   review ([`crate::review`]), and its payment is `IN_REVIEW` until a reviewer (or the
//!   review's expiry) decides.
//! - `StockReservationFailed`, `ShipmentFailed`: refund what is held.
//! - `OrderCancelled`: the order is closed; what is held is refunded (and an open review closes,
//!   nothing charged).

use saga_events::{
    CancellationReason, EventMetadata, OrderPlaced, PaymentAuthorized, PaymentDeclined,
    PaymentRefunded, SagaEvent, Service,
};
use saga_participant::{Participant, Refused};
use uuid::Uuid;

use saga_workflow::Traces;

use crate::review::{self, REVIEW_TOKEN, Review};
use crate::words::stock_lines;
pub use crate::words::{PRODUCER, PaymentStatus};

/// The token that is always declined, so that the declined path can be driven from outside.
pub const DECLINED_TOKEN: &str = "tok_decline";

/// An order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: Uuid,
    pub status: PaymentStatus,
    pub amount_cents: i64,
    pub currency: String,
    pub payment_method: String,
    pub decline_reason: Option<String>,
    pub refund_reason: Option<CancellationReason>,
    /// Where the receipt goes: the customer's e-mail from `OrderPlaced` (v3 on), if given.
    pub receipt_email: Option<String>,
    /// The review this decision opened, for the ledger to start with its first timer (never
    /// read back: the review lives in its workflow instance from then on).
    pub opened_review: Option<Box<OpenedReview>>,
}

/// A review as the decision that opened it hands it to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedReview {
    pub review: Review,
    pub commands: Vec<saga_workflow::Command>,
}

/// What Payment knows of one order: its payment, and whether it is closed (no charge from then
/// on).
pub type Standing = saga_participant::Standing<Payment>;

/// The order's standing after the event, and what Payment tells the saga.
pub type Decision = saga_participant::Decision<Payment>;

/// What the rules make of an event: a decision, or a refusal.
type Decided = Result<Decision, Refused>;

/// Payment's rules, with the service's configuration they depend on.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Orders above this amount (minor units) are declined.
    pub amount_limit_cents: i64,
    /// Orders from this amount on (minor units, and within the limit) go to manual review.
    pub review_threshold_cents: i64,
    /// How long a review waits for a reviewer before it expires.
    pub review_timeout_ms: i64,
}

impl Participant for Rules {
    const SERVICE: Service = Service::Payment;
    type Step = Payment;
    /// The batch's orders' traces, which the reviews it opens keep.
    type Context = Traces;

    /// Decides Payment's reaction to `event` for an order standing as `standing`, at `now_ms`.
    fn decide(
        &self,
        standing: &Standing,
        event: &SagaEvent,
        _: &mut Traces,
        now_ms: i64,
    ) -> Decided {
        match event {
            SagaEvent::OrderPlaced(placed) => Ok(charge(standing, placed, *self, now_ms)),
            SagaEvent::StockReservationFailed(_) => {
                refund_owed(standing, event, CancellationReason::OUT_OF_STOCK)
            }
            SagaEvent::ShipmentFailed(_) => {
                refund_owed(standing, event, CancellationReason::SHIPPING_FAILED)
            }
            SagaEvent::OrderCancelled(cancelled) => {
                Ok(refund(standing, event, cancelled.reason).closing(cancelled.reason))
            }
            _ => Ok(Decision::unchanged(standing)),
        }
    }
}

/// The deterministic rules: `tok_decline` and any amount above the limit are declined, other
/// `tok_…` tokens are authorized, anything else is not a method this service takes.
pub fn decline_reason(payment_method: &str, amount_cents: i64, limit_cents: i64) -> Option<String> {
    if payment_method == DECLINED_TOKEN {
        Some("card declined".into())
    } else if !payment_method.starts_with("tok_") {
        Some(format!("unsupported payment method {payment_method:?}"))
    } else if amount_cents > limit_cents {
        Some(format!(
            "amount {amount_cents} exceeds the limit of {limit_cents}"
        ))
    } else if amount_cents < 0 {
        Some(format!("negative amount {amount_cents}"))
    } else {
        None
    }
}

/// Why an order that would be authorized goes to manual review first, if it does.
pub fn review_reason(
    payment_method: &str,
    amount_cents: i64,
    threshold_cents: i64,
) -> Option<String> {
    if payment_method == REVIEW_TOKEN {
        Some(format!("payment method {REVIEW_TOKEN}"))
    } else if amount_cents >= threshold_cents {
        Some(format!(
            "amount {amount_cents} reaches the review threshold of {threshold_cents}"
        ))
    } else {
        None
    }
}

fn charge(standing: &Standing, placed: &OrderPlaced, rules: Rules, now_ms: i64) -> Decision {
    // One payment per order, none for a closed one, and nothing charged past the deadline.
    if let Some(turned_away) = standing.turns_away(placed.deadline_at, now_ms) {
        return turned_away;
    }
    let declined = decline_reason(
        &placed.payment_method,
        placed.total.amount_minor,
        rules.amount_limit_cents,
    );
    let payment_id = Uuid::now_v7();
    if declined.is_none()
        && let Some(reason) = review_reason(
            &placed.payment_method,
            placed.total.amount_minor,
            rules.review_threshold_cents,
        )
    {
        let (review, told, commands) =
            review::open(placed, payment_id, reason, now_ms, rules.review_timeout_ms);
        let payment = Payment {
            payment_id,
            status: PaymentStatus::InReview,
            amount_cents: placed.total.amount_minor,
            currency: placed.total.currency.clone(),
            payment_method: placed.payment_method.clone(),
            decline_reason: None,
            refund_reason: None,
            receipt_email: placed.customer_email.clone(),
            opened_review: Some(Box::new(OpenedReview { review, commands })),
        };
        return Decision::changed(standing, payment, told);
    }
    let payment = Payment {
        payment_id,
        status: if declined.is_some() {
            PaymentStatus::Declined
        } else {
            PaymentStatus::Authorized
        },
        amount_cents: placed.total.amount_minor,
        currency: placed.total.currency.clone(),
        payment_method: placed.payment_method.clone(),
        decline_reason: declined.clone(),
        refund_reason: None,
        receipt_email: placed.customer_email.clone(),
        opened_review: None,
    };
    let metadata = EventMetadata::caused_by(&placed.metadata, PRODUCER);
    let told: SagaEvent = match declined {
        None => PaymentAuthorized {
            metadata,
            order_id: placed.order_id.clone(),
            payment_id: payment.payment_id.to_string(),
            amount_cents: placed.total.amount_minor,
            currency: placed.total.currency.clone(),
            items: stock_lines(&placed.items),
            shipping_address: placed.shipping_address.clone(),
            deadline_at: placed.deadline_at,
        }
        .into(),
        Some(reason) => PaymentDeclined {
            metadata,
            order_id: placed.order_id.clone(),
            amount_cents: placed.total.amount_minor,
            currency: placed.total.currency.clone(),
            reason,
        }
        .into(),
    };
    Decision::changed(standing, payment, told)
}

/// A refund a failed step asks for: the order must have a payment.
fn refund_owed(standing: &Standing, cause: &SagaEvent, reason: CancellationReason) -> Decided {
    if standing.step.is_none() {
        return Err(Refused(format!(
            "{} for order {}, which has no payment",
            cause.event_type(),
            cause.order_id()
        )));
    }
    Ok(refund(standing, cause, reason))
}

/// Refunds held money; a declined or already refunded payment owes nothing, so a repeated
/// compensation changes nothing.
fn refund(standing: &Standing, cause: &SagaEvent, reason: CancellationReason) -> Decision {
    let Some(payment) = standing.in_effect(|p| p.status == PaymentStatus::Authorized) else {
        return Decision::unchanged(standing);
    };
    let refunded = Payment {
        status: PaymentStatus::Refunded,
        refund_reason: Some(reason),
        opened_review: None,
        ..payment.clone()
    };
    let told = PaymentRefunded {
        metadata: EventMetadata::caused_by(cause.metadata(), PRODUCER),
        order_id: cause.order_id().to_owned(),
        payment_id: payment.payment_id.to_string(),
        amount_cents: payment.amount_cents,
        currency: payment.currency.clone(),
        reason,
    };
    Decision::changed(standing, refunded, told)
}

#[cfg(test)]
mod tests {
    use saga_events::{EventType, Money, OrderLine, StockLine, StockReservationFailed};
    use saga_participant::scenario::{self, Stage, emitted};

    use super::*;

    const RULES: Rules = Rules {
        amount_limit_cents: 10_000,
        review_threshold_cents: 8_000,
        review_timeout_ms: 60_000,
    };
    const NOW: i64 = 1_800_000_000_000;
    /// Given what Payment knows, when an event arrives, then…
    const PAYMENT: Stage<Rules> = Stage::new(RULES, NOW);
    const ORDER: &str = "01a2c3d4-0000-7000-8000-000000000001";

    fn placed(method: &str, total: i64, deadline_at: Option<i64>) -> SagaEvent {
        OrderPlaced {
            metadata: EventMetadata::first(ORDER, "order"),
            order_id: ORDER.into(),
            customer_id: "c".into(),
            items: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price_cents: total,
            }],
            total: Money {
                amount_minor: total,
                currency: "EUR".into(),
            },
            payment_method: method.into(),
            shipping_address: scenario::address("GB"),
            deadline_at,
            customer_email: None,
        }
        .into()
    }

    fn cancelled(reason: CancellationReason) -> SagaEvent {
        scenario::cancelled(ORDER, reason)
    }

    fn out_of_stock() -> SagaEvent {
        StockReservationFailed {
            metadata: EventMetadata::first(ORDER, "inventory"),
            order_id: ORDER.into(),
            unavailable_skus: vec!["MUG".into()],
            reason: "none left".into(),
        }
        .into()
    }

    fn nothing_yet() -> Standing {
        Standing::default()
    }

    fn authorized() -> Standing {
        PAYMENT.when_all(nothing_yet(), &[placed("tok_visa", 5_000, None)])
    }

    fn status(decision: &Decision) -> Option<PaymentStatus> {
        decision.standing.step.as_ref().map(|p| p.status)
    }

    #[test]
    fn a_placed_order_is_authorized_and_carries_its_deadline_on() -> Result<(), Refused> {
        let decision =
            PAYMENT
                .given(nothing_yet())
                .when(placed("tok_visa", 5_000, Some(NOW + 30_000)))?;
        assert_eq!(status(&decision), Some(PaymentStatus::Authorized));
        assert_eq!(emitted(&decision), [EventType::PaymentAuthorized]);
        let SagaEvent::PaymentAuthorized(authorized) = &decision.emit[0] else {
            panic!("not an authorization");
        };
        assert_eq!(authorized.deadline_at, Some(NOW + 30_000));
        Ok(())
    }

    #[test]
    fn the_receipt_goes_to_the_email_of_a_v3_order_and_nowhere_for_an_older_one()
    -> Result<(), Refused> {
        let SagaEvent::OrderPlaced(mut v3) = placed("tok_visa", 5_000, None) else {
            panic!("not an OrderPlaced");
        };
        v3.customer_email = Some("ada@example.org".into());
        let decision = PAYMENT.given(nothing_yet()).when(v3.into())?;
        let payment = decision.standing.step.expect("a payment");
        assert_eq!(payment.receipt_email.as_deref(), Some("ada@example.org"));

        // What a v1 or v2 writer sent reads as no e-mail: the payment goes through without one.
        let decision = PAYMENT
            .given(nothing_yet())
            .when(placed("tok_visa", 5_000, None))?;
        assert_eq!(status(&decision), Some(PaymentStatus::Authorized));
        assert_eq!(
            decision.standing.step.expect("a payment").receipt_email,
            None
        );
        Ok(())
    }

    #[test]
    fn a_sku_on_two_lines_is_reserved_once_for_their_sum() -> Result<(), Refused> {
        let SagaEvent::OrderPlaced(mut order) = placed("tok_visa", 5_000, None) else {
            panic!("not an OrderPlaced");
        };
        order.items.push(OrderLine {
            sku: "MUG".into(),
            quantity: 3,
            unit_price_cents: 0,
        });
        let decision = PAYMENT.given(nothing_yet()).when(order.into())?;
        let SagaEvent::PaymentAuthorized(authorized) = &decision.emit[0] else {
            panic!("not an authorization");
        };
        assert_eq!(
            authorized.items,
            vec![StockLine {
                sku: "MUG".into(),
                quantity: 4
            }]
        );
        Ok(())
    }

    #[test]
    fn declined_tokens_and_amounts_over_the_limit_are_declined() -> Result<(), Refused> {
        for (method, total) in [("tok_decline", 100), ("tok_visa", 10_001), ("cash", 1)] {
            let decision = PAYMENT
                .given(nothing_yet())
                .when(placed(method, total, None))?;
            assert_eq!(status(&decision), Some(PaymentStatus::Declined), "{method}");
            assert_eq!(emitted(&decision), [EventType::PaymentDeclined]);
        }
        Ok(())
    }

    #[test]
    fn a_risky_order_goes_to_review_uncharged() -> Result<(), Refused> {
        for (method, total) in [("tok_visa", 8_000), ("tok_review", 100)] {
            let decision =
                PAYMENT
                    .given(nothing_yet())
                    .when(placed(method, total, Some(NOW + 30_000)))?;
            assert_eq!(status(&decision), Some(PaymentStatus::InReview), "{method}");
            assert_eq!(emitted(&decision), [EventType::PaymentReviewRequested]);
            let payment = decision.standing.step.expect("a payment");
            assert!(payment.opened_review.is_some(), "the review to start");
        }
        Ok(())
    }

    #[test]
    fn an_order_over_the_limit_is_declined_not_reviewed() -> Result<(), Refused> {
        let decision = PAYMENT
            .given(nothing_yet())
            .when(placed("tok_review", 10_001, None))?;
        assert_eq!(status(&decision), Some(PaymentStatus::Declined));
        Ok(())
    }

    #[test]
    fn an_order_cancelled_in_review_is_closed_with_nothing_refunded() -> Result<(), Refused> {
        let in_review = PAYMENT.when_all(nothing_yet(), &[placed("tok_review", 100, None)]);
        let decision = PAYMENT
            .given(in_review)
            .when(cancelled(CancellationReason::TIMED_OUT))?;
        assert!(
            decision.emit.is_empty(),
            "nothing was charged: nothing to refund"
        );
        assert_eq!(status(&decision), Some(PaymentStatus::InReview));
        assert_eq!(
            decision.standing.closed,
            Some(CancellationReason::TIMED_OUT),
            "the ledger closes the review of a closed order"
        );
        Ok(())
    }

    #[test]
    fn an_order_placed_again_is_not_charged_twice() -> Result<(), Refused> {
        let before = authorized();
        let decision = PAYMENT
            .given(before.clone())
            .when(placed("tok_visa", 5_000, None))?;
        assert!(decision.emit.is_empty());
        assert_eq!(decision.standing, before);
        Ok(())
    }

    #[test]
    fn an_order_placed_after_its_deadline_is_never_charged() -> Result<(), Refused> {
        let decision =
            PAYMENT
                .given(nothing_yet())
                .when(placed("tok_visa", 5_000, Some(NOW - 1)))?;
        assert_eq!(decision.standing.step, None);
        assert_eq!(
            decision.standing.closed,
            Some(CancellationReason::TIMED_OUT)
        );
        assert!(decision.emit.is_empty());
        Ok(())
    }

    #[test]
    fn an_order_placed_after_its_cancellation_is_never_charged() -> Result<(), Refused> {
        let closed = PAYMENT.when_all(nothing_yet(), &[cancelled(CancellationReason::TIMED_OUT)]);
        let decision = PAYMENT
            .given(closed)
            .when(placed("tok_visa", 5_000, None))?;
        assert_eq!(decision.standing.step, None);
        assert!(decision.emit.is_empty());
        Ok(())
    }

    #[test]
    fn a_timed_out_order_is_refunded_and_closed() -> Result<(), Refused> {
        let decision = PAYMENT
            .given(authorized())
            .when(cancelled(CancellationReason::TIMED_OUT))?;
        assert_eq!(status(&decision), Some(PaymentStatus::Refunded));
        assert_eq!(
            decision.standing.closed,
            Some(CancellationReason::TIMED_OUT)
        );
        assert_eq!(emitted(&decision), [EventType::PaymentRefunded]);
        Ok(())
    }

    #[test]
    fn held_money_is_refunded_once_whoever_asks() -> Result<(), Refused> {
        let refunded = PAYMENT.when_all(authorized(), &[out_of_stock()]);
        assert_eq!(
            refunded.step.as_ref().map(|p| p.status),
            Some(PaymentStatus::Refunded)
        );
        for again in [out_of_stock(), cancelled(CancellationReason::OUT_OF_STOCK)] {
            let decision = PAYMENT.given(refunded.clone()).when(again)?;
            assert!(decision.emit.is_empty(), "refunded twice");
        }
        Ok(())
    }

    #[test]
    fn a_declined_payment_owes_no_refund() -> Result<(), Refused> {
        let declined = PAYMENT.when_all(nothing_yet(), &[placed("tok_decline", 100, None)]);
        let decision = PAYMENT
            .given(declined)
            .when(cancelled(CancellationReason::PAYMENT_DECLINED))?;
        assert_eq!(status(&decision), Some(PaymentStatus::Declined));
        assert!(decision.emit.is_empty());
        Ok(())
    }

    #[test]
    fn a_failed_step_for_an_order_without_payment_is_refused() {
        for event in [out_of_stock(), scenario::shipment_failed(ORDER)] {
            assert!(PAYMENT.given(nothing_yet()).when(event).is_err());
        }
    }
}
