//! The job and timer engine against a real SQLite file: behaviour with a manual clock, and
//! crash safety with real processes killed by SIGKILL.

mod crash;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sb_core::Clock;
use sb_engine::{Engine, EngineConfig, JobContext, JobError, JobHandler, ManualClock, QueueConfig, Time};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_sql::{Db, Stmt};
use sb_store::Store;
use sb_store::jobs::{self, NewJob};
use sb_store::timers::NewTimer;

pub async fn open_store(path: &std::path::Path, time: &Time) -> Store {
    let exec = SqliteExecutor::open(&SqliteOptions::new(path)).expect("open sqlite");
    let store = Store::new(Db::new(Arc::new(exec)), time.clock());
    store.migrate().await.expect("migrate");
    store
}

/// Waits (bounded) until `f` holds, moving the manual clock forward by `step_ms` each round.
async fn eventually(clock: Option<&ManualClock>, step_ms: i64, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if f().await {
            return;
        }
        if let Some(c) = clock {
            c.advance(step_ms);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in time");
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .db
        .read(move |c| c.query_one(&Stmt::new(sql))?.get::<i64>("n"))
        .await
        .expect("count")
}

struct Counting(Arc<AtomicUsize>);
#[async_trait]
impl JobHandler for Counting {
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct AlwaysFails;
#[async_trait]
impl JobHandler for AlwaysFails {
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Err(JobError::Retry("provider said 503".into()))
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        idle_poll_ms: 50,
        timer_refresh_ms: 50,
        ..EngineConfig::default()
    }
}

#[tokio::test]
async fn a_job_runs_once_and_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let time = Time::Manual(clock.clone());
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let engine = Engine::new(store.clone(), time, config());
    let runs = Arc::new(AtomicUsize::new(0));
    engine.register("count", Counting(runs.clone()));
    engine.start();
    engine
        .enqueue(NewJob::new("default", "count", "{}", clock.now_ms()))
        .await
        .expect("enqueue");
    eventually(Some(&clock), 10, async || {
        count(&store, "SELECT COUNT(*) AS n FROM jobs").await == 0
    })
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_future_job_waits_for_its_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let time = Time::Manual(clock.clone());
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let engine = Engine::new(store.clone(), time, config());
    let runs = Arc::new(AtomicUsize::new(0));
    engine.register("count", Counting(runs.clone()));
    engine.start();
    engine
        .enqueue(NewJob::new("default", "count", "{}", clock.now_ms() + 60_000))
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "not before its run_at");
    clock.advance(60_000);
    eventually(None, 0, async || runs.load(Ordering::SeqCst) == 1).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn failing_job_backs_off_then_is_dead_and_can_be_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let time = Time::Manual(clock.clone());
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let ws = store
        .db
        .write(|c| sb_store::workspaces::create(c, "w", 0))
        .await
        .expect("workspace");
    let engine = Engine::new(store.clone(), time, config());
    engine.register("flaky", AlwaysFails);
    engine.start();
    let id = engine
        .enqueue(
            NewJob::new("default", "flaky", "{}", clock.now_ms())
                .workspace(&ws.id)
                .max_attempts(3),
        )
        .await
        .expect("enqueue")
        .expect("new job");
    // After the first failure the job waits for its back-off, it does not spin.
    eventually(None, 0, async || {
        let id = id.clone();
        let ws = ws.id.clone();
        let job = store
            .db
            .read(move |c| jobs::get(c, &ws, &id))
            .await
            .expect("get")
            .expect("exists");
        job.attempts == 1 && job.lease_owner.is_none()
    })
    .await;
    let first = {
        let (id, ws) = (id.clone(), ws.id.clone());
        store
            .db
            .read(move |c| jobs::get(c, &ws, &id))
            .await
            .expect("get")
            .expect("exists")
    };
    assert!(first.run_at >= clock.now_ms() + 500, "retry scheduled with back-off");
    assert_eq!(first.last_error.as_deref(), Some("provider said 503"));
    // Move time until it dies after three attempts.
    eventually(Some(&clock), 5_000, async || {
        let (id, ws) = (id.clone(), ws.id.clone());
        store
            .db
            .read(move |c| jobs::get(c, &ws, &id))
            .await
            .expect("get")
            .expect("exists")
            .state
            == "dead"
    })
    .await;
    let dead = {
        let ws = ws.id.clone();
        store
            .db
            .read(move |c| jobs::list_by_state(c, &ws, "dead", None, 10))
            .await
            .expect("list")
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    let now = clock.now_ms();
    let (rid, rws) = (id.clone(), ws.id.clone());
    let retried = store
        .db
        .write(move |c| jobs::retry_dead(c, &rws, &rid, now))
        .await
        .expect("retry");
    assert!(retried.is_some_and(|j| j.state == "ready" && j.attempts == 0));
    engine.shutdown().await;
}

/// Fails once with the provider's "retry after 7 s", then succeeds.
struct FloodControlled(Arc<AtomicUsize>);
#[async_trait]
impl JobHandler for FloodControlled {
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(JobError::RetryAfter("429: retry after 7 s".into(), 7_000));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_providers_retry_after_is_honoured_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let time = Time::Manual(clock.clone());
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let ws = store
        .db
        .write(|c| sb_store::workspaces::create(c, "w", 0))
        .await
        .expect("workspace");
    let engine = Engine::new(store.clone(), time, config());
    let runs = Arc::new(AtomicUsize::new(0));
    engine.register("send", FloodControlled(runs.clone()));
    engine.start();
    let id = engine
        .enqueue(NewJob::new("default", "send", "{}", clock.now_ms()).workspace(&ws.id))
        .await
        .expect("enqueue")
        .expect("new job");
    let failed_at = clock.now_ms();
    eventually(None, 0, async || runs.load(Ordering::SeqCst) == 1).await;
    let job = {
        let (id, ws) = (id.clone(), ws.id.clone());
        let mut found = None;
        for _ in 0..100 {
            let (id, ws) = (id.clone(), ws.clone());
            let job = store.db.read(move |c| jobs::get(c, &ws, &id)).await.expect("get");
            if job.as_ref().is_some_and(|j| j.lease_owner.is_none()) {
                found = job;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        found.expect("released")
    };
    // Not the exponential back-off: exactly the provider's wait.
    assert_eq!(job.run_at, failed_at + 7_000);
    clock.advance(6_999);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "not a millisecond early");
    clock.advance(1);
    engine.notify_jobs();
    eventually(None, 0, async || runs.load(Ordering::SeqCst) == 2).await;
    engine.shutdown().await;
}

struct Slow;
#[async_trait]
impl JobHandler for Slow {
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_releases_jobs_that_do_not_finish_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let time = Time::System;
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let engine = Engine::new(
        store.clone(),
        time.clone(),
        EngineConfig {
            drain_timeout: Duration::from_millis(100),
            ..config()
        },
    );
    engine.register("slow", Slow);
    engine.start();
    engine
        .enqueue(NewJob::new("default", "slow", "{}", time.now_ms()))
        .await
        .expect("enqueue");
    eventually(None, 0, async || {
        count(&store, "SELECT COUNT(*) AS n FROM jobs WHERE lease_owner IS NOT NULL").await == 1
    })
    .await;
    engine.shutdown().await;
    let row = store
        .db
        .read(|c| c.query_one(&Stmt::new("SELECT attempts, lease_owner FROM jobs")))
        .await
        .expect("job still there");
    assert_eq!(
        row.get::<i64>("attempts").expect("attempts"),
        0,
        "a released attempt does not count"
    );
    assert_eq!(row.get::<Option<String>>("lease_owner").expect("owner"), None);
}

struct OnePerKey {
    running: Arc<AtomicI64>,
    max_seen: Arc<AtomicI64>,
    done: Arc<AtomicUsize>,
}
#[async_trait]
impl JobHandler for OnePerKey {
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_concurrency_key_runs_one_job_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let time = Time::System;
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let engine = Engine::new(
        store.clone(),
        time.clone(),
        EngineConfig {
            queues: vec![QueueConfig {
                name: "default".into(),
                concurrency: 8,
            }],
            ..config()
        },
    );
    let (running, max_seen, done) = (
        Arc::new(AtomicI64::new(0)),
        Arc::new(AtomicI64::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    engine.register(
        "serial",
        OnePerKey {
            running: running.clone(),
            max_seen: max_seen.clone(),
            done: done.clone(),
        },
    );
    for _ in 0..20 {
        engine
            .enqueue(NewJob::new("default", "serial", "{}", time.now_ms()).concurrency("conversation-1"))
            .await
            .expect("enqueue");
    }
    engine.start();
    eventually(None, 0, async || done.load(Ordering::SeqCst) == 20).await;
    assert_eq!(max_seen.load(Ordering::SeqCst), 1, "never two jobs of one key at once");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_timer_fires_at_its_time_and_not_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(5_000_000);
    let time = Time::Manual(clock.clone());
    let store = open_store(&dir.path().join("db.sqlite"), &time).await;
    let engine = Engine::new(store.clone(), time, config());
    let runs = Arc::new(AtomicUsize::new(0));
    engine.register("remind", Counting(runs.clone()));
    engine.start();
    engine
        .schedule(NewTimer {
            workspace_id: None,
            timer_key: "snooze:1".into(),
            queue: "default".into(),
            kind: "remind".into(),
            payload: "{}".into(),
            due_at: clock.now_ms() + 3_600_000,
        })
        .await
        .expect("schedule");
    clock.advance(3_599_999);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "one millisecond early is early");
    clock.advance(1);
    eventually(None, 0, async || runs.load(Ordering::SeqCst) == 1).await;
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM timers").await, 0);
    engine.shutdown().await;
}
