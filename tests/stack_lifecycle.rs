//! `make up` is idempotent, and `make down` + `make up` brings the stack back with its data: the
//! same schema ids (the registry stores them in Postgres) and the same topics.
//!
//! This test stops and starts the shared stack, so it lives alone in its own test binary: cargo
//! runs test binaries one after another, never two at once.

use std::fs;

use saga_e2e::{registry_url, stack, state_dir};
use saga_events::{EventCodec, TopicNames};

const COMPONENTS: [&str; 7] = [
    "postgres",
    "kafka",
    "registry",
    "order",
    "payment",
    "inventory",
    "shipping",
];

fn pids() -> anyhow::Result<Vec<(String, String)>> {
    let state = state_dir();
    let files = [
        ("kafka", state.join("kafka/kafka.pid")),
        ("registry", state.join("registry/registry.pid")),
        ("postgres", state.join("postgres/data/postmaster.pid")),
        ("order", state.join("services/order.pid")),
        ("payment", state.join("services/payment.pid")),
        ("inventory", state.join("services/inventory.pid")),
        ("shipping", state.join("services/shipping.pid")),
    ];
    files
        .into_iter()
        .map(|(name, path)| {
            let text = fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let pid = text.lines().next().unwrap_or_default().trim().to_owned();
            Ok((name.to_owned(), pid))
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
    assert!(
        second.stdout.contains("topics ready (0 created)"),
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
