//! Two members of one consumer group against the real broker: when the second joins, the first
//! lets go of the partitions it loses before their new owner starts on them.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use saga_events::{EventType, SagaEvent, Service};
use saga_messaging::inspect::reader::committed_offsets;
use saga_messaging::{
    Arrival, ConsumerSettings, ConsumerSetup, EventConsumer, Health, Outbox, Reactions, Refusal,
};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 4;
const EVENTS: usize = 400;

/// Who handled which record, in the order it happened.
type Log = Arc<Mutex<Vec<(&'static str, i32, i64)>>>;

/// Takes its time over each event, so that the first member still holds records of a partition
/// when the second joins.
struct Slow {
    member: &'static str,
    log: Log,
}

impl Reactions for Slow {
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
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(mut log) = self.log.lock() {
                log.push((
                    self.member,
                    arrival.delivery.partition,
                    arrival.delivery.offset,
                ));
            }
            record_effect(tx, arrival.event).await?;
        }
        Ok(vec![Vec::new(); events.len()])
    }
}

fn member(iso: &Isolated, name: &'static str, log: &Log) -> EventConsumer {
    EventConsumer::new(
        ConsumerSetup {
            service: Service::Order,
            group: format!("{}rebalance", iso.topics.prefix()),
            subscriptions: vec![iso.topics.events(Service::Order)],
            pool: iso.pool.clone(),
            outbox: Outbox::new(iso.codec.clone()),
            kafka: iso.kafka.clone(),
            // One lane, small batches: the first member alone would need seconds, so the
            // second joins while it still holds records of every partition.
            settings: ConsumerSettings {
                batch_size: 20,
                lanes: 1,
                ..ConsumerSettings::default()
            },
            health: Health::new(),
        },
        Slow {
            member: name,
            log: log.clone(),
        },
    )
}

#[tokio::test]
async fn a_revoked_partition_is_let_go_before_its_new_owner_starts() -> anyhow::Result<()> {
    let iso = Isolated::new(PARTITIONS).await?;
    let events: Vec<SagaEvent> = (0..EVENTS)
        .map(|i| event(&format!("rebalance-{}", i % 40)))
        .collect();
    produce(&iso, &events.iter().collect::<Vec<_>>()).await?;

    let log: Log = Arc::default();
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(member(&iso, "first", &log).run(shutdown.clone()));
    eventually("the first member under way", DEADLINE, || async {
        let handled = log.lock().map(|l| l.len()).unwrap_or(0);
        Ok((handled >= 40, format!("{handled} handled")))
    })
    .await?;
    let second = tokio::spawn(member(&iso, "second", &log).run(shutdown.clone()));

    eventually("every event applied", DEADLINE, || async {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(&iso.pool)
            .await?;
        Ok((applied == EVENTS as i64, format!("{applied} applied")))
    })
    .await?;
    let group = format!("{}rebalance", iso.topics.prefix());
    let topic = iso.topics.events(Service::Order);
    let kafka = iso.kafka.clone();
    eventually("every offset committed", DEADLINE, || async {
        let (kafka, group, topic) = (kafka.clone(), group.clone(), topic.clone());
        let committed = tokio::task::spawn_blocking(move || {
            committed_offsets(&kafka, &group, &topic, &(0..PARTITIONS).collect::<Vec<_>>())
        })
        .await??;
        let total: i64 = committed.iter().filter_map(|(_, o)| *o).sum();
        Ok((total == EVENTS as i64, format!("{committed:?}")))
    })
    .await?;
    shutdown.cancel();
    first.await??;
    second.await??;

    let log = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut by_partition: BTreeMap<i32, Vec<&'static str>> = BTreeMap::new();
    for (member, partition, _) in &log {
        by_partition.entry(*partition).or_default().push(member);
    }
    let mut moved = 0;
    for (partition, members) in &by_partition {
        if let Some(taken_over) = members.iter().position(|m| *m == "second") {
            moved += usize::from(members[..taken_over].contains(&"first"));
            assert!(
                members[taken_over..].iter().all(|m| *m == "second"),
                "partition {partition}: the first member went on after the second took over: \
                 {members:?}"
            );
        }
    }
    assert!(
        moved > 0,
        "no partition moved from the first member to the second: {by_partition:?}"
    );
    Ok(())
}
