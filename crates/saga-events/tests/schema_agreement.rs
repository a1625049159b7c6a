//! The `.avsc` files are the source of truth: these tests fail when a Rust type and its schema
//! file disagree, or when a schema file is not wired into the crate.

use std::path::{Path, PathBuf};

use saga_events::{EventType, SchemaCatalogue, embedded_schema_files};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn avsc_files(dir: &Path, base: &Path, found: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            avsc_files(&path, base, found)?;
        } else if path.extension().is_some_and(|e| e == "avsc") {
            let relative = path.strip_prefix(base).unwrap_or(&path);
            found.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Parsing Canonical Form drops logical types, but apache-avro leaves their primitive wrapped
/// (`{"type":"long"}` for a timestamp): unwrap it so that the wire-level shapes compare equal.
fn wire_shape(canonical: String) -> String {
    ["string", "long", "int", "bytes"]
        .iter()
        .fold(canonical, |form, primitive| {
            form.replace(
                &format!(r#"{{"type":"{primitive}"}}"#),
                &format!(r#""{primitive}""#),
            )
        })
}

#[test]
fn every_rust_type_matches_its_schema_file() -> anyhow::Result<()> {
    let catalogue = SchemaCatalogue::load()?;
    let mut mismatches = Vec::new();
    for &event_type in EventType::ALL {
        let from_file = wire_shape(catalogue.get(event_type).schema.canonical_form());
        let from_type = wire_shape(event_type.rust_type_schema().canonical_form());
        if from_file != from_type {
            mismatches.push(format!(
                "{event_type} ({}):\n  file: {from_file}\n  type: {from_type}",
                event_type.schema_path()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "Rust types disagree with their schema files:\n{}",
        mismatches.join("\n")
    );
    Ok(())
}

#[test]
fn every_newest_version_is_compiled_in_and_named_after_its_record() -> anyhow::Result<()> {
    let dir = schemas_dir();
    let mut on_disk = Vec::new();
    avsc_files(&dir, &dir, &mut on_disk)?;
    for file in embedded_schema_files() {
        assert!(
            on_disk.iter().any(|f| f == file),
            "{file} is compiled in but not in schemas/"
        );
    }
    // What is on disk and not compiled in is history: an earlier version of an event.
    for file in &on_disk {
        let embedded = embedded_schema_files().contains(&file.as_str());
        let earlier = EventType::ALL.iter().any(|t| {
            let dir = format!("{}/{}/v", t.publisher().name(), t.name());
            file.strip_prefix(&dir)
                .and_then(|rest| rest.strip_suffix(".avsc"))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n < t.schema_version())
        });
        assert!(
            embedded || earlier,
            "{file} is neither compiled in nor an earlier version of an event"
        );
    }

    for &event_type in EventType::ALL {
        let expected_file = format!(
            "{}/{}/v{}.avsc",
            event_type.publisher().name(),
            event_type.name(),
            event_type.schema_version()
        );
        assert_eq!(event_type.schema_path(), expected_file);
        // `saga.<publisher>.<Event>`, or `saga.<publisher>.v<major>.<Event>` from major 2 on.
        let namespace = event_type
            .full_name()
            .strip_suffix(&format!(".{}", event_type.name()))
            .unwrap_or_default();
        let base = format!("saga.{}", event_type.publisher().name());
        assert!(
            namespace == base
                || namespace
                    .strip_prefix(&format!("{base}.v"))
                    .is_some_and(|major| major.parse::<u32>().is_ok_and(|m| m >= 2)),
            "{}",
            event_type.full_name()
        );
    }
    Ok(())
}
