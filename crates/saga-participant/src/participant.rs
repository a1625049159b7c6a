//! The two halves a participant writes, and what passes between them and the batch: its rules
//! ([`Participant`], pure, in the service's `domain.rs`) and its own tables ([`Ledger`], the
//! service's `store.rs`), the changes a batch hands the ledger to write, and the helpers its SQL
//! shares.

use std::collections::HashMap;
use std::fmt::Debug;

use saga_events::{CancellationReason, SagaEvent, Service};
use saga_messaging::{Arrival, DeferredWrites};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::standing::{Decision, Refused, Standing};

/// What a participant knows of several orders, by order id (orders it knows nothing of are
/// absent).
pub type Standings<S> = HashMap<Uuid, Standing<S>>;

/// A participant's rules: what each event it hears does to an order, decided without I/O from
/// the event and what the participant knows of the order.
pub trait Participant: Sized + Send + Sync + 'static {
    /// The service these are the rules of: it hears only the events it reacts to
    /// ([`Service::reacts_to`]).
    const SERVICE: Service;

    /// What the participant does for an order, kept in its own table: Payment's payment,
    /// Inventory's reservation, Shipping's shipment.
    type Step: Clone + PartialEq + Debug + Send + Sync;

    /// What the decisions of one batch share besides their orders, read before the first and
    /// written after the last: Inventory's stock levels. `()` where orders are independent.
    type Context: Clone + Default + Debug + Send + Sync;

    /// Decides the reaction to `event` for an order standing as `standing`, at `now_ms`,
    /// changing `context` as it goes.
    fn decide(
        &self,
        standing: &Standing<Self::Step>,
        event: &SagaEvent,
        context: &mut Self::Context,
        now_ms: i64,
    ) -> Result<Decision<Self::Step>, Refused>;
}

/// A participant's own tables: the SQL of a batch that is not the same for every participant,
/// one statement per table at most whatever the size of the batch.
pub trait Ledger: Participant {
    /// The query for the steps taken for a batch's orders: `$1` is their ids (a `uuid[]`), and
    /// each row is one order's step, read by [`Ledger::read`].
    const LOAD: &'static str;

    /// A row of [`Ledger::LOAD`].
    type Row: for<'r> FromRow<'r, PgRow> + Send + Unpin;

    /// The order a row of [`Ledger::LOAD`] is of, and its step ([`corrupt`] if the row holds a
    /// value this code never writes).
    fn read(row: Self::Row) -> Result<(Uuid, Self::Step), sqlx::Error>;

    /// The batch's context, read (and locked, if others may change it meanwhile) before
    /// anything is decided, from the batch's events and what is `known` of their orders. By
    /// default, the context's default: `()` needs no reading.
    fn prepare<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        known: &'a Standings<Self::Step>,
    ) -> impl Future<Output = Result<Self::Context, sqlx::Error>> + Send + 'a {
        let _ = (tx, events, known);
        std::future::ready(Ok(Self::Context::default()))
    }

    /// Writes what the batch changed: into `deferred` what nothing later in the transaction
    /// reads, for the consumer's last statement to carry (one round trip fewer each), and at
    /// once what something does (a workflow started or told in the same batch, say, whose
    /// statements update the rows written here).
    fn save<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        batch: &'a Changes<'a, Self>,
        deferred: &'a mut DeferredWrites,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;
}

/// What a batch decided, for [`Ledger::save`].
#[derive(Debug)]
pub struct Changes<'a, P: Participant> {
    /// Every order whose standing the batch changed and that has a step, once each.
    pub steps: Vec<Change<'a, P::Step>>,
    /// The context as [`Ledger::prepare`] read it…
    pub prepared: P::Context,
    /// …and as the batch's decisions left it.
    pub decided: P::Context,
}

/// The step of an order whose standing a batch changed (the step itself, or only whether the
/// order is closed).
#[derive(Debug)]
pub struct Change<'a, S> {
    pub order_id: Uuid,
    /// The step as loaded before the batch; `None`: the batch took it.
    pub loaded: Option<&'a S>,
    /// The step as the batch left it.
    pub step: &'a S,
    /// Why the order is closed, if it is (by this batch or before).
    pub closed: Option<CancellationReason>,
}

// Copy whatever `S` is: a change only borrows its steps.
impl<S> Clone for Change<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Change<'_, S> {}

/// One column of a statement that writes `changes` with `unnest`: `value` of each, in order.
pub fn column<'a, S, T>(changes: &[Change<'a, S>], value: impl Fn(Change<'a, S>) -> T) -> Vec<T> {
    changes.iter().copied().map(value).collect()
}

/// A stored value this code never writes (a status or reason it cannot read back).
pub fn corrupt(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}
