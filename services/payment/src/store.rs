//! The Payment service's SQL: its payments, each batch's in one query, and every change a batch
//! decided in one statement. What is the same for every participant (closed orders, the batch
//! itself) is `saga_participant`'s.

use chrono::{DateTime, Utc};
use saga_events::CancellationReason;
use saga_messaging::{Arrival, Deferred, DeferredWrites};
use saga_participant::{Change, Changes, Ledger, Standings, column, corrupt};
use saga_workflow::{Start, Traces};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Payment, PaymentStatus, Rules};
use crate::review::{Review, ReviewInput};
use crate::reviews::Reviews;

/// A payment as `GET /payments/{order_id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    /// `AUTHORIZED`, `DECLINED` or `REFUNDED`; `IN_REVIEW` while a reviewer has not decided.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub decline_reason: Option<String>,
    pub refund_reason: Option<String>,
    /// Where the receipt goes: the e-mail the customer gave with the order, if any.
    pub receipt_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
saga_messaging::from_row!(PaymentView {
    order_id,
    payment_id,
    status,
    amount_cents,
    currency,
    decline_reason,
    refund_reason,
    receipt_email,
    created_at,
    updated_at
});

/// The payment of the order `$1`, as `GET /payments/{order_id}` shows it.
pub const FIND: &str =
    "SELECT order_id, payment_id, status, amount_cents, currency, decline_reason, refund_reason,
            receipt_email, created_at, updated_at
     FROM payments WHERE order_id = $1";

/// A payment as [`Rules::LOAD`] reads it.
#[derive(Debug)]
pub struct PaymentRow {
    order_id: Uuid,
    payment_id: Uuid,
    status: String,
    amount_cents: i64,
    currency: String,
    payment_method: String,
    decline_reason: Option<String>,
    refund_reason: Option<String>,
    receipt_email: Option<String>,
}
saga_messaging::from_row!(PaymentRow {
    order_id,
    payment_id,
    status,
    amount_cents,
    currency,
    payment_method,
    decline_reason,
    refund_reason,
    receipt_email
});

impl Ledger for Rules {
    const LOAD: &str =
        "SELECT order_id, payment_id, status, amount_cents, currency, payment_method,
                decline_reason, refund_reason, receipt_email
         FROM payments WHERE order_id = ANY($1)";
    type Row = PaymentRow;

    fn read(row: PaymentRow) -> Result<(Uuid, Payment), sqlx::Error> {
        let status = PaymentStatus::parse(&row.status)
            .ok_or_else(|| corrupt(format!("payment status {}", row.status)))?;
        let refund_reason = row
            .refund_reason
            .map(|r| CancellationReason::parse(&r).ok_or_else(|| corrupt(format!("reason {r}"))))
            .transpose()?;
        let payment = Payment {
            payment_id: row.payment_id,
            status,
            amount_cents: row.amount_cents,
            currency: row.currency,
            payment_method: row.payment_method,
            decline_reason: row.decline_reason,
            refund_reason,
            receipt_email: row.receipt_email,
            opened_review: None,
        };
        Ok((row.order_id, payment))
    }

    /// Writes the payments a batch changed, in one statement.
    async fn save(
        &self,
        tx: &mut PgConnection,
        batch: &Changes<'_, Self>,
        deferred: &mut DeferredWrites,
    ) -> sqlx::Result<()> {
        let payments = &batch.steps;
        if payments.is_empty() {
            return Ok(());
        }
        let write = Deferred::new(
            "INSERT INTO payments (order_id, payment_id, status, amount_cents, currency,
                                   payment_method, decline_reason, refund_reason, receipt_email)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[])
             ON CONFLICT (order_id) DO UPDATE
                 SET status = EXCLUDED.status, refund_reason = EXCLUDED.refund_reason,
                     updated_at = now()",
            {
                let orders = column(payments, |c| c.order_id);
                let ids = column(payments, |c| c.step.payment_id);
                let statuses = column(payments, |c| c.step.status.as_str());
                let amounts = column(payments, |c| c.step.amount_cents);
                let currencies = column(payments, |c| c.step.currency.clone());
                let methods = column(payments, |c| c.step.payment_method.clone());
                let declines = column(payments, |c| c.step.decline_reason.clone());
                let refunds = column(payments, |c| c.step.refund_reason.map(|r| r.as_str()));
                let emails = column(payments, |c| c.step.receipt_email.clone());
                move |query| {
                    query
                        .bind(orders)
                        .bind(ids)
                        .bind(statuses)
                        .bind(amounts)
                        .bind(currencies)
                        .bind(methods)
                        .bind(declines)
                        .bind(refunds)
                        .bind(emails)
                }
            },
        );
        // A review started or told in this batch updates its payment's row in its own
        // statements, so the row is written first; otherwise the batch's last statement
        // carries it.
        if payments
            .iter()
            .any(|c| c.step.status == PaymentStatus::InReview)
        {
            write.run(tx).await?;
            reviews_of(tx, payments, &batch.decided).await
        } else {
            deferred.push(write);
            Ok(())
        }
    }

    /// The traces of the batch's orders, for the reviews it opens.
    fn prepare<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        events: &'a [Arrival<'a>],
        _known: &'a Standings<Payment>,
    ) -> impl Future<Output = Result<Traces, sqlx::Error>> + Send + 'a {
        std::future::ready(Ok(Traces::of(events)))
    }
}

/// Starts the reviews the batch opened (all in one statement), and closes those whose order it
/// cancelled (nothing charged): under the orders' locks, which the batch holds, as every input
/// to a review is. An order opened and cancelled in one batch has its review started first.
async fn reviews_of(
    tx: &mut PgConnection,
    payments: &[Change<'_, Payment>],
    traces: &Traces,
) -> sqlx::Result<()> {
    let in_review = || {
        payments
            .iter()
            .filter(|change| change.step.status == PaymentStatus::InReview)
    };
    let opened: Vec<Start<'_, Review>> = in_review()
        .filter_map(|change| {
            let opened = change.step.opened_review.as_ref()?;
            Some(Start {
                id: change.order_id,
                state: &opened.review,
                commands: opened.commands.clone(),
                traceparent: traces.get(change.order_id),
            })
        })
        .collect();
    // A review's start emits nothing: the decision that opened it told the saga.
    saga_workflow::start_all(tx, &Reviews, opened).await?;
    let now = chrono::Utc::now().timestamp_millis();
    for change in in_review().filter(|change| change.closed.is_some()) {
        let cancelled = ReviewInput::OrderCancelled;
        saga_workflow::handle(tx, &Reviews, change.order_id, &cancelled, now).await?;
    }
    Ok(())
}
