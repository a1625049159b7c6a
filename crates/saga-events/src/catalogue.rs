//! Turns the `.avsc` files into self-contained schemas for the registry.
//!
//! Event files refer to shared types (`saga.common.EventMetadata`, …) by name, so each shared type
//! is written once. The registry needs every schema to stand alone, so the first reference to a
//! shared type is replaced by its definition, as an Avro writer would have it; later references
//! stay names, which Avro allows.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Schema;
use serde_json::Value as Json;

use crate::error::SchemaFileError;
use crate::events::{COMMON_SCHEMA_SOURCES, EventType};

/// One event's schema, ready to register.
#[derive(Debug, Clone)]
pub struct EventSchema {
    pub event_type: EventType,
    /// Minified, self-contained JSON: what is sent to the registry. Docs and defaults are kept
    /// because the registry's compatibility checks need the defaults.
    pub json: String,
    pub schema: Schema,
}

/// Every event schema of the saga, built from the files compiled into this crate.
#[derive(Debug, Clone)]
pub struct SchemaCatalogue {
    schemas: Vec<EventSchema>,
}

impl SchemaCatalogue {
    pub fn load() -> Result<Self, SchemaFileError> {
        let common = parse_common(COMMON_SCHEMA_SOURCES)?;
        let schemas = EventType::ALL
            .iter()
            .map(|&event_type| {
                let json = self_contained(
                    event_type.schema_path(),
                    event_type.schema_source(),
                    &common,
                )?;
                let schema =
                    Schema::parse_str(&json).map_err(|source| SchemaFileError::Invalid {
                        file: event_type.schema_path().to_owned(),
                        source: Box::new(source),
                    })?;
                Ok(EventSchema {
                    event_type,
                    json,
                    schema,
                })
            })
            .collect::<Result<Vec<_>, SchemaFileError>>()?;
        Ok(Self { schemas })
    }

    pub fn get(&self, event_type: EventType) -> &EventSchema {
        // `schemas` is built from EventType::ALL in order, so the index always exists.
        &self.schemas[event_type as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventSchema> {
        self.schemas.iter()
    }
}

/// Makes one event schema self-contained given the shared types, and returns it minified.
/// Public so that tools and tests can derive evolved versions of a schema the same way.
pub fn self_contained_schema(file: &str, source: &str) -> Result<String, SchemaFileError> {
    let common = parse_common(COMMON_SCHEMA_SOURCES)?;
    self_contained(file, source, &common)
}

/// The shared types of `schemas/common/`, by full name, from their files' `(file, text)`. Public
/// for the schema tooling (`saga-schemas`), which reads them from disk rather than from this
/// crate, so that it checks the directory as it is.
pub fn parse_common(sources: &[(&str, &str)]) -> Result<BTreeMap<String, Json>, SchemaFileError> {
    sources
        .iter()
        .map(|(file, text)| {
            let json: Json =
                serde_json::from_str(text).map_err(|source| SchemaFileError::NotJson {
                    file: (*file).to_owned(),
                    source,
                })?;
            let name = full_name(&json).ok_or_else(|| SchemaFileError::Unnamed {
                file: (*file).to_owned(),
            })?;
            Ok((name, json))
        })
        .collect()
}

/// Makes one event schema self-contained given the shared types from [`parse_common`], and returns
/// it minified.
pub fn self_contained(
    file: &str,
    source: &str,
    common: &BTreeMap<String, Json>,
) -> Result<String, SchemaFileError> {
    let mut json: Json =
        serde_json::from_str(source).map_err(|source| SchemaFileError::NotJson {
            file: file.to_owned(),
            source,
        })?;
    inline_type(&mut json, common, &mut BTreeSet::new());
    Ok(json.to_string())
}

/// `namespace.name` of a named type definition (record, enum, fixed).
fn full_name(definition: &Json) -> Option<String> {
    let name = definition.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    match definition.get("namespace").and_then(Json::as_str) {
        Some(namespace) if !namespace.is_empty() => Some(format!("{namespace}.{name}")),
        _ => Some(name.to_owned()),
    }
}

/// Walks the positions where Avro allows a type (field types, array items, map values, union
/// branches) and replaces the first reference to each shared type with its definition.
fn inline_type(ty: &mut Json, common: &BTreeMap<String, Json>, defined: &mut BTreeSet<String>) {
    match ty {
        Json::String(name) => {
            if let Some(definition) = common.get(name.as_str())
                && defined.insert(name.clone())
            {
                *ty = definition.clone();
                inline_type(ty, common, defined);
            }
        }
        Json::Array(branches) => {
            for branch in branches {
                inline_type(branch, common, defined);
            }
        }
        Json::Object(object) => {
            let kind = object.get("type").and_then(Json::as_str).map(str::to_owned);
            match kind.as_deref() {
                Some("record" | "error" | "enum" | "fixed") => {
                    if let Some(name) = full_name(&Json::Object(object.clone())) {
                        defined.insert(name);
                    }
                    if let Some(Json::Array(fields)) = object.get_mut("fields") {
                        for field in fields {
                            if let Some(field_type) = field.get_mut("type") {
                                inline_type(field_type, common, defined);
                            }
                        }
                    }
                }
                Some("array") => {
                    if let Some(items) = object.get_mut("items") {
                        inline_type(items, common, defined);
                    }
                }
                Some("map") => {
                    if let Some(values) = object.get_mut("values") {
                        inline_type(values, common, defined);
                    }
                }
                // A primitive with attributes ({"type": "long", "logicalType": ...}) or a nested
                // type object.
                _ => {
                    if let Some(inner) = object.get_mut("type")
                        && !inner.is_string()
                    {
                        inline_type(inner, common, defined);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_schema_stands_alone_and_parses() -> Result<(), SchemaFileError> {
        let catalogue = SchemaCatalogue::load()?;
        for event_type in EventType::ALL {
            let schema = catalogue.get(*event_type);
            assert_eq!(schema.event_type, *event_type);
            assert!(
                !schema.json.contains("\"saga.common.EventMetadata\""),
                "{event_type}: metadata should be inlined, got {}",
                schema.json
            );
            assert!(
                schema.json.contains("\"default\":null"),
                "defaults must survive inlining"
            );
        }
        Ok(())
    }

    #[test]
    fn a_second_reference_to_a_shared_type_stays_a_name() -> Result<(), SchemaFileError> {
        let source = r#"{"type":"record","name":"Two","namespace":"t","fields":[
            {"name":"a","type":"saga.common.Address"},
            {"name":"b","type":["null","saga.common.Address"]}]}"#;
        let json = self_contained_schema("t/Two.avsc", source)?;
        assert_eq!(json.matches("\"postal_code\"").count(), 1, "{json}");
        assert!(Schema::parse_str(&json).is_ok(), "{json}");
        Ok(())
    }
}
