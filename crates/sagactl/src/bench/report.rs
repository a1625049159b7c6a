//! The benchmark's report: for people (tables), for tools (`--json`), and on disk.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::Context;
use crate::output::emit;

/// A progress bar on stderr while sagas end; nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

pub fn progress(ended: Arc<AtomicUsize>, total: usize) -> Progress {
    if !std::io::stderr().is_terminal() {
        return Progress {
            bar: None,
            ticker: None,
        };
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} sagas ended · {per_sec} · {elapsed}")
    {
        bar.set_style(style);
    }
    let shown = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            shown.set_position(ended.load(Ordering::Relaxed) as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Progress {
        bar: Some(bar),
        ticker: Some(ticker),
    }
}

impl Progress {
    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What the numbers were measured on.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown");
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "everything_on_one_machine": true,
    })
}

/// The checkout's commit, with `-dirty` when its files differ from it: the stack may then run
/// code that no commit holds.
pub fn git_sha() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{sha}-dirty"),
            _ => sha,
        },
        None => "unknown".into(),
    }
}

/// Writes the report to `<dir>/<date>-<sha>.json`.
pub fn save(dir: &std::path::Path, report: &Value) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-{}.json",
        chrono::Utc::now().format("%Y-%m-%dT%H%M%S"),
        report["git_sha"].as_str().unwrap_or("unknown")
    );
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    Ok(path)
}

fn ms(v: &Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0))
}

fn latency_line(label: &str, summary: &Value) -> String {
    format!(
        "  {label:<44} p50 {:>7} · p90 {:>7} · p99 {:>7} · p99.9 {:>7} · max {:>7} ms",
        ms(&summary["p50"]),
        ms(&summary["p90"]),
        ms(&summary["p99"]),
        ms(&summary["p99_9"]),
        ms(&summary["max"])
    )
}

pub fn print(context: &Context, report: &Value) -> anyhow::Result<()> {
    if context.json {
        return emit(report);
    }
    let how = match report["mode"].as_str() {
        Some("open") => format!(
            "open loop at {} orders/s for {} s",
            report["rate"], report["duration_seconds"]
        ),
        _ => format!("closed loop at concurrency {}", report["concurrency"]),
    };
    emit(format!(
        "{} orders, {how}: {} completed ({} confirmed, {} cancelled), {} failed",
        report["orders"],
        report["completed"],
        report["confirmed"],
        report["cancelled"],
        report["failed"]
    ))?;
    let settled = &report["settled"];
    emit(format!(
        "started on about {} stored orders, after {:.0} s waiting for autovacuum{}",
        settled["orders_stored"],
        settled["waited_seconds"].as_f64().unwrap_or(0.0),
        match settled["quiet"].as_bool() {
            Some(true) => "",
            Some(false) => " (still running)",
            None => " (not seen: the ceilings' role lacks pg_read_all_stats)",
        }
    ))?;
    emit(format!(
        "throughput {:.1} sagas/s ({:.1} s from first POST to last terminal event)",
        report["sagas_per_second"].as_f64().unwrap_or(0.0),
        report["seconds"].as_f64().unwrap_or(0.0)
    ))?;
    emit("latency")?;
    emit(latency_line("POST /orders", &report["post_ms"]))?;
    emit(latency_line("POST → terminal event", &report["saga_ms"]))?;
    emit("where the time goes (by the events' clocks)")?;
    if let Some(hops) = report["hops_ms"].as_object() {
        for (hop, summary) in hops {
            emit(latency_line(hop, summary))?;
        }
    }
    emit("where the CPU goes (CPU-ms per saga)")?;
    if let Some(cpu) = report["cpu_ms_per_saga"].as_object() {
        for (group, value) in cpu {
            emit(format!(
                "  {group:<28} {:>8.2}",
                value.as_f64().unwrap_or(0.0)
            ))?;
        }
    }
    let per_saga = &report["per_saga"];
    emit(format!(
        "per saga: {:.1} records produced, {:.1} consumed, {:.1} row sets written",
        per_saga["kafka_records_produced"].as_f64().unwrap_or(0.0),
        per_saga["kafka_records_consumed"].as_f64().unwrap_or(0.0),
        per_saga["row_sets"].as_f64().unwrap_or(0.0)
    ))?;
    let requests = &per_saga["broker_requests"];
    if let Some(by_type) = requests["by_type"].as_object()
        && !by_type.is_empty()
    {
        let parts: Vec<String> = by_type
            .iter()
            .map(|(request, per)| format!("{request} {:.1}", per.as_f64().unwrap_or(0.0)))
            .collect();
        emit(format!(
            "  requests to the broker: {:.1} ({})",
            requests["total"].as_f64().unwrap_or(0.0),
            parts.join(", ")
        ))?;
    }
    let read_side = &report["read_side"];
    if read_side["measured"] == true {
        emit("the read side (history)")?;
        emit(format!(
            "  projection lag (record → its rows committed): p50 {} ms, p99 {} ms",
            figure(&read_side["projection_lag_ms"]["p50"]),
            figure(&read_side["projection_lag_ms"]["p99"])
        ))?;
        emit(format!(
            "  held the run's last event {} ms after it occurred",
            figure(&read_side["caught_up"]["ms_after_last_event"])
        ))?;
        emit(latency_line(
            "GET /history/orders/{id}?as_of=",
            &read_side["as_of_ms"],
        ))?;
        emit(latency_line(
            "console: one order's page",
            &read_side["console_order_page_ms"],
        ))?;
        emit(latency_line(
            "console: the orders list",
            &read_side["console_orders_page_ms"],
        ))?;
        emit(format!(
            "  GET /history/stats: {} ms over {} orders",
            figure(&read_side["stats_ms"]),
            read_side["orders_in_history"]
        ))?;
    } else if let Some(why) = read_side["why"].as_str() {
        emit(format!("the read side was not measured: {why}"))?;
    }
    let ceilings = &report["ceilings"];
    if ceilings.is_object() {
        emit("this machine's ceilings (measured in this run)")?;
        emit(format!(
            "  kafka alone     {:>9.0} records/s  → {:>7.0} sagas/s",
            ceilings["kafka"]["records_per_second"]
                .as_f64()
                .unwrap_or(0.0),
            ceilings["kafka_sagas_per_second"].as_f64().unwrap_or(0.0)
        ))?;
        emit(format!(
            "  postgres alone  {:>9.0} row sets/s → {:>7.0} sagas/s (10 per transaction; {:.0} tps with 1)",
            ceilings["postgres_ten_row_sets_per_transaction"]["row_sets_per_second"]
                .as_f64()
                .unwrap_or(0.0),
            ceilings["postgres_sagas_per_second"]
                .as_f64()
                .unwrap_or(0.0),
            ceilings["postgres_one_row_set_per_transaction"]["transactions_per_second"]
                .as_f64()
                .unwrap_or(0.0)
        ))?;
        emit(format!(
            "  one hop alone   {:>6.2} ms = a record produced → consumed p50 {:.2} ms (acknowledged {:.2}; {} groups reading) + a transaction {:.2} ms (pgbench's mean, one at a time)",
            ceilings["hop_floor_ms"].as_f64().unwrap_or(0.0),
            ceilings["kafka_hop"]["consumed_ms"]["p50"]
                .as_f64()
                .unwrap_or(0.0),
            ceilings["kafka_hop"]["acknowledged_ms"]["p50"]
                .as_f64()
                .unwrap_or(0.0),
            ceilings["kafka_hop"]["groups"].as_u64().unwrap_or(0),
            ceilings["postgres_one_transaction_at_a_time"]["latency_average_ms"]
                .as_f64()
                .unwrap_or(0.0),
        ))?;
        emit(format!(
            "  one saga's floor {:>5.1} ms (five hops, nothing else in flight)",
            ceilings["saga_floor_ms"].as_f64().unwrap_or(0.0)
        ))?;
        emit(format!(
            "  saga rate = {:.1} % of the lower ceiling",
            ceilings["saga_rate_percent_of_lower_ceiling"]
                .as_f64()
                .unwrap_or(0.0)
        ))?;
    }
    if let Some(failures) = report["failures"].as_array() {
        for failure in failures.iter().take(5) {
            emit(format!("failure: {}", failure.as_str().unwrap_or("")))?;
        }
    }
    if let Some(path) = report["saved_to"].as_str() {
        emit(format!("saved to {path}"))?;
    }
    Ok(())
}

/// A figure of the report, to one decimal, or `-` where there is none.
fn figure(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}
