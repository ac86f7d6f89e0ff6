use thiserror::Error;

#[derive(Debug, Error)]
pub enum SqlError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    #[error("foreign key constraint violated: {0}")]
    ForeignKeyViolation(String),
    #[error("could not decode column `{column}` of `{table}`: {reason}")]
    Decode {
        table: String,
        column: String,
        reason: String,
    },
    #[error("statement needs parameter `:{0}` but it was not bound")]
    MissingParam(String),
    #[error("parameter `:{0}` was bound but the statement does not use it")]
    UnusedParam(String),
    #[error("expected one row, found none")]
    NoRows,
    #[error("migration {version} ({name}) was changed after it was applied: restore the original file")]
    MigrationChanged { version: i64, name: String },
    #[error("the database has migration {version} which this binary does not know: run a newer switchboard")]
    UnknownMigration { version: i64 },
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("database error: {0}")]
    Other(String),
}

/// Both backends end a unit of work at its first failed statement (PostgreSQL does so by
/// itself; SQLite is made to match), so code behaves the same on either.
pub(crate) const EARLIER_FAILURE: &str = "an earlier statement of this unit of work failed";

impl SqlError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, SqlError::UniqueViolation(_))
    }
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            let text = msg.clone().unwrap_or_else(|| e.to_string());
            if f.code == ErrorCode::ConstraintViolation {
                // Extended codes tell unique from foreign-key violations.
                return match f.extended_code {
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                        SqlError::UniqueViolation(text)
                    }
                    rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => SqlError::ForeignKeyViolation(text),
                    _ => SqlError::Other(text),
                };
            }
            if matches!(f.code, ErrorCode::CannotOpen | ErrorCode::DiskFull) {
                return SqlError::Unavailable(text);
            }
        }
        SqlError::Other(e.to_string())
    }
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = e.as_db_error() {
            let text = format!("{} ({})", db.message(), db.constraint().unwrap_or(""));
            return match *db.code() {
                SqlState::IN_FAILED_SQL_TRANSACTION => SqlError::Aborted(EARLIER_FAILURE.into()),
                SqlState::UNIQUE_VIOLATION => SqlError::UniqueViolation(text),
                SqlState::FOREIGN_KEY_VIOLATION => SqlError::ForeignKeyViolation(text),
                _ => SqlError::Other(db.message().to_string()),
            };
        }
        if e.is_closed() {
            return SqlError::Unavailable(e.to_string());
        }
        SqlError::Other(e.to_string())
    }
}
