//! `sagactl bench` as a user runs it, small: every order ends, and the report has every part it
//! promises. Figures are printed, never asserted: a test must not depend on how fast this
//! machine is today.

use saga_e2e::*;
use serde_json::Value;

#[test]
fn a_small_benchmark_completes_every_order_and_reports_every_part() -> anyhow::Result<()> {
    // A failure is an error carrying sagactl's stderr, where the bench says what went wrong.
    let (_, out) = sagactl(
        &[
            "bench",
            "--orders",
            "200",
            "--concurrency",
            "16",
            "--warmup",
            "5",
            // The suites beside this one keep autovacuum busy: a short wait still reports.
            "--settle",
            "2",
            "--json",
        ],
        false,
    )?;
    let report: Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["completed"], 200, "{report:#}");
    assert_eq!(report["saga_ms"]["count"], 200, "{report:#}");
    assert_eq!(report["post_ms"]["count"], 200, "{report:#}");
    assert!(
        report["settled"]["orders_stored"].as_i64().is_some()
            && report["settled"]["waited_seconds"].as_f64().is_some()
            && report["settled"]["quiet"].is_boolean(),
        "no word on the data the run met: {report:#}"
    );
    let hops = report["hops_ms"].as_object().cloned().unwrap_or_default();
    for hop in [
        "outbox wait: OrderPlaced",
        "consume + handle: OrderPlaced → PaymentAuthorized",
        "consume + handle: ShipmentScheduled → OrderConfirmed",
    ] {
        assert!(hops.contains_key(hop), "no {hop} in {report:#}");
    }
    let cpu = report["cpu_ms_per_saga"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for group in [
        "kafka",
        "postgres (all backends)",
        "order service",
        "history service",
        "total",
    ] {
        assert!(
            cpu.get(group)
                .and_then(Value::as_f64)
                .is_some_and(|ms| ms > 0.0),
            "no CPU figure for {group} in {report:#}"
        );
    }
    assert!(
        report["per_saga"]["kafka_records_produced"]
            .as_f64()
            .is_some_and(|r| r >= 5.0),
        "a saga produces at least five events: {report:#}"
    );
    // The services count what they ask the broker: every saga was fetched and produced.
    let requests = &report["per_saga"]["broker_requests"]["by_type"];
    for request in ["Fetch", "Produce"] {
        assert!(
            requests[request].as_f64().is_some_and(|per| per > 0.0),
            "no {request} requests counted: {report:#}"
        );
    }
    let read_side = &report["read_side"];
    assert_eq!(read_side["measured"], true, "{report:#}");
    assert_eq!(
        read_side["caught_up"]["status"], 200,
        "the read side holds the run's last event: {report:#}"
    );
    assert!(
        read_side["projection_lag_ms"]["p50"].is_number(),
        "the projection's lag: {report:#}"
    );
    assert_eq!(read_side["as_of_ms"]["count"], 200, "{report:#}");
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
