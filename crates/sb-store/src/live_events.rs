//! The per-workspace event log behind agents' live streams.

use sb_sql::{Conn, Stmt, from_row};
use serde::{Deserialize, Serialize};

use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveEvent {
    pub workspace_id: String,
    pub seq: i64,
    /// `object.verb`: `message.created`, `message.updated`, `conversation.updated`.
    pub kind: String,
    pub conversation_id: Option<String>,
    pub payload_json: String,
    pub at: i64,
}
from_row!(LiveEvent in "live_events" { workspace_id, seq, kind, conversation_id, payload_json, at });

/// Appends an event inside the caller's transaction and returns it with its sequence number.
pub fn append(
    c: &mut dyn Conn,
    ws: &str,
    kind: &str,
    conversation_id: Option<&str>,
    payload: &serde_json::Value,
    now: i64,
) -> Result<LiveEvent> {
    let mut appended = append_all(c, ws, &[(kind, conversation_id, payload)], now)?;
    Ok(appended.pop().expect("one event appended"))
}

/// Appends events in order with one bump of the workspace's counter.
pub fn append_all(
    c: &mut dyn Conn,
    ws: &str,
    events: &[(&str, Option<&str>, &serde_json::Value)],
    now: i64,
) -> Result<Vec<LiveEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let n = events.len() as i64;
    let last: i64 = c
        .query_one(
            &Stmt::new(
                "INSERT INTO event_counters (workspace_id, seq) VALUES (:ws, :n)
                 ON CONFLICT (workspace_id) DO UPDATE SET seq = event_counters.seq + :n
                 RETURNING seq",
            )
            .bind("ws", ws)
            .bind("n", n),
        )?
        .get_in("event_counters", "seq")?;
    let mut appended = Vec::with_capacity(events.len());
    for (seq, (kind, conversation_id, payload)) in (last - n + 1..).zip(events) {
        let event = LiveEvent {
            workspace_id: ws.to_owned(),
            seq,
            kind: (*kind).to_owned(),
            conversation_id: conversation_id.map(str::to_owned),
            payload_json: payload.to_string(),
            at: now,
        };
        c.execute(
            &Stmt::new(
                "INSERT INTO live_events (workspace_id, seq, kind, conversation_id, payload_json, at)
                 VALUES (:ws, :seq, :kind, :conversation, :payload, :at)",
            )
            .bind("ws", ws)
            .bind("seq", seq)
            .bind("kind", *kind)
            .bind("conversation", *conversation_id)
            .bind("payload", &event.payload_json)
            .bind("at", now),
        )?;
        appended.push(event);
    }
    Ok(appended)
}

pub fn after(c: &mut dyn Conn, ws: &str, seq: i64, limit: i64) -> Result<Vec<LiveEvent>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT workspace_id, seq, kind, conversation_id, payload_json, at FROM live_events
             WHERE workspace_id = :ws AND seq > :seq ORDER BY seq LIMIT :limit",
        )
        .bind("ws", ws)
        .bind("seq", seq)
        .bind("limit", limit),
    )?)
}

/// The latest sequence number of the workspace (0 before the first event).
pub fn latest(c: &mut dyn Conn, ws: &str) -> Result<i64> {
    Ok(
        match c.query_opt(&Stmt::new("SELECT seq FROM event_counters WHERE workspace_id = :ws").bind("ws", ws))? {
            Some(r) => r.get_in("event_counters", "seq")?,
            None => 0,
        },
    )
}
