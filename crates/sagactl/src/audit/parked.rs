//! The audit's rules for parked messages, at each service. A parked row explains why an order has
//! not ended only when it is DEAD and its dead letter is on the service's dead-letter topic: a
//! person has something to act on. Everything else parked is either on its way (a retry within
//! its schedule, a message waiting behind a live head) or a violation:
//! - a RETRYING row whose last failure is older than the retry grace (its retry record was lost);
//! - a DEAD row whose dead letter is nowhere on the topic;
//! - WAITING rows behind no head (nothing will ever release them);
//! - more than one head (RETRYING or DEAD) for one order at one service.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::databases::Databases;

/// One parked row, as the audit reads it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    order: String,
    status: String,
    event_type: String,
    error: Option<String>,
    /// RETRYING, and its last failure is older than the retry grace.
    overdue: bool,
}
saga_messaging::from_row!(Row {
    id,
    order,
    status,
    event_type,
    error,
    overdue
});

/// What the parked rows of every service say.
#[derive(Debug, Default)]
pub struct ParkedFindings {
    /// Per order, the dead letters that explain why it has not ended.
    pub explained: HashMap<String, Vec<String>>,
    /// Per order, everything parked (for the messages of violations).
    pub parked: HashMap<String, Vec<String>>,
    pub violations: Vec<String>,
}

/// Reads every service's parked rows and applies the rules. `dead_letters` holds (service,
/// parked row id) of the dead letters on the topics; None when the topics were not read, and
/// then a DEAD row is taken at its word.
pub async fn check(
    databases: &Databases,
    dead_letters: Option<&HashSet<(String, i64)>>,
    retry_grace_seconds: u64,
) -> anyhow::Result<ParkedFindings> {
    let mut findings = ParkedFindings::default();
    for (service, pool) in databases.all() {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, order_id AS order, status,
                    coalesce(event_type, 'an undecodable record') AS event_type, error,
                    status = 'RETRYING'
                    AND coalesce(last_failed_at, parked_at) < now() - make_interval(secs => $1)
                    AS overdue
             FROM parked ORDER BY id",
        )
        .bind(retry_grace_seconds as f64)
        .fetch_all(pool)
        .await?;
        apply(service, &rows, dead_letters, &mut findings);
    }
    Ok(findings)
}

fn apply(
    service: &str,
    rows: &[Row],
    dead_letters: Option<&HashSet<(String, i64)>>,
    findings: &mut ParkedFindings,
) {
    let mut by_order: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_order.entry(row.order.as_str()).or_default().push(row);
        findings
            .parked
            .entry(row.order.clone())
            .or_default()
            .push(format!(
                "{} {} at {service}{}",
                row.event_type,
                row.status,
                row.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
    }
    for (order, rows) in by_order {
        let heads = rows
            .iter()
            .filter(|r| r.status == "RETRYING" || r.status == "DEAD")
            .count();
        let waiting = rows.iter().filter(|r| r.status == "WAITING").count();
        if heads > 1 {
            findings.violations.push(format!(
                "order {order}: {heads} parked heads at {service} (one order has one head)"
            ));
        }
        if heads == 0 && waiting > 0 {
            findings.violations.push(format!(
                "order {order}: {waiting} messages WAITING at {service} behind no head; nothing will release them"
            ));
        }
        for row in rows {
            match row.status.as_str() {
                "RETRYING" if row.overdue => findings.violations.push(format!(
                    "order {order}: {} RETRYING at {service} (parked row {}) long past its retry schedule: its retry record was lost",
                    row.event_type, row.id
                )),
                "DEAD" => {
                    let lettered = dead_letters
                        .is_none_or(|letters| letters.contains(&(service.to_owned(), row.id)));
                    if lettered {
                        findings.explained.entry(order.to_owned()).or_default().push(format!(
                            "{} dead-lettered at {service}{}",
                            row.event_type,
                            row.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        ));
                    } else {
                        findings.violations.push(format!(
                            "order {order}: {} DEAD at {service} (parked row {}) but no dead letter of it is on {service}.dlq",
                            row.event_type, row.id
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, order: &str, status: &str, overdue: bool) -> Row {
        Row {
            id,
            order: order.to_owned(),
            status: status.to_owned(),
            event_type: "PaymentAuthorized".to_owned(),
            error: None,
            overdue,
        }
    }

    fn findings(rows: &[Row], letters: &[i64]) -> ParkedFindings {
        let letters: HashSet<(String, i64)> = letters
            .iter()
            .map(|id| ("inventory".to_owned(), *id))
            .collect();
        let mut findings = ParkedFindings::default();
        apply("inventory", rows, Some(&letters), &mut findings);
        findings
    }

    #[test]
    fn a_dead_head_with_its_letter_explains_its_order_and_its_waiting_messages_are_fine() {
        let found = findings(
            &[row(1, "a", "DEAD", false), row(2, "a", "WAITING", false)],
            &[1],
        );
        assert!(found.violations.is_empty(), "{:?}", found.violations);
        assert_eq!(found.explained["a"].len(), 1);
    }

    #[test]
    fn a_dead_row_without_its_letter_is_a_violation() {
        let found = findings(&[row(1, "a", "DEAD", false)], &[7]);
        assert!(found.explained.is_empty());
        assert_eq!(found.violations.len(), 1, "{:?}", found.violations);
    }

    #[test]
    fn an_overdue_retry_waiting_behind_nothing_and_two_heads_are_violations() {
        let found = findings(
            &[
                row(1, "a", "RETRYING", true),
                row(2, "b", "WAITING", false),
                row(3, "c", "RETRYING", false),
                row(4, "c", "DEAD", false),
            ],
            &[4],
        );
        let text = found.violations.join("\n");
        assert!(
            text.contains("order a: PaymentAuthorized RETRYING"),
            "{text}"
        );
        assert!(text.contains("order b: 1 messages WAITING"), "{text}");
        assert!(text.contains("order c: 2 parked heads"), "{text}");
        assert_eq!(found.violations.len(), 3, "{text}");
    }

    #[test]
    fn a_retry_within_its_schedule_is_neither_explained_nor_a_violation() {
        let found = findings(&[row(1, "a", "RETRYING", false)], &[]);
        assert!(found.violations.is_empty());
        assert!(found.explained.is_empty());
        assert_eq!(found.parked["a"].len(), 1);
    }
}
