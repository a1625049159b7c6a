//! `deploy/topics.conf`, the topic list the deployments create, as the catalogue documents it:
//! each topic's partitions and configs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};

/// One line of `deploy/topics.conf`.
#[derive(Debug, Clone)]
pub struct Topic {
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
}

pub fn read_topics(path: &Path) -> anyhow::Result<BTreeMap<String, Topic>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut topics = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(partitions)) = (parts.next(), parts.next()) else {
            bail!(
                "{}:{}: expected `name partitions [configs]`",
                path.display(),
                index + 1
            );
        };
        let partitions = partitions.parse().with_context(|| {
            format!(
                "{}:{}: partitions must be a number",
                path.display(),
                index + 1
            )
        })?;
        let configs = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        topics.insert(
            name.to_owned(),
            Topic {
                partitions,
                configs,
            },
        );
    }
    Ok(topics)
}
