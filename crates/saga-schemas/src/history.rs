//! Every version of every event that ever shipped, read from `schemas/` on disk: what the gate,
//! `diff`, `freeze` and the catalogue work on.
//!
//! Producers and consumers deploy independently, so every version that ever shipped may still
//! be written or read somewhere; the history keeps them all, one file each. The layout shows it:
//!
//! ```text
//! schemas/common/<Type>.avsc                  shared types, referred to by name
//! schemas/<service>/<Event>/v<N>.avsc         one file per version, 1, 2, … without gaps
//! schemas/accepted-breaks.txt                 breaks from before the gate, each with its reason
//! ```
//!
//! The newest version is the one being written, and refers to the shared types by name. Every
//! earlier version is frozen: self-contained, so that a later change to a shared type cannot
//! rewrite what shipped (`sagactl schemas freeze` inlines them). A version whose record has a new
//! full name starts a new major: a new subject in the registry, compared with its own lineage
//! only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use saga_events::{SchemaFileError, Service, parse_common, self_contained};
use serde_json::Value as Json;

use crate::accepted::{AcceptedBreak, load_accepted};
use crate::error::HistoryError;
use crate::files::{entries, read, version_of};

/// One shipped (or about to ship) version of an event's schema.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub version: u32,
    /// Relative to `schemas/`, e.g. `order/OrderPlaced/v2.avsc`.
    pub file: String,
    /// Self-contained, minified: what the registry is given.
    pub json: String,
    pub schema: Schema,
    pub full_name: String,
}

/// Every version of one event, oldest first.
#[derive(Debug, Clone)]
pub struct EventHistory {
    /// `<service>/<Event>`, e.g. `order/OrderPlaced`.
    pub event: String,
    pub versions: Vec<SchemaVersion>,
}

impl EventHistory {
    pub fn latest(&self) -> Option<&SchemaVersion> {
        self.versions.last()
    }

    pub fn version(&self, version: u32) -> Option<&SchemaVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The service whose directory the event is under: its publisher.
    pub fn service(&self) -> Option<Service> {
        self.event.split('/').next().and_then(Service::from_name)
    }
}

/// The whole `schemas/` directory.
#[derive(Debug, Clone)]
pub struct SchemaHistory {
    pub root: PathBuf,
    pub events: Vec<EventHistory>,
    pub accepted: Vec<AcceptedBreak>,
}

fn record_name(json: &Json) -> Option<(String, String)> {
    let name = json.get("name")?.as_str()?;
    let short = name.rsplit('.').next().unwrap_or(name).to_owned();
    let full = if name.contains('.') {
        name.to_owned()
    } else {
        match json.get("namespace").and_then(Json::as_str) {
            Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
            _ => name.to_owned(),
        }
    };
    Some((short, full))
}

impl SchemaHistory {
    /// Reads `root` (the `schemas/` directory). Every problem found is returned, not just the
    /// first, each naming its file.
    pub fn load(root: &Path) -> Result<Self, Vec<HistoryError>> {
        let mut errors = Vec::new();
        let mut common_sources = Vec::new();
        match entries(root, "common") {
            Ok(names) => {
                for name in names.iter().filter(|n| n.ends_with(".avsc")) {
                    let file = format!("common/{name}");
                    match read(root, &file) {
                        Ok(text) => common_sources.push((file, text)),
                        Err(error) => errors.push(error),
                    }
                }
            }
            Err(error) => errors.push(error),
        }
        let borrowed: Vec<(&str, &str)> = common_sources
            .iter()
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .collect();
        let common = match parse_common(&borrowed) {
            Ok(common) => common,
            Err(error) => {
                errors.push(error.into());
                return Err(errors);
            }
        };

        let mut events = Vec::new();
        let services = entries(root, ".").map_err(|e| vec![e])?;
        for service in services {
            if service == "common" || !root.join(&service).is_dir() {
                continue;
            }
            let Ok(names) = entries(root, &service).map_err(|e| errors.push(e)) else {
                continue;
            };
            for event in names {
                let event_dir = format!("{service}/{event}");
                if !root.join(&event_dir).is_dir() {
                    errors.push(HistoryError::BadFileName { file: event_dir });
                    continue;
                }
                match load_event(root, &event_dir, &event, &common) {
                    Ok(history) => events.push(history),
                    Err(mut found) => errors.append(&mut found),
                }
            }
        }
        let accepted = match load_accepted(root) {
            Ok(accepted) => accepted,
            Err(mut found) => {
                errors.append(&mut found);
                Vec::new()
            }
        };
        if errors.is_empty() {
            Ok(Self {
                root: root.to_owned(),
                events,
                accepted,
            })
        } else {
            Err(errors)
        }
    }

    /// `order/OrderPlaced` or just `OrderPlaced`.
    pub fn event(&self, name: &str) -> Option<&EventHistory> {
        self.events.iter().find(|e| {
            e.event == name
                || e.event
                    .rsplit('/')
                    .next()
                    .is_some_and(|short| short == name)
        })
    }
}

fn load_event(
    root: &Path,
    event_dir: &str,
    event: &str,
    common: &BTreeMap<String, Json>,
) -> Result<EventHistory, Vec<HistoryError>> {
    let mut errors = Vec::new();
    let mut files = BTreeMap::new();
    for name in entries(root, event_dir).map_err(|e| vec![e])? {
        match version_of(&name) {
            Some(version) => {
                files.insert(version, format!("{event_dir}/{name}"));
            }
            None => errors.push(HistoryError::BadFileName {
                file: format!("{event_dir}/{name}"),
            }),
        }
    }
    let found: Vec<u32> = files.keys().copied().collect();
    if let Some(missing) = (1..=found.last().copied().unwrap_or(0)).find(|v| !files.contains_key(v))
    {
        errors.push(HistoryError::Gap {
            event: event_dir.to_owned(),
            missing,
            found: found.clone(),
        });
    }
    let latest = found.last().copied();
    let mut versions = Vec::new();
    for (version, file) in &files {
        match load_version(root, file, *version, Some(*version) == latest, common) {
            Ok(loaded) => {
                let short = loaded.full_name.rsplit('.').next().unwrap_or_default();
                if short != event {
                    errors.push(HistoryError::NameMismatch {
                        file: file.clone(),
                        expected: event.to_owned(),
                        found: loaded.full_name.clone(),
                    });
                }
                versions.push(loaded);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(EventHistory {
            event: event_dir.to_owned(),
            versions,
        })
    } else {
        Err(errors)
    }
}

fn load_version(
    root: &Path,
    file: &str,
    version: u32,
    latest: bool,
    common: &BTreeMap<String, Json>,
) -> Result<SchemaVersion, HistoryError> {
    let text = read(root, file)?;
    let json: Json = serde_json::from_str(&text).map_err(|source| SchemaFileError::NotJson {
        file: file.to_owned(),
        source,
    })?;
    let (_, full_name) = record_name(&json).ok_or_else(|| SchemaFileError::Unnamed {
        file: file.to_owned(),
    })?;
    let invalid = |source: apache_avro::Error| SchemaFileError::Invalid {
        file: file.to_owned(),
        source: Box::new(source),
    };
    let standalone = json.to_string();
    let json = if latest {
        self_contained(file, &text, common)?
    } else {
        // A frozen version must parse on its own; if it only parses with the shared types, it
        // was never frozen.
        if let Err(error) = Schema::parse_str(&standalone) {
            let inlined = self_contained(file, &text, common)?;
            return Err(match Schema::parse_str(&inlined) {
                Ok(_) => HistoryError::NotFrozen {
                    file: file.to_owned(),
                    detail: error.to_string(),
                },
                Err(source) => invalid(source).into(),
            });
        }
        standalone
    };
    let schema = Schema::parse_str(&json).map_err(invalid)?;
    Ok(SchemaVersion {
        version,
        file: file.to_owned(),
        json,
        schema,
        full_name,
    })
}
