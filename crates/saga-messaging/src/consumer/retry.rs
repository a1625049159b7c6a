//! Records from `<service>.retry`: one more attempt at a parked message.
//!
//! A retry record names its parked row (`saga-parked-id`) and the attempt it stands for. It is
//! handled no earlier than its not-before time; a copy of an older attempt, or a retry of
//! something already settled, changes nothing. When the attempt succeeds, the order's messages
//! that waited behind it are applied in the order they arrived, until one fails and becomes the
//! order's new head. This path is rare, so each attempt has a savepoint of its own.
//!
//! A redriven dead letter that was never parked (it had no usable order) is handled like a first
//! delivery. A skipped one (`sagactl dlq skip`) is dropped without being applied, and the
//! messages of its order that waited behind it are released.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tracing::{info, warn};
use uuid::Uuid;

use super::Arrival;
use super::control::{Abandoned, LaneControl};
use super::failure::FailedAttempt;
use super::handler::{Handler, Outcome, Position};
use super::persist::Attempt;
use super::poll::Routed;
use super::read::{Item, Read};
use crate::deferred::DeferredWrites;
use crate::delivery::Delivery;
use crate::error::{FailureKind, HandlerError};
use crate::headers;
use crate::inbox;
use crate::outbox::Written;
use crate::parking::{self, Parked, ParkedStatus};
use crate::trace;

/// What a retry record turned out to be.
enum Retry {
    Settled(Outcome),
    /// A redriven dead letter with no parked row: handle it as if it had just arrived.
    FirstDelivery,
}

impl Handler {
    /// Handles retry records one by one, each when it is due; returns the positions handled.
    pub async fn handle_retries(
        &self,
        batch: Vec<Routed>,
        lane: &LaneControl<'_>,
    ) -> Vec<Position> {
        let mut handled = Vec::new();
        let mut abandoned = Abandoned::default();
        for routed in batch {
            let delivery = &routed.delivery;
            if abandoned.contains(&routed) {
                continue;
            }
            // Revoked while an earlier record waited, or while this one did: the next owner
            // handles it, and everything of its partition after it.
            if !self.wait_until_due(&routed, lane).await || !lane.is_current(&routed) {
                if lane.shutting_down() {
                    break;
                }
                abandoned.abandon(&routed);
                continue;
            }
            let settled = self.settle(&routed, lane).await;
            let position = (delivery.topic.clone(), delivery.partition, delivery.offset);
            match settled {
                Some(Retry::Settled(outcome)) => {
                    let event_type = delivery.headers.get(headers::EVENT_TYPE);
                    self.count(&delivery.topic, event_type.unwrap_or("unknown"), outcome);
                    handled.push(position);
                }
                Some(Retry::FirstDelivery) => {
                    let Some(read) = self.read_until_readable(&routed, lane).await else {
                        if lane.shutting_down() {
                            break;
                        }
                        abandoned.abandon(&routed);
                        continue;
                    };
                    let partition = (delivery.topic.clone(), delivery.partition);
                    let item = Item {
                        routed,
                        read,
                        failure: None,
                    };
                    let done = self.run_items(vec![item], lane).await;
                    if done.is_empty() {
                        if lane.shutting_down() {
                            break;
                        }
                        abandoned.abandon_partition(partition);
                    }
                    handled.extend(done);
                }
                None if lane.shutting_down() => break,
                None => abandoned.abandon(&routed),
            }
        }
        handled
    }

    /// One retry record, until it is settled (applied, failed again, or given up for good);
    /// None if shutdown or its partition's revocation came first.
    async fn settle(&self, routed: &Routed, lane: &LaneControl<'_>) -> Option<Retry> {
        let delivery = &routed.delivery;
        let label = format!("{}[{}]", delivery.topic, delivery.partition);
        let mut backoff = crate::Backoff::new();
        loop {
            let attempt = match self.persist(lane, &label, || self.retry(delivery)).await {
                Attempt::Failed(error) => {
                    // The parked row itself cannot be used: give the record up for good.
                    let reason = format!("retry could not be handled: {}", error.reason());
                    self.persist(lane, &label, || self.give_up(delivery, &reason))
                        .await
                        .map(|()| Retry::Settled(Outcome::DeadLettered))
                }
                other => other,
            };
            match attempt {
                Attempt::Done(retry) => return Some(retry),
                // Not even the dead letter could be written: keep the record, and keep trying,
                // for nothing behind it may go first.
                Attempt::Failed(error) => {
                    warn!(record = %delivery, error = %error.reason(), "a retry record could not be given up; trying again");
                    if !backoff.wait(lane.interrupted()).await
                        && (lane.shutting_down() || !lane.is_current(routed))
                    {
                        return None;
                    }
                }
                Attempt::Interrupted if lane.shutting_down() || !lane.is_current(routed) => {
                    return None;
                }
                // Another partition's revocation woke the lane: this record is still ours.
                Attempt::Interrupted => {}
            }
        }
    }

    /// Retry records of one partition are due in roughly the order they were written, so
    /// waiting here delays only other retries. False if shutdown or a revocation came first.
    async fn wait_until_due(&self, routed: &Routed, lane: &LaneControl<'_>) -> bool {
        let due = routed
            .delivery
            .headers
            .get(headers::NOT_BEFORE)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        loop {
            let wait_ms = due - chrono::Utc::now().timestamp_millis();
            if wait_ms <= 0 {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())) => return true,
                _ = lane.interrupted() => {
                    if lane.shutting_down() || !lane.is_current(routed) {
                        return false;
                    }
                }
            }
        }
    }

    /// One attempt at the parked message a retry record stands for.
    async fn retry(&self, delivery: &Delivery) -> Result<Retry, HandlerError> {
        let redriven = delivery.headers.contains_key(headers::REDRIVEN_AT);
        let skipped_by = delivery.headers.get(headers::SKIPPED_BY);
        let mut tx = self.pool.begin().await?;
        let Some(parked_id) = self.parked_id(&mut tx, delivery).await? else {
            return Ok(match (redriven, skipped_by) {
                (_, Some(_)) => Retry::Settled(Outcome::Skipped),
                (true, None) => Retry::FirstDelivery,
                (false, None) => Retry::Settled(Outcome::StaleRetry),
            });
        };
        let Some(order) = parking::order_of(&mut tx, parked_id).await? else {
            // Settled since (the row is removed when its message succeeds).
            return Ok(Retry::Settled(Outcome::StaleRetry));
        };
        parking::lock_orders(&mut tx, &[order]).await?;
        let Some(parked) = parking::lock(&mut tx, parked_id).await? else {
            return Ok(Retry::Settled(Outcome::StaleRetry));
        };
        let attempts_so_far: i32 = delivery
            .headers
            .get(headers::ATTEMPTS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        let current = match parked.status {
            ParkedStatus::Retrying => attempts_so_far == parked.attempts,
            ParkedStatus::Dead => redriven,
            ParkedStatus::Waiting => false,
        };
        if !current {
            // A copy of an older retry record, or a redrive of something already handled.
            return Ok(Retry::Settled(Outcome::StaleRetry));
        }
        if let Some(who) = skipped_by {
            if parked.status != ParkedStatus::Dead {
                return Ok(Retry::Settled(Outcome::StaleRetry));
            }
            parking::remove(&mut tx, parked.id).await?;
            let written = self.release_waiting(&mut tx, order).await?;
            self.outbox.commit(tx, written).await?;
            warn!(record = %parked.source, skipped_by = who, "a dead letter was given up for good; its order moves on");
            return Ok(Retry::Settled(Outcome::Skipped));
        }
        let attempts = parked.attempts.max(0) + 1;
        let (outcome, written) = match self.attempt(&mut tx, &parked).await? {
            Ok(applied) => {
                parking::remove(&mut tx, parked.id).await?;
                let released = self.release_waiting(&mut tx, order).await?;
                info!(record = %parked.source, attempt = attempts, redriven, "succeeded on retry");
                (Outcome::AppliedOnRetry, applied.and(released))
            }
            Err((kind, reason)) => {
                self.fail_parked(&mut tx, &parked, attempts, kind, &reason)
                    .await?
            }
        };
        self.outbox.commit(tx, written).await?;
        Ok(Retry::Settled(outcome))
    }

    /// The parked row a retry record names; records written before rows were named are matched
    /// by their event id.
    async fn parked_id(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<Option<i64>, HandlerError> {
        if let Some(id) = delivery
            .headers
            .get(headers::PARKED_ID)
            .and_then(|v| v.parse::<i64>().ok())
        {
            return Ok(Some(id));
        }
        let Some(event_id) = delivery
            .headers
            .get(headers::EVENT_ID)
            .and_then(|v| Uuid::parse_str(v).ok())
        else {
            return Ok(None);
        };
        Ok(parking::id_of_event(conn, event_id).await?)
    }

    /// Applies a parked message in a savepoint. The outer error is infrastructure (retry in
    /// place); the inner one is the message's own failure (its savepoint is rolled back).
    async fn attempt(
        &self,
        tx: &mut PgConnection,
        parked: &Parked,
    ) -> Result<Result<Written, (FailureKind, String)>, HandlerError> {
        let (event, event_id, order_id, written_as) = match self.read(&parked.source).await? {
            Read::Event {
                event,
                event_id,
                order,
                written_as,
            } => (event, event_id, order, written_as),
            // Ignored now: the service no longer reacts to it.
            Read::Ignored(_) => return Ok(Ok(Written::nothing())),
            Read::Poison { kind, reason, .. } => return Ok(Err((kind, reason))),
        };
        let process = trace::process_span(
            &self.group,
            &parked.source,
            event.event_type().name(),
            &order_id.to_string(),
        );
        let transaction = trace::transaction_span(&process, 1);
        let context = trace::context_or(&transaction, &parked.source.headers);
        let mut savepoint = tx.begin().await?;
        let applied: Result<Written, HandlerError> = async {
            // Only the inbox is asked: the event is parked, by its own retry.
            if inbox::contains(&mut savepoint, event_id).await? {
                return Ok(Written::nothing());
            }
            let (_, loaded) = self
                .reactions
                .load(&mut savepoint, &[], &[order_id])
                .await?;
            let arrival = Arrival {
                event: &event,
                order_id,
                delivery: &parked.source,
                written_as: &written_as,
            };
            let mut deferred = DeferredWrites::default();
            let records: Vec<_> = self
                .react(
                    &mut savepoint,
                    &[arrival],
                    std::slice::from_ref(&context),
                    loaded,
                    &mut deferred,
                )
                .await
                .map_err(|refusal| refusal.error)?
                .into_iter()
                .flatten()
                .collect();
            let handled = inbox::Entry {
                event_id,
                event_type: event.event_type().name(),
                topic: parked.source.topic.clone(),
                partition: parked.source.partition,
                offset: parked.source.offset,
            };
            Ok(self
                .outbox
                .write_with(&mut savepoint, &records, &[handled], deferred)
                .await?)
        }
        .await;
        trace::processed(
            &process,
            if applied.is_ok() {
                "applied_on_retry"
            } else {
                "failed"
            },
        );
        match applied {
            Ok(written) => {
                savepoint.commit().await?;
                Ok(Ok(written))
            }
            Err(error) if error.is_transient() => Err(error),
            Err(error) => {
                savepoint.rollback().await?;
                Ok(Err((error.kind(), error.reason())))
            }
        }
    }

    /// Applies the order's waiting messages in the order they arrived, until one fails: that one
    /// becomes the order's new head, scheduled for retry. Nothing is released while the order
    /// still has a head (one head per order is the rule; this keeps it safe if it was broken).
    async fn release_waiting(
        &self,
        tx: &mut PgConnection,
        order: Uuid,
    ) -> Result<Written, HandlerError> {
        let mut written = Written::nothing();
        if parking::has_head(tx, order).await? {
            warn!(%order, "the order still has a parked head; its waiting messages stay behind it");
            return Ok(written);
        }
        while let Some(waiting) = parking::next_waiting(tx, order).await? {
            match self.attempt(tx, &waiting).await? {
                Ok(applied) => {
                    written = written.and(applied);
                    parking::remove(tx, waiting.id).await?;
                    info!(record = %waiting.source, "released a waiting message");
                }
                Err((kind, reason)) => {
                    let (_, failed) = self.fail_parked(tx, &waiting, 1, kind, &reason).await?;
                    return Ok(written.and(failed));
                }
            }
        }
        Ok(written)
    }

    /// Records a failed attempt at a parked message and writes its next record: another retry,
    /// or the dead letter.
    async fn fail_parked(
        &self,
        tx: &mut PgConnection,
        parked: &Parked,
        attempts: i32,
        kind: FailureKind,
        reason: &str,
    ) -> Result<(Outcome, Written), HandlerError> {
        let kind = if kind == FailureKind::Transient {
            FailureKind::Permanent
        } else {
            kind
        };
        let status = if self.gives_up(kind, attempts) {
            ParkedStatus::Dead
        } else {
            ParkedStatus::Retrying
        };
        let (first, last) =
            parking::record_failure(tx, parked.id, status, attempts, kind, reason).await?;
        let (record, outcome) = self.failure_record(FailedAttempt {
            parked_id: Some(parked.id),
            source: &parked.source,
            attempts,
            kind,
            error: reason,
            first,
            last,
            hopeless: false,
        });
        let written = self.outbox.write(tx, &[record], &[]).await?;
        Ok((outcome, written))
    }

    /// A retry record that cannot be handled at all: its parked row (if any) is marked dead and
    /// the record goes to the dead-letter topic as it is.
    async fn give_up(&self, delivery: &Delivery, reason: &str) -> Result<(), HandlerError> {
        let parked_id = delivery
            .headers
            .get(headers::PARKED_ID)
            .and_then(|v| v.parse::<i64>().ok());
        let mut failed = FailedAttempt::first(delivery, FailureKind::Permanent, reason).hopeless();
        failed.parked_id = parked_id;
        let (record, _) = self.failure_record(failed);
        let mut tx = self.pool.begin().await?;
        if let Some(id) = parked_id {
            parking::mark_dead(&mut tx, id, reason).await?;
        }
        let written = self.outbox.write(&mut tx, &[record], &[]).await?;
        self.outbox.commit(tx, written).await?;
        Ok(())
    }
}
