//! Freezing: every version but an event's newest is rewritten self-contained, so that a later
//! change to a shared type cannot rewrite what shipped (`sagactl schemas freeze`).

use std::path::Path;

use saga_events::{SchemaFileError, parse_common, self_contained};
use serde_json::Value as Json;

use crate::error::HistoryError;
use crate::files::{entries, read, version_of};

/// Rewrites every version but the newest of each event in its self-contained form, so that a
/// later change to a shared type cannot change what shipped. Returns the files it rewrote.
pub fn freeze(root: &Path) -> Result<Vec<String>, Vec<HistoryError>> {
    let mut common_sources = Vec::new();
    for name in entries(root, "common").map_err(|e| vec![e])? {
        if name.ends_with(".avsc") {
            let file = format!("common/{name}");
            let text = read(root, &file).map_err(|e| vec![e])?;
            common_sources.push((file, text));
        }
    }
    let borrowed: Vec<(&str, &str)> = common_sources
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let common = parse_common(&borrowed).map_err(|e| vec![e.into()])?;
    let mut rewritten = Vec::new();
    for service in entries(root, ".").map_err(|e| vec![e])? {
        if service == "common" || !root.join(&service).is_dir() {
            continue;
        }
        for event in entries(root, &service).map_err(|e| vec![e])? {
            let event_dir = format!("{service}/{event}");
            let mut versions: Vec<(u32, String)> = entries(root, &event_dir)
                .map_err(|e| vec![e])?
                .into_iter()
                .filter_map(|name| Some((version_of(&name)?, format!("{event_dir}/{name}"))))
                .collect();
            versions.sort();
            versions.pop();
            for (_, file) in versions {
                let text = read(root, &file).map_err(|e| vec![e])?;
                let inlined = self_contained(&file, &text, &common).map_err(|e| vec![e.into()])?;
                let json: Json = serde_json::from_str(&inlined).map_err(|source| {
                    vec![HistoryError::from(SchemaFileError::NotJson {
                        file: file.clone(),
                        source,
                    })]
                })?;
                let pretty = format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                );
                let original: Option<Json> = serde_json::from_str(&text).ok();
                if original.as_ref() != Some(&json) {
                    std::fs::write(root.join(&file), pretty).map_err(|source| {
                        vec![HistoryError::Io {
                            file: file.clone(),
                            source,
                        }]
                    })?;
                    rewritten.push(file);
                }
            }
        }
    }
    Ok(rewritten)
}
