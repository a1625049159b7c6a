//! The Order service's SQL for orders: placing them, idempotency keys, the state of their sagas
//! (read and written a batch at a time), and the deadlines.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use saga_events::CancellationReason;
use saga_messaging::outbox::Staged;
use saga_messaging::{Deferred, inbox};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{OrderState, OrderStatus, Steps};
use crate::placing::{Email, OrderItem, PlaceOrder, ShippingAddress};

/// An order as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    pub status: String,
    /// Set when cancelled: `PAYMENT_DECLINED`, `OUT_OF_STOCK`, `SHIPPING_FAILED` or
    /// `TIMED_OUT`.
    pub cancellation_reason: Option<String>,
    /// For a cancelled order: `PENDING` until every step taken is undone (refunded, released,
    /// called off), then `COMPLETED`. `null` otherwise.
    pub compensation: Option<String>,
    /// When the order is cancelled (`TIMED_OUT`) if its saga has not ended by then.
    pub deadline_at: DateTime<Utc>,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub currency: String,
    pub total_cents: i64,
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
    /// Where receipts go, if the customer gave an address.
    pub customer_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    /// An order as it stands the moment it was placed.
    pub fn placed(order_id: Uuid, request: PlaceOrder, total_cents: i64, placed: &Placed) -> Self {
        Self {
            order_id,
            status: OrderStatus::Pending.as_str().to_owned(),
            cancellation_reason: None,
            compensation: None,
            deadline_at: placed.deadline_at,
            customer_id: request.customer_id.into_inner(),
            items: request.items.into_inner(),
            currency: request.currency.into_inner(),
            total_cents,
            payment_method: request.payment_method.into_inner(),
            shipping_address: request.shipping_address,
            customer_email: request.customer_email.map(Email::into_inner),
            created_at: placed.created_at,
            updated_at: placed.created_at,
        }
    }
}

struct OrderRow {
    order_id: Uuid,
    status: String,
    cancellation_reason: Option<String>,
    compensation: Option<String>,
    deadline_at: DateTime<Utc>,
    customer_id: String,
    items: Json<Vec<OrderItem>>,
    currency: String,
    total_cents: i64,
    payment_method: String,
    shipping_address: Json<ShippingAddress>,
    customer_email: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}
saga_messaging::from_row!(OrderRow {
    order_id,
    status,
    cancellation_reason,
    compensation,
    deadline_at,
    customer_id,
    items,
    currency,
    total_cents,
    payment_method,
    shipping_address,
    customer_email,
    created_at,
    updated_at
});

impl From<OrderRow> for OrderView {
    fn from(row: OrderRow) -> Self {
        Self {
            order_id: row.order_id,
            status: row.status,
            cancellation_reason: row.cancellation_reason,
            compensation: row.compensation,
            deadline_at: row.deadline_at,
            customer_id: row.customer_id,
            items: row.items.0,
            currency: row.currency,
            total_cents: row.total_cents,
            payment_method: row.payment_method,
            shipping_address: row.shipping_address.0,
            customer_email: row.customer_email,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// When a new order was created, and when it times out.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub created_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
}

/// A new order, as `POST /orders` accepted it.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder<'a> {
    pub order_id: Uuid,
    pub order: &'a PlaceOrder,
    pub total_cents: i64,
    /// When it times out.
    pub deadline_at: DateTime<Utc>,
    /// The id of its `OrderPlaced`.
    pub placed_event_id: Uuid,
}

/// Places `new`, pending, with its `OrderPlaced` (`placed`) in the outbox, in one statement: run
/// on a connection outside any transaction, it is the whole write, in one round trip. With an
/// idempotency `key`, the order is placed only if the key is claimed for it; `None` if the key
/// was already taken (by a committed request, or by one that commits while this waits), and
/// nothing is written.
pub async fn place(
    conn: &mut PgConnection,
    new: &NewOrder<'_>,
    key: Option<&str>,
    placed: Staged,
) -> Result<Option<Placed>, sqlx::Error> {
    let order = new.order;
    static PLACE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH keyed AS (
                 INSERT INTO idempotency_keys (idempotency_key, request, order_id)
                 SELECT $11, $12, $1 WHERE $11::text IS NOT NULL
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING 1
             ),
             placed AS (
                 INSERT INTO orders (order_id, customer_id, status, currency, total_cents,
                                     payment_method, items, shipping_address, deadline_at,
                                     placed_event_id, customer_email)
                 SELECT $1, $2, 'PENDING', $3, $4, $5, $6, $7, $8, $9, $10
                 WHERE $11::text IS NULL OR EXISTS (SELECT FROM keyed)
                 RETURNING created_at, deadline_at
             ),
             published AS ({})
             SELECT created_at, deadline_at FROM placed",
            Staged::insert(13, "EXISTS (SELECT FROM placed)")
        )
    });
    let query = sqlx::query(AssertSqlSafe(PLACE.as_str()))
        .bind(new.order_id)
        .bind(order.customer_id.as_str())
        .bind(order.currency.as_str())
        .bind(new.total_cents)
        .bind(order.payment_method.as_str())
        .bind(Json(&order.items))
        .bind(Json(&order.shipping_address))
        .bind(new.deadline_at)
        .bind(new.placed_event_id)
        .bind(order.customer_email.as_deref().map(String::as_str))
        .bind(key)
        .bind(Json(order));
    let Some(row) = placed.bind(query).fetch_optional(conn).await? else {
        return Ok(None);
    };
    Ok(Some(Placed {
        created_at: row.try_get("created_at")?,
        deadline_at: row.try_get("deadline_at")?,
    }))
}

/// The request and order an idempotency key was first used for.
pub async fn idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<(PlaceOrder, Uuid)>, sqlx::Error> {
    let row: Option<(Json<PlaceOrder>, Uuid)> =
        sqlx::query_as("SELECT request, order_id FROM idempotency_keys WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(request, order_id)| (request.0, order_id)))
}

pub async fn find_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<OrderView>, sqlx::Error> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT order_id, status, cancellation_reason, compensation, deadline_at, customer_id,
                items, currency, total_cents, payment_method, shipping_address, customer_email,
                created_at, updated_at
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(OrderView::from))
}

struct StateRow {
    order_id: Uuid,
    status: String,
    cancellation_reason: Option<String>,
    charged: bool,
    refunded: bool,
    reserved: bool,
    released: bool,
    shipped: bool,
    shipment_cancelled: bool,
}
saga_messaging::from_row!(StateRow {
    order_id,
    status,
    cancellation_reason,
    charged,
    refunded,
    reserved,
    released,
    shipped,
    shipment_cancelled
});

impl StateRow {
    fn into_state(self) -> Result<(Uuid, OrderState), sqlx::Error> {
        let status = OrderStatus::from_columns(&self.status, self.cancellation_reason.as_deref())
            .ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "order {} has an impossible status {}",
                    self.order_id, self.status
                )
                .into(),
            )
        })?;
        Ok((
            self.order_id,
            OrderState {
                status,
                steps: Steps {
                    charged: self.charged,
                    refunded: self.refunded,
                    reserved: self.reserved,
                    released: self.released,
                    shipped: self.shipped,
                    shipment_cancelled: self.shipment_cancelled,
                },
            },
        ))
    }
}

const STATE_COLUMNS: &str = "order_id, status, cancellation_reason, charged, refunded, reserved,
    released, shipped, shipment_cancelled";

/// Where each of a batch's events stands for Order's consumer ([`inbox::standing_beside`]), and
/// where the sagas of `orders` stand (orders Order never accepted are absent), in one round trip.
pub async fn standing_and_states(
    conn: &mut PgConnection,
    questions: &[(Option<Uuid>, String)],
    orders: &[Uuid],
) -> Result<(Vec<inbox::Standing>, HashMap<Uuid, OrderState>), sqlx::Error> {
    let (standing, rows) = inbox::standing_beside::<StateRow>(
        conn,
        questions,
        &format!("SELECT {STATE_COLUMNS} FROM orders WHERE order_id = ANY($1)"),
        orders,
    )
    .await?;
    let states = rows
        .into_iter()
        .map(StateRow::into_state)
        .collect::<Result<_, _>>()?;
    Ok((standing, states))
}

/// Writes the states a batch changed, with their compensation.
/// Moves the deadlines of pending orders to `(order, deadline_at in ms)`, never earlier than they
/// were: a redelivered review request changes nothing.
pub async fn extend_deadlines(
    conn: &mut PgConnection,
    extended: &[(Uuid, i64)],
) -> Result<(), sqlx::Error> {
    if extended.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE orders o
         SET deadline_at = greatest(o.deadline_at, to_timestamp(v.deadline_ms / 1000.0)),
             updated_at = now()
         FROM unnest($1::uuid[], $2::bigint[]) AS v(order_id, deadline_ms)
         WHERE o.order_id = v.order_id AND o.status = 'PENDING'",
    )
    .bind(extended.iter().map(|(o, _)| *o).collect::<Vec<_>>())
    .bind(extended.iter().map(|(_, d)| *d).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn save_states(
    conn: &mut PgConnection,
    changed: &[(Uuid, OrderState)],
) -> Result<(), sqlx::Error> {
    match states_written(changed) {
        Some(write) => write.run(conn).await,
        None => Ok(()),
    }
}

/// The write of [`save_states`], for the consumer's last statement of a batch to carry.
pub fn states_written(changed: &[(Uuid, OrderState)]) -> Option<Deferred> {
    if changed.is_empty() {
        return None;
    }
    let flag = |f: fn(&Steps) -> bool| changed.iter().map(|(_, s)| f(&s.steps)).collect::<Vec<_>>();
    let ids: Vec<Uuid> = changed.iter().map(|(o, _)| *o).collect();
    let statuses: Vec<&'static str> = changed.iter().map(|(_, s)| s.status.as_str()).collect();
    let reasons: Vec<Option<&'static str>> = changed
        .iter()
        .map(|(_, s)| s.status.reason().map(CancellationReason::as_str))
        .collect();
    let flags = [
        flag(|s| s.charged),
        flag(|s| s.refunded),
        flag(|s| s.reserved),
        flag(|s| s.released),
        flag(|s| s.shipped),
        flag(|s| s.shipment_cancelled),
    ];
    let compensations: Vec<Option<&'static str>> = changed
        .iter()
        .map(|(_, s)| s.compensation().map(|c| c.as_str()))
        .collect();
    Some(Deferred::new(
        "UPDATE orders o SET status = v.status, cancellation_reason = v.reason,
                charged = v.charged, refunded = v.refunded, reserved = v.reserved,
                released = v.released, shipped = v.shipped,
                shipment_cancelled = v.shipment_cancelled, compensation = v.compensation,
                updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::bool[],
                     $7::bool[], $8::bool[], $9::bool[], $10::text[])
              AS v(order_id, status, reason, charged, refunded, reserved, released, shipped,
                   shipment_cancelled, compensation)
         WHERE o.order_id = v.order_id",
        move |query| {
            let mut query = query.bind(ids).bind(statuses).bind(reasons);
            for flag in flags {
                query = query.bind(flag);
            }
            query.bind(compensations)
        },
    ))
}

/// A pending order past its deadline.
#[derive(Debug)]
pub struct Due {
    pub order_id: Uuid,
    pub placed_event_id: Option<Uuid>,
    pub state: OrderState,
}

/// An order none of whose messages is parked here: one with a parked reply waits for it.
const NOT_PARKED: &str =
    "NOT EXISTS (SELECT 1 FROM parked p WHERE p.order_id = orders.order_id::text)";

/// Up to `limit` pending orders past their deadline, locked; rows another transaction holds
/// (another replica's scanner, a consumer ending the saga) are skipped, not waited for.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    let rows: Vec<(Option<Uuid>, StateRow)> =
        sqlx::query_as::<_, StateWithPlaced>(sqlx::AssertSqlSafe(format!(
            "SELECT placed_event_id, {STATE_COLUMNS} FROM orders
             WHERE status = 'PENDING' AND deadline_at <= now() AND {NOT_PARKED}
             ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED"
        )))
        .bind(limit)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|r| (r.placed_event_id, r.state))
        .collect();
    rows.into_iter()
        .map(|(placed_event_id, row)| {
            let (order_id, state) = row.into_state()?;
            Ok(Due {
                order_id,
                placed_event_id,
                state,
            })
        })
        .collect()
}

struct StateWithPlaced {
    placed_event_id: Option<Uuid>,
    state: StateRow,
}

impl<'r> FromRow<'r, PgRow> for StateWithPlaced {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            placed_event_id: row.try_get("placed_event_id")?,
            state: StateRow::from_row(row)?,
        })
    }
}

/// When the next pending order is due, if any is.
pub async fn next_deadline(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT min(deadline_at) FROM orders WHERE status = 'PENDING' AND {NOT_PARKED}"
    )))
    .fetch_one(conn)
    .await
}

/// Sagas that have not ended: pending orders, the age of the oldest in seconds, and cancelled
/// orders whose compensation is not complete.
pub async fn unfinished(conn: &mut PgConnection) -> Result<(i64, f64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders WHERE status = 'PENDING'),
                coalesce((SELECT extract(epoch FROM now() - min(created_at))::float8
                          FROM orders WHERE status = 'PENDING'), 0),
                (SELECT count(*) FROM orders WHERE compensation = 'PENDING')",
    )
    .fetch_one(conn)
    .await
}

/// The id of the order's `OrderPlaced`, if the order exists.
pub async fn placed_event_id(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT placed_event_id FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}
