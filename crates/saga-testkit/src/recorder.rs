//! [`Recorder`]: the reactions of the consumer tests. Each event applied is one row in `effects`
//! (see [`effects_migrator`]), so a test counts applications row by row: an event applied twice
//! shows as two rows. Events can be made to fail on purpose, once or until lifted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use saga_events::{EventType, SagaEvent};
use saga_messaging::{Arrival, HandlerError, Reactions, Refusal};
use sqlx::PgConnection;

/// The `effects` table the recorder writes: apply it with `saga_messaging::migrate`.
pub fn effects_migrator() -> sqlx::migrate::Migrator {
    saga_messaging::embedded_migrations!()
}

/// Records every event it applies; fails, on its own merits, the events it is told to.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Event ids that fail on their first attempt only.
    fail_once: Arc<Mutex<HashSet<String>>>,
    /// Orders whose events fail at every attempt, until [`Recorder::lift`].
    failing_orders: Arc<Mutex<HashSet<String>>>,
}

fn locked<T>(set: &Mutex<T>) -> MutexGuard<'_, T> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// The event `event_id` fails on its first attempt.
    pub fn fail_once(self, event_id: &str) -> Self {
        locked(&self.fail_once).insert(event_id.to_owned());
        self
    }

    /// Every event of `order_id` fails until [`Recorder::lift`].
    pub fn fail_order(self, order_id: &str) -> Self {
        locked(&self.failing_orders).insert(order_id.to_owned());
        self
    }

    /// The failing orders succeed from now on.
    pub fn lift(&self) {
        locked(&self.failing_orders).clear();
    }

    fn fails(&self, event: &SagaEvent) -> bool {
        locked(&self.fail_once).remove(&event.metadata().event_id)
            || locked(&self.failing_orders).contains(event.order_id())
    }
}

impl Reactions for Recorder {
    type Loaded = ();

    fn wants(&self, _event_type: EventType) -> bool {
        true
    }

    async fn react(
        &self,
        tx: &mut PgConnection,
        events: &[Arrival<'_>],
        _loaded: (),
        _deferred: &mut saga_messaging::DeferredWrites,
    ) -> Result<Vec<Vec<SagaEvent>>, Refusal> {
        for (index, arrival) in events.iter().enumerate() {
            if self.fails(arrival.event) {
                return Err(Refusal::at(
                    index,
                    HandlerError::rejected("failing on purpose"),
                ));
            }
            record_effect(tx, arrival.event).await?;
        }
        Ok(vec![Vec::new(); events.len()])
    }
}

/// One row in `effects` for an applied event.
pub async fn record_effect(tx: &mut PgConnection, event: &SagaEvent) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO effects (event_id, order_id, event_type) VALUES ($1, $2, $3)")
        .bind(&event.metadata().event_id)
        .bind(event.order_id())
        .bind(event.event_type().name())
        .execute(tx)
        .await?;
    Ok(())
}
