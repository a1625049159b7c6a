//! Where the CPU goes: CPU time of each process of the stack, read from `/proc` before and after
//! a run. Processes are found by what they run, so the stack can be started any way.
//!
//! Postgres starts a backend per connection; a backend that exits is accounted to the
//! postmaster's reaped-children time, so the group's total covers backends that came and went.

use std::collections::BTreeMap;
use std::path::Path;

/// Linux reports process times in clock ticks of 1/100 s (USER_HZ) on every mainstream build.
const TICK_MS: f64 = 10.0;

/// CPU milliseconds used so far, per process group.
pub type CpuSample = BTreeMap<String, f64>;

/// The group a process belongs to, from its command line; None for processes outside the stack.
fn group_of(pid: u32, cmdline: &str, comm: &str) -> Option<String> {
    let program = cmdline
        .split('\0')
        .next()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if pid == std::process::id() {
        return Some("load generator (sagactl)".into());
    }
    if comm == "postgres" || program == "postgres" {
        return Some("postgres (all backends)".into());
    }
    if cmdline.contains("kafka.Kafka") {
        return Some("kafka".into());
    }
    if cmdline.contains("quarkus-run.jar") || cmdline.contains("apicurio") {
        return Some("schema registry".into());
    }
    if program.starts_with("jaeger") {
        return Some("jaeger (traces)".into());
    }
    if program == "prometheus" {
        return Some("prometheus (metrics)".into());
    }
    for service in ["order", "payment", "inventory", "shipping", "history"] {
        if program == format!("{service}-service") {
            return Some(format!("{service} service"));
        }
    }
    None
}

/// Total CPU of every stack process now, in milliseconds per group.
pub fn sample() -> CpuSample {
    let mut totals = CpuSample::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return totals;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap_or_default();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Some(group) = group_of(pid, &cmdline, comm.trim()) else {
            continue;
        };
        let Some(times) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| Times::parse(&stat))
        else {
            continue;
        };
        // Only Postgres' postmaster reaps children that belong to the group.
        let reaped = if group.starts_with("postgres") && times.parent_is_init_or_shell() {
            times.children_ticks
        } else {
            0
        };
        *totals.entry(group).or_default() += (times.own_ticks + reaped) as f64 * TICK_MS;
    }
    totals
}

/// The fields of `/proc/<pid>/stat` this needs.
struct Times {
    parent: u32,
    own_ticks: u64,
    children_ticks: u64,
}

impl Times {
    fn parse(stat: &str) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces: split after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields from 3 on: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        Some(Self {
            parent: u32::try_from(field(4)?).ok()?,
            own_ticks: field(14)? + field(15)?,
            children_ticks: field(16)? + field(17)?,
        })
    }

    /// The postmaster is started by the stack's shell (or init); backends by the postmaster.
    fn parent_is_init_or_shell(&self) -> bool {
        let parent_comm =
            std::fs::read_to_string(format!("/proc/{}/comm", self.parent)).unwrap_or_default();
        parent_comm.trim() != "postgres"
    }
}

/// CPU used between two samples, per group.
pub fn delta(before: &CpuSample, after: &CpuSample) -> CpuSample {
    after
        .iter()
        .map(|(group, ms)| {
            let start = before.get(group).copied().unwrap_or(0.0);
            (group.clone(), (ms - start).max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let stat = "4242 (postgres: orders orders) S 4000 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 30 7 3 20 0 1 0 100 0 0";
        let times = Times::parse(stat).expect("parses");
        assert_eq!(times.parent, 4000);
        assert_eq!(times.own_ticks, 280);
        assert_eq!(times.children_ticks, 10);
    }

    #[test]
    fn stack_processes_are_grouped_by_what_they_run() {
        assert_eq!(
            group_of(
                1,
                "/srv/target/release/inventory-service\0",
                "inventory-servi"
            )
            .as_deref(),
            Some("inventory service")
        );
        assert_eq!(
            group_of(1, "/usr/bin/java\0-Xmx512m\0kafka.Kafka\0p\0", "java").as_deref(),
            Some("kafka")
        );
        assert_eq!(group_of(1, "/bin/bash\0", "bash"), None);
    }
}
