//! Payment rules without I/O.

use saga_events::CancellationReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Authorized,
    Declined,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            PaymentStatus::Authorized,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The token that is always declined, so that the declined path can be driven from outside.
pub const DECLINED_TOKEN: &str = "tok_decline";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Authorize,
    Decline(String),
}

/// Deterministic rules: `tok_decline` and any amount above `limit_cents` are declined, other
/// `tok_…` tokens are authorized, anything else is not a method this service takes.
pub fn decide(payment_method: &str, amount_cents: i64, limit_cents: i64) -> Decision {
    if payment_method == DECLINED_TOKEN {
        Decision::Decline("card declined".into())
    } else if !payment_method.starts_with("tok_") {
        Decision::Decline(format!("unsupported payment method {payment_method:?}"))
    } else if amount_cents > limit_cents {
        Decision::Decline(format!(
            "amount {amount_cents} exceeds the limit of {limit_cents}"
        ))
    } else if amount_cents < 0 {
        Decision::Decline(format!("negative amount {amount_cents}"))
    } else {
        Decision::Authorize
    }
}

/// A refund is owed only for money actually held; a declined or already refunded payment owes
/// nothing, so a repeated compensation request is harmless.
pub fn refund(
    status: PaymentStatus,
    reason: CancellationReason,
) -> Option<(PaymentStatus, CancellationReason)> {
    (status == PaymentStatus::Authorized).then_some((PaymentStatus::Refunded, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_are_deterministic() {
        assert_eq!(decide("tok_visa", 5_000, 10_000), Decision::Authorize);
        assert_eq!(decide("tok_visa", 10_000, 10_000), Decision::Authorize);
        assert!(matches!(
            decide("tok_decline", 1, 10_000),
            Decision::Decline(_)
        ));
        assert!(
            matches!(decide("tok_visa", 10_001, 10_000), Decision::Decline(r) if r.contains("limit"))
        );
        assert!(matches!(decide("cash", 1, 10_000), Decision::Decline(_)));
    }

    #[test]
    fn only_held_money_is_refunded_and_only_once() {
        use CancellationReason::OUT_OF_STOCK;
        assert_eq!(
            refund(PaymentStatus::Authorized, OUT_OF_STOCK),
            Some((PaymentStatus::Refunded, OUT_OF_STOCK))
        );
        assert_eq!(refund(PaymentStatus::Refunded, OUT_OF_STOCK), None);
        assert_eq!(refund(PaymentStatus::Declined, OUT_OF_STOCK), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            PaymentStatus::Authorized,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
        ] {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
    }
}
