//! The audit log: who changed what, when, with the object before and after.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// `user`, `token`, `system` or `anonymous`.
    pub kind: &'static str,
    pub id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            kind: "system",
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub workspace_id: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub at: i64,
}
from_row!(AuditEntry in "audit_log" {
    id, workspace_id, actor_kind, actor_id, action, object_kind, object_id, before_json, after_json, ip, request_id, at
});

pub struct Change<'a> {
    pub action: &'a str,
    pub object_kind: &'a str,
    pub object_id: Option<&'a str>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub fn record(c: &mut dyn Conn, workspace_id: &str, actor: &Actor, change: &Change<'_>, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO audit_log (id, workspace_id, actor_kind, actor_id, action, object_kind, object_id,
                                    before_json, after_json, ip, request_id, at)
             VALUES (:id, :ws, :actor_kind, :actor_id, :action, :object_kind, :object_id,
                     :before, :after, :ip, :request_id, :at)",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", workspace_id)
        .bind("actor_kind", actor.kind)
        .bind("actor_id", actor.id.as_deref())
        .bind("action", change.action)
        .bind("object_kind", change.object_kind)
        .bind("object_id", change.object_id)
        .bind("before", change.before.as_ref().map(|v| v.to_string()))
        .bind("after", change.after.as_ref().map(|v| v.to_string()))
        .bind("ip", actor.ip.as_deref())
        .bind("request_id", actor.request_id.as_deref())
        .bind("at", now),
    )?;
    Ok(())
}

/// Newest first; `before` is the last id of the previous page.
pub fn list(
    c: &mut dyn Conn,
    workspace_id: &str,
    action: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT id, workspace_id, actor_kind, actor_id, action, object_kind, object_id, before_json, after_json,
                    ip, request_id, at
             FROM audit_log
             WHERE workspace_id = :ws AND (:action = '' OR action = :action) AND (:before = '' OR id < :before)
             ORDER BY id DESC LIMIT :limit",
        )
        .bind("ws", workspace_id)
        .bind("action", action.unwrap_or(""))
        .bind("before", before.unwrap_or(""))
        .bind("limit", limit),
    )?)
}
