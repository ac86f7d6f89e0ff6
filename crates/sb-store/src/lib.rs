//! Every repository, written once over `sb-sql` and run on SQLite or PostgreSQL.
//!
//! Repository functions take `&mut dyn Conn` so callers compose them inside one
//! transaction (a domain write and the job it enqueues commit together). Every query on
//! tenant data filters on `workspace_id`.

pub mod attachments;
pub mod audit;
pub mod canned_responses;
pub mod carts;
pub mod catalog;
pub mod channel_accounts;
pub mod consents;
pub mod conversations;
pub mod customers;
pub mod deliveries;
pub mod domain_events;
pub mod event_sources;
pub mod events;
pub mod idempotency;
pub mod inbound;
pub mod inventory;
pub mod jobs;
pub mod journeys;
pub mod links;
pub mod live_events;
pub mod mailbox_sync;
pub mod merges;
pub mod messages;
pub mod migrations;
pub mod objects;
pub mod orders;
pub mod presence;
pub mod profiles;
pub mod returns;
pub mod sessions;
pub mod suppressions;
pub mod templates;
pub mod timers;
pub mod tokens;
pub mod transfers;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use std::sync::Arc;

use sb_core::Clock;
pub use sb_sql::{Backend, Conn, Db, SqlError, Stmt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Sql(#[from] SqlError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database handle plus the clock every written time comes from.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
}

impl Store {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Store { db, clock }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        Ok(sb_sql::migrate::run(&self.db, migrations::for_backend(self.db.backend()), self.now()).await?)
    }
}
