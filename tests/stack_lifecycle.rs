//! `make up` is idempotent (a broker it finds running, whose topics it made, is left without a
//! topic pass), and `make down` + `make up` brings the stack back with its data: the same schema
//! ids (the registry stores them in Postgres) and the same topics.
//!
//! This test stops and starts the shared stack, so it lives alone in its own test binary: cargo
//! runs test binaries one after another, never two at once.

use saga_e2e::{registry_url, stack};
use saga_events::{EventCodec, TopicNames};

const COMPONENTS: [&str; 8] = [
    "postgres",
    "kafka",
    "registry",
    "order",
    "payment",
    "inventory",
    "shipping",
    "history",
];

/// The pid of every component, as `make status` reports it.
fn pids() -> anyhow::Result<Vec<(String, String)>> {
    let status = stack("status")?;
    COMPONENTS
        .iter()
        .map(|component| {
            let pid = status
                .stdout
                .lines()
                .find(|l| l.starts_with(component) && l.contains("running"))
                .and_then(|l| l.split("(pid ").nth(1))
                .and_then(|rest| rest.split([')', ',']).next())
                .ok_or_else(|| anyhow::anyhow!("no pid for {component} in:\n{status}"))?;
            Ok(((*component).to_owned(), pid.trim().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn up_is_idempotent_and_a_restart_keeps_schema_ids() -> anyhow::Result<()> {
    let first = stack("up")?;
    assert!(first.success, "make up failed:\n{first}");
    let pids_before = pids()?;

    let codec = EventCodec::new(&registry_url(), TopicNames::new("lifecycle."))?;
    let ids_before = codec.register_all().await?;
    let sample = saga_events::OrderConfirmed {
        metadata: saga_events::EventMetadata {
            event_id: "1f0a3c1e-7d8b-4f6a-9c2d-3e4f5a6b7c8d".into(),
            occurred_at: 1_764_000_000_000,
            correlation_id: "order-lifecycle".into(),
            causation_id: None,
            producer: "order".into(),
        },
        order_id: "order-lifecycle".into(),
    };
    let written_before_restart = codec.encode(&sample.clone().into()).await?;

    let second = stack("up")?;
    assert!(second.success, "second make up failed:\n{second}");
    for component in COMPONENTS {
        assert!(
            second
                .stdout
                .lines()
                .any(|l| l.starts_with(component) && l.contains("already running")),
            "second make up should leave {component} alone:\n{second}"
        );
    }
    // The broker it finds running had its topics made when it started: no topic pass at all.
    assert!(
        second
            .stdout
            .contains("topics     already made for this broker")
            && !second.stdout.contains("created topic"),
        "second make up should create no topic:\n{second}"
    );
    assert_eq!(pids()?, pids_before, "second make up restarted something");

    let down = stack("down")?;
    assert!(down.success, "make down failed:\n{down}");
    let status = stack("status")?;
    assert!(
        !status.success,
        "status should report a stopped stack:\n{status}"
    );
    for component in COMPONENTS {
        assert!(
            status
                .stdout
                .lines()
                .any(|l| l.starts_with(component) && l.contains("stopped")),
            "{component} should be stopped:\n{status}"
        );
    }

    let again = stack("up")?;
    assert!(again.success, "make up after make down failed:\n{again}");
    assert!(
        again.stdout.contains("topics ready (0 created)"),
        "topics should survive a restart:\n{again}"
    );
    // A fresh codec: nothing cached from before the restart.
    let codec = EventCodec::new(&registry_url(), TopicNames::new("lifecycle."))?;
    let ids_after = codec.register_all().await?;
    assert_eq!(ids_before, ids_after, "schema ids changed across a restart");
    let decoded = codec.decode(&written_before_restart.payload).await?;
    assert_eq!(
        decoded,
        sample.into(),
        "bytes written before the restart no longer decode"
    );
    Ok(())
}
