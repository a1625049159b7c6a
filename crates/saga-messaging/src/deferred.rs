//! Writes a reaction leaves for the consumer's last statement of the batch.
//!
//! Why: a statement run inside a transaction costs little on the database's side, but each one
//! is a round trip, and a round trip wakes the database's backend and then the service's runtime
//! worker. A batch ends with one statement that writes its inbox entries and its outbox records
//! ([`crate::outbox::Outbox::write_with`]); a reaction's own inserts and updates go into that
//! statement as CTEs instead of running one by one before it. They then run with the same
//! snapshot as the inbox's and the outbox's inserts, so a deferred write must not depend on
//! another write of the same batch (each table is written once per batch anyway), and it must
//! not be a statement whose result the reaction reads.
//!
//! A deferred write is SQL numbering its own parameters from `$1`, and a function that binds
//! them in that order; [`DeferredWrites`] renumbers each after the parameters before it. The
//! workflows' own writes (`saga_workflow::Workflow::persist`) are the same thing, carried by the
//! statement that writes their instance.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

/// A statement with its parameters bound so far.
pub type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

type Bind = Box<dyn for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q> + Send>;

/// One data-modifying statement (an `INSERT`, `UPDATE` or `DELETE` without `RETURNING` that
/// anyone reads), to run as a CTE of the batch's last statement.
pub struct Deferred {
    sql: &'static str,
    parameters: usize,
    bind: Bind,
}

impl Deferred {
    /// `sql` with parameters `$1` to `$n`, and `bind`, which binds exactly those, in order, from
    /// values it owns.
    pub fn new(
        sql: &'static str,
        bind: impl for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q> + Send + 'static,
    ) -> Self {
        Self {
            sql,
            parameters: highest_parameter(sql),
            bind: Box::new(bind),
        }
    }

    /// Runs the write now, as a statement of its own: for a caller with no batch statement to
    /// carry it.
    pub async fn run(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        (self.bind)(sqlx::query(self.sql)).execute(conn).await?;
        Ok(())
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("sql", &self.sql)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

/// The writes one batch's reactions defer, in the order they were made.
#[derive(Debug, Default)]
pub struct DeferredWrites {
    writes: Vec<Deferred>,
}

impl DeferredWrites {
    pub fn push(&mut self, write: Deferred) {
        self.writes.push(write);
    }

    /// Adds `write`, if there is one.
    pub fn extend(&mut self, write: Option<Deferred>) {
        self.writes.extend(write);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes as CTEs (`, deferred_0 AS (…), …`, each led by a comma: they follow a
    /// statement's first CTE), with their parameters numbered from `$first`, after the
    /// statement's own.
    pub fn ctes(&self, first: usize) -> String {
        let mut sql = String::new();
        let mut next = first;
        for (index, write) in self.writes.iter().enumerate() {
            sql.push_str(&format!(
                ",\n deferred_{index} AS ({})",
                renumber(write.sql, next - 1)
            ));
            next += write.parameters;
        }
        sql
    }

    /// Binds every write's parameters, in the order [`DeferredWrites::ctes`] numbers them.
    pub fn bind<'q>(self, mut query: PgQuery<'q>) -> PgQuery<'q> {
        for write in self.writes {
            query = (write.bind)(query);
        }
        query
    }
}

/// Each `$n` of `sql`: where it starts and ends, and `n`.
fn parameters(sql: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    sql.match_indices('$').filter_map(|(at, _)| {
        let digits = sql[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let number = sql[at + 1..at + 1 + digits].parse().ok()?;
        Some((at, at + 1 + digits, number))
    })
}

/// The highest `$n` in `sql`.
fn highest_parameter(sql: &str) -> usize {
    parameters(sql)
        .map(|(_, _, number)| number)
        .max()
        .unwrap_or(0)
}

/// `sql` with each `$n` made `$(n + offset)`. The deferred writes are the services' own SQL
/// text, with no `$` but in parameters.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    for (start, end, number) in parameters(sql) {
        out.push_str(&sql[copied..start]);
        out.push_str(&format!("${}", number + offset));
        copied = end;
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_counted_by_the_highest_number() {
        assert_eq!(highest_parameter("UPDATE t SET a = $2 WHERE b = $1"), 2);
        assert_eq!(
            highest_parameter("INSERT INTO t SELECT * FROM unnest($10::int[])"),
            10
        );
        assert_eq!(highest_parameter("DELETE FROM t"), 0);
    }

    #[test]
    fn each_write_is_numbered_after_the_ones_before_it() {
        let mut writes = DeferredWrites::default();
        writes.push(Deferred::new("UPDATE a SET x = $2 WHERE id = $1", |q| q));
        writes.push(Deferred::new(
            "INSERT INTO b SELECT * FROM unnest($1::uuid[], $10::text[])",
            |q| q,
        ));
        assert_eq!(
            writes.ctes(12),
            ",\n deferred_0 AS (UPDATE a SET x = $13 WHERE id = $12),\n deferred_1 AS \
             (INSERT INTO b SELECT * FROM unnest($14::uuid[], $23::text[]))"
        );
    }

    #[test]
    fn nothing_deferred_adds_nothing() {
        assert_eq!(DeferredWrites::default().ctes(7), "");
    }
}
