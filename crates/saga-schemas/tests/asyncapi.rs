//! The event catalogue generated from the real `schemas/` and `deploy/topics.conf`: each event is
//! a message its publisher sends and the services that react to it receive, and a catalogue
//! entry without a schema is named.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use saga_schemas::{SchemaHistory, document, read_topics};
use serde_json::json;

fn topics_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/topics.conf")
}

#[test]
fn every_event_is_a_message_sent_by_its_publisher_and_received_by_who_reacts() -> anyhow::Result<()>
{
    let history = SchemaHistory::load(&schemas_dir()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let document = document(&history, &read_topics(&topics_conf())?)?;
    let placed = &document["components"]["messages"]["OrderPlaced"];
    assert_eq!(placed["x-saga"]["publisher"], "order");
    assert_eq!(placed["x-saga"]["receivers"], json!(["order", "payment"]));
    assert_eq!(
        document["operations"]["paymentReceivesOrderEvents"]["messages"],
        json!([
            {"$ref": "#/channels/orderEvents/messages/OrderPlaced"},
            {"$ref": "#/channels/orderEvents/messages/OrderCancelled"}
        ])
    );
    assert_eq!(
        document["channels"]["orderEvents"]["bindings"]["kafka"]["partitions"],
        6
    );
    Ok(())
}

#[test]
fn an_event_without_a_schema_is_named() -> anyhow::Result<()> {
    let dir = scratch_copy("missing")?;
    std::fs::remove_dir_all(dir.join("order/OrderConfirmed"))?;
    let history = SchemaHistory::load(&dir).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let error = document(&history, &read_topics(&topics_conf())?)
        .expect_err("a catalogue entry without a schema");
    assert!(
        error.to_string().contains(
            "catalogue entry OrderConfirmed (order.events) has no schema: schemas/order/OrderConfirmed/v1.avsc is missing"
        ),
        "{error}"
    );
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
