//! Timers are rows with a due time and a key (scheduling the same key again moves it).
//! Firing deletes the row and enqueues its job in one transaction, so a timer fires once
//! even with several processes. The engine keeps an in-memory index of due times that it
//! rebuilds from the covering index `timers_due` at start.

use sb_sql::{Conn, Stmt, from_row};

use crate::Result;
use crate::jobs::{self, NewJob};

#[derive(Debug, Clone)]
pub struct Timer {
    pub id: String,
    pub workspace_id: Option<String>,
    pub timer_key: String,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub due_at: i64,
    pub created_at: i64,
}
from_row!(Timer in "timers" { id, workspace_id, timer_key, queue, kind, payload, due_at, created_at });

const COLUMNS: &str = "id, workspace_id, timer_key, queue, kind, payload, due_at, created_at";

#[derive(Debug, Clone)]
pub struct NewTimer {
    pub workspace_id: Option<String>,
    pub timer_key: String,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub due_at: i64,
}

/// Keys are unique per workspace: the stored key carries the workspace id (or `-` for
/// system timers), so two workspaces can never move each other's timers.
fn scoped_key(workspace_id: Option<&str>, key: &str) -> String {
    format!("{}:{key}", workspace_id.unwrap_or("-"))
}

/// Creates the timer, or moves an existing one with the same key in the same workspace.
/// Returns `(id, due_at)` for the in-memory index.
pub fn schedule(c: &mut dyn Conn, t: &NewTimer, now: i64) -> Result<(String, i64)> {
    let row = c.query_one(
        &Stmt::new(
            "INSERT INTO timers (id, workspace_id, timer_key, queue, kind, payload, due_at, created_at)
             VALUES (:id, :ws, :key, :queue, :kind, :payload, :due, :now)
             ON CONFLICT (timer_key) DO UPDATE SET due_at = excluded.due_at, payload = excluded.payload,
                 queue = excluded.queue, kind = excluded.kind
             RETURNING id, due_at",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", t.workspace_id.as_deref())
        .bind("key", scoped_key(t.workspace_id.as_deref(), &t.timer_key))
        .bind("queue", &t.queue)
        .bind("kind", &t.kind)
        .bind("payload", &t.payload)
        .bind("due", t.due_at)
        .bind("now", now),
    )?;
    Ok((row.get_in("timers", "id")?, row.get_in("timers", "due_at")?))
}

pub fn cancel(c: &mut dyn Conn, workspace_id: Option<&str>, timer_key: &str) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("DELETE FROM timers WHERE timer_key = :key").bind("key", scoped_key(workspace_id, timer_key)),
    )? == 1)
}

/// `(due_at, id)` of timers due at or before `until`, in due order, read from the covering
/// index only.
pub fn index_entries(c: &mut dyn Conn, until: i64) -> Result<Vec<(i64, String)>> {
    c.query(
        &Stmt::new("SELECT due_at, id FROM timers WHERE due_at <= :until ORDER BY due_at, id").bind("until", until),
    )?
    .iter()
    .map(|r| Ok((r.get_in("timers", "due_at")?, r.get_in("timers", "id")?)))
    .collect()
}

/// Fires the given timers if they are due: each due row is deleted and its job enqueued
/// (de-duplicated on the timer id). Returns the timers fired.
pub fn fire(c: &mut dyn Conn, ids: &[String], now: i64) -> Result<Vec<Timer>> {
    let mut fired = Vec::with_capacity(ids.len());
    for id in ids {
        let timer = c.fetch_opt::<Timer>(
            &Stmt::new(format!(
                "DELETE FROM timers WHERE id = :id AND due_at <= :now RETURNING {COLUMNS}"
            ))
            .bind("id", id)
            .bind("now", now),
        )?;
        if let Some(mut t) = timer {
            let prefix_len = scoped_key(t.workspace_id.as_deref(), "").len();
            t.timer_key = t.timer_key.get(prefix_len..).unwrap_or_default().to_owned();
            let mut job = NewJob::new(&t.queue, &t.kind, t.payload.clone(), now).dedupe(format!("timer:{}", t.id));
            job.workspace_id = t.workspace_id.clone();
            jobs::enqueue(c, &job, now)?;
            fired.push(t);
        }
    }
    Ok(fired)
}

pub fn count(c: &mut dyn Conn) -> Result<i64> {
    Ok(c.query_one(&Stmt::new("SELECT COUNT(*) AS n FROM timers"))?.get("n")?)
}
