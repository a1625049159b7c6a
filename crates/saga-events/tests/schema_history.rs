//! The compatibility gate over `schemas/`: the real history passes; a change made in place, a
//! file that does not parse, a version gap, a shipped version that is not frozen and a malformed
//! accepted break are each refused with a message naming the file (or the event, the versions
//! and the field); and the registry refuses the same in-place change the gate refuses.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use saga_events::history::{Direction, HistoryError, SchemaHistory};
use saga_events::{EventCodec, EventType, SchemaCatalogue, TopicNames};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// A copy of `schemas/` to break on purpose.
fn scratch_copy(test: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::temp_dir().join(format!(
        "saga-schemas-{test}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    copy_dir(&schemas_dir(), &target)?;
    Ok(target)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn load_errors(dir: &Path) -> Vec<String> {
    match SchemaHistory::load(dir) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The newest version of OrderPlaced without `payment_method`, written over that version: what
/// "just edit the schema" does.
fn remove_payment_method_in_place(dir: &Path) -> anyhow::Result<(String, u32)> {
    let history = SchemaHistory::load(&schemas_dir()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let latest = history
        .event("order/OrderPlaced")
        .and_then(|e| e.latest())
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    let file = dir.join(&latest.file);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    if let Some(fields) = json["fields"].as_array_mut() {
        fields.retain(|f| f["name"] != "payment_method");
    }
    std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
    Ok((latest.file.clone(), latest.version))
}

#[test]
fn the_shipped_history_passes_the_gate() -> anyhow::Result<()> {
    let history =
        SchemaHistory::load(&schemas_dir()).map_err(|errors| anyhow::anyhow!("{errors:#?}"))?;
    let refused: Vec<String> = history
        .breaks()
        .iter()
        .filter(|b| b.accepted.is_none())
        .map(ToString::to_string)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    Ok(())
}

#[test]
fn this_build_writes_the_newest_version_of_every_event() -> anyhow::Result<()> {
    let history =
        SchemaHistory::load(&schemas_dir()).map_err(|errors| anyhow::anyhow!("{errors:#?}"))?;
    let catalogue = SchemaCatalogue::load()?;
    for &event_type in EventType::ALL {
        let dir = format!("{}/{}", event_type.publisher().name(), event_type.name());
        let latest = history
            .event(&dir)
            .and_then(|e| e.latest())
            .ok_or_else(|| anyhow::anyhow!("no versions of {dir}"))?;
        assert_eq!(
            latest.version,
            event_type.schema_version(),
            "{dir}: schemas/ has v{} but crates/saga-events/src/events.rs writes v{}",
            latest.version,
            event_type.schema_version()
        );
        assert_eq!(latest.json, catalogue.get(event_type).json, "{dir}");
    }
    assert_eq!(
        history.events.len(),
        EventType::ALL.len(),
        "an event directory per event type"
    );
    Ok(())
}

#[test]
fn a_field_removed_in_place_is_refused_naming_the_event_versions_and_field() -> anyhow::Result<()> {
    let dir = scratch_copy("in-place")?;
    let (_, newest) = remove_payment_method_in_place(&dir)?;
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:#?}"))?;
    let breaks = history.breaks();
    let found = breaks
        .iter()
        .find(|b| b.event == "order/OrderPlaced" && b.accepted.is_none())
        .ok_or_else(|| anyhow::anyhow!("the gate let it through: {breaks:#?}"))?;
    assert_eq!(found.direction, Direction::Forward, "{found}");
    assert_eq!((found.older, found.newer), (1, newest), "{found}");
    assert!(found.detail.contains("payment_method"), "{found}");
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[test]
fn a_file_that_does_not_parse_is_named() -> anyhow::Result<()> {
    let dir = scratch_copy("not-json")?;
    std::fs::write(
        dir.join("shipping/ShipmentFailed/v1.avsc"),
        "{\"type\": \"record\",",
    )?;
    let errors = load_errors(&dir);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("shipping/ShipmentFailed/v1.avsc") && e.contains("not valid JSON")),
        "{errors:#?}"
    );
    std::fs::write(
        dir.join("shipping/ShipmentFailed/v1.avsc"),
        r#"{"type":"record","name":"ShipmentFailed","fields":[{"name":"x","type":"no.such.Type"}]}"#,
    )?;
    let errors = load_errors(&dir);
    assert!(
        errors.iter().any(
            |e| e.contains("shipping/ShipmentFailed/v1.avsc") && e.contains("not a valid Avro")
        ),
        "{errors:#?}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[test]
fn a_version_gap_a_stray_file_and_a_wrong_record_name_are_named() -> anyhow::Result<()> {
    let dir = scratch_copy("gap")?;
    std::fs::rename(
        dir.join("order/OrderPlaced/v2.avsc"),
        dir.join("order/OrderPlaced/v3.avsc"),
    )?;
    std::fs::write(dir.join("order/OrderPlaced/draft.avsc"), "{}")?;
    std::fs::copy(
        dir.join("order/OrderConfirmed/v1.avsc"),
        dir.join("order/OrderCancelled/v3.avsc"),
    )?;
    let errors = load_errors(&dir);
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(
        has("order/OrderPlaced: versions [1, 3] on disk, v2 is missing"),
        "{errors:#?}"
    );
    assert!(
        has("order/OrderPlaced/draft.avsc: not a version file"),
        "{errors:#?}"
    );
    assert!(
        has("order/OrderCancelled/v3.avsc: defines record saga.order.OrderConfirmed"),
        "{errors:#?}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[test]
fn a_shipped_version_that_refers_to_shared_types_must_be_frozen() -> anyhow::Result<()> {
    let dir = scratch_copy("frozen")?;
    // v1 written the way the newest version is: with shared types by name.
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let newest = history
        .event("order/OrderPlaced")
        .and_then(|e| e.latest())
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    std::fs::copy(
        dir.join(&newest.file),
        dir.join("order/OrderPlaced/v1.avsc"),
    )?;
    let errors = match SchemaHistory::load(&dir) {
        Ok(_) => anyhow::bail!("an unfrozen v1 was accepted"),
        Err(errors) => errors,
    };
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, HistoryError::NotFrozen { file, .. }
            if file == "order/OrderPlaced/v1.avsc")),
        "{errors:#?}"
    );
    // `sagactl schemas freeze` mends it.
    let rewritten = saga_events::history::freeze(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(rewritten, vec!["order/OrderPlaced/v1.avsc".to_owned()]);
    assert!(SchemaHistory::load(&dir).is_ok());
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[test]
fn a_malformed_accepted_break_is_named_with_its_line() -> anyhow::Result<()> {
    let dir = scratch_copy("accepted")?;
    let file = dir.join("accepted-breaks.txt");
    let mut text = std::fs::read_to_string(&file)?;
    text.push_str("order/OrderPlaced v1\n");
    std::fs::write(&file, text)?;
    let errors = load_errors(&dir);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("accepted-breaks.txt:") && e.contains("order/OrderPlaced v1")),
        "{errors:#?}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test]
async fn the_registry_refuses_the_change_the_gate_refuses() -> anyhow::Result<()> {
    let prefix = unique_prefix("gate");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let topic = format!("{prefix}order.events");
    let history = SchemaHistory::load(&schemas_dir()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let placed = history
        .event("order/OrderPlaced")
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    // The subject as the registry would have it: every shipped version, oldest first, under
    // the rule the saga runs with.
    let subject = format!("{topic}-saga.order.OrderPlaced");
    let http = reqwest::Client::new();
    http.put(format!("{}/config/{subject}", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"FULL_TRANSITIVE"}"#)
        .send()
        .await?
        .error_for_status()?;
    for version in &placed.versions {
        codec
            .register(&topic, &version.full_name, &version.json)
            .await?;
    }
    let dir = scratch_copy("registry")?;
    remove_payment_method_in_place(&dir)?;
    let edited = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let latest = edited
        .event("order/OrderPlaced")
        .and_then(|e| e.latest())
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    let refused = codec
        .register(&topic, &latest.full_name, &latest.json)
        .await
        .expect_err("the registry must refuse a field removed without a default");
    assert!(refused.is_incompatible(), "{refused:?}");
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
