//! `switchboard bench store`: durable single-row inserts from many concurrent writers
//! through the executor (SQLite group commit, or PostgreSQL with its own group commit),
//! printed with the ratio to the ceilings measured in `shared/notes/perf-limits.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_sql::{Backend, Db, SqlError, Stmt};

use crate::config::{Config, ConfigError, DatabaseConfig, parse_database_url};

/// perf-limits.md §2: SQLite, WAL, `synchronous=FULL`, 100 rows per commit, random-key indexes.
pub const SQLITE_CEILING_ROWS_PER_SEC: f64 = 27_400.0;
/// perf-limits.md §3: PostgreSQL 15, single-row autocommit inserts over 16 connections.
pub const POSTGRES_CEILING_ROWS_PER_SEC: f64 = 12_500.0;

#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// Rows to insert.
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Concurrent writers (tasks), each inserting one row per transaction.
    #[arg(long, default_value_t = 256)]
    pub writers: usize,
    /// Also (or only) run on this database; `postgres://…` runs in a scratch schema that is dropped afterwards.
    #[arg(long = "url")]
    pub url: Option<String>,
    /// PostgreSQL connections in the pool.
    #[arg(long, default_value_t = 16)]
    pub pg_pool: usize,
    /// Skip the SQLite run (with --url postgres://…).
    #[arg(long)]
    pub no_sqlite: bool,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// How each row is written.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// `Db::execute`: one statement committed on its own (what the ceilings measured).
    Statement,
    /// `Db::write(|tx| …)`: the general unit of work that domain code uses.
    UnitOfWork,
}

#[derive(Debug, serde::Serialize)]
pub struct StoreFigures {
    pub backend: &'static str,
    pub mode: WriteMode,
    pub rows: u64,
    pub writers: usize,
    pub seconds: f64,
    pub rows_per_sec: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub ceiling_rows_per_sec: f64,
    pub ratio_to_ceiling: f64,
}

const TABLE: &str = "
    CREATE TABLE bench_messages (
        id TEXT NOT NULL PRIMARY KEY,
        conversation_id BIGINT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        provider_message_id TEXT NOT NULL UNIQUE
    );
    CREATE INDEX bench_messages_conversation ON bench_messages (conversation_id, created_at);";

pub async fn store(config: &Config, args: &StoreBenchArgs) -> Result<(), ConfigError> {
    let mut results = Vec::new();
    if !args.no_sqlite {
        config.prepare_data_dir()?;
        let dir = config.data_dir.join(format!("bench-{}", sb_core::new_id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
        let exec = SqliteExecutor::open(&SqliteOptions::new(dir.join("bench.sqlite")))
            .map_err(|e| ConfigError(format!("cannot open the bench database: {e}")))?;
        let db = Db::new(Arc::new(exec));
        for mode in [WriteMode::Statement, WriteMode::UnitOfWork] {
            let figures = run(&db, args, mode).await;
            results.push(figures.map_err(|e| ConfigError(format!("the SQLite run failed: {e}")))?);
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(url) = &args.url {
        let DatabaseConfig::Postgres(url) = parse_database_url(url)? else {
            return Err(ConfigError(
                "--url takes a postgres:// URL (SQLite always runs unless --no-sqlite)".into(),
            ));
        };
        let admin = PgExecutor::connect(&PgOptions::new(url.clone()))
            .await
            .map_err(|e| ConfigError(format!("cannot reach PostgreSQL: {e}")))?;
        let admin = Db::new(Arc::new(admin));
        let schema = format!("sb_bench_{}", sb_core::new_id().replace('-', ""));
        let ddl = format!("CREATE SCHEMA {schema}");
        admin
            .write(move |c| c.execute_script(&ddl))
            .await
            .map_err(|e: SqlError| ConfigError(e.to_string()))?;
        let exec = PgExecutor::connect(&PgOptions {
            search_path: Some(schema.clone()),
            pool_size: args.pg_pool,
            ..PgOptions::new(url.clone())
        })
        .await
        .map_err(|e| ConfigError(format!("cannot reach PostgreSQL: {e}")))?;
        let db = Db::new(Arc::new(exec));
        let mut figures = Vec::new();
        for mode in [WriteMode::Statement, WriteMode::UnitOfWork] {
            figures.push(run(&db, args, mode).await);
        }
        db.close().await;
        let ddl = format!("DROP SCHEMA {schema} CASCADE");
        let _ = admin.write(move |c| c.execute_script(&ddl)).await;
        admin.close().await;
        for f in figures {
            results.push(f.map_err(|e| ConfigError(format!("the PostgreSQL run failed: {e}")))?);
        }
    }
    for f in &results {
        println!(
            "bench store [{} {:?}]: {} rows by {} writers in {:.2} s = {:.0} rows/s; commit latency p50 {:.2} ms, p99 {:.2} ms; \
             ceiling {:.0} rows/s (perf-limits.md) → ratio {:.2}",
            f.backend,
            f.mode,
            f.rows,
            f.writers,
            f.seconds,
            f.rows_per_sec,
            f.commit_p50_ms,
            f.commit_p99_ms,
            f.ceiling_rows_per_sec,
            f.ratio_to_ceiling
        );
    }
    if args.json {
        let object = serde_json::json!({ "bench": "store", "results": results });
        println!("{object}");
    }
    Ok(())
}

pub async fn run(db: &Db, args: &StoreBenchArgs, mode: WriteMode) -> Result<StoreFigures, SqlError> {
    db.write(|c| c.execute_script(TABLE)).await?;
    let next = Arc::new(AtomicU64::new(0));
    let rows = args.rows.max(1);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.writers);
    for _ in 0..args.writers.max(1) {
        let (db, next) = (db.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
            let mut rng = rand::rngs::SmallRng::from_os_rng();
            let body = "x".repeat(200);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= rows {
                    break;
                }
                let mut pid = [0u8; 16];
                rng.fill_bytes(&mut pid);
                let stmt = Stmt::new(
                    "INSERT INTO bench_messages (id, conversation_id, body, created_at, provider_message_id)
                     VALUES (:id, :conversation, :body, :at, :pid)",
                )
                .bind("id", sb_core::new_id())
                .bind("conversation", (rng.next_u32() % 10_000) as i64)
                .bind("body", body.clone())
                .bind("at", n as i64)
                .bind("pid", format!("wamid.{}", hex_string(&pid)));
                let t = Instant::now();
                match mode {
                    WriteMode::Statement => db.execute(stmt).await?,
                    WriteMode::UnitOfWork => db.write(move |c| c.execute(&stmt)).await?,
                };
                hist.record(t.elapsed().as_micros().max(1) as u64).ok();
            }
            Ok::<_, SqlError>(hist)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    for t in tasks {
        let hist = t.await.map_err(|e| SqlError::Other(e.to_string()))??;
        total.add(&hist).map_err(|e| SqlError::Other(e.to_string()))?;
    }
    let seconds = started
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    let count: i64 = db
        .read(|c| {
            c.query_one(&Stmt::new("SELECT COUNT(*) AS n FROM bench_messages"))?
                .get("n")
        })
        .await?;
    if count as u64 != rows {
        return Err(SqlError::Other(format!("expected {rows} rows, found {count}")));
    }
    db.write(|c| c.execute_script("DROP TABLE bench_messages")).await?;
    let (backend, ceiling) = match db.backend() {
        Backend::Sqlite => ("sqlite", SQLITE_CEILING_ROWS_PER_SEC),
        Backend::Postgres => ("postgres", POSTGRES_CEILING_ROWS_PER_SEC),
    };
    let rows_per_sec = rows as f64 / seconds;
    Ok(StoreFigures {
        backend,
        mode,
        rows,
        writers: args.writers,
        seconds,
        rows_per_sec,
        commit_p50_ms: total.value_at_quantile(0.50) as f64 / 1000.0,
        commit_p99_ms: total.value_at_quantile(0.99) as f64 / 1000.0,
        ceiling_rows_per_sec: ceiling,
        ratio_to_ceiling: rows_per_sec / ceiling,
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
