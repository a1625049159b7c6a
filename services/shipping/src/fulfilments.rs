//! Fulfilments as a durable workflow (`saga_workflow`): each step's call to the carrier, and what
//! a fulfilment's state writes to the shipment (its status, and the steps done).

use std::sync::Arc;

use saga_workflow::{Conflict, Deferred, Perform, StepFailure, Transition, Workflow};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use crate::carrier::{Call, Carrier, CarrierError, StandIn};
use crate::domain::Destinations;
use crate::fulfilment::{self, Fulfilment, FulfilmentInput, Step};

/// The fulfilment workflow.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fulfilments;

/// What runs a fulfilment's steps: the carrier they call, and the destinations served.
#[derive(Debug, Clone)]
pub struct Fulfilling {
    pub carrier: Arc<StandIn>,
    pub destinations: Arc<Destinations>,
}

impl Workflow for Fulfilments {
    const NAME: &'static str = "fulfilment";
    type State = Fulfilment;
    type Input = FulfilmentInput;

    fn transition(
        &self,
        state: &Fulfilment,
        input: &FulfilmentInput,
        now_ms: i64,
    ) -> Result<Transition<Fulfilment>, Conflict> {
        fulfilment::transition(state, input, now_ms)
    }

    fn label(&self, state: &Fulfilment) -> &'static str {
        state.phase.as_str()
    }

    fn waiting_for(&self, state: &Fulfilment) -> Option<&'static str> {
        state.phase.is_running().then_some("carrier")
    }

    /// Fulfilments have no timers: the saga's deadline bounds them.
    fn timer_fired(&self, _timer: &str) -> Option<FulfilmentInput> {
        None
    }

    /// The shipment follows its fulfilment: its status, its failure, the steps done.
    fn persist(&self, order_id: Uuid, state: &Fulfilment) -> Option<Deferred> {
        let status = state.shipment_status().as_str();
        let failure = state.failure.clone();
        let steps = Json(state.steps.clone());
        Some(Deferred::new(
            "UPDATE shipments
             SET status = $1, failure_reason = coalesce($2, failure_reason), steps = $3,
                 updated_at = now()
             WHERE order_id = $4",
            move |query| query.bind(status).bind(failure).bind(steps).bind(order_id),
        ))
    }

    fn step_finished(&self, step: &str, outcome: Result<Value, String>) -> Option<FulfilmentInput> {
        let step = Step::parse(step)?;
        Some(match outcome {
            Ok(result) => FulfilmentInput::Succeeded { step, result },
            Err(reason) => FulfilmentInput::Failed { step, reason },
        })
    }
}

impl Perform<Fulfilments> for Fulfilling {
    async fn perform(
        &self,
        _instance: Uuid,
        state: &Fulfilment,
        step: &str,
        key: &str,
    ) -> Result<Value, StepFailure> {
        let step = Step::parse(step)
            .ok_or_else(|| StepFailure::permanent(format!("no fulfilment step {step}")))?;
        let call = match step {
            Step::Allocate => {
                // The country rule is Shipping's own: a destination not served fails here.
                if let Some(refusal) = self.destinations.refusal(&state.address.country) {
                    return Err(StepFailure::permanent(refusal));
                }
                Call::Allocate
            }
            Step::Label => Call::Label,
            Step::Pickup => Call::Pickup,
            Step::VoidLabel => Call::VoidLabel,
        };
        self.carrier
            .call(call, key, &state.address.postal_code)
            .await
            .map_err(|error| match error {
                CarrierError::Unavailable(reason) => StepFailure::transient(reason),
                CarrierError::Refused(reason) => StepFailure::permanent(reason),
            })
    }
}
