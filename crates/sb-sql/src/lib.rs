//! The thin SQL layer: statements written once with `:name` parameters, a small value
//! type, row decoding whose errors name table and column, and one `Db` handle over two
//! executors (SQLite through rusqlite on a writer thread with group commit, PostgreSQL
//! through tokio-postgres + deadpool).
//!
//! Transactions are synchronous closures (`Db::write(|tx| …)`): the SQLite writer runs
//! many of them back to back in one `BEGIN IMMEDIATE … COMMIT`, each inside its own
//! savepoint, which is what makes group commit possible without changing callers.

mod db;
mod error;
pub mod migrate;
pub mod postgres;
mod row;
pub mod schema;
pub mod sqlite;
mod stmt;
mod value;

pub use db::{Backend, Conn, Db, Executor, Work, WorkError, WorkOutput};
pub use error::SqlError;
pub use row::{FromRow, FromValue, Row};
pub use stmt::{Stmt, rewrite};
pub use value::Value;

/// Implements [`FromRow`] for a struct whose fields are read by name from columns of the
/// same name; decoding errors name `$table` and the column.
#[macro_export]
macro_rules! from_row {
    ($ty:ident in $table:literal { $($field:ident),* $(,)? }) => {
        impl $crate::FromRow for $ty {
            fn from_row(row: &$crate::Row) -> ::std::result::Result<Self, $crate::SqlError> {
                Ok(Self { $($field: row.get_in($table, stringify!($field))?,)* })
            }
        }
    };
}
