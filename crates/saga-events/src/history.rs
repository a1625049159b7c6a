//! Every version of every event that ever shipped, read from `schemas/` on disk, and the gate that
//! keeps a change from breaking anyone.
//!
//! In a choreography producers and consumers deploy independently, in both directions: a new
//! writer meets old readers and an old writer meets new readers. So each version of an event must
//! be readable by every earlier one and read every earlier one (the registry's `FULL_TRANSITIVE`).
//! The layout shows the history:
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde_json::Value as Json;
use thiserror::Error;

use crate::catalogue::{parse_common, self_contained};
use crate::error::SchemaFileError;

/// The file of breaks accepted from before the gate, relative to `schemas/`.
pub const ACCEPTED_BREAKS_FILE: &str = "accepted-breaks.txt";

/// What is wrong with the `schemas/` directory itself; each names the file.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("{file}: cannot be read")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    SchemaFile(#[from] SchemaFileError),
    #[error("{file}: not a version file; an event's versions are <service>/<Event>/v<N>.avsc")]
    BadFileName { file: String },
    #[error(
        "{event}: versions {found:?} on disk, v{missing} is missing (versions count 1, 2, … without gaps)"
    )]
    Gap {
        event: String,
        missing: u32,
        found: Vec<u32>,
    },
    #[error("{file}: defines record {found}, but its directory says {expected}")]
    NameMismatch {
        file: String,
        expected: String,
        found: String,
    },
    #[error(
        "{file}: a shipped version must stand alone, but it refers to shared types by name ({detail}); run `sagactl schemas freeze`"
    )]
    NotFrozen { file: String, detail: String },
    #[error("{file}:{line}: expected `<service>/<Event> v<older> v<newer> <reason>`, got `{text}`")]
    BadAcceptedBreak {
        file: String,
        line: usize,
        text: String,
    },
}

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
}

/// A break between two versions that shipped before the gate existed, kept on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedBreak {
    pub event: String,
    pub older: u32,
    pub newer: u32,
    pub reason: String,
}

/// Which readers a break leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The newer version cannot read what the older one wrote (`BACKWARD`).
    Backward,
    /// The older version cannot read what the newer one writes (`FORWARD`).
    Forward,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Backward => "backward: the newer cannot read the older's records",
            Direction::Forward => "forward: readers of the older cannot read the newer's records",
        })
    }
}

/// One pair of versions that cannot read each other in one direction.
#[derive(Debug, Clone)]
pub struct Break {
    pub event: String,
    pub older: u32,
    pub newer: u32,
    pub direction: Direction,
    pub detail: String,
    /// The reason it was accepted, if it is on record.
    pub accepted: Option<String>,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} v{} → v{} breaks FULL_TRANSITIVE ({}): {}",
            self.event, self.older, self.newer, self.direction, self.detail
        )?;
        if let Some(reason) = &self.accepted {
            write!(f, " [accepted: {reason}]")?;
        }
        Ok(())
    }
}

/// The whole `schemas/` directory.
#[derive(Debug, Clone)]
pub struct SchemaHistory {
    pub root: PathBuf,
    pub events: Vec<EventHistory>,
    pub accepted: Vec<AcceptedBreak>,
}

fn read(root: &Path, relative: &str) -> Result<String, HistoryError> {
    std::fs::read_to_string(root.join(relative)).map_err(|source| HistoryError::Io {
        file: relative.to_owned(),
        source,
    })
}

fn entries(root: &Path, relative: &str) -> Result<Vec<String>, HistoryError> {
    let dir = root.join(relative);
    let listing = std::fs::read_dir(&dir).map_err(|source| HistoryError::Io {
        file: relative.to_owned(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| HistoryError::Io {
            file: relative.to_owned(),
            source,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `v<N>.avsc` → N.
fn version_of(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix('v')?
        .strip_suffix(".avsc")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
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

    /// Every new major without its step in the upcaster chain ([`crate::upcast::CHAIN`]), and
    /// every step that does not read its major's last version: records of an older major must
    /// be handled exactly like the newest, and only a step can make them so.
    pub fn upcast_gaps(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        for event in &self.events {
            for pair in event.versions.windows(2) {
                let (older, newer) = (&pair[0], &pair[1]);
                if older.full_name == newer.full_name {
                    continue;
                }
                match crate::upcast::CHAIN.iter().find(|s| s.from == older.full_name) {
                    None => gaps.push(format!(
                        "{} v{} starts a new major ({}), but no upcaster carries {} to it: add a step to crates/saga-events/src/upcast.rs",
                        event.event, newer.version, newer.full_name, older.full_name
                    )),
                    Some(step) if step.to != newer.full_name => gaps.push(format!(
                        "{}: the upcaster of {} goes to {}, but v{} is {}",
                        event.event, older.full_name, step.to, newer.version, newer.full_name
                    )),
                    Some(step) if step.reader_file != older.file => gaps.push(format!(
                        "{}: the upcaster of {} reads {}, but that major's last version is {}",
                        event.event, older.full_name, step.reader_file, older.file
                    )),
                    Some(_) => {}
                }
            }
        }
        gaps
    }

    /// Every pair of versions of the same record that cannot read each other, in either
    /// direction; breaks on record in `accepted-breaks.txt` carry their reason.
    pub fn breaks(&self) -> Vec<Break> {
        let mut breaks = Vec::new();
        for event in &self.events {
            for (i, older) in event.versions.iter().enumerate() {
                for newer in &event.versions[i + 1..] {
                    if older.full_name != newer.full_name {
                        continue;
                    }
                    for direction in [Direction::Backward, Direction::Forward] {
                        let (writer, reader) = match direction {
                            Direction::Backward => (&older.schema, &newer.schema),
                            Direction::Forward => (&newer.schema, &older.schema),
                        };
                        if let Some(detail) = incompatibility(writer, reader) {
                            let accepted = self
                                .accepted
                                .iter()
                                .find(|a| {
                                    a.event == event.event
                                        && a.older == older.version
                                        && a.newer == newer.version
                                })
                                .map(|a| a.reason.clone());
                            breaks.push(Break {
                                event: event.event.clone(),
                                older: older.version,
                                newer: newer.version,
                                direction,
                                detail,
                                accepted,
                            });
                        }
                    }
                }
            }
        }
        breaks
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

fn load_accepted(root: &Path) -> Result<Vec<AcceptedBreak>, Vec<HistoryError>> {
    if !root.join(ACCEPTED_BREAKS_FILE).exists() {
        return Ok(Vec::new());
    }
    let text = read(root, ACCEPTED_BREAKS_FILE).map_err(|e| vec![e])?;
    let mut accepted = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(4, char::is_whitespace);
        let parsed = (|| {
            let event = parts.next()?.to_owned();
            let older = parts.next()?.strip_prefix('v')?.parse().ok()?;
            let newer = parts.next()?.strip_prefix('v')?.parse().ok()?;
            let reason = parts.next()?.trim().to_owned();
            (!reason.is_empty()).then_some(AcceptedBreak {
                event,
                older,
                newer,
                reason,
            })
        })();
        match parsed {
            Some(entry) => accepted.push(entry),
            None => errors.push(HistoryError::BadAcceptedBreak {
                file: ACCEPTED_BREAKS_FILE.to_owned(),
                line: index + 1,
                text: line.to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(errors)
    }
}

/// Why `reader` cannot always read what `writer` wrote, or `None` when it always can.
/// apache-avro's check answers "partially" for enums and unions; the enums are named here, since
/// an enum symbol a reader does not know (and no default to fall back on) fails at run time.
pub fn incompatibility(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Err(error) => Some(error.to_string()),
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            let writer_enums = enums(writer);
            let reader_enums = enums(reader);
            let mut details = Vec::new();
            for (name, (symbols, _)) in &writer_enums {
                if let Some((known, default)) = reader_enums.get(name)
                    && default.is_none()
                {
                    let unknown: Vec<&str> = symbols
                        .iter()
                        .filter(|s| !known.contains(*s))
                        .map(String::as_str)
                        .collect();
                    if !unknown.is_empty() {
                        details.push(format!(
                            "enum {name}: symbols {} are unknown to the reader, which has no default",
                            unknown.join(", ")
                        ));
                    }
                }
            }
            if details.is_empty() {
                details.push(
                    "some values the writer can write cannot be read (a union or an enum narrowed)"
                        .to_owned(),
                );
            }
            Some(details.join("; "))
        }
    }
}

type EnumSymbols = BTreeMap<String, (BTreeSet<String>, Option<String>)>;

/// Every enum in `schema`: its symbols and default, by full name.
fn enums(schema: &Schema) -> EnumSymbols {
    fn walk(schema: &Schema, found: &mut EnumSymbols) {
        match schema {
            Schema::Enum(e) => {
                found.insert(
                    e.name.fullname(None),
                    (e.symbols.iter().cloned().collect(), e.default.clone()),
                );
            }
            Schema::Record(r) => r.fields.iter().for_each(|f| walk(&f.schema, found)),
            Schema::Array(a) => walk(&a.items, found),
            Schema::Map(m) => walk(&m.types, found),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = BTreeMap::new();
    walk(schema, &mut found);
    found
}

/// What changed from `older` to `newer`, one line per change, fields named by path
/// (`shipping_address.country`).
pub fn diff(older: &SchemaVersion, newer: &SchemaVersion) -> Vec<String> {
    let mut changes = Vec::new();
    if older.full_name != newer.full_name {
        changes.push(format!(
            "record renamed {} → {} (a new major: a new subject)",
            older.full_name, newer.full_name
        ));
    }
    let (Ok(old), Ok(new)) = (
        serde_json::from_str::<Json>(&older.json),
        serde_json::from_str::<Json>(&newer.json),
    ) else {
        return changes;
    };
    diff_type("", &old, &new, &mut changes);
    changes
}

fn fields(record: &Json) -> Vec<(&str, &Json)> {
    record
        .get("fields")
        .and_then(Json::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| Some((f.get("name")?.as_str()?, f)))
                .collect()
        })
        .unwrap_or_default()
}

fn type_text(ty: &Json) -> String {
    match ty {
        Json::Object(object) => match object.get("type").and_then(Json::as_str) {
            Some("record" | "enum" | "fixed") => object
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_owned(),
            Some("array") => format!("array<{}>", type_text(&object["items"])),
            Some("map") => format!("map<{}>", type_text(&object["values"])),
            Some(primitive) => match object.get("logicalType").and_then(Json::as_str) {
                Some(logical) => format!("{primitive} ({logical})"),
                None => primitive.to_owned(),
            },
            None => ty.to_string(),
        },
        Json::Array(branches) => branches
            .iter()
            .map(type_text)
            .collect::<Vec<_>>()
            .join(" | "),
        Json::String(name) => name.clone(),
        other => other.to_string(),
    }
}

fn diff_type(path: &str, old: &Json, new: &Json, changes: &mut Vec<String>) {
    let kind = |ty: &Json| ty.get("type").and_then(Json::as_str).map(str::to_owned);
    match (kind(old).as_deref(), kind(new).as_deref()) {
        (Some("record"), Some("record")) => {
            let old_fields = fields(old);
            let new_fields = fields(new);
            for (name, field) in &new_fields {
                let at = if path.is_empty() {
                    (*name).to_owned()
                } else {
                    format!("{path}.{name}")
                };
                match old_fields.iter().find(|(n, _)| n == name) {
                    None => changes.push(format!(
                        "+ {at}: {}{}",
                        type_text(&field["type"]),
                        field
                            .get("default")
                            .map(|d| format!(" (default {d})"))
                            .unwrap_or_else(|| " (no default)".to_owned())
                    )),
                    Some((_, before)) => {
                        if before.get("default") != field.get("default") {
                            changes.push(format!(
                                "~ {at}: default {} → {}",
                                before.get("default").map_or("none".into(), Json::to_string),
                                field.get("default").map_or("none".into(), Json::to_string)
                            ));
                        }
                        diff_type(&at, &before["type"], &field["type"], changes);
                    }
                }
            }
            for (name, field) in &old_fields {
                if !new_fields.iter().any(|(n, _)| n == name) {
                    let at = if path.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    changes.push(format!("- {at}: {}", type_text(&field["type"])));
                }
            }
        }
        (Some("enum"), Some("enum")) => {
            let symbols = |ty: &Json| -> Vec<String> {
                ty.get("symbols")
                    .and_then(Json::as_array)
                    .map(|s| {
                        s.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (before, after) = (symbols(old), symbols(new));
            let added: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
            let removed: Vec<&String> = before.iter().filter(|s| !after.contains(s)).collect();
            if !added.is_empty() || !removed.is_empty() {
                changes.push(format!("~ {path}: enum symbols +{added:?} -{removed:?}"));
            }
            if old.get("default") != new.get("default") {
                changes.push(format!(
                    "~ {path}: enum default {} → {}",
                    old.get("default").map_or("none".into(), Json::to_string),
                    new.get("default").map_or("none".into(), Json::to_string)
                ));
            }
        }
        (Some("array"), Some("array")) => diff_type(path, &old["items"], &new["items"], changes),
        _ => {
            if type_text(old) != type_text(new) {
                changes.push(format!("~ {path}: {} → {}", type_text(old), type_text(new)));
            } else if let (Json::Array(a), Json::Array(b)) = (old, new) {
                for (x, y) in a.iter().zip(b) {
                    diff_type(path, x, y, changes);
                }
            }
        }
    }
}

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
