//! What Payment, Inventory and Shipping share as saga participants, written once.
//!
//! Each of them hears the events of the orders it takes part in, takes one step for each order
//! (a payment, a reservation, a shipment), undoes it when the saga compensates, and never acts
//! for an order that was cancelled or ran past its deadline. They differ only in their rules and
//! in their own tables, so that is all a service writes: [`Participant`] (its pure rules, in its
//! `domain.rs`) and [`Ledger`] (its tables' SQL, in its `store.rs`). The rest is here:
//!
//! - [`Reacting`]: the consumer's batches folded through the rules, with the few statements a
//!   batch runs;
//! - [`Standing`], [`Decision`], [`Refused`]: what a participant knows of an order and what an
//!   event does to it, and [`Standing::turns_away`], the rule every request to act meets first;
//! - [`closed_orders`] and [`migrator`]: the orders a participant will not act for any more, and
//!   their table;
//! - [`http::by_order`]: `GET` a participant's step by its order;
//! - [`scenario`]: given/when/then for the participants' rule tests.

pub mod closed_orders;
pub mod http;
mod participant;
mod reacting;
pub mod scenario;
mod standing;

use sqlx::migrate::Migrator;

pub use participant::{Change, Changes, Ledger, Participant, Standings, column, corrupt};
pub use reacting::Reacting;
pub use standing::{Decision, Refused, Standing};

/// `own`, the service's migrations (versions 100 and up), with the participants' (`closed_orders`,
/// versions 50 to 99) ahead of them: hand it to [`saga_runtime::ServiceRuntime::start`], which
/// applies it after the outbox/inbox migrations (versions below 50).
pub fn migrator(own: Migrator) -> Migrator {
    let shared = saga_messaging::embedded_migrations!();
    Migrator::with_migrations(shared.iter().chain(own.iter()).cloned().collect())
}

#[cfg(test)]
mod tests {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType};

    use super::*;

    #[test]
    fn closed_orders_come_before_the_services_own_tables_in_one_migrator() {
        let sql = "CREATE TABLE own (id INT)".into_sql_str();
        let own = Migration::new(100, "own".into(), MigrationType::Simple, sql, false);
        let merged = migrator(Migrator::with_migrations(vec![own]));
        let versions: Vec<i64> = merged.iter().map(|m| m.version).collect();
        assert_eq!(versions, [50, 100]);
        let first = merged.iter().next().map(|m| m.sql.as_str());
        assert!(first.is_some_and(|sql| sql.contains("CREATE TABLE IF NOT EXISTS closed_orders")));
    }
}
