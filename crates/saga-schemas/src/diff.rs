//! What changed between two versions of an event, as a person reads it: one line per field
//! added, removed or retyped, and per default or enum symbol changed (`sagactl schemas diff`).

use serde_json::Value as Json;

use crate::history::SchemaVersion;

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
