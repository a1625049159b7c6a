//! Replicas share the work and survive losing one. Two replicas of every service run under a
//! load of a few hundred mixed orders, placed through both Order replicas; mid-load one replica
//! of each service is killed with -9, then Payment is scaled from 1 to 3 and back to 1. Every
//! order ends, every consumer group catches up with every partition owned, and the audit is
//! clean. Whatever happens, the test leaves one replica of each service, as it found them.
//!
//! Black-box: replicas are started and stopped with `deploy/local/stack.sh scale|kill`, what each
//! group's members own is read from the group coordinator (what `sagactl topics` shows).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use saga_e2e::*;
use saga_events::{Service, TopicNames};
use saga_messaging::KafkaSettings;
use saga_messaging::inspect::groups;

const ORDERS: usize = 300;
/// Orders placed per second: slow enough for the kill and both scale steps to happen mid-load.
const PACE_PER_SECOND: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_through_a_kill_and_a_scale_step() -> anyhow::Result<()> {
    let outcome = run().await;
    // One replica of each again, whatever happened.
    for service in Service::ALL {
        stack_blocking(&["scale", service.name(), "1"], &[]).await?;
    }
    outcome
}

async fn run() -> anyhow::Result<()> {
    for service in Service::ALL {
        stack_blocking(&["scale", service.name(), "2"], &[]).await?;
    }
    for service in Service::ALL {
        wait_owned(service, 2).await?;
    }

    let api = Api::from_env()?;
    let plenty = unique_sku("replicas");
    let scarce = unique_sku("replicas-scarce");
    api.set_stock(&plenty, 10_000).await?;
    api.set_stock(&scarce, 20).await?;

    let placed = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(place_all(api.clone(), plenty, scarce, placed.clone()));

    wait_counted(&placed, ORDERS / 4).await?;
    for service in Service::ALL {
        stack_blocking(&["kill", &format!("{}-2", service.name())], &[]).await?;
    }
    println!(
        "killed one replica of each service at {} orders",
        placed.load(Ordering::Relaxed)
    );
    wait_counted(&placed, ORDERS / 2).await?;
    stack_blocking(&["scale", "payment", "3"], &[]).await?;
    println!(
        "payment at 3 replicas at {} orders",
        placed.load(Ordering::Relaxed)
    );
    wait_counted(&placed, 3 * ORDERS / 4).await?;
    stack_blocking(&["scale", "payment", "1"], &[]).await?;
    println!(
        "payment back to 1 replica at {} orders",
        placed.load(Ordering::Relaxed)
    );

    let order_ids = load.await??;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for order_id in &order_ids {
        let order = api.wait_terminal(order_id, SETTLE).await?;
        let label = format!(
            "{} {}",
            order["status"].as_str().unwrap_or("?"),
            order["cancellation_reason"].as_str().unwrap_or("")
        );
        *statuses.entry(label.trim().to_owned()).or_default() += 1;
    }
    println!("{} orders ended: {statuses:?}", order_ids.len());
    for service in Service::ALL {
        wait_caught_up(service).await?;
    }
    // Order, Inventory and Shipping lost replica 2 and run on one; Payment was scaled to one.
    for service in Service::ALL {
        wait_owned(service, 1).await?;
    }
    assert_audit_clean("replicas killed and scaled mid-load")?;
    Ok(())
}

/// Places [`ORDERS`] orders at a steady pace, alternating between the two Order replicas, with
/// an `Idempotency-Key` so that a request a killed replica may or may not have taken is simply
/// sent again to the other one. A mix: declined cards, an unserved country, a SKU that runs out,
/// and plain orders.
async fn place_all(
    api: Api,
    plenty: String,
    scarce: String,
    placed: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<String>> {
    let mut tasks = Vec::with_capacity(ORDERS);
    let mut pace = tokio::time::interval(Duration::from_millis(1000 / PACE_PER_SECOND));
    for i in 0..ORDERS {
        pace.tick().await;
        let body = match i % 10 {
            0 => order_body(&[(&plenty, 1, 500)], "GB", "tok_decline"),
            1 => order_body(&[(&plenty, 1, 500)], "AQ", "tok_visa"),
            2 | 3 => order_body(&[(&scarce, 1, 700)], "GB", "tok_visa"),
            _ => order_body(&[(&plenty, 2, 300)], "GB", "tok_visa"),
        };
        let api = api.clone();
        let placed = placed.clone();
        tasks.push(tokio::spawn(async move {
            let key = uuid::Uuid::new_v4().to_string();
            let replicas = [api.order.clone(), api.order.replace(":8080", ":8180")];
            let order_id = place_until_accepted(&api, &replicas, i, &body, &key).await?;
            placed.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok(order_id)
        }));
    }
    let mut ids = Vec::with_capacity(ORDERS);
    for task in tasks {
        ids.push(task.await??);
    }
    Ok(ids)
}

/// Waits until `service`'s group is stable with `members` members and every partition of the
/// topics it reads has an owner.
async fn wait_owned(service: Service, members: usize) -> anyhow::Result<()> {
    let topics = TopicNames::default();
    let group = format!("{}-service", service.name());
    let mut read: Vec<(String, i32)> = service
        .consumes()
        .iter()
        .map(|&source| (topics.events(source), 6))
        .collect();
    read.push((topics.retry(service), 3));
    wait_for(
        &format!("{group} stable with {members} members owning every partition"),
        SETTLE,
        || {
            let group = group.clone();
            let read = read.clone();
            async move {
                let found = tokio::task::spawn_blocking(move || {
                    groups::members(&KafkaSettings::new(bootstrap()), &group)
                })
                .await??;
                let unowned: Vec<String> = read
                    .iter()
                    .flat_map(|(topic, count)| {
                        (0..*count)
                            .filter(|p| {
                                !found
                                    .members
                                    .iter()
                                    .any(|m| m.partitions_of(topic).contains(p))
                            })
                            .map(move |p| format!("{topic}[{p}]"))
                    })
                    .collect();
                let done =
                    found.state == "Stable" && found.members.len() == members && unowned.is_empty();
                if !done {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                let seen = format!(
                    "{} with {} members {:?}, unowned {unowned:?}",
                    found.state,
                    found.members.len(),
                    found
                        .members
                        .iter()
                        .map(|m| &m.member_id)
                        .collect::<Vec<_>>()
                );
                Ok((done.then_some(()), seen))
            }
        },
    )
    .await
}
