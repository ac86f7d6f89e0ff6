//! Durable jobs: queue, kind, payload, run-at, attempts, lease, de-duplication key and
//! concurrency key. Enqueue takes the caller's connection, so a domain write and its
//! follow-up work commit together (the transactional outbox).
//!
//! A job is `ready` (running when it holds an unexpired lease) or `dead`. A finished job
//! is deleted, which frees its de-duplication key. A crashed worker's lease expires and the job is claimed again, so handlers
//! must be idempotent.

use sb_sql::{Backend, Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

/// The PostgreSQL `NOTIFY` channel that wakes workers in other processes.
pub const NOTIFY_CHANNEL: &str = "sb_jobs";

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub workspace_id: Option<String>,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub run_at: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub dedupe_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Job in "jobs" {
    id, workspace_id, queue, kind, payload, state, run_at, attempts, max_attempts, lease_owner, lease_until,
    dedupe_key, concurrency_key, last_error, created_at, updated_at
});

const COLUMNS: &str = "id, workspace_id, queue, kind, payload, state, run_at, attempts, max_attempts, lease_owner, \
                       lease_until, dedupe_key, concurrency_key, last_error, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewJob {
    pub workspace_id: Option<String>,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub run_at: i64,
    pub max_attempts: i64,
    /// At most one job per key exists, ready or dead: enqueueing a duplicate does nothing.
    /// A dead job keeps its key because it is unresolved work awaiting a retry by hand.
    pub dedupe_key: Option<String>,
    /// At most one job per key runs at a time.
    pub concurrency_key: Option<String>,
}

impl NewJob {
    pub fn new(queue: &str, kind: &str, payload: impl Into<String>, run_at: i64) -> Self {
        NewJob {
            workspace_id: None,
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            payload: payload.into(),
            run_at,
            max_attempts: 10,
            dedupe_key: None,
            concurrency_key: None,
        }
    }
    pub fn workspace(mut self, id: &str) -> Self {
        self.workspace_id = Some(id.to_owned());
        self
    }
    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }
    pub fn concurrency(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }
    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

/// Enqueues inside the caller's transaction. Returns the new id, or `None` when a job with
/// the same de-duplication key exists (ready or dead).
pub fn enqueue(c: &mut dyn Conn, job: &NewJob, now: i64) -> Result<Option<String>> {
    let id = sb_core::new_id();
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO jobs (id, workspace_id, queue, kind, payload, state, run_at, attempts, max_attempts,
                               dedupe_key, concurrency_key, created_at, updated_at)
             VALUES (:id, :ws, :queue, :kind, :payload, 'ready', :run_at, 0, :max_attempts,
                     :dedupe, :concurrency, :now, :now)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind("id", &id)
        .bind("ws", job.workspace_id.as_deref())
        .bind("queue", &job.queue)
        .bind("kind", &job.kind)
        .bind("payload", &job.payload)
        .bind("run_at", job.run_at)
        .bind("max_attempts", job.max_attempts)
        .bind("dedupe", job.dedupe_key.as_deref())
        .bind("concurrency", job.concurrency_key.as_deref())
        .bind("now", now),
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    notify(c, &job.queue)?;
    Ok(Some(id))
}

/// Wakes workers in other processes when the transaction commits.
/// Dialects: PostgreSQL has `NOTIFY`; SQLite has a single writing process, which wakes its
/// own workers in memory, so there is nothing to send.
fn notify(c: &mut dyn Conn, queue: &str) -> Result<()> {
    match c.backend() {
        Backend::Postgres => {
            c.execute(
                &Stmt::new("SELECT pg_notify(:channel, :queue)")
                    .bind("channel", NOTIFY_CHANNEL)
                    .bind("queue", queue),
            )?;
        }
        Backend::Sqlite => {}
    }
    Ok(())
}

/// Claims up to `limit` due jobs of `queue` for `owner` until `now + lease_ms`, skipping
/// jobs whose concurrency key is held by a running job. Safe with several workers and
/// several processes on one database.
pub fn claim(c: &mut dyn Conn, queue: &str, owner: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Job>> {
    // Jobs whose concurrency key is held by a running job are filtered out in SQL, so they
    // cannot crowd free jobs out of the scanned window.
    // Dialects side by side. PostgreSQL: rows locked by another claimer are skipped, and an
    // advisory lock per concurrency key closes the window between two claimers that each see
    // no running job with that key. SQLite: write transactions are serialised by the single
    // writer, so a plain select is already exclusive.
    let candidates_sql = match c.backend() {
        Backend::Postgres => {
            "SELECT id, concurrency_key FROM jobs
             WHERE queue = :queue AND state = 'ready' AND run_at <= :now AND (lease_until IS NULL OR lease_until < :now)
               AND (concurrency_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM jobs running WHERE running.concurrency_key = jobs.concurrency_key
                     AND running.state = 'ready' AND running.lease_until >= :now))
             ORDER BY run_at, id LIMIT :scan
             FOR UPDATE SKIP LOCKED"
        }
        Backend::Sqlite => {
            "SELECT id, concurrency_key FROM jobs
             WHERE queue = :queue AND state = 'ready' AND run_at <= :now AND (lease_until IS NULL OR lease_until < :now)
               AND (concurrency_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM jobs running WHERE running.concurrency_key = jobs.concurrency_key
                     AND running.state = 'ready' AND running.lease_until >= :now))
             ORDER BY run_at, id LIMIT :scan"
        }
    };
    let candidates = c.query(
        &Stmt::new(candidates_sql)
            .bind("queue", queue)
            .bind("now", now)
            .bind("scan", limit * 4 + 16),
    )?;
    let mut keys_taken: Vec<String> = Vec::new();
    let mut claimed = Vec::new();
    for row in candidates {
        if claimed.len() as i64 >= limit {
            break;
        }
        let id: String = row.get_in("jobs", "id")?;
        if let Some(key) = row.get_in::<Option<String>>("jobs", "concurrency_key")? {
            if keys_taken.contains(&key) || !concurrency_key_free(c, &key, now)? {
                continue;
            }
            keys_taken.push(key);
        }
        if let Some(job) = c.fetch_opt::<Job>(
            &Stmt::new(format!(
                "UPDATE jobs SET lease_owner = :owner, lease_until = :until, attempts = attempts + 1, updated_at = :now
                 WHERE id = :id AND state = 'ready'
                 RETURNING {COLUMNS}"
            ))
            .bind("owner", owner)
            .bind("until", now + lease_ms)
            .bind("now", now)
            .bind("id", &id),
        )? {
            claimed.push(job);
        }
    }
    Ok(claimed)
}

fn concurrency_key_free(c: &mut dyn Conn, key: &str, now: i64) -> Result<bool> {
    if c.backend() == Backend::Postgres {
        let got: bool = c
            .query_one(
                &Stmt::new("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0)) AS got").bind("key", key),
            )?
            .get("got")?;
        if !got {
            return Ok(false);
        }
    }
    let running = c.query_opt(
        &Stmt::new(
            "SELECT id FROM jobs WHERE concurrency_key = :key AND state = 'ready' AND lease_until >= :now LIMIT 1",
        )
        .bind("key", key)
        .bind("now", now),
    )?;
    Ok(running.is_none())
}

/// Deletes a finished job, if `owner` still holds it.
pub fn complete(c: &mut dyn Conn, id: &str, owner: &str) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("DELETE FROM jobs WHERE id = :id AND lease_owner = :owner")
            .bind("id", id)
            .bind("owner", owner),
    )? == 1)
}

/// Records a failed attempt: back to `ready` at `retry_at`, or `dead` when `retry_at` is `None`.
pub fn fail(c: &mut dyn Conn, id: &str, owner: &str, error: &str, retry_at: Option<i64>, now: i64) -> Result<bool> {
    let error: String = error.chars().take(2000).collect();
    let stmt = match retry_at {
        Some(at) => Stmt::new(
            "UPDATE jobs SET run_at = :at, lease_owner = NULL, lease_until = NULL, last_error = :error, updated_at = :now
             WHERE id = :id AND lease_owner = :owner",
        )
        .bind("at", at),
        None => Stmt::new(
            "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL, last_error = :error, updated_at = :now
             WHERE id = :id AND lease_owner = :owner",
        ),
    };
    Ok(c.execute(
        &stmt
            .bind("error", error)
            .bind("now", now)
            .bind("id", id)
            .bind("owner", owner),
    )? == 1)
}

/// Gives a claimed job back untouched (graceful shutdown): the attempt does not count.
pub fn release(c: &mut dyn Conn, id: &str, owner: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, attempts = attempts - 1, updated_at = :now
             WHERE id = :id AND lease_owner = :owner",
        )
        .bind("now", now)
        .bind("id", id)
        .bind("owner", owner),
    )? == 1)
}

/// Extends the lease of jobs still running under `owner`.
pub fn extend_leases(c: &mut dyn Conn, owner: &str, until: i64) -> Result<u64> {
    Ok(c.execute(
        &Stmt::new("UPDATE jobs SET lease_until = :until WHERE lease_owner = :owner AND state = 'ready'")
            .bind("until", until)
            .bind("owner", owner),
    )?)
}

/// When the next job of `queue` becomes due (`None` when the queue is empty).
pub fn next_due(c: &mut dyn Conn, queue: &str) -> Result<Option<i64>> {
    Ok(c.query_one(
        &Stmt::new(
            "SELECT MIN(CASE WHEN lease_until IS NULL THEN run_at ELSE lease_until END) AS due
                 FROM jobs WHERE queue = :queue AND state = 'ready'",
        )
        .bind("queue", queue),
    )?
    .get("due")?)
}

pub fn get(c: &mut dyn Conn, workspace_id: &str, id: &str) -> Result<Option<Job>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM jobs WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", workspace_id)
        .bind("id", id),
    )?)
}

pub fn list_by_state(
    c: &mut dyn Conn,
    workspace_id: &str,
    state: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Job>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM jobs WHERE workspace_id = :ws AND state = :state AND id > :after ORDER BY id LIMIT :limit"
        ))
        .bind("ws", workspace_id)
        .bind("state", state)
        .bind("after", after.unwrap_or(""))
        .bind("limit", limit),
    )?)
}

/// Puts a dead job back in its queue with a fresh attempt budget.
pub fn retry_dead(c: &mut dyn Conn, workspace_id: &str, id: &str, now: i64) -> Result<Option<Job>> {
    let job = c.fetch_opt::<Job>(
        &Stmt::new(format!(
            "UPDATE jobs SET state = 'ready', attempts = 0, run_at = :now, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND state = 'dead'
             RETURNING {COLUMNS}"
        ))
        .bind("now", now)
        .bind("ws", workspace_id)
        .bind("id", id),
    )?;
    if let Some(j) = &job {
        notify(c, &j.queue)?;
    }
    Ok(job)
}

pub fn count_by_state(c: &mut dyn Conn, state: &str) -> Result<i64> {
    Ok(
        c.query_one(&Stmt::new("SELECT COUNT(*) AS n FROM jobs WHERE state = :state").bind("state", state))?
            .get("n")?,
    )
}
