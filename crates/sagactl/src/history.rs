//! `sagactl history rebuild`: the read side rebuilt from the topics, checked, and switched to
//! while the live one keeps serving.
//!
//! 1. A new generation (schema `history_rebuild`, the read side's migrations) is projected from
//!    offset 0 up to the ends the topics had when the rebuild started, with the projection the
//!    service runs; the live projector goes on meanwhile.
//! 2. Once the live projection has read that far too, the live projector is held at a batch
//!    boundary (the projection lock), the new generation catches up with the live checkpoints,
//!    and the two are compared table by table (row counts and an ordered hash of every row).
//! 3. Equal: the new tables take the live ones' place in one transaction, and the projector is
//!    let go. Not equal: nothing is switched, the differences are printed, and the command fails.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use saga_events::Service;
use saga_history::projection::generation::{self, Fingerprint, REBUILD};
use saga_history::projection::store::{PROJECTION_LOCK, Partition};
use saga_history::projection::{self, Projection};
use saga_messaging::Delivery;
use saga_messaging::error::is_transient_db_error;
use saga_messaging::inspect::reader::{PartitionReader, Range};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::Context;
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Rebuilds the read side from offset 0 beside the live one, checks the two equal at one
    /// checkpoint vector, and switches to the new one.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The read side's database, as its owner (only the owner may create and move tables).
    #[arg(
        long,
        env = "HISTORY_DATABASE_URL",
        default_value = "postgres://history:history@127.0.0.1:5432/history"
    )]
    database_url: String,
    /// Records per transaction.
    #[arg(long, default_value_t = 2000)]
    batch_size: usize,
    /// Keep the replaced tables in schema `history_previous` (default: drop them).
    #[arg(long)]
    keep_previous: bool,
    /// How long to wait for the live projection to reach the rebuild's starting ends.
    #[arg(long, default_value_t = 120)]
    live_patience_seconds: u64,
}

pub async fn run(context: &Context, command: HistoryCommand) -> anyhow::Result<bool> {
    match command {
        HistoryCommand::Rebuild(args) => rebuild(context, args).await,
    }
}

async fn rebuild(context: &Context, args: RebuildArgs) -> anyhow::Result<bool> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the read side's database")?;
    let projection = Projection {
        codec: context.codec.clone(),
        topics: context.topics.clone(),
    };
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    generation::create(&mut conn, REBUILD).await?;
    drop(conn);

    let partitions = partitions(context).await?;
    let ends = ends(context, &partitions).await?;
    let from: HashMap<Partition, i64> = HashMap::new();
    let mut projected = project(context, &pool, &projection, &from, &ends, args.batch_size).await?;
    let seconds = started.elapsed().as_secs_f64();
    emit(format!(
        "projected {} records into {REBUILD} in {seconds:.1} s ({:.0} events/s)",
        projected.records,
        projected.records as f64 / seconds.max(0.001)
    ))?;

    // The live projection must have read at least as far before the two can meet.
    let patience = Duration::from_secs(args.live_patience_seconds);
    let waiting = Instant::now();
    loop {
        let mut conn = pool.acquire().await?;
        let live = generation::checkpoints(&mut conn, "public").await?;
        let behind: i64 = ends
            .iter()
            .map(|(p, end)| (end - live.get(p).copied().unwrap_or(0)).max(0))
            .sum();
        if behind == 0 {
            break;
        }
        if waiting.elapsed() > patience {
            bail!(
                "the live projection is still {behind} records short of where the rebuild started after {patience:?}: is the history service running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Hold the live projector at a batch boundary, meet it, compare, switch.
    let mut holder = PgConnection::connect(&args.database_url).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PROJECTION_LOCK)
        .execute(&mut holder)
        .await?;
    let held = Instant::now();
    let outcome = meet_compare_switch(
        context,
        &pool,
        &projection,
        &ends,
        args.batch_size,
        &mut projected,
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PROJECTION_LOCK)
        .execute(&mut holder)
        .await?;
    let (live, rebuilt) = outcome?;
    let equal = live == rebuilt;
    let total = started.elapsed().as_secs_f64();
    if context.json {
        emit(serde_json::json!({
            "equal": equal,
            "switched": equal,
            "records": projected.records,
            "dead_letters": projected.dead,
            "seconds": total,
            "events_per_second": projected.records as f64 / total.max(0.001),
            "live_held_ms": held.elapsed().as_millis() as u64,
            "tables": rebuilt.iter().zip(&live).map(|(r, l)| serde_json::json!({
                "table": r.table, "rows": r.rows, "live_rows": l.rows, "equal": r == l
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for (rebuilt, live) in rebuilt.iter().zip(&live) {
            emit(format!(
                "{:<15} {:>9} rows  {}  {}",
                rebuilt.table,
                rebuilt.rows,
                &rebuilt.hash.get(..12).unwrap_or_default(),
                if rebuilt == live {
                    "equal".to_owned()
                } else {
                    format!(
                        "DIFFERS from live ({} rows, {})",
                        live.rows,
                        live.hash.get(..12).unwrap_or_default()
                    )
                }
            ))?;
        }
        emit(format!(
            "{} records ({} not usable, left in history.dlq) in {total:.1} s: {:.0} events/s; live projection held {} ms",
            projected.records,
            projected.dead,
            projected.records as f64 / total.max(0.001),
            held.elapsed().as_millis()
        ))?;
        emit(if equal {
            "equal at one checkpoint vector: switched to the rebuilt generation".to_owned()
        } else {
            format!(
                "NOT equal: the live generation stays; the rebuilt one is left in schema {REBUILD}"
            )
        })?;
    }
    if equal && !args.keep_previous {
        let mut conn = pool.acquire().await?;
        generation::drop(&mut conn, generation::PREVIOUS).await?;
        generation::drop(&mut conn, REBUILD).await?;
    }
    Ok(equal)
}

/// Under the projection lock: the rebuild catches up with the live checkpoints, both are
/// fingerprinted, and, when equal, the rebuilt tables replace the live ones.
async fn meet_compare_switch(
    context: &Context,
    pool: &PgPool,
    projection: &Projection,
    ends: &HashMap<Partition, i64>,
    batch_size: usize,
    projected: &mut Projected,
) -> anyhow::Result<(Vec<Fingerprint>, Vec<Fingerprint>)> {
    let mut conn = pool.acquire().await?;
    let live = generation::checkpoints(&mut conn, "public").await?;
    drop(conn);
    let caught_up = project(context, pool, projection, ends, &live, batch_size).await?;
    projected.records += caught_up.records;
    projected.dead += caught_up.dead;
    let mut conn = pool.acquire().await?;
    let live_prints = generation::fingerprints(&mut conn, "public").await?;
    let rebuilt_prints = generation::fingerprints(&mut conn, REBUILD).await?;
    if live_prints == rebuilt_prints {
        let mut tx = conn.begin().await?;
        generation::switch(&mut tx, REBUILD).await?;
        tx.commit().await?;
    }
    Ok((live_prints, rebuilt_prints))
}

/// What a projection pass read.
#[derive(Debug, Default)]
struct Projected {
    records: u64,
    dead: u64,
}

/// Every partition of the event topics.
async fn partitions(context: &Context) -> anyhow::Result<Vec<Partition>> {
    let kafka = context.kafka.clone();
    let topics: Vec<String> = Service::ALL
        .iter()
        .map(|s| context.topics.events(*s))
        .collect();
    tokio::task::spawn_blocking(move || {
        let reader = PartitionReader::new(&kafka)?;
        let mut partitions = Vec::new();
        for topic in topics {
            let count = reader.partition_count(&topic)?;
            partitions.extend((0..count).map(|p| (topic.clone(), p)));
        }
        Ok(partitions)
    })
    .await?
}

/// The high watermark of every partition now.
async fn ends(
    context: &Context,
    partitions: &[Partition],
) -> anyhow::Result<HashMap<Partition, i64>> {
    let kafka = context.kafka.clone();
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        let reader = PartitionReader::new(&kafka)?;
        let watermarks = reader.watermarks_of(&partitions)?;
        Ok(watermarks
            .into_iter()
            .map(|(partition, (_, high))| (partition, high))
            .collect())
    })
    .await?
}

/// Projects every partition's records from `from` (0 where absent) up to `to` into the rebuild
/// generation, a batch per transaction. The records are read on a blocking thread while the
/// batches before them are written.
async fn project(
    context: &Context,
    pool: &PgPool,
    projection: &Projection,
    from: &HashMap<Partition, i64>,
    to: &HashMap<Partition, i64>,
    batch_size: usize,
) -> anyhow::Result<Projected> {
    let kafka = context.kafka.clone();
    let ranges: Vec<(Partition, i64, i64)> = to
        .iter()
        .map(|(p, end)| (p.clone(), from.get(p).copied().unwrap_or(0), *end))
        .filter(|(_, start, end)| start < end)
        .collect();
    let (batches, mut received) = mpsc::channel::<Vec<Delivery>>(4);
    let reading = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let reader = PartitionReader::new(&kafka)?;
        let ranges: Vec<Range> = ranges
            .into_iter()
            .map(|((topic, partition), from, to)| Range {
                topic,
                partition,
                from,
                to,
            })
            .collect();
        let mut batch = Vec::with_capacity(batch_size);
        let mut sent = Ok(());
        reader.scan_ranges(&ranges, |record| {
            batch.push(record);
            if batch.len() >= batch_size {
                sent = batches.blocking_send(std::mem::take(&mut batch));
                if sent.is_err() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if !batch.is_empty() && sent.is_ok() {
            // The receiver only goes away when the projection failed; that error is reported.
            let _ = batches.blocking_send(batch);
        }
        Ok(())
    });
    let mut projected = Projected::default();
    while let Some(batch) = received.recv().await {
        let mut reads = Vec::with_capacity(batch.len());
        for delivery in &batch {
            reads.push((delivery, projection.read(delivery).await?));
        }
        projected.records += batch.len() as u64;
        match apply(pool, reads).await {
            Ok(dead) => projected.dead += dead,
            // As the live projector does: a batch the database refuses for good is taken apart,
            // and a record refused on its own becomes a dead letter (here, only counted).
            Err(error) if !is_transient_db_error(&error) && batch.len() > 1 => {
                for delivery in &batch {
                    let read = projection.read(delivery).await?;
                    match apply(pool, vec![(delivery, read)]).await {
                        Ok(dead) => projected.dead += dead,
                        Err(error) if !is_transient_db_error(&error) => {
                            let reason = format!(
                                "cannot fold: the history database refuses it: {}",
                                saga_messaging::error::error_chain(&error)
                            );
                            let refused = projection.refused(delivery, &reason);
                            projected.dead += apply(pool, vec![(delivery, refused)]).await?;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    reading.await??;
    Ok(projected)
}

/// Applies one batch to the rebuild generation in a transaction of its own; the dead letters it
/// made (counted, never written: the live projector wrote them).
async fn apply(
    pool: &PgPool,
    reads: Vec<(&Delivery, projection::Read)>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    generation::enter(&mut tx, REBUILD).await?;
    let applied = projection::apply(&mut tx, reads).await?;
    tx.commit().await?;
    Ok(applied.dead.len() as u64)
}
