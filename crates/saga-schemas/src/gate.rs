//! The gate that keeps a change to an event from breaking anyone.
//!
//! In a choreography producers and consumers deploy independently, in both directions: a new
//! writer meets old readers and an old writer meets new readers. So each version of an event must
//! be readable by every earlier one and read every earlier one (the registry's `FULL_TRANSITIVE`),
//! within its major; and a new major must have its step in the upcaster chain, or records of the
//! older major could not be handled like the newest.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use saga_events::upcast::CHAIN;

use crate::history::SchemaHistory;

/// The compatibility level the saga's registry must run with.
pub const REQUIRED_LEVEL: &str = "FULL_TRANSITIVE";

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

impl SchemaHistory {
    /// Every new major without its step in the upcaster chain ([`CHAIN`]), and
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
                match CHAIN.iter().find(|s| s.from == older.full_name) {
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
