//! The carrier Shipping books through: a trait, as a carrier's remote API would be seen, and the
//! stand-in this project runs behind it.
//!
//! The stand-in behaves like a remote API with deterministic rules by postal code, so that every
//! path of a fulfilment can be driven from outside:
//!
//! | postal code | what the carrier does |
//! |---|---|
//! | `LABEL-FAIL` | refuses the label |
//! | `PICKUP-FAIL` | refuses the pickup |
//! | `FLAKY` | each call fails twice (unavailable), then works |
//! | `PICKUP-SLOW` | takes 1 s to book a pickup |
//!
//! It honours an idempotency key per call, as a carrier's API does: a key it answered before gets
//! the same answer (the same label id), whatever happened to the caller in between. It keeps
//! what it answered in a table of its own (`standin_carrier_calls`), standing in for the
//! carrier's side; nothing of Shipping's reads it.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use thiserror::Error;

/// What a carrier is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Allocate,
    Label,
    Pickup,
    VoidLabel,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Call::Allocate => "allocate",
            Call::Label => "label",
            Call::Pickup => "pickup",
            Call::VoidLabel => "void_label",
        }
    }

    /// The prefix of the ids the carrier gives.
    fn id_prefix(self) -> &'static str {
        match self {
            Call::Allocate => "depot",
            Call::Label => "label",
            Call::Pickup => "pickup",
            Call::VoidLabel => "void",
        }
    }
}

/// Why a carrier call did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CarrierError {
    /// Try again later: the carrier is unavailable or did not answer.
    #[error("the carrier is unavailable: {0}")]
    Unavailable(String),
    /// The carrier said no, for good.
    #[error("{0}")]
    Refused(String),
}

/// A carrier's API: one call per step, each under an idempotency key the carrier honours.
pub trait Carrier: Send + Sync + 'static {
    /// Asks for `call` for a parcel to `postal_code`; answers `{"id": …}`.
    fn call(
        &self,
        call: Call,
        key: &str,
        postal_code: &str,
    ) -> impl Future<Output = Result<Value, CarrierError>> + Send;
}

/// The stand-in carrier.
#[derive(Debug, Clone)]
pub struct StandIn {
    pool: PgPool,
}

impl StandIn {
    /// The stand-in keeps its bookkeeping in Shipping's database, through connections of its own
    /// that commit without waiting for the disk (`synchronous_commit = off`): what it books
    /// stands for the carrier's side, not Shipping's, and a real carrier's latency is not the
    /// saga's to pay twice per call. A Postgres crash can forget its last answers (a clean stop
    /// flushes them); Shipping's own state and outbox commit durably as before.
    pub fn new(pool: &PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        Self {
            pool: saga_runtime::pool_options(8).connect_lazy_with(options),
        }
    }
}

/// What the stand-in's rules make of a call's attempt (1 for the first call under a key).
pub fn rule(call: Call, postal_code: &str, attempt: i32) -> Result<(), CarrierError> {
    let failing = failing_attempts(postal_code);
    if attempt <= failing {
        return Err(CarrierError::Unavailable(format!(
            "{} attempt {attempt} failed (FLAKY fails twice)",
            call.as_str()
        )));
    }
    refusal(call, postal_code)
}

/// How many attempts under one key fail (unavailable) before one goes through.
fn failing_attempts(postal_code: &str) -> i32 {
    if postal_code.trim().eq_ignore_ascii_case("FLAKY") {
        2
    } else {
        0
    }
}

/// Whether the carrier refuses `call` for good, whatever the attempt.
fn refusal(call: Call, postal_code: &str) -> Result<(), CarrierError> {
    let code = postal_code.trim().to_ascii_uppercase();
    match (code.as_str(), call) {
        ("LABEL-FAIL", Call::Label) => Err(CarrierError::Refused(
            "the carrier refuses labels to LABEL-FAIL".into(),
        )),
        ("PICKUP-FAIL", Call::Pickup) => Err(CarrierError::Refused(
            "the carrier refuses pickups at PICKUP-FAIL".into(),
        )),
        _ => Ok(()),
    }
}

impl Carrier for StandIn {
    async fn call(&self, call: Call, key: &str, postal_code: &str) -> Result<Value, CarrierError> {
        let unavailable = |e: sqlx::Error| CarrierError::Unavailable(e.to_string());
        // A slow carrier is slow before it answers: a caller killed meanwhile left nothing booked.
        if call == Call::Pickup && postal_code.trim().eq_ignore_ascii_case("PICKUP-SLOW") {
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        // One statement: the call is counted and, if the rules let this attempt through,
        // answered with a fresh id, unless the key was answered before (then that answer is
        // kept). Of two calls racing on one key, the second waits on the first's row and gets
        // its answer.
        let fresh = json!({
            "id": format!("{}-{}", call.id_prefix(), &uuid::Uuid::now_v7().simple().to_string()[20..])
        });
        let refused = refusal(call, postal_code).is_err();
        let (attempt, answer): (i32, Option<Value>) = sqlx::query_as(
            "INSERT INTO standin_carrier_calls (idempotency_key, call, answer)
             VALUES ($1, $2, CASE WHEN NOT $4 AND 1 > $5 THEN $3 END)
             ON CONFLICT (idempotency_key) DO UPDATE
                 SET attempts = standin_carrier_calls.attempts + 1,
                     answer = COALESCE(standin_carrier_calls.answer,
                         CASE WHEN NOT $4 AND standin_carrier_calls.attempts + 1 > $5 THEN $3 END)
             RETURNING attempts, answer",
        )
        .bind(key)
        .bind(call.as_str())
        .bind(&fresh)
        .bind(refused)
        .bind(failing_attempts(postal_code))
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        match answer {
            Some(answer) => Ok(answer),
            None => Err(rule(call, postal_code, attempt).err().unwrap_or_else(|| {
                CarrierError::Unavailable(format!("{} was not answered", call.as_str()))
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_follows_its_postal_code_rules() {
        assert!(matches!(
            rule(Call::Label, "LABEL-FAIL", 1),
            Err(CarrierError::Refused(_))
        ));
        assert_eq!(rule(Call::Allocate, "LABEL-FAIL", 1), Ok(()));
        assert!(matches!(
            rule(Call::Pickup, "pickup-fail", 1),
            Err(CarrierError::Refused(_))
        ));
        assert_eq!(rule(Call::Label, "PICKUP-FAIL", 1), Ok(()));
        for attempt in [1, 2] {
            assert!(matches!(
                rule(Call::Label, "FLAKY", attempt),
                Err(CarrierError::Unavailable(_))
            ));
        }
        assert_eq!(rule(Call::Label, "FLAKY", 3), Ok(()));
        assert_eq!(rule(Call::Pickup, "N1 9GU", 1), Ok(()));
    }
}
