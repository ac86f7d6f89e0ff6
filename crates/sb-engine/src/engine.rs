use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use rand::Rng;
use sb_store::jobs::{self, Job, NewJob};
use sb_store::timers::{self, NewTimer};
use sb_store::{Store, StoreError};
use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::Time;

/// Why a job did not finish. `Retry` is tried again with back-off until the job's attempts
/// run out; `Permanent` makes it dead at once (it stays listed and can be retried by hand).
#[derive(Debug)]
pub enum JobError {
    Retry(String),
    /// Retry no sooner and no later than this many milliseconds from now (a provider's
    /// `retry_after`).
    RetryAfter(String, i64),
    Permanent(String),
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::Retry(e.to_string())
    }
}

pub struct JobContext {
    pub job: Job,
    pub store: Store,
    pub engine: Engine,
}

impl JobContext {
    /// The job's JSON payload as `T`; a payload that does not parse will never run: permanent.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_str(&self.job.payload).map_err(|e| JobError::Permanent(format!("bad payload: {e}")))
    }

    /// The workspace of a job that must have one.
    pub fn workspace_id(&self) -> Result<String, JobError> {
        self.job
            .workspace_id
            .clone()
            .ok_or_else(|| JobError::Permanent("job without workspace".into()))
    }
}

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError>;
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    /// Jobs of this queue that run at once in this process.
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub queues: Vec<QueueConfig>,
    pub lease_ms: i64,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    /// Longest idle wait before looking at the database again (other processes' work).
    pub idle_poll_ms: i64,
    /// How often timers created by other processes are pulled into the index.
    pub timer_refresh_ms: i64,
    /// How long shutdown waits for running jobs before releasing them.
    pub drain_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            queues: vec![QueueConfig {
                name: "default".into(),
                concurrency: 16,
            }],
            lease_ms: 30_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
            idle_poll_ms: 1_000,
            timer_refresh_ms: 1_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Exponential back-off with jitter: `base * 2^(attempt-1)`, capped, then a random point in
/// its upper half so that retries of many jobs spread out.
pub(crate) fn backoff_ms(attempt: i64, base: i64, max: i64) -> i64 {
    let exp = (attempt.max(1) - 1).min(30) as u32;
    let full = base.saturating_mul(1i64 << exp).min(max).max(1);
    rand::rng().random_range(full / 2..=full)
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    time: Time,
    config: EngineConfig,
    owner: String,
    handlers: RwLock<HashMap<String, Arc<dyn JobHandler>>>,
    job_wake: Notify,
    timer_wake: Notify,
    /// Due time and id (as u128) of known timers.
    timer_index: Mutex<BTreeSet<(i64, u128)>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Engine {
    pub fn new(store: Store, time: Time, config: EngineConfig) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                time,
                config,
                owner: format!("{}-{}", std::process::id(), sb_core::new_id()),
                handlers: RwLock::new(HashMap::new()),
                job_wake: Notify::new(),
                timer_wake: Notify::new(),
                timer_index: Mutex::new(BTreeSet::new()),
                stop: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn time(&self) -> &Time {
        &self.inner.time
    }

    /// The lease owner name of this process.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn register(&self, kind: &str, handler: impl JobHandler) {
        self.inner
            .handlers
            .write()
            .expect("handlers lock")
            .insert(kind.to_owned(), Arc::new(handler));
    }

    /// Starts the queue workers, the timer loop, lease renewal and (on PostgreSQL) the
    /// cross-process wake-up listener.
    pub fn start(&self) {
        let mut tasks = self.inner.tasks.lock().expect("tasks lock");
        for queue in self.inner.config.queues.clone() {
            let engine = self.clone();
            tasks.push(tokio::spawn(async move { engine.queue_loop(queue).await }));
        }
        let engine = self.clone();
        tasks.push(tokio::spawn(async move { engine.timer_loop().await }));
        let engine = self.clone();
        tasks.push(tokio::spawn(async move { engine.lease_loop().await }));
        let engine = self.clone();
        tasks.push(tokio::spawn(async move { engine.listen_loop().await }));
    }

    /// Stops claiming, lets running jobs finish within the drain timeout, releases the rest.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Call after committing a transaction that enqueued jobs.
    pub fn notify_jobs(&self) {
        self.inner.job_wake.notify_waiters();
    }

    /// Call after committing a transaction that scheduled a timer.
    pub fn timer_scheduled(&self, id: &str, due_at: i64) {
        if let Ok(uuid) = uuid::Uuid::parse_str(id) {
            self.inner
                .timer_index
                .lock()
                .expect("timer index lock")
                .insert((due_at, uuid.as_u128()));
            self.inner.timer_wake.notify_waiters();
        }
    }

    pub async fn enqueue(&self, job: NewJob) -> Result<Option<String>, StoreError> {
        let now = self.inner.time.now_ms();
        let id = self.inner.store.db.write(move |c| jobs::enqueue(c, &job, now)).await?;
        self.notify_jobs();
        Ok(id)
    }

    pub async fn schedule(&self, timer: NewTimer) -> Result<String, StoreError> {
        let now = self.inner.time.now_ms();
        let (id, due) = self
            .inner
            .store
            .db
            .write(move |c| timers::schedule(c, &timer, now))
            .await?;
        self.timer_scheduled(&id, due);
        Ok(id)
    }

    fn stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    async fn queue_loop(self, queue: QueueConfig) {
        let inner = &self.inner;
        let mut stop = inner.stop.subscribe();
        let mut running: JoinSet<String> = JoinSet::new();
        let mut handles: HashMap<String, AbortHandle> = HashMap::new();
        let concurrency = queue.concurrency.max(1);
        while !self.stopping() {
            while let Some(done) = running.try_join_next() {
                if let Ok(id) = done {
                    handles.remove(&id);
                }
            }
            // Register interest before looking, so a wake-up between the look and the wait is kept.
            let notified = inner.job_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = inner.time.now_ms();
            let free = concurrency - running.len();
            let mut claimed = 0;
            // A look on a reader first, so a wake-up with nothing due costs the writer nothing.
            let due_now = free > 0 && {
                let q = queue.name.clone();
                match inner.store.db.read(move |c| jobs::next_due(c, &q)).await {
                    Ok(due) => due.is_some_and(|due| due <= now),
                    Err(_) => true, // let the claim report the trouble
                }
            };
            if due_now {
                let (q, owner, lease) = (queue.name.clone(), inner.owner.clone(), inner.config.lease_ms);
                match inner
                    .store
                    .db
                    .write(move |c| jobs::claim(c, &q, &owner, now, lease, free as i64))
                    .await
                {
                    Ok(batch) => {
                        claimed = batch.len();
                        for job in batch {
                            let id = job.id.clone();
                            let engine = self.clone();
                            let handle = running.spawn(async move { engine.run_job(job).await });
                            handles.insert(id, handle);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(queue = %queue.name, error = %e, "claiming jobs failed");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                }
            }
            if claimed > 0 && claimed == free {
                continue;
            }
            let idle_deadline = now + inner.config.idle_poll_ms;
            let deadline = if running.len() < concurrency {
                let q = queue.name.clone();
                match inner.store.db.read(move |c| jobs::next_due(c, &q)).await {
                    // Due work we could not take (its concurrency key is busy): look again soon.
                    Ok(Some(due)) => due.max(now + 25).min(idle_deadline),
                    _ => idle_deadline,
                }
            } else {
                idle_deadline
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = inner.time.sleep_until(deadline) => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(id) = done { handles.remove(&id); }
                }
                _ = stop.changed() => {}
            }
        }
        self.drain(running, handles).await;
    }

    async fn drain(&self, mut running: JoinSet<String>, mut handles: HashMap<String, AbortHandle>) {
        let deadline = tokio::time::Instant::now() + self.inner.config.drain_timeout;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.join_next()).await {
                Ok(Some(Ok(id))) => {
                    handles.remove(&id);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        running.abort_all();
        for id in handles.into_keys() {
            let owner = self.inner.owner.clone();
            let now = self.inner.time.now_ms();
            let released = self
                .inner
                .store
                .db
                .write(move |c| jobs::release(c, &id, &owner, now))
                .await;
            tracing::info!(released = ?released.is_ok(), "released a running job at shutdown");
        }
    }

    async fn run_job(&self, job: Job) -> String {
        let inner = &self.inner;
        let handler = inner.handlers.read().expect("handlers lock").get(&job.kind).cloned();
        let ctx = JobContext {
            job,
            store: inner.store.clone(),
            engine: self.clone(),
        };
        let outcome = match handler {
            None => Err(JobError::Permanent(format!(
                "no handler is registered for job kind `{}`",
                ctx.job.kind
            ))),
            Some(h) => AssertUnwindSafe(h.run(&ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(JobError::Retry("the job handler panicked".into()))),
        };
        let job = ctx.job;
        let (id, owner, now) = (job.id.clone(), inner.owner.clone(), inner.time.now_ms());
        let result = match outcome {
            Ok(()) => {
                metrics::counter!("switchboard_jobs_completed_total", "kind" => job.kind.clone()).increment(1);
                inner.store.db.write(move |c| jobs::complete(c, &id, &owner)).await
            }
            Err(JobError::Retry(msg)) if job.attempts < job.max_attempts => {
                metrics::counter!("switchboard_jobs_retried_total", "kind" => job.kind.clone()).increment(1);
                tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, error = %msg, "job failed; will retry");
                let at = now + backoff_ms(job.attempts, inner.config.backoff_base_ms, inner.config.backoff_max_ms);
                inner
                    .store
                    .db
                    .write(move |c| jobs::fail(c, &id, &owner, &msg, Some(at), now))
                    .await
            }
            Err(JobError::RetryAfter(msg, after_ms)) if job.attempts < job.max_attempts => {
                metrics::counter!("switchboard_jobs_retried_total", "kind" => job.kind.clone()).increment(1);
                tracing::info!(job_id = %job.id, kind = %job.kind, after_ms, error = %msg, "job deferred by the provider");
                let at = now + after_ms.max(0);
                inner
                    .store
                    .db
                    .write(move |c| jobs::fail(c, &id, &owner, &msg, Some(at), now))
                    .await
            }
            Err(JobError::Retry(msg) | JobError::RetryAfter(msg, _) | JobError::Permanent(msg)) => {
                metrics::counter!("switchboard_jobs_dead_total", "kind" => job.kind.clone()).increment(1);
                tracing::warn!(job_id = %job.id, kind = %job.kind, attempts = job.attempts, error = %msg, "job is dead");
                inner
                    .store
                    .db
                    .write(move |c| jobs::fail(c, &id, &owner, &msg, None, now))
                    .await
            }
        };
        if let Err(e) = result {
            // The lease expires and the job runs again: at least once, never lost.
            tracing::warn!(job_id = %job.id, error = %e, "could not record a job's outcome");
        }
        job.id
    }

    async fn lease_loop(self) {
        let inner = &self.inner;
        let mut stop = inner.stop.subscribe();
        let every = Duration::from_millis((inner.config.lease_ms / 3).max(10) as u64);
        while !self.stopping() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            let (owner, until) = (inner.owner.clone(), inner.time.now_ms() + inner.config.lease_ms);
            if let Err(e) = inner
                .store
                .db
                .write(move |c| jobs::extend_leases(c, &owner, until))
                .await
            {
                tracing::warn!(error = %e, "renewing job leases failed");
            }
        }
    }

    async fn listen_loop(self) {
        let Some(mut rx) = self.inner.store.db.listen(jobs::NOTIFY_CHANNEL).await else {
            return;
        };
        let mut stop = self.inner.stop.subscribe();
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(_) => self.notify_jobs(),
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    }

    async fn load_timer_index(&self, until: i64) -> Result<usize, StoreError> {
        let entries = self
            .inner
            .store
            .db
            .read(move |c| timers::index_entries(c, until))
            .await?;
        let n = entries.len();
        let mut index = self.inner.timer_index.lock().expect("timer index lock");
        for (due, id) in entries {
            if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                index.insert((due, uuid.as_u128()));
            }
        }
        Ok(n)
    }

    async fn timer_loop(self) {
        let inner = &self.inner;
        let mut stop = inner.stop.subscribe();
        // Rebuild the index from the database.
        loop {
            match self.load_timer_index(i64::MAX).await {
                Ok(n) => {
                    tracing::info!(timers = n, "timer index rebuilt");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading timers failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
        let refresh = inner.config.timer_refresh_ms.max(1);
        let mut next_refresh = inner.time.now_ms() + refresh;
        while !self.stopping() {
            let notified = inner.timer_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = inner.time.now_ms();
            let due: Vec<(i64, u128)> = {
                let mut index = inner.timer_index.lock().expect("timer index lock");
                let mut due = Vec::new();
                while due.len() < 1000 {
                    match index.first() {
                        Some(&(at, _)) if at <= now => due.push(index.pop_first().expect("first exists")),
                        _ => break,
                    }
                }
                due
            };
            if !due.is_empty() {
                let ids: Vec<String> = due
                    .iter()
                    .map(|(_, id)| uuid::Uuid::from_u128(*id).to_string())
                    .collect();
                match inner.store.db.write(move |c| timers::fire(c, &ids, now)).await {
                    Ok(fired) => {
                        if !fired.is_empty() {
                            metrics::counter!("switchboard_timers_fired_total").increment(fired.len() as u64);
                            self.notify_jobs();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "firing timers failed; will retry");
                        inner.timer_index.lock().expect("timer index lock").extend(due);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                continue;
            }
            if now >= next_refresh {
                if let Err(e) = self.load_timer_index(now + 2 * refresh).await {
                    tracing::warn!(error = %e, "refreshing timers failed");
                }
                next_refresh = now + refresh;
                continue;
            }
            let first = inner
                .timer_index
                .lock()
                .expect("timer index lock")
                .first()
                .map(|(at, _)| *at);
            let deadline = first.map_or(next_refresh, |at| at.min(next_refresh));
            tokio::select! {
                _ = &mut notified => {}
                _ = inner.time.sleep_until(deadline) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        for attempt in 1..=40 {
            let d = backoff_ms(attempt, 1_000, 3_600_000);
            let full = (1_000i64 << (attempt - 1).min(30)).min(3_600_000);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d} not in [{}, {full}]",
                full / 2
            );
        }
    }
}
