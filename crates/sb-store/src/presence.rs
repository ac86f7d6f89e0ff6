//! Agents' presence and round-robin assignment. An agent is online while its status is
//! `online` and its last heartbeat is recent; new conversations go to the online agent with
//! free capacity who was assigned least recently.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

/// A heartbeat older than this means the agent is gone (closed the tab, lost the network).
pub const HEARTBEAT_TIMEOUT_MS: i64 = 90_000;

#[derive(Debug, Clone, Serialize)]
pub struct Presence {
    pub user_id: String,
    /// As the agent set it: `online`, `busy` or `offline`.
    pub status: String,
    pub capacity: i64,
    pub heartbeat_at: i64,
    pub last_assigned_at: Option<i64>,
    /// Open or pending conversations assigned to the agent now.
    pub open_assigned: i64,
}
from_row!(Presence in "agent_presence" { user_id, status, capacity, heartbeat_at, last_assigned_at, open_assigned });

impl Presence {
    /// What the agent is now: a stale heartbeat is `offline` whatever was set.
    pub fn effective_status(&self, now: i64) -> &str {
        if now - self.heartbeat_at > HEARTBEAT_TIMEOUT_MS {
            "offline"
        } else {
            &self.status
        }
    }
}

pub fn heartbeat(c: &mut dyn Conn, ws: &str, user_id: &str, status: &str, capacity: i64, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO agent_presence (workspace_id, user_id, status, capacity, heartbeat_at)
             VALUES (:ws, :user, :status, :capacity, :now)
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET status = excluded.status,
                 capacity = excluded.capacity, heartbeat_at = excluded.heartbeat_at",
        )
        .bind("ws", ws)
        .bind("user", user_id)
        .bind("status", status)
        .bind("capacity", capacity)
        .bind("now", now),
    )?;
    Ok(())
}

const SELECT: &str = "SELECT p.user_id, p.status, p.capacity, p.heartbeat_at, p.last_assigned_at,
        (SELECT COUNT(*) FROM conversations cv WHERE cv.workspace_id = p.workspace_id AND cv.assignee_id = p.user_id
           AND cv.status IN ('open', 'pending') AND cv.merged_into IS NULL) AS open_assigned
     FROM agent_presence p JOIN users u ON u.id = p.user_id AND u.workspace_id = p.workspace_id";

pub fn list(c: &mut dyn Conn, ws: &str) -> Result<Vec<Presence>> {
    Ok(c.fetch_all(&Stmt::new(format!("{SELECT} WHERE p.workspace_id = :ws ORDER BY p.user_id")).bind("ws", ws))?)
}

/// Picks the next agent for a new conversation and records the pick (inside the caller's
/// transaction): online, heartbeat fresh, enabled, under capacity, least recently assigned.
pub fn pick_agent(c: &mut dyn Conn, ws: &str, now: i64) -> Result<Option<String>> {
    let candidate = c.fetch_opt::<Presence>(
        &Stmt::new(format!(
            "{SELECT}
             WHERE p.workspace_id = :ws AND p.status = 'online' AND p.heartbeat_at > :fresh AND u.disabled = :no
               AND (SELECT COUNT(*) FROM conversations cv WHERE cv.workspace_id = p.workspace_id
                      AND cv.assignee_id = p.user_id AND cv.status IN ('open', 'pending')
                      AND cv.merged_into IS NULL) < p.capacity
             ORDER BY COALESCE(p.last_assigned_at, 0), p.user_id LIMIT 1"
        ))
        .bind("ws", ws)
        .bind("fresh", now - HEARTBEAT_TIMEOUT_MS)
        .bind("no", false),
    )?;
    let Some(agent) = candidate else { return Ok(None) };
    c.execute(
        &Stmt::new("UPDATE agent_presence SET last_assigned_at = :now WHERE workspace_id = :ws AND user_id = :user")
            .bind("now", now)
            .bind("ws", ws)
            .bind("user", &agent.user_id),
    )?;
    Ok(Some(agent.user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_heartbeat_means_offline() {
        let p = Presence {
            user_id: "u".into(),
            status: "online".into(),
            capacity: 5,
            heartbeat_at: 1_000_000,
            last_assigned_at: None,
            open_assigned: 0,
        };
        assert_eq!(p.effective_status(1_000_000 + HEARTBEAT_TIMEOUT_MS), "online");
        assert_eq!(p.effective_status(1_000_001 + HEARTBEAT_TIMEOUT_MS), "offline");
    }
}
