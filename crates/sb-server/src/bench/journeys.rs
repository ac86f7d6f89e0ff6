//! `switchboard bench journeys`: the journey engine with many instances waiting (abandoned
//! carts), on SQLite. It enters `--instances` customers through the real event path
//! (`journeys::on_event`) and the runner's first step, then, at the same time:
//! - a stream of purchases exits a tenth of them (events evaluated per second), and
//! - the timers of another tenth fall due at `--timers-per-sec`, fired by the runner's step
//!   loop (lateness: when the step ran minus when it was due).
//!
//! Prints those figures, the process's memory with the instances waiting, and the ratios to
//! the targets and to `bench store` measured in the same run on the same disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use sb_core::journey::Definition;
use sb_sql::{Db, Stmt};
use sb_store::journeys::{self, Event};
use sb_store::{Store, StoreError};
use serde_json::json;

use crate::config::{Config, ConfigError};

/// The targets.
pub const TARGET_EVENTS_PER_SEC: f64 = 20_000.0;
pub const TARGET_LATENESS_P99_MS: f64 = 1_000.0;
pub const TARGET_RSS_MB: f64 = 250.0;

const WS: &str = "bench-journeys";
/// Events per transaction, as the event processor takes them.
const EVENT_BATCH: usize = 500;

#[derive(Debug, Args)]
pub struct JourneysBenchArgs {
    /// Customers waiting in the abandoned-cart journey.
    #[arg(long, default_value_t = 1_000_000)]
    pub instances: u64,
    /// How many timers fall due per second while purchases stream in.
    #[arg(long, default_value_t = 10_000)]
    pub timers_per_sec: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct JourneyFigures {
    pub backend: &'static str,
    pub instances: u64,
    pub enter_events_per_sec: f64,
    pub first_steps_per_sec: f64,
    pub exit_events: u64,
    pub exit_events_per_sec: f64,
    pub timers: u64,
    pub timers_per_sec_offered: u64,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    pub rss_mb_waiting: f64,
    pub rss_mb_peak: f64,
    pub store_rows_per_sec: f64,
    pub events_ratio_to_target: f64,
    pub events_ratio_to_store: f64,
    pub lateness_ratio_to_target: f64,
    pub rss_ratio_to_target: f64,
}

fn fail(e: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("the journeys bench failed: {e}"))
}

async fn open(dir: &std::path::Path, name: &str) -> Result<Db, ConfigError> {
    crate::bench::open_sqlite(dir, name).await.map_err(fail)
}

fn now_ms() -> i64 {
    sb_core::Clock::now_ms(&sb_core::SystemClock)
}

pub async fn journeys(config: &Config, args: &JourneysBenchArgs) -> Result<(), ConfigError> {
    config.prepare_data_dir()?;
    let dir = config.data_dir.join(format!("bench-{}", sb_core::new_id()));
    std::fs::create_dir_all(&dir).map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
    let result = run(&dir, args).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "bench journeys [{}]: {} instances entered at {:.0} events/s, first steps {:.0}/s; \
         {} purchases evaluated at {:.0} events/s (target {TARGET_EVENTS_PER_SEC:.0} → ratio {:.2}; \
         bench store {:.0} rows/s in the same run → ratio {:.2}); \
         {} timers offered at {}/s: lateness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 ≤ {TARGET_LATENESS_P99_MS:.0} ms → ratio {:.2}); \
         RSS {:.0} MB with the instances waiting, peak {:.0} MB (target ≤ {TARGET_RSS_MB:.0} MB → ratio {:.2})",
        f.backend,
        f.instances,
        f.enter_events_per_sec,
        f.first_steps_per_sec,
        f.exit_events,
        f.exit_events_per_sec,
        f.events_ratio_to_target,
        f.store_rows_per_sec,
        f.events_ratio_to_store,
        f.timers,
        f.timers_per_sec_offered,
        f.lateness_p50_ms,
        f.lateness_p99_ms,
        f.lateness_max_ms,
        f.lateness_ratio_to_target,
        f.rss_mb_waiting,
        f.rss_mb_peak,
        f.rss_ratio_to_target,
    );
    if args.json {
        println!("{}", json!({ "bench": "journeys", "results": [f] }));
    }
    Ok(())
}

fn definition() -> Definition {
    serde_json::from_value(json!({
        "trigger": {"event": "Product Added"},
        "correlation_key": "cart_id",
        "exit_rules": [{"event": "Order Completed", "match_key": true}],
        "steps": [
            {"id": "idle", "type": "wait_for", "restart_on": ["Product Added"], "match_key": true, "timeout_minutes": 60},
            {"id": "remind", "type": "send", "purpose": "transactional", "message": {"headline": "Your cart", "body": "x"}}
        ]
    }))
    .expect("the bench's journey parses")
}

/// Applies `events` (customer index, name, time) through the journey hook, in batches.
async fn stream(store: &Store, events: Vec<(u64, &'static str, i64)>) -> Result<(), ConfigError> {
    for chunk in events.chunks(EVENT_BATCH) {
        let chunk = chunk.to_vec();
        store
            .db
            .write(move |c| {
                let now = now_ms();
                for (i, name, at) in &chunk {
                    let props = json!({ "cart_id": format!("k{i}") });
                    let event = Event {
                        name,
                        properties: &props,
                        at: *at,
                    };
                    journeys::on_event(c, WS, &format!("c{i}"), event, now)?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(fail)?;
    }
    Ok(())
}

async fn run(dir: &std::path::Path, args: &JourneysBenchArgs) -> Result<JourneyFigures, ConfigError> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let baseline = crate::bench::store_baseline(dir).await.map_err(fail)?;

    let store = Store::new(open(dir, "journeys.sqlite").await?, Arc::new(sb_core::SystemClock));
    store.migrate().await.map_err(fail)?;
    let def = definition();
    store
        .db
        .write(move |c| {
            c.execute(
                &Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES (:id, 'bench', 0)").bind("id", WS),
            )?;
            let j = journeys::create(c, WS, "Abandoned cart", &def, None, 0)?;
            journeys::set_state(c, WS, &j.id, "active", 0)?;
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(fail)?;
    let engine = sb_engine::Engine::new(
        store.clone(),
        sb_engine::Time::System,
        sb_engine::EngineConfig::default(),
    );
    let runner = sb_journeys::Journeys::new(
        store.clone(),
        engine,
        sb_inbox::Channels::new(sb_channels::registry()),
        sb_inbox::live::Live::new(Arc::new(sb_bus::InProcessBus::new())),
        sb_engine::Time::System,
        sb_journeys::Settings::default(),
    );

    // Enter everyone: a cart change each, through the event path; then the first step (the
    // wait) through the runner's own rounds.
    let n = args.instances;
    let entered_at = now_ms();
    let started = Instant::now();
    stream(&store, (0..n).map(|i| (i, "Product Added", entered_at)).collect()).await?;
    let enter_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    loop {
        if Instant::now() > deadline {
            return Err(fail("the first steps did not finish in time"));
        }
        if runner.steps().await.map_err(fail)? == 0 {
            break;
        }
    }
    let first_steps_secs = started.elapsed().as_secs_f64();
    let pid = std::process::id();
    let rss_waiting = crate::bench::ingest::rss_mb(pid);

    // A tenth will time out at the offered rate starting shortly; another tenth buys.
    let timers = n / 10;
    let rate = args.timers_per_sec.max(1);
    let t0 = now_ms() + 2_000;
    store
        .db
        .write(move |c| {
            c.execute(&Stmt::new(
                "CREATE TABLE bench_wakes (instance_id TEXT NOT NULL PRIMARY KEY, wake_at BIGINT NOT NULL)",
            ))?;
            let ids: Vec<String> = c
                .query(
                    &Stmt::new(
                        "SELECT id FROM journey_instances WHERE workspace_id = :ws ORDER BY customer_id LIMIT :n",
                    )
                    .bind("ws", WS)
                    .bind("n", timers as i64),
                )?
                .iter()
                .map(|r| r.get_in::<String>("journey_instances", "id"))
                .collect::<Result<_, _>>()?;
            for (k, id) in ids.iter().enumerate() {
                let wake = t0 + (k as i64) * 1_000 / rate as i64;
                c.execute(
                    &Stmt::new("UPDATE journey_instances SET wake_at = :wake WHERE id = :id")
                        .bind("wake", wake)
                        .bind("id", id),
                )?;
                c.execute(
                    &Stmt::new("INSERT INTO bench_wakes (instance_id, wake_at) VALUES (:id, :wake)")
                        .bind("id", id)
                        .bind("wake", wake),
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(fail)?;
    // The buyers: customers after the timer tenth (ordered as text, like the query above).
    let mut order: Vec<u64> = (0..n).collect();
    order.sort_by_key(|i| format!("c{i}"));
    let buyers: Vec<u64> = order
        .iter()
        .skip(timers as usize)
        .take((n / 10) as usize)
        .copied()
        .collect();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let steps = tokio::spawn(runner.clone().run_steps(stopped));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_waiting as u64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = crate::bench::ingest::rss_mb(pid) as u64;
                peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis((t0 - now_ms()).max(0) as u64)).await;
    let started = Instant::now();
    let bought_at = now_ms();
    let exit_events = buyers.len() as u64;
    stream(
        &store,
        buyers.into_iter().map(|i| (i, "Order Completed", bought_at)).collect(),
    )
    .await?;
    let exit_secs = started.elapsed().as_secs_f64();
    // Wait for the last timer to have fired.
    let last_due = t0 + (timers as i64) * 1_000 / rate as i64;
    loop {
        if Instant::now() > deadline {
            return Err(fail("the timers did not all fire in time"));
        }
        let fired: i64 = store
            .db
            .read(|c| {
                c.query_one(&Stmt::new(
                    "SELECT COUNT(*) AS n FROM deliveries d JOIN bench_wakes w ON w.instance_id = d.instance_id",
                ))?
                .get("n")
            })
            .await
            .map_err(fail)?;
        if fired as u64 >= timers && now_ms() > last_due {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    let _ = steps.await;
    sampler.abort();
    let mut lateness: Vec<i64> = store
        .db
        .read(|c| {
            c.query(&Stmt::new(
                "SELECT d.created_at - w.wake_at AS late FROM deliveries d JOIN bench_wakes w ON w.instance_id = d.instance_id",
            ))?
            .iter()
            .map(|r| r.get::<i64>("late"))
            .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(fail)?;
    lateness.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lateness.is_empty() {
            return 0.0;
        }
        let i = ((lateness.len() as f64 - 1.0) * p).round() as usize;
        lateness[i.min(lateness.len() - 1)] as f64
    };
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    store.db.close().await;
    let exit_rate = exit_events as f64 / exit_secs.max(1e-9);
    let rss_peak = peak.load(std::sync::atomic::Ordering::Relaxed) as f64;
    Ok(JourneyFigures {
        backend: "sqlite",
        instances: n,
        enter_events_per_sec: n as f64 / enter_secs.max(1e-9),
        first_steps_per_sec: n as f64 / first_steps_secs.max(1e-9),
        exit_events,
        exit_events_per_sec: exit_rate,
        timers,
        timers_per_sec_offered: rate,
        lateness_p50_ms: p50,
        lateness_p99_ms: p99,
        lateness_max_ms: max,
        rss_mb_waiting: rss_waiting,
        rss_mb_peak: rss_peak,
        store_rows_per_sec: baseline.rows_per_sec,
        events_ratio_to_target: exit_rate / TARGET_EVENTS_PER_SEC,
        events_ratio_to_store: exit_rate / baseline.rows_per_sec.max(1e-9),
        lateness_ratio_to_target: p99 / TARGET_LATENESS_P99_MS,
        rss_ratio_to_target: rss_waiting.max(rss_peak) / TARGET_RSS_MB,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench at a small scale, so that it keeps running: every purchase is evaluated,
    /// every timer fires once, and the figures are finite.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journeys_bench_runs_at_a_small_scale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = JourneysBenchArgs {
            instances: 2_000,
            timers_per_sec: 2_000,
            timeout_secs: 120,
            json: false,
        };
        let f = run(dir.path(), &args).await.expect("the bench runs");
        assert_eq!((f.timers, f.exit_events), (200, 200));
        assert!(f.exit_events_per_sec > 0.0 && f.enter_events_per_sec > 0.0);
        assert!(f.lateness_max_ms >= 0.0 && f.lateness_max_ms.is_finite());
        assert!(f.rss_mb_waiting > 0.0);
    }
}
