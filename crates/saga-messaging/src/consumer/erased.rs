//! A service's [`Reactions`] as the consumer's pipeline holds them: behind a trait object, with
//! their futures boxed and what `load` read type-erased.
//!
//! Why: a release build compiles a generic function, and every `async` body it polls, in the
//! crate that names its concrete types, and shares none of those copies across crates. A pipeline
//! generic over the reactions (lanes, batches, retries, dead letters) was therefore compiled again
//! into each of the five services. Behind this one object-safe trait it is compiled once, here;
//! what a service's build still compiles of it is the blanket `impl` below. The cost at run time
//! is two boxed futures and one boxed value per batch, next to a database transaction.

use std::any::Any;

use futures::future::BoxFuture;
use saga_events::{EventType, SagaEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Arrival, Reactions, Refusal};
use crate::deferred::DeferredWrites;
use crate::error::HandlerError;
use crate::inbox;

/// What [`Reactions::load`] read, until [`Reactions::react`] takes it back.
pub(super) type Loaded = Box<dyn Any + Send>;

/// [`Reactions`], object-safe.
pub(super) trait ErasedReactions: Send + Sync + 'static {
    fn wants(&self, event_type: EventType) -> bool;

    fn is_urgent(&self, event_type: EventType) -> bool;

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        questions: &'a [(Option<Uuid>, String)],
        orders: &'a [Uuid],
    ) -> BoxFuture<'a, Result<(Vec<inbox::Standing>, Loaded), sqlx::Error>>;

    fn react<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        loaded: Loaded,
        deferred: &'a mut DeferredWrites,
    ) -> BoxFuture<'a, Result<Vec<Vec<SagaEvent>>, Refusal>>;
}

impl<R: Reactions> ErasedReactions for R {
    fn wants(&self, event_type: EventType) -> bool {
        Reactions::wants(self, event_type)
    }

    fn is_urgent(&self, event_type: EventType) -> bool {
        Reactions::is_urgent(self, event_type)
    }

    fn load<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        questions: &'a [(Option<Uuid>, String)],
        orders: &'a [Uuid],
    ) -> BoxFuture<'a, Result<(Vec<inbox::Standing>, Loaded), sqlx::Error>> {
        Box::pin(async move {
            let (standings, loaded) = Reactions::load(self, tx, questions, orders).await?;
            Ok((standings, Box::new(loaded) as Loaded))
        })
    }

    fn react<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        loaded: Loaded,
        deferred: &'a mut DeferredWrites,
    ) -> BoxFuture<'a, Result<Vec<Vec<SagaEvent>>, Refusal>> {
        Box::pin(async move {
            // Only this impl's `load` makes the value, so the type always matches; a mismatch
            // would be a bug in the consumer, refused like any batch that cannot be handled.
            let loaded = loaded.downcast::<R::Loaded>().map_err(|_| {
                Refusal::from(HandlerError::rejected(
                    "the consumer handed the reactions state another service loaded",
                ))
            })?;
            Reactions::react(self, tx, events, *loaded, deferred).await
        })
    }
}
