//! Event sources: what a Segment library's write key stands for. The key is stored hashed.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct EventSource {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// Above this rate the source gets 429 with Retry-After.
    pub events_per_second: i64,
    pub disabled: bool,
    pub created_at: i64,
}
from_row!(EventSource in "event_sources" { id, workspace_id, name, events_per_second, disabled, created_at });

const COLUMNS: &str = "id, workspace_id, name, events_per_second, disabled, created_at";

pub fn create(
    c: &mut dyn Conn,
    ws: &str,
    name: &str,
    write_key_digest: &str,
    events_per_second: i64,
    now: i64,
) -> Result<EventSource> {
    let source = EventSource {
        id: sb_core::new_id(),
        workspace_id: ws.to_owned(),
        name: name.to_owned(),
        events_per_second,
        disabled: false,
        created_at: now,
    };
    c.execute(
        &Stmt::new(
            "INSERT INTO event_sources (id, workspace_id, name, write_key_digest, events_per_second, disabled, created_at)
             VALUES (:id, :ws, :name, :digest, :eps, :disabled, :now)",
        )
        .bind("id", &source.id)
        .bind("ws", ws)
        .bind("name", name)
        .bind("digest", write_key_digest)
        .bind("eps", events_per_second)
        .bind("disabled", false)
        .bind("now", now),
    )?;
    Ok(source)
}

/// The enabled source a write key belongs to.
pub fn by_key_digest(c: &mut dyn Conn, digest: &str) -> Result<Option<EventSource>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM event_sources WHERE write_key_digest = :digest AND disabled = :no"
        ))
        .bind("digest", digest)
        .bind("no", false),
    )?)
}

pub fn list(c: &mut dyn Conn, ws: &str) -> Result<Vec<EventSource>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM event_sources WHERE workspace_id = :ws ORDER BY created_at, id"
        ))
        .bind("ws", ws),
    )?)
}
