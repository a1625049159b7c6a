//! What a relay does before publishing anything: find which rows still in the outbox an earlier
//! relay (or an earlier attempt of this one) already got onto the broker, and delete exactly
//! those.
//!
//! A row is known to be on the broker only when its `outbox-id` is found on the partition its key
//! maps to, written from this very database (ids are scoped by the database's system identifier
//! and name: a record copied from elsewhere never counts). Reading starts from the offset of the
//! oldest unpublished row's creation time (minus a margin for clock differences): any record of a
//! row was produced after the row was created, so nothing that could be there is skipped, however
//! long the relay was away. Rows not found are
//! sent, so the worst a missed record can cause is a duplicate, which every consumer's inbox
//! absorbs; a row is never taken for published on the strength of another row's id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

use sqlx::PgConnection;
use tracing::info;

use super::{OutboxRelay, RelayError};
use crate::headers;
use crate::inspect::reader::{PartitionReader, Start};
use crate::outbox;

impl OutboxRelay {
    /// Deletes the rows already on the broker; returns how many.
    pub(super) async fn recover(&self, session: &mut PgConnection) -> Result<u64, RelayError> {
        let pending = outbox::unpublished_since(session).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let scope = self.scope(session).await?;
        let margin = i64::try_from(self.settings.recovery_margin.as_millis()).unwrap_or(0);
        // Per partition, from when to read.
        let mut since: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (topic, key, created_ms) in pending {
            let partition = match self.partition_of(&topic, key.as_deref()).await {
                Ok(partition) => partition,
                // A topic that is not there (or not ours to write) holds none of these rows:
                // publishing them decides whether they wait or are moved aside.
                Err(error)
                    if super::refusal::verdict(&error) != super::refusal::Verdict::Transient =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            };
            let from = created_ms - margin;
            since
                .entry((topic, partition))
                .and_modify(|at| *at = (*at).min(from))
                .or_insert(from);
        }
        let kafka = self.kafka.clone();
        let found = tokio::task::spawn_blocking(
            move || -> Result<HashMap<String, HashSet<i64>>, RelayError> {
                let reader = PartitionReader::new(&kafka)?;
                let mut found: HashMap<String, HashSet<i64>> = HashMap::new();
                for ((topic, partition), from_ms) in since {
                    let ids = found.entry(topic.clone()).or_default();
                    reader.scan(&topic, partition, Start::Time(from_ms), |record| {
                        if let Some(id) = record
                            .headers
                            .get(headers::OUTBOX_ID)
                            .and_then(|value| own_row_id(value, &scope))
                        {
                            ids.insert(id);
                        }
                        ControlFlow::Continue(())
                    })?;
                }
                Ok(found)
            },
        )
        .await??;
        let mut removed = 0;
        for (topic, ids) in found {
            let ids: Vec<i64> = ids.into_iter().collect();
            for chunk in ids.chunks(10_000) {
                removed += outbox::mark_published_on(session, &topic, chunk).await?;
            }
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

/// The row id of an `outbox-id` header written from the database of `scope`; None for one
/// written from anywhere else, or by anything else.
fn own_row_id(value: &str, scope: &str) -> Option<i64> {
    value.strip_prefix(scope)?.strip_prefix('/')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::own_row_id;

    #[test]
    fn only_ids_scoped_to_this_database_are_trusted() {
        let scope = "7715587401219006635/payments";
        assert_eq!(
            own_row_id("7715587401219006635/payments/42", scope),
            Some(42)
        );
        assert_eq!(own_row_id("7715587401219006635/orders/42", scope), None);
        assert_eq!(own_row_id("1/payments/42", scope), None);
        assert_eq!(own_row_id("42", scope), None);
        assert_eq!(own_row_id("7715587401219006635/payments/", scope), None);
        assert_eq!(own_row_id("7715587401219006635/payments42", scope), None);
    }
}
