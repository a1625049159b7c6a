//! `sagactl stuck`: sagas that have not ended, and why. For each pending order, and each
//! cancelled order still owed a compensation, whose saga has not moved for `--older-than`: the
//! report it waits for and the service that owes it (from what Order has heard of its saga),
//! and any message of the order parked at any service (retrying, dead-lettered, or waiting
//! behind a dead letter).
//!
//! The order database is read with a query of sagactl's own, as `audit` reads it: the operator
//! tool depends on no service's code, only on the tables it reads.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use saga_events::progress::{self, OrderStatus, Steps};
use saga_events::{CancellationReason, Service};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Context;
use crate::databases::DatabaseArgs;
use crate::output::emit;

#[derive(Debug, Clone, Args)]
pub struct StuckArgs {
    #[command(flatten)]
    pub databases: DatabaseArgs,
    /// Only sagas that have not moved for at least this long: `500ms`, `10s`, `5m`, `1h`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
}

/// A saga that has not ended, as the order database has it: a pending order, or a cancelled one
/// still owed a compensation. The steps are what the other services reported doing (and undoing).
#[derive(Debug)]
struct Unsettled {
    order_id: Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    status: String,
    cancellation_reason: Option<String>,
    charged: bool,
    refunded: bool,
    reserved: bool,
    released: bool,
    shipped: bool,
    shipment_cancelled: bool,
    created_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    /// When its saga last moved.
    updated_at: DateTime<Utc>,
}
saga_messaging::from_row!(Unsettled {
    order_id,
    status,
    cancellation_reason,
    charged,
    refunded,
    reserved,
    released,
    shipped,
    shipment_cancelled,
    created_at,
    deadline_at,
    updated_at
});

impl Unsettled {
    /// The saga's status; None for columns Order never writes (see
    /// [`OrderStatus::from_columns`]).
    fn status(&self) -> Option<OrderStatus> {
        OrderStatus::from_columns(&self.status, self.cancellation_reason.as_deref())
    }

    /// Why the order was cancelled; `None` unless it was.
    fn reason(&self) -> Option<CancellationReason> {
        self.status().and_then(OrderStatus::reason)
    }

    /// Whether the status columns say something Order can have written: a pending or confirmed
    /// order without a reason, a cancelled one with a known reason.
    fn is_possible(&self) -> bool {
        self.status().is_some()
    }

    /// The reports the saga waits for, each with the service that owes it (the rule is Order's,
    /// in [`saga_events::progress`]).
    fn awaiting(&self) -> Vec<(Service, &'static str)> {
        let Some(status) = self.status() else {
            return Vec::new();
        };
        let steps = Steps {
            charged: self.charged,
            refunded: self.refunded,
            reserved: self.reserved,
            released: self.released,
            shipped: self.shipped,
            shipment_cancelled: self.shipment_cancelled,
        };
        progress::awaiting(status, steps)
            .into_iter()
            .map(|awaited| (awaited.service, awaited.events))
            .collect()
    }
}

/// Unsettled sagas whose last move is at least `quiet_seconds` old, oldest first.
async fn unsettled(
    conn: &mut PgConnection,
    quiet_seconds: f64,
) -> Result<Vec<Unsettled>, sqlx::Error> {
    let sagas: Vec<Unsettled> = sqlx::query_as(
        "SELECT order_id, status, cancellation_reason, charged, refunded, reserved, released,
                shipped, shipment_cancelled, created_at, deadline_at, updated_at
         FROM orders
         WHERE (status = 'PENDING' OR compensation = 'PENDING')
           AND updated_at <= now() - make_interval(secs => $1)
         ORDER BY created_at",
    )
    .bind(quiet_seconds)
    .fetch_all(conn)
    .await?;
    if let Some(impossible) = sagas.iter().find(|saga| !saga.is_possible()) {
        return Err(sqlx::Error::Decode(
            format!(
                "order {} has an impossible status {}",
                impossible.order_id, impossible.status
            )
            .into(),
        ));
    }
    Ok(sagas)
}

/// A message of an order that a service set aside.
#[derive(Debug, Clone)]
struct ParkedMessage {
    service: &'static str,
    event_type: String,
    status: String,
    attempts: i32,
    error: Option<String>,
    source: String,
}

pub async fn run(context: &Context, args: StuckArgs) -> anyhow::Result<()> {
    let databases = args.databases.connect().await?;
    let mut conn = databases.orders.acquire().await?;
    let sagas = unsettled(&mut conn, args.older_than.as_secs_f64())
        .await
        .context("reading unsettled orders")?;
    drop(conn);
    let ids: Vec<String> = sagas.iter().map(|s| s.order_id.to_string()).collect();
    let mut parked: HashMap<String, Vec<ParkedMessage>> = HashMap::new();
    for (service, pool) in databases.all() {
        let rows: Vec<(String, String, String, i32, Option<String>, String)> = sqlx::query_as(
            "SELECT order_id, event_type, status, attempts, error,
                    source_topic || '[' || source_partition || ']@' || source_offset
             FROM parked WHERE order_id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading {service}'s parked messages"))?;
        for (order, event_type, status, attempts, error, source) in rows {
            parked.entry(order).or_default().push(ParkedMessage {
                service,
                event_type,
                status,
                attempts,
                error,
                source,
            });
        }
    }
    let now = Utc::now();
    if context.json {
        let listed: Vec<Value> = sagas
            .iter()
            .map(|saga| saga_json(saga, parked.get(&saga.order_id.to_string()), now))
            .collect();
        return emit(json!({ "stuck": listed }));
    }
    if sagas.is_empty() {
        return emit(format!(
            "no saga has been stuck for {:?} or more",
            args.older_than
        ));
    }
    emit(format!("{} stuck sagas", sagas.len()))?;
    for saga in &sagas {
        emit(saga_line(saga, now))?;
        for (service, events) in saga.awaiting() {
            emit(format!("    waits for {events} from {}", service.name()))?;
        }
        for message in parked.get(&saga.order_id.to_string()).into_iter().flatten() {
            emit(format!(
                "    {} {} at {} ({} attempts, {}){}",
                message.event_type,
                message.status,
                message.service,
                message.attempts,
                message.source,
                message
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ))?;
        }
    }
    Ok(())
}

fn phase(saga: &Unsettled) -> &'static str {
    match saga.reason() {
        Some(_) => "compensating",
        None => "pending",
    }
}

fn seconds_since(then: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    (now - then).num_milliseconds() as f64 / 1000.0
}

fn saga_line(saga: &Unsettled, now: DateTime<Utc>) -> String {
    let reason = saga
        .reason()
        .map(|r| format!(" ({})", r.as_str()))
        .unwrap_or_default();
    format!(
        "  {} {}{reason}: placed {:.0}s ago, quiet for {:.0}s",
        saga.order_id,
        phase(saga),
        seconds_since(saga.created_at, now),
        seconds_since(saga.updated_at, now),
    )
}

fn saga_json(saga: &Unsettled, parked: Option<&Vec<ParkedMessage>>, now: DateTime<Utc>) -> Value {
    let awaiting: Vec<Value> = saga
        .awaiting()
        .into_iter()
        .map(|(service, events)| json!({"service": service.name(), "events": events}))
        .collect();
    let parked: Vec<Value> = parked
        .into_iter()
        .flatten()
        .map(|m| {
            json!({
                "service": m.service, "event_type": m.event_type, "status": m.status,
                "attempts": m.attempts, "error": m.error, "source": m.source,
            })
        })
        .collect();
    json!({
        "order_id": saga.order_id,
        "phase": phase(saga),
        "status": saga.status,
        "cancellation_reason": saga.reason().map(|r| r.as_str()),
        "created_at": saga.created_at,
        "deadline_at": saga.deadline_at,
        "quiet_seconds": seconds_since(saga.updated_at, now),
        "awaiting": awaiting,
        "parked": parked,
    })
}

/// `250ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 10s"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => bail!("unknown unit {other:?} in {text:?}: use ms, s, m or h"),
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::{Unsettled, parse_duration};
    use saga_events::Service;
    use std::time::Duration;

    /// An order with `status`, `reason` and the steps named in `done`.
    fn saga(status: &str, reason: Option<&str>, done: &[&str]) -> Unsettled {
        let now = chrono::Utc::now();
        Unsettled {
            order_id: uuid::Uuid::nil(),
            status: status.to_owned(),
            cancellation_reason: reason.map(str::to_owned),
            charged: done.contains(&"charged"),
            refunded: done.contains(&"refunded"),
            reserved: done.contains(&"reserved"),
            released: done.contains(&"released"),
            shipped: done.contains(&"shipped"),
            shipment_cancelled: done.contains(&"shipment_cancelled"),
            created_at: now,
            deadline_at: now,
            updated_at: now,
        }
    }

    fn owing(saga: &Unsettled) -> Vec<Service> {
        saga.awaiting()
            .into_iter()
            .map(|(service, _)| service)
            .collect()
    }

    #[test]
    fn a_saga_waits_for_its_next_step_or_every_undo_it_is_owed() {
        assert_eq!(owing(&saga("PENDING", None, &[])), [Service::Payment]);
        assert_eq!(
            owing(&saga("PENDING", None, &["charged", "reserved"])),
            [Service::Shipping]
        );
        assert_eq!(
            saga(
                "CANCELLED",
                Some("SHIPPING_FAILED"),
                &["charged", "refunded"]
            )
            .awaiting(),
            [(Service::Inventory, "StockReleased")]
        );
        assert_eq!(
            owing(&saga(
                "CANCELLED",
                Some("TIMED_OUT"),
                &["charged", "reserved", "shipped"]
            )),
            [Service::Payment, Service::Inventory, Service::Shipping]
        );
        assert!(owing(&saga("CANCELLED", Some("PAYMENT_DECLINED"), &[])).is_empty());
        assert!(
            owing(&saga(
                "CONFIRMED",
                None,
                &["charged", "reserved", "shipped"]
            ))
            .is_empty()
        );
        assert!(!saga("CANCELLED", None, &[]).is_possible());
        assert!(!saga("PENDING", Some("TIMED_OUT"), &[]).is_possible());
    }

    #[test]
    fn durations_read_as_people_write_them() -> anyhow::Result<()> {
        assert_eq!(parse_duration("10s")?, Duration::from_secs(10));
        assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
        assert_eq!(parse_duration("5m")?, Duration::from_secs(300));
        assert_eq!(parse_duration("2")?, Duration::from_secs(2));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
        Ok(())
    }
}
