//! `switchboard bench …`: each prints figures with units and the ratio to the ceilings
//! measured on this machine kind (`shared/notes/perf-limits.md`); `--json` adds one JSON
//! object on the last line.

pub mod events;
pub mod ingest;
pub mod journeys;
mod raw_http;
pub mod stock;
pub mod store;
pub mod webhooks;

pub use events::{EventsBenchArgs, events};
pub use ingest::{IngestBenchArgs, ingest};
pub use journeys::{JourneysBenchArgs, journeys};
pub use stock::{StockBenchArgs, stock};
pub use store::{StoreBenchArgs, store};
pub use webhooks::{WebhooksBenchArgs, webhooks};

/// A SQLite database file in a bench's directory.
pub(crate) async fn open_sqlite(dir: &std::path::Path, name: &str) -> Result<sb_sql::Db, sb_sql::SqlError> {
    let exec = sb_sql::sqlite::SqliteExecutor::open(&sb_sql::sqlite::SqliteOptions::new(dir.join(name)))?;
    Ok(sb_sql::Db::new(std::sync::Arc::new(exec)))
}

/// `bench store` (units of work, 20,000 rows, 256 writers) on the same disk, minutes apart
/// at most: the yardstick a bench's figures are divided by.
pub(crate) async fn store_baseline(dir: &std::path::Path) -> Result<store::StoreFigures, sb_sql::SqlError> {
    let db = open_sqlite(dir, "store.sqlite").await?;
    let figures = store::run(
        &db,
        &store::StoreBenchArgs {
            rows: 20_000,
            writers: 256,
            url: None,
            pg_pool: 16,
            no_sqlite: false,
            json: false,
        },
        store::WriteMode::UnitOfWork,
    )
    .await;
    db.close().await;
    figures
}
