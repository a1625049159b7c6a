//! The Shipping service's SQL: its shipments, each batch's in one query, and every change a
//! batch decided in one statement per kind of change, carried by the batch's last statement.
//! What is the same for every participant (closed orders, the batch itself) is
//! `saga_participant`'s.

use chrono::{DateTime, Utc};
use saga_events::{Address, StockLine};
use saga_messaging::{Arrival, Deferred, DeferredWrites};
use saga_participant::{Change, Changes, Ledger, Standings, column, corrupt};
use saga_workflow::{Start, Traces};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use saga_workflow::WorkflowError;

use crate::domain::{Rules, Shipment, ShipmentStatus};
use crate::fulfilment::{Fulfilment, FulfilmentInput, StepDone};
use crate::fulfilments::Fulfilments;

/// A shipment as `GET /shipments/{order_id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipmentView {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    /// `FULFILLING` while its fulfilment runs, then `SCHEDULED` or `FAILED`; `CANCELLED` once
    /// its order was cancelled.
    pub status: String,
    pub country: String,
    pub failure_reason: Option<String>,
    /// The fulfilment's steps done so far (allocate, label, pickup; void_label when a label was
    /// undone), in order.
    #[schema(value_type = Vec<StepDone>)]
    pub steps: Json<Vec<StepDone>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
saga_messaging::from_row!(ShipmentView {
    order_id,
    shipment_id,
    status,
    country,
    failure_reason,
    steps,
    created_at,
    updated_at
});

/// The shipment of the order `$1`, as `GET /shipments/{order_id}` shows it.
pub const FIND: &str =
    "SELECT order_id, shipment_id, status, country, failure_reason, steps, created_at, updated_at
     FROM shipments WHERE order_id = $1";

/// A shipment as [`Rules::LOAD`] reads it.
#[derive(Debug)]
pub struct ShipmentRow {
    order_id: Uuid,
    shipment_id: Uuid,
    status: String,
    country: String,
    address: Json<Address>,
    items: Json<Vec<StockLine>>,
    failure_reason: Option<String>,
}
saga_messaging::from_row!(ShipmentRow {
    order_id,
    shipment_id,
    status,
    country,
    address,
    items,
    failure_reason
});

impl Ledger for Rules {
    const LOAD: &str =
        "SELECT order_id, shipment_id, status, country, address, items, failure_reason
         FROM shipments WHERE order_id = ANY($1)";
    type Row = ShipmentRow;

    fn read(row: ShipmentRow) -> Result<(Uuid, Shipment), sqlx::Error> {
        let status = ShipmentStatus::parse(&row.status)
            .ok_or_else(|| corrupt(format!("shipment status {}", row.status)))?;
        let shipment = Shipment {
            shipment_id: row.shipment_id,
            status,
            country: row.country,
            address: row.address.0,
            items: row.items.0,
            failure_reason: row.failure_reason,
            opened: None,
        };
        Ok((row.order_id, shipment))
    }

    /// Inserts the shipments a batch created and moves the status of those it changed, in one
    /// statement each, which the batch's last statement carries; then starts the fulfilments the
    /// batch opened. A batch that tells a fulfilment its order was cancelled writes its
    /// shipments first instead: the fulfilment's own write updates the same rows after them.
    async fn save(
        &self,
        tx: &mut PgConnection,
        batch: &Changes<'_, Self>,
        deferred: &mut DeferredWrites,
    ) -> sqlx::Result<()> {
        let created: Vec<Change<'_, Shipment>> = (batch.steps.iter().copied())
            .filter(|c| c.loaded.is_none())
            .collect();
        let moved: Vec<Change<'_, Shipment>> = (batch.steps.iter().copied())
            .filter(|c| {
                c.loaded
                    .is_some_and(|before| before.status != c.step.status)
            })
            .collect();
        let writes = [inserted(&created), status_moved(&moved)];
        if batch.steps.iter().any(|c| c.closed.is_some()) {
            for write in writes.into_iter().flatten() {
                write.run(tx).await?;
            }
        } else {
            for write in writes {
                deferred.extend(write);
            }
        }
        fulfilments_of(tx, &batch.steps, &batch.decided).await
    }

    /// The traces of the batch's orders, for the fulfilments it starts.
    fn prepare<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        _known: &'a Standings<Shipment>,
    ) -> impl Future<Output = Result<Traces, sqlx::Error>> + Send + 'a {
        std::future::ready(Ok(Traces::of(events)))
    }
}

/// The insert of the shipments a batch created, if it created any.
fn inserted(created: &[Change<'_, Shipment>]) -> Option<Deferred> {
    if created.is_empty() {
        return None;
    }
    let orders = column(created, |c| c.order_id);
    let shipments = column(created, |c| c.step.shipment_id);
    let statuses = column(created, |c| c.step.status.as_str());
    let countries = column(created, |c| c.step.country.clone());
    let addresses = column(created, |c| Json(c.step.address.clone()));
    let items = column(created, |c| Json(c.step.items.clone()));
    let failures = column(created, |c| c.step.failure_reason.clone());
    Some(Deferred::new(
        "INSERT INTO shipments (order_id, shipment_id, status, country, address, items,
                                failure_reason)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[],
                              $6::jsonb[], $7::text[])
         ON CONFLICT (order_id) DO NOTHING",
        move |query| {
            query
                .bind(orders)
                .bind(shipments)
                .bind(statuses)
                .bind(countries)
                .bind(addresses)
                .bind(items)
                .bind(failures)
        },
    ))
}

/// The new status of the shipments a batch moved, if it moved any.
fn status_moved(moved: &[Change<'_, Shipment>]) -> Option<Deferred> {
    if moved.is_empty() {
        return None;
    }
    let orders = column(moved, |c| c.order_id);
    let statuses = column(moved, |c| c.step.status.as_str());
    Some(Deferred::new(
        "UPDATE shipments s SET status = v.status, updated_at = now()
         FROM unnest($1::uuid[], $2::text[]) AS v(order_id, status)
         WHERE s.order_id = v.order_id",
        move |query| query.bind(orders).bind(statuses),
    ))
}

/// Starts the fulfilments the batch opened (all in one statement), and tells those whose order
/// it cancelled: under the orders' locks, which the batch holds, as every input to a fulfilment
/// is. An order opened and cancelled in one batch has its fulfilment started before it is told.
async fn fulfilments_of(
    tx: &mut PgConnection,
    shipments: &[Change<'_, Shipment>],
    traces: &Traces,
) -> sqlx::Result<()> {
    let opened: Vec<Start<'_, Fulfilment>> = shipments
        .iter()
        .filter_map(|change| {
            let opened = change.step.opened.as_ref()?;
            Some(Start {
                id: change.order_id,
                state: &opened.fulfilment,
                commands: opened.commands.clone(),
                traceparent: traces.get(change.order_id),
            })
        })
        .collect();
    // A fulfilment's start emits nothing: the saga hears of it when it ends.
    saga_workflow::start_all(tx, &Fulfilments, opened).await?;
    let now = chrono::Utc::now().timestamp_millis();
    for change in shipments {
        // Shipments from before fulfilments have no instance: nothing to tell.
        if change.closed.is_some() {
            let cancelled = FulfilmentInput::OrderCancelled;
            match saga_workflow::handle(tx, &Fulfilments, change.order_id, &cancelled, now).await {
                Ok(_) | Err(WorkflowError::Unknown { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(())
}
