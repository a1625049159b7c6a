//! A registry that is briefly wrong must not stay wrong for the codec: an answer of 500 (the
//! registry's database away) or 404 (a registry being restored) is never remembered, so the next
//! record with that schema, or the next registration, asks again. Against the real registry, with
//! a stand-in in front of it that fails on cue.

mod common;

use common::*;
use saga_events::*;
use saga_testkit::RegistryStandIn;

/// An event registered and encoded through the real registry, and its schema id.
async fn encoded_event(prefix: &str) -> anyhow::Result<(SagaEvent, Vec<u8>, u32)> {
    let real = EventCodec::new(&registry_url(), TopicNames::new(prefix))?;
    let event = one_of_each("11111111-2222-4333-8444-555555555555")
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no events"))?;
    let payload = real.encode(&event).await?.payload;
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((event, payload, id))
}

#[tokio::test]
async fn a_schema_lookup_that_failed_with_500_is_asked_again() -> anyhow::Result<()> {
    let prefix = unique_prefix("flaky500");
    let (event, payload, id) = encoded_event(&prefix).await?;
    let stand_in = RegistryStandIn::start(&registry_url()).await?;
    let codec = EventCodec::new(stand_in.url(), TopicNames::new(&prefix))?;

    stand_in.fail(&format!("/schemas/ids/{id}"), 500, 1);
    let first = codec.decode(&payload).await;
    assert!(
        matches!(&first, Err(error) if error.is_transient()),
        "a 500 is the registry failing, worth a retry: {first:?}"
    );
    let second = codec.decode(&payload).await?;
    assert_eq!(second, event, "the second attempt asks the registry again");
    assert_eq!(stand_in.requests(&format!("/schemas/ids/{id}")), 2);
    Ok(())
}

#[tokio::test]
async fn a_schema_id_unknown_once_is_looked_up_again() -> anyhow::Result<()> {
    let prefix = unique_prefix("flaky404");
    let (event, payload, id) = encoded_event(&prefix).await?;
    let stand_in = RegistryStandIn::start(&registry_url()).await?;
    let codec = EventCodec::new(stand_in.url(), TopicNames::new(&prefix))?;

    stand_in.fail(&format!("/schemas/ids/{id}"), 404, 1);
    let first = codec.decode(&payload).await;
    assert!(
        matches!(first, Err(DecodeError::UnknownSchemaId { .. })),
        "{first:?}"
    );
    assert_eq!(
        codec.decode(&payload).await?,
        event,
        "a 404 is not remembered"
    );
    Ok(())
}

#[tokio::test]
async fn a_registration_that_failed_with_500_or_504_is_tried_again() -> anyhow::Result<()> {
    let prefix = unique_prefix("flakyregister");
    let stand_in = RegistryStandIn::start(&registry_url()).await?;
    let codec = EventCodec::new(stand_in.url(), TopicNames::new(&prefix))?;
    let event = one_of_each("11111111-2222-4333-8444-666666666666")
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no events"))?;

    for status in [500, 504] {
        stand_in.fail("/subjects/", status, 1);
        let refused = codec.encode(&event).await;
        assert!(
            matches!(&refused, Err(error) if error.is_transient()),
            "{status}: {refused:?}"
        );
    }
    let encoded = codec.encode(&event).await?;
    assert_eq!(codec.decode(&encoded.payload).await?, event);
    Ok(())
}
