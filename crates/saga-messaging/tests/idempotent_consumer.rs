//! The idempotent consumer against the real broker and Postgres: a redelivered event changes
//! nothing, and no offset is committed past a message whose transaction did not commit.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::inspect::reader::committed_offset;
use saga_messaging::{
    Arrival, ConsumerSettings, ConsumerSetup, EventConsumer, HandlerError, Health, Outbox,
    Reactions, Refusal,
};
use sqlx::PgConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

/// Records each applied event in `effects`; events of the held order fail as if the database
/// were away, until the test lets go.
struct Recording {
    held_order: Arc<Mutex<Option<String>>>,
    attempts: mpsc::UnboundedSender<String>,
}

impl Reactions for Recording {
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
        for arrival in events {
            let event = arrival.event;
            let _ = self.attempts.send(event.metadata().event_id.clone());
            let held = self
                .held_order
                .lock()
                .map(|held| held.as_deref() == Some(event.order_id()))
                .unwrap_or(false);
            if held {
                return Err(HandlerError::Database(sqlx::Error::PoolTimedOut).into());
            }
            record_effect(tx, event).await?;
        }
        Ok(vec![Vec::new(); events.len()])
    }
}

fn group(iso: &Isolated) -> String {
    format!("{}test-consumer", iso.topics.prefix())
}

struct Consumer {
    consumer: EventConsumer,
    attempts: mpsc::UnboundedReceiver<String>,
    held: Arc<Mutex<Option<String>>>,
    health: Health,
}

fn consumer(iso: &Isolated, held_order: Option<&str>, settings: ConsumerSettings) -> Consumer {
    let (attempts, seen) = mpsc::unbounded_channel();
    let held = Arc::new(Mutex::new(held_order.map(order)));
    let health = Health::new();
    let consumer = EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: group(iso),
            subscriptions: vec![iso.topics.events(Service::Order)],
            pool: iso.pool.clone(),
            outbox: Outbox::new(iso.codec.clone()),
            kafka: iso.kafka.clone(),
            settings,
            health: health.clone(),
        },
        Recording {
            held_order: held.clone(),
            attempts,
        },
    );
    Consumer {
        consumer,
        attempts: seen,
        held,
        health,
    }
}

async fn effects(iso: &Isolated) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT event_id FROM effects ORDER BY event_id")
            .fetch_all(&iso.pool)
            .await?,
    )
}

async fn committed(iso: &Isolated) -> anyhow::Result<Option<i64>> {
    let kafka = iso.kafka.clone();
    let group = group(iso);
    let topic = iso.topics.events(Service::Order);
    Ok(tokio::task::spawn_blocking(move || committed_offset(&kafka, &group, &topic, 0)).await??)
}

#[tokio::test]
async fn a_redelivered_event_is_applied_once() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let first = event("order-a");
    let second = event("order-b");
    produce(&iso, &[&first, &first, &second]).await?;

    let consumer = consumer(&iso, None, ConsumerSettings::default()).consumer;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually("all three records committed", DEADLINE, || async {
        let offset = committed(&iso).await?;
        Ok((offset == Some(3), format!("committed {offset:?}")))
    })
    .await?;
    shutdown.cancel();
    running.await??;

    let mut expected = vec![
        first.metadata().event_id.clone(),
        second.metadata().event_id.clone(),
    ];
    expected.sort();
    assert_eq!(
        effects(&iso).await?,
        expected,
        "each event applied exactly once"
    );
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&iso.pool)
        .await?;
    assert_eq!(inbox, 2);
    Ok(())
}

#[tokio::test]
async fn no_offset_is_committed_past_an_unfinished_message() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let before = event("order-ok");
    let held = event("order-held");
    let after = event("order-later");
    produce(&iso, &[&before, &held, &after]).await?;

    // The first consumer applies `before`, then keeps failing on `held`.
    let Consumer {
        consumer: first,
        mut attempts,
        ..
    } = consumer(&iso, Some("order-held"), ConsumerSettings::default());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(first.run(shutdown.clone()));
    let held_id = held.metadata().event_id.clone();
    tokio::time::timeout(DEADLINE, async {
        while let Some(id) = attempts.recv().await {
            if id == held_id {
                break;
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the held event was never attempted"))?;
    shutdown.cancel();
    running.await??;

    // `before` may have been handled in a transaction of its own, or in one batch with `held`
    // (then it waits with it): either way nothing past `held` is applied or committed.
    let applied = effects(&iso).await?;
    assert!(
        applied.is_empty() || applied == vec![before.metadata().event_id.clone()],
        "only what came before the held message may be applied: {applied:?}"
    );
    let offset = committed(&iso).await?;
    assert!(
        offset.is_none_or(|o| o <= 1),
        "the committed offset never passes the held message: {offset:?}"
    );

    // A successor starts at the held message and applies it and the rest, each once.
    let second = consumer(&iso, None, ConsumerSettings::default()).consumer;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(second.run(shutdown.clone()));
    eventually("the rest committed", DEADLINE, || async {
        let offset = committed(&iso).await?;
        Ok((offset == Some(3), format!("committed {offset:?}")))
    })
    .await?;
    shutdown.cancel();
    running.await??;
    let mut expected: Vec<String> = [&before, &held, &after]
        .iter()
        .map(|e| e.metadata().event_id.clone())
        .collect();
    expected.sort();
    assert_eq!(effects(&iso).await?, expected);
    Ok(())
}

/// A partition that waits on the database for longer than `stuck_after` is named, with the
/// reason, in what `/readyz` reports; once it moves, the name goes away.
#[tokio::test]
async fn a_partition_retrying_in_place_too_long_is_named_until_it_moves() -> anyhow::Result<()> {
    let iso = Isolated::new(1).await?;
    let held = event("order-stuck");
    produce(&iso, &[&held]).await?;
    let stuck = consumer(
        &iso,
        Some("order-stuck"),
        ConsumerSettings {
            stuck_after: Duration::from_secs(1),
            ..ConsumerSettings::default()
        },
    );
    let health = stuck.health.clone();
    let release = stuck.held.clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(stuck.consumer.run(shutdown.clone()));
    let partition = format!("{}[0]", iso.topics.events(Service::Order));
    eventually("the stuck partition to be named", DEADLINE, || async {
        let problems = health.problems();
        let named = problems
            .iter()
            .any(|p| p.contains(&partition) && p.contains("retrying in place"));
        Ok((named, format!("{problems:?}")))
    })
    .await?;

    *release.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = None;
    eventually("the partition to move again", DEADLINE, || async {
        let problems = health.problems();
        Ok((problems.is_empty(), format!("{problems:?}")))
    })
    .await?;
    assert_eq!(effects(&iso).await?, vec![held.metadata().event_id.clone()]);
    shutdown.cancel();
    running.await??;
    Ok(())
}
