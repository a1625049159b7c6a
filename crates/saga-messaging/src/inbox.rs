//! The inbox: every event a service has handled, recorded in the transaction that handled it,
//! so that a redelivered event finds its id here and changes nothing. All of the inbox's SQL is
//! here, written for batches: one statement answers for every event of a batch, one statement
//! records them all.

use sqlx::PgConnection;
use uuid::Uuid;

/// Where an arriving event stands for this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Already handled, or already parked: a duplicate.
    Known,
    /// Another message of its order is parked here: it must wait behind it.
    OrderParked,
    /// Nothing stands in the way.
    Clear,
}

/// The standing of each `(event id, order id)`, in the order given, in one round trip. A record
/// without an event id (one that could not be decoded) is only asked about its order.
pub async fn standing(
    conn: &mut PgConnection,
    events: &[(Option<Uuid>, String)],
) -> Result<Vec<Standing>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, orders): (Vec<Option<Uuid>>, Vec<String>) = events.iter().cloned().unzip();
    let rows: Vec<(bool, bool)> = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = a.event_id)
                OR EXISTS (SELECT 1 FROM parked p WHERE p.event_id = a.event_id),
                EXISTS (SELECT 1 FROM parked p WHERE p.order_id = a.order_id)
         FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS a(event_id, order_id, n)
         ORDER BY a.n",
    )
    .bind(&ids)
    .bind(&orders)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(known, order_parked)| {
            if known {
                Standing::Known
            } else if order_parked {
                Standing::OrderParked
            } else {
                Standing::Clear
            }
        })
        .collect())
}

/// One handled event, as the inbox records it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The inbox's columns of some entries, as arrays for `unnest`.
pub(crate) struct Columns<'a> {
    pub ids: Vec<Uuid>,
    pub types: Vec<&'static str>,
    pub topics: Vec<&'a str>,
    pub partitions: Vec<i32>,
    pub offsets: Vec<i64>,
}

impl<'a> Columns<'a> {
    pub fn of(entries: &'a [Entry]) -> Self {
        Self {
            ids: entries.iter().map(|e| e.event_id).collect(),
            types: entries.iter().map(|e| e.event_type).collect(),
            topics: entries.iter().map(|e| e.topic.as_str()).collect(),
            partitions: entries.iter().map(|e| e.partition).collect(),
            offsets: entries.iter().map(|e| e.offset).collect(),
        }
    }
}

/// Records handled events; returns how many were new (all of them, when the caller holds the
/// locks of their orders and checked [`standing`] first). See also
/// [`crate::Outbox::insert_with_inbox`], which does this and the outbox in one statement.
pub async fn record(conn: &mut PgConnection, entries: &[Entry]) -> Result<u64, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let columns = Columns::of(entries);
    let inserted = sqlx::query(
        "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[])
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&columns.ids)
    .bind(&columns.types)
    .bind(&columns.topics)
    .bind(&columns.partitions)
    .bind(&columns.offsets)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// Whether one event is recorded: the retry path's duplicate check.
pub async fn contains(conn: &mut PgConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)")
        .bind(event_id)
        .fetch_one(conn)
        .await
}

/// Deletes up to `batch` entries older than `horizon_seconds`, skipping rows in use.
pub async fn delete_older_than(
    conn: &mut PgConnection,
    horizon_seconds: u64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM inbox WHERE event_id IN (
             SELECT event_id FROM inbox WHERE processed_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(horizon_seconds as f64)
    .bind(batch)
    .execute(conn)
    .await?
    .rows_affected())
}
