//! `switchboard bench stock`: checkout holds per second through the inventory ledger (each
//! one a ledger group, a guarded balance update and a reservation row, durably committed),
//! for one hot SKU and for SKUs spread over locations, on SQLite and optionally PostgreSQL.
//! Stock is 90 % of the attempts, so the last units are fought over: the run prints how many
//! holds were refused and the oversell count (must be 0), and checks that the ledger replays
//! to the balances. Ratios are to the PostgreSQL reservation figures of `perf-limits.md` §3.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use hdrhistogram::Histogram;
use sb_core::inventory::Movement;
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_sql::{Backend, Db, SqlError};
use sb_store::catalog::{self, NewLocation, NewVariant};
use sb_store::inventory::{self, Change, InventoryError, Line, NewReservation};
use sb_store::{Store, StoreError};

use crate::config::{Config, ConfigError, DatabaseConfig, parse_database_url};

/// perf-limits.md §3: inventory reservations on PostgreSQL, one hot SKU.
pub const POSTGRES_HOT_SKU_PER_SEC: f64 = 2_500.0;
/// perf-limits.md §3: inventory reservations on PostgreSQL, SKUs spread.
pub const POSTGRES_SPREAD_PER_SEC: f64 = 12_000.0;

#[derive(Debug, Args)]
pub struct StockBenchArgs {
    /// Hold attempts per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub attempts: u64,
    /// Concurrent buyers (tasks).
    #[arg(long, default_value_t = 64)]
    pub buyers: usize,
    /// SKUs × locations in the spread scenario.
    #[arg(long, default_value_t = 50)]
    pub skus: usize,
    #[arg(long, default_value_t = 4)]
    pub locations: usize,
    /// Also run on this PostgreSQL database (a scratch schema, dropped afterwards).
    #[arg(long = "url")]
    pub url: Option<String>,
    #[arg(long, default_value_t = 16)]
    pub pg_pool: usize,
    /// Skip the SQLite run.
    #[arg(long)]
    pub no_sqlite: bool,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct StockFigures {
    pub backend: &'static str,
    pub scenario: &'static str,
    pub attempts: u64,
    pub held: u64,
    pub refused: u64,
    pub stock: i64,
    pub seconds: f64,
    pub holds_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub oversold: i64,
    pub ledger_problems: usize,
    pub postgres_figure_per_sec: f64,
    pub ratio: f64,
}

fn store_error(e: InventoryError) -> StoreError {
    match e {
        InventoryError::Store(e) => e,
        other => StoreError::Invalid(other.to_string()),
    }
}

pub async fn stock(config: &Config, args: &StockBenchArgs) -> Result<(), ConfigError> {
    let mut results = Vec::new();
    let clock: Arc<dyn sb_core::Clock> = Arc::new(sb_core::SystemClock);
    if !args.no_sqlite {
        config.prepare_data_dir()?;
        let dir = config.data_dir.join(format!("bench-{}", sb_core::new_id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
        let exec = SqliteExecutor::open(&SqliteOptions::new(dir.join("bench.sqlite")))
            .map_err(|e| ConfigError(format!("cannot open the bench database: {e}")))?;
        let store = Store::new(Db::new(Arc::new(exec)), clock.clone());
        let outcome = run_both(&store, args).await;
        store.db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        results.extend(outcome.map_err(|e| ConfigError(format!("the SQLite run failed: {e}")))?);
    }
    if let Some(url) = &args.url {
        let DatabaseConfig::Postgres(url) = parse_database_url(url)? else {
            return Err(ConfigError("--url takes a postgres:// URL".into()));
        };
        let admin = Db::new(Arc::new(
            PgExecutor::connect(&PgOptions::new(url.clone()))
                .await
                .map_err(|e| ConfigError(format!("cannot reach PostgreSQL: {e}")))?,
        ));
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
        let store = Store::new(Db::new(Arc::new(exec)), clock);
        let outcome = run_both(&store, args).await;
        store.db.close().await;
        let ddl = format!("DROP SCHEMA {schema} CASCADE");
        let _ = admin.write(move |c| c.execute_script(&ddl)).await;
        admin.close().await;
        results.extend(outcome.map_err(|e| ConfigError(format!("the PostgreSQL run failed: {e}")))?);
    }
    for f in &results {
        println!(
            "bench stock [{} {}]: {} hold attempts by {} buyers in {:.2} s = {:.0} holds/s (p50 {:.2} ms, p99 {:.2} ms); \
             held {} of {} units, refused {}, oversold {}, ledger problems {}; \
             PostgreSQL figure {:.0}/s (perf-limits.md) → ratio {:.2}",
            f.backend,
            f.scenario,
            f.attempts,
            args.buyers,
            f.seconds,
            f.holds_per_sec,
            f.p50_ms,
            f.p99_ms,
            f.held,
            f.stock,
            f.refused,
            f.oversold,
            f.ledger_problems,
            f.postgres_figure_per_sec,
            f.ratio
        );
    }
    if args.json {
        println!("{}", serde_json::json!({ "bench": "stock", "results": results }));
    }
    if results.iter().any(|f| f.oversold != 0 || f.ledger_problems != 0) {
        return Err(ConfigError("oversold or the ledger disagrees with the balances".into()));
    }
    Ok(())
}

async fn run_both(store: &Store, args: &StockBenchArgs) -> Result<Vec<StockFigures>, StoreError> {
    store.migrate().await?;
    Ok(vec![
        run(store, args, "hot_sku", 1, 1).await?,
        run(store, args, "spread", args.skus.max(1), args.locations.max(1)).await?,
    ])
}

async fn run(
    store: &Store,
    args: &StockBenchArgs,
    scenario: &'static str,
    skus: usize,
    locations: usize,
) -> Result<StockFigures, StoreError> {
    let now = store.now();
    let cells = (skus * locations) as u64;
    let attempts = args.attempts.max(cells);
    let per_cell = ((attempts * 9 / 10) / cells).max(1) as i64;
    let (ws, pairs) = store
        .db
        .write(move |c| {
            let ws = sb_store::workspaces::create(c, &format!("bench-{scenario}"), now)?.id;
            let mut location_ids = Vec::new();
            for l in 0..locations {
                let code = format!("L{l}");
                let new = NewLocation {
                    workspace_id: &ws,
                    code: &code,
                    kind: "store",
                    name: &code,
                    address: "",
                    lat: None,
                    lng: None,
                    timezone: "UTC",
                    can_ship: true,
                    can_pickup: true,
                    accepts_returns: true,
                    pickup_prep_minutes: 0,
                    pickup_hold_days: 1,
                    daily_capacity: None,
                    routing_rank: 0,
                };
                location_ids.push(
                    catalog::create_location(c, &new, now)?
                        .ok_or(StoreError::Conflict(code))?
                        .id,
                );
            }
            let mut pairs = Vec::new();
            let mut lines = Vec::new();
            for s in 0..skus {
                let sku = format!("SKU-{s}");
                let variant = NewVariant {
                    sku: sku.clone(),
                    title: sku.clone(),
                    price_minor: 100,
                    currency: "EUR".into(),
                    components: Vec::new(),
                };
                catalog::create_product(c, &ws, &sku, "", &[variant], now)?;
                let item = catalog::find_item(c, &ws, &sku)?.ok_or(StoreError::NotFound("item"))?;
                for location in &location_ids {
                    pairs.push((item.clone(), location.clone()));
                    lines.push(Line {
                        item_id: item.clone(),
                        location_id: location.clone(),
                        movement: Movement::Receive { quantity: per_cell },
                    });
                }
            }
            let change = Change {
                workspace_id: &ws,
                idempotency_key: "bench:stock",
                reason: "received",
                actor: "bench",
                reference_type: "manual",
                reference_id: None,
                lines,
            };
            inventory::apply(c, &change, now).map_err(store_error)?;
            Ok::<_, StoreError>((ws, pairs))
        })
        .await?;
    let pairs = Arc::new(pairs);
    let next = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.buyers.max(1) {
        let (store, pairs, next, held, ws) = (store.clone(), pairs.clone(), next.clone(), held.clone(), ws.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= attempts {
                    break;
                }
                let (item, location) = pairs[(n % pairs.len() as u64) as usize].clone();
                let (ws, at) = (ws.clone(), store.now());
                let t = Instant::now();
                let outcome = store
                    .db
                    .write(move |c| {
                        let key = format!("hold-{n}");
                        let hold = NewReservation {
                            workspace_id: &ws,
                            idempotency_key: &key,
                            actor: "bench",
                            item_id: &item,
                            location_id: &location,
                            quantity: 1,
                            owner_type: "cart",
                            owner_id: None,
                            expires_at: at + 600_000,
                        };
                        inventory::reserve(c, &hold, at)
                    })
                    .await;
                hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                match outcome {
                    Ok(_) => {
                        held.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(InventoryError::Insufficient { .. }) => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
            Ok::<_, StoreError>(hist)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for t in tasks {
        let hist = t.await.map_err(|e| StoreError::Invalid(e.to_string()))??;
        total.add(&hist).map_err(|e| StoreError::Invalid(e.to_string()))?;
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-6);
    let held = held.load(Ordering::Relaxed);
    let stock = per_cell * cells as i64;
    let w = ws.clone();
    let (reserved, problems) = store
        .db
        .read(move |c| {
            let reserved: i64 = c
                .query_one(
                    &sb_store::Stmt::new(
                        "SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) AS n FROM inventory_balances WHERE workspace_id = :ws",
                    )
                    .bind("ws", &w),
                )?
                .get("n")?;
            let problems = inventory::check(c, &w).map_err(store_error)?;
            Ok::<_, StoreError>((reserved, problems))
        })
        .await?;
    let figure = if scenario == "hot_sku" {
        POSTGRES_HOT_SKU_PER_SEC
    } else {
        POSTGRES_SPREAD_PER_SEC
    };
    let holds_per_sec = attempts as f64 / seconds;
    Ok(StockFigures {
        backend: match store.db.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
        scenario,
        attempts,
        held,
        refused: attempts - held,
        stock,
        seconds,
        holds_per_sec,
        p50_ms: total.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: total.value_at_quantile(0.99) as f64 / 1000.0,
        oversold: (reserved - stock).max(0) + (held as i64 - reserved).abs(),
        ledger_problems: problems.len(),
        postgres_figure_per_sec: figure,
        ratio: holds_per_sec / figure,
    })
}
