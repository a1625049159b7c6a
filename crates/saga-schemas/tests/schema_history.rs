//! The compatibility gate over `schemas/`: the real history passes; a breaking change, a
//! file that does not parse, a version gap, a shipped version that is not frozen and a malformed
//! accepted break are each refused with a message naming the file (or the event, the versions
//! and the field); and the registry refuses the same in-place change the gate refuses.

mod common;

use std::path::Path;

use common::*;
use saga_events::{EventCodec, EventType, SchemaCatalogue, TopicNames};
use saga_schemas::{Direction, HistoryError, SchemaHistory};
use saga_testkit::isolated::{registry_url, unique_prefix};

fn load_errors(dir: &Path) -> Vec<String> {
    match SchemaHistory::load(dir) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The next version of OrderPlaced: the newest without `payment_method`, which readers of every
/// earlier version need and cannot default. Returns its file and version.
fn remove_payment_method_next(dir: &Path) -> anyhow::Result<(String, u32)> {
    let history = SchemaHistory::load(dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let latest = history
        .event("order/OrderPlaced")
        .and_then(|e| e.latest())
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&latest.file))?)?;
    if let Some(fields) = json["fields"].as_array_mut() {
        fields.retain(|f| f["name"] != "payment_method");
    }
    let version = latest.version + 1;
    let file = format!("order/OrderPlaced/v{version}.avsc");
    std::fs::write(dir.join(&file), serde_json::to_string_pretty(&json)?)?;
    saga_schemas::freeze(dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok((file, version))
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
fn a_field_removed_is_refused_naming_the_event_versions_and_field() -> anyhow::Result<()> {
    let dir = scratch_copy("removed")?;
    let (_, newest) = remove_payment_method_next(&dir)?;
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:#?}"))?;
    let breaks = history.breaks();
    let found = breaks
        .iter()
        .find(|b| b.event == "order/OrderPlaced" && b.accepted.is_none())
        .ok_or_else(|| anyhow::anyhow!("the gate let it through: {breaks:#?}"))?;
    assert_eq!(found.direction, Direction::Forward, "{found}");
    assert_eq!((found.older, found.newer), (newest - 1, newest), "{found}");
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
    std::fs::remove_file(dir.join("order/OrderPlaced/v2.avsc"))?;
    std::fs::write(dir.join("order/OrderPlaced/draft.avsc"), "{}")?;
    std::fs::copy(
        dir.join("order/OrderConfirmed/v1.avsc"),
        dir.join("order/OrderConfirmed/v2.avsc"),
    )?;
    std::fs::copy(
        dir.join("order/OrderCancelled/v2.avsc"),
        dir.join("order/OrderConfirmed/v3.avsc"),
    )?;
    let errors = load_errors(&dir);
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(
        has("order/OrderPlaced: versions [1, 3, 4] on disk, v2 is missing"),
        "{errors:#?}"
    );
    assert!(
        has("order/OrderPlaced/draft.avsc: not a version file"),
        "{errors:#?}"
    );
    assert!(
        has("order/OrderConfirmed/v3.avsc: defines record saga.order.OrderCancelled"),
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
    let rewritten = saga_schemas::freeze(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
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
    // The subjects as the registry would have them: every shipped version, oldest first, under
    // the rule the saga runs with.
    for version in &placed.versions {
        full_transitive(&format!("{topic}-{}", version.full_name)).await?;
        codec
            .register(&topic, &version.full_name, &version.json)
            .await?;
    }
    let dir = scratch_copy("registry")?;
    let (_, next) = remove_payment_method_next(&dir)?;
    let edited = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let candidate = edited
        .event("order/OrderPlaced")
        .and_then(|e| e.version(next))
        .ok_or_else(|| anyhow::anyhow!("no v{next}"))?;
    let refused = codec
        .register(&topic, &candidate.full_name, &candidate.json)
        .await
        .expect_err("the registry must refuse a field removed without a default");
    assert!(refused.is_incompatible(), "{refused:?}");
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

async fn full_transitive(subject: &str) -> anyhow::Result<()> {
    reqwest::Client::new()
        .put(format!("{}/config/{subject}", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"FULL_TRANSITIVE"}"#)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Major 2 of OrderPlaced (v4) rewritten as if it were just the next version of major 1.
fn major_change_in_place(dir: &Path) -> anyhow::Result<()> {
    let file = dir.join("order/OrderPlaced/v4.avsc");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    json["namespace"] = "saga.order".into();
    std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

#[test]
fn the_money_change_made_in_place_is_refused() -> anyhow::Result<()> {
    let dir = scratch_copy("major-in-place")?;
    major_change_in_place(&dir)?;
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:#?}"))?;
    let refused: Vec<String> = history
        .breaks()
        .iter()
        .filter(|b| b.event == "order/OrderPlaced" && b.newer == 4 && b.accepted.is_none())
        .map(ToString::to_string)
        .collect();
    assert!(
        refused.iter().any(|b| b.contains("total")),
        "the gate must refuse total replacing total_cents in place: {refused:#?}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[test]
fn a_new_major_without_an_upcaster_is_named() -> anyhow::Result<()> {
    let dir = scratch_copy("no-upcaster")?;
    let v4 = std::fs::read_to_string(dir.join("order/OrderPlaced/v4.avsc"))?;
    std::fs::write(
        dir.join("order/OrderPlaced/v5.avsc"),
        v4.replace("\"saga.order.v2\"", "\"saga.order.v3\""),
    )?;
    saga_schemas::freeze(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:#?}"))?;
    let gaps = history.upcast_gaps();
    assert!(
        gaps.iter().any(|g| g
            .contains("order/OrderPlaced v5 starts a new major (saga.order.v3.OrderPlaced)")
            && g.contains("no upcaster carries saga.order.v2.OrderPlaced")),
        "{gaps:#?}"
    );
    assert!(
        SchemaHistory::load(&schemas_dir())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .upcast_gaps()
            .is_empty()
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test]
async fn the_registry_refuses_the_money_change_made_in_place() -> anyhow::Result<()> {
    let prefix = unique_prefix("gate-major");
    let codec = EventCodec::new(&registry_url(), TopicNames::new(&prefix))?;
    let topic = format!("{prefix}order.events");
    full_transitive(&format!("{topic}-saga.order.OrderPlaced")).await?;
    let history = SchemaHistory::load(&schemas_dir()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let placed = history
        .event("order/OrderPlaced")
        .ok_or_else(|| anyhow::anyhow!("no OrderPlaced"))?;
    for version in placed
        .versions
        .iter()
        .filter(|v| v.full_name == "saga.order.OrderPlaced")
    {
        codec
            .register(&topic, &version.full_name, &version.json)
            .await?;
    }
    let dir = scratch_copy("registry-major")?;
    major_change_in_place(&dir)?;
    let edited = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let in_place = edited
        .event("order/OrderPlaced")
        .and_then(|e| e.version(4))
        .ok_or_else(|| anyhow::anyhow!("no v4"))?;
    assert_eq!(in_place.full_name, "saga.order.OrderPlaced");
    let refused = codec
        .register(&topic, &in_place.full_name, &in_place.json)
        .await
        .expect_err("the registry must refuse the money change in place");
    assert!(refused.is_incompatible(), "{refused:?}");
    // Done right, it is a subject of its own, which takes it.
    let major_2 = placed.version(4).ok_or_else(|| anyhow::anyhow!("no v4"))?;
    codec
        .register(&topic, &major_2.full_name, &major_2.json)
        .await?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
