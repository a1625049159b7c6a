//! What a relay does before publishing anything: find which rows still in the outbox an earlier
//! relay (or an earlier attempt of this one) already got onto the broker, and delete exactly
//! those.
//!
//! A row is known to be on the broker only when its `outbox-id` is found on the partition its key
//! maps to. Reading starts from the offset of the oldest unpublished row's creation time (minus a
//! margin for clock differences): any record of a row was produced after the row was created, so
//! nothing that could be there is skipped, however long the relay was away. Rows not found are
//! sent, so the worst a missed record can cause is a duplicate, which every consumer's inbox
//! absorbs; a row is never taken for published on the strength of another row's id.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use sqlx::PgConnection;
use tracing::info;

use super::{OutboxRelay, RelayError};
use crate::headers;
use crate::outbox;
use crate::reader::{PartitionReader, Start};

impl OutboxRelay {
    /// Deletes the rows already on the broker; returns how many.
    pub(super) async fn recover(&self, session: &mut PgConnection) -> Result<u64, RelayError> {
        let pending = outbox::unpublished_since(session).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let margin = i64::try_from(self.settings.recovery_margin.as_millis()).unwrap_or(0);
        // Per partition, from when to read.
        let mut since: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (topic, key, created_ms) in pending {
            let partition = self.partition_of(&topic, key.as_deref()).await?;
            let from = created_ms - margin;
            since
                .entry((topic, partition))
                .and_modify(|at| *at = (*at).min(from))
                .or_insert(from);
        }
        let kafka = self.kafka.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<HashSet<i64>, RelayError> {
            let reader = PartitionReader::new(&kafka)?;
            let mut found = HashSet::new();
            for ((topic, partition), from_ms) in since {
                reader.scan(&topic, partition, Start::Time(from_ms), |record| {
                    if let Some(id) = record
                        .headers
                        .get(headers::OUTBOX_ID)
                        .and_then(|v| v.parse::<i64>().ok())
                    {
                        found.insert(id);
                    }
                    ControlFlow::Continue(())
                })?;
            }
            Ok(found)
        })
        .await??;
        let ids: Vec<i64> = found.into_iter().collect();
        let mut removed = 0;
        for chunk in ids.chunks(10_000) {
            removed += outbox::mark_published(session, chunk).await?;
        }
        if removed > 0 {
            info!(
                rows = removed,
                "found outbox rows already on the broker; removed them without resending"
            );
        }
        Ok(removed)
    }
}
