//! Crash safety with real processes: this test binary starts itself again as a worker
//! (the `crash_child_worker` test, which does nothing unless `SB_CRASH_CHILD` is set),
//! kills it with SIGKILL mid-work, starts it again and checks the effects.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sb_core::{Clock, SystemClock};
use sb_engine::{Engine, EngineConfig, JobContext, JobError, JobHandler, QueueConfig, Time};
use sb_sql::Stmt;
use sb_store::jobs::{self, NewJob};
use sb_store::timers::{self, NewTimer};

use crate::open_store;

const JOBS: i64 = 2_000;
const TIMERS: i64 = 100_000;

const EFFECT_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS crash_effects (n BIGINT NOT NULL PRIMARY KEY, ran_at BIGINT NOT NULL, due_at BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS crash_runs (n BIGINT NOT NULL);";

/// The idempotent handler: its effect is keyed by the job's number, and every execution is
/// also counted, so the test can tell "ran twice" from "took effect twice".
struct RecordEffect;

#[async_trait]
impl JobHandler for RecordEffect {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let payload: serde_json::Value =
            serde_json::from_str(&ctx.job.payload).map_err(|e| JobError::Permanent(e.to_string()))?;
        let n = payload["n"]
            .as_i64()
            .ok_or_else(|| JobError::Permanent("payload without n".into()))?;
        let due = payload["due"].as_i64().unwrap_or(0);
        let ran_at = SystemClock.now_ms();
        if payload["slow"].as_bool() == Some(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ctx.store
            .db
            .write(move |c| {
                c.execute(&Stmt::new("INSERT INTO crash_runs (n) VALUES (:n)").bind("n", n))?;
                c.execute(
                    &Stmt::new(
                        "INSERT INTO crash_effects (n, ran_at, due_at) VALUES (:n, :at, :due) ON CONFLICT (n) DO NOTHING",
                    )
                    .bind("n", n)
                    .bind("at", ran_at)
                    .bind("due", due),
                )
            })
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn crash_child_worker() {
    let Ok(db_path) = std::env::var("SB_CRASH_CHILD") else {
        return;
    };
    let time = Time::System;
    let store = open_store(std::path::Path::new(&db_path), &time).await;
    let engine = Engine::new(
        store,
        time,
        EngineConfig {
            queues: vec![QueueConfig {
                name: "default".into(),
                concurrency: 32,
            }],
            lease_ms: 1_500,
            idle_poll_ms: 100,
            ..EngineConfig::default()
        },
    );
    engine.register("crash.effect", RecordEffect);
    engine.start();
    // Runs until the parent kills it; bounded in case the parent dies first.
    tokio::time::sleep(Duration::from_secs(300)).await;
}

fn spawn_child(db: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "crash::crash_child_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SB_CRASH_CHILD", db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child worker")
}

async fn scalar(store: &sb_store::Store, sql: &'static str) -> i64 {
    store
        .db
        .read(move |c| c.query_one(&Stmt::new(sql))?.get::<i64>("n"))
        .await
        .expect("scalar")
}

async fn wait_for(store: &sb_store::Store, sql: &'static str, at_least: i64, limit: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let n = scalar(store, sql).await;
        if n >= at_least || start.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the child"); // std sends SIGKILL on Unix
    let _ = child.wait();
}

#[tokio::test]
async fn jobs_survive_sigkill_and_take_effect_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.sqlite");
    let time = Time::System;
    let store = open_store(&path, &time).await;
    store
        .db
        .write(|c| c.execute_script(EFFECT_TABLES))
        .await
        .expect("effect tables");
    let now = time.now_ms();
    store
        .db
        .write(move |c| {
            for n in 0..JOBS {
                let payload = serde_json::json!({ "n": n, "slow": true }).to_string();
                jobs::enqueue(c, &NewJob::new("default", "crash.effect", payload, now), now)?;
            }
            Ok::<_, sb_store::StoreError>(())
        })
        .await
        .expect("enqueue");

    let first = spawn_child(&path);
    let seen = wait_for(
        &store,
        "SELECT COUNT(*) AS n FROM crash_effects",
        JOBS / 3,
        Duration::from_secs(60),
    )
    .await;
    kill(first);
    assert!(seen < JOBS, "the child was killed mid-work ({seen} of {JOBS} done)");
    let leased = scalar(&store, "SELECT COUNT(*) AS n FROM jobs WHERE lease_owner IS NOT NULL").await;

    let second = spawn_child(&path);
    let left = {
        let start = Instant::now();
        loop {
            let left = scalar(&store, "SELECT COUNT(*) AS n FROM jobs").await;
            if left == 0 || start.elapsed() > Duration::from_secs(90) {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    kill(second);
    assert_eq!(left, 0, "every job finished after the restart");
    assert_eq!(
        scalar(&store, "SELECT COUNT(*) AS n FROM crash_effects").await,
        JOBS,
        "every job took effect"
    );
    let runs = scalar(&store, "SELECT COUNT(*) AS n FROM crash_runs").await;
    assert!(runs >= JOBS, "{runs} executions");
    println!("killed with {leased} jobs leased; {runs} executions for {JOBS} jobs, each effect exactly once");
}

#[tokio::test]
async fn timers_survive_restart_all_fire_none_early() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("timers.sqlite");
    let time = Time::System;
    let store = open_store(&path, &time).await;
    store
        .db
        .write(|c| c.execute_script(EFFECT_TABLES))
        .await
        .expect("effect tables");
    // Due between 4 and 8 seconds from now, in a shuffled order.
    let base = time.now_ms() + 4_000;
    for chunk in 0..(TIMERS / 5_000) {
        let now = time.now_ms();
        store
            .db
            .write(move |c| {
                for i in 0..5_000 {
                    let n = chunk * 5_000 + i;
                    let due = base + (n * 7_919) % 4_000;
                    let timer = NewTimer {
                        workspace_id: None,
                        timer_key: format!("crash-timer:{n}"),
                        queue: "default".into(),
                        kind: "crash.effect".into(),
                        payload: serde_json::json!({ "n": n, "due": due }).to_string(),
                        due_at: due,
                    };
                    timers::schedule(c, &timer, now)?;
                }
                Ok::<_, sb_store::StoreError>(())
            })
            .await
            .expect("schedule");
    }
    assert_eq!(
        scalar(&store, "SELECT COUNT(*) AS n FROM timers").await,
        TIMERS,
        "all persisted"
    );

    // A process that loads the index and is killed before or while timers fire.
    let first = spawn_child(&path);
    let fired_before_kill = wait_for(
        &store,
        "SELECT COUNT(*) AS n FROM crash_effects",
        TIMERS / 5,
        Duration::from_secs(60),
    )
    .await;
    kill(first);
    assert!(
        fired_before_kill < TIMERS,
        "the first process was killed mid-way ({fired_before_kill} fired)"
    );

    // A new process rebuilds its index from the database and fires the rest.
    let second = spawn_child(&path);
    let fired = wait_for(
        &store,
        "SELECT COUNT(*) AS n FROM crash_effects",
        TIMERS,
        Duration::from_secs(180),
    )
    .await;
    let jobs_left = wait_for_zero(&store).await;
    kill(second);
    assert_eq!(fired, TIMERS, "every timer fired");
    assert_eq!(scalar(&store, "SELECT COUNT(*) AS n FROM timers").await, 0);
    assert_eq!(jobs_left, 0);
    let early = scalar(&store, "SELECT COUNT(*) AS n FROM crash_effects WHERE ran_at < due_at").await;
    assert_eq!(early, 0, "no timer fired before its due time");
    println!("{fired_before_kill} fired before SIGKILL, {TIMERS} after restart, none early");
}

async fn wait_for_zero(store: &sb_store::Store) -> i64 {
    let start = Instant::now();
    loop {
        let n = scalar(store, "SELECT COUNT(*) AS n FROM jobs").await;
        if n == 0 || start.elapsed() > Duration::from_secs(30) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
