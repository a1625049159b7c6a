//! [`from_row!`](crate::from_row): a struct read from a Postgres row, column by column.
//!
//! It does what `#[derive(sqlx::FromRow)]` does for a plain struct. The derive lives in sqlx's
//! macro crate, which compiles sqlx's Postgres driver a second time for the compiler to run (see
//! [`crate::migrations`]); a declarative macro costs nothing to build.

#[doc(hidden)]
pub use sqlx;

/// Implements `sqlx::FromRow` for Postgres rows on a struct, each field read from the column of
/// its name, or, written `field = "column"`, from the column named. List every field: the
/// struct literal it expands to does not compile otherwise, and a column the query does not
/// return is an error at run time, as with the derive.
///
/// ```
/// struct Payment {
///     order_id: uuid::Uuid,
///     amount: i64,
/// }
/// saga_messaging::from_row!(Payment { order_id, amount = "amount_cents" });
/// ```
#[macro_export]
macro_rules! from_row {
    ($type:ty { $($field:ident $(= $column:literal)?),* $(,)? }) => {
        impl<'r> $crate::row::sqlx::FromRow<'r, $crate::row::sqlx::postgres::PgRow> for $type {
            fn from_row(
                row: &'r $crate::row::sqlx::postgres::PgRow,
            ) -> ::std::result::Result<Self, $crate::row::sqlx::Error> {
                use $crate::row::sqlx::Row as _;
                ::std::result::Result::Ok(Self {
                    $($field: row.try_get($crate::from_row!(@column $field $($column)?))?,)*
                })
            }
        }
    };
    (@column $field:ident $column:literal) => {
        $column
    };
    (@column $field:ident) => {
        stringify!($field)
    };
}
