//! One conversation per customer: every channel's messages land in it.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: String,
    pub workspace_id: String,
    pub customer_id: String,
    pub status: String,
    pub snoozed_until: Option<i64>,
    pub assignee_id: Option<String>,
    pub team: Option<String>,
    pub unread_count: i64,
    pub last_message_at: i64,
    pub last_inbound_at: Option<i64>,
    pub last_inbound_account_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Conversation in "conversations" {
    id, workspace_id, customer_id, status, snoozed_until, assignee_id, team, unread_count, last_message_at,
    last_inbound_at, last_inbound_account_id, created_at, updated_at
});

const COLUMNS: &str = "id, workspace_id, customer_id, status, snoozed_until, assignee_id, team, unread_count, \
                       last_message_at, last_inbound_at, last_inbound_account_id, created_at, updated_at";

/// The customer's conversation, created on first use.
pub fn for_customer(c: &mut dyn Conn, ws: &str, customer_id: &str, now: i64) -> Result<Conversation> {
    c.execute(
        &Stmt::new(
            "INSERT INTO conversations (id, workspace_id, customer_id, status, unread_count, last_message_at, created_at, updated_at)
             VALUES (:id, :ws, :customer, 'open', 0, :now, :now, :now)
             ON CONFLICT (workspace_id, customer_id) DO NOTHING",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", ws)
        .bind("customer", customer_id)
        .bind("now", now),
    )?;
    c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM conversations WHERE workspace_id = :ws AND customer_id = :customer"
        ))
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?
    .ok_or(crate::StoreError::NotFound("conversation"))
}

/// A new inbound message: unread +1, the latest inbound time and account move forward only,
/// and a pending, snoozed or resolved conversation opens again. Returns the updated row.
pub fn record_inbound(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    account_id: &str,
    at: i64,
    now: i64,
) -> Result<Conversation> {
    c.fetch_opt(
        &Stmt::new(format!(
            "UPDATE conversations SET
                unread_count = unread_count + 1,
                last_message_at = CASE WHEN :at > last_message_at THEN :at ELSE last_message_at END,
                last_inbound_account_id = CASE WHEN last_inbound_at IS NULL OR :at >= last_inbound_at
                                               THEN :account ELSE last_inbound_account_id END,
                last_inbound_at = CASE WHEN last_inbound_at IS NULL OR :at > last_inbound_at THEN :at ELSE last_inbound_at END,
                status = 'open', snoozed_until = NULL, updated_at = :now
             WHERE workspace_id = :ws AND id = :id
             RETURNING {COLUMNS}"
        ))
        .bind("at", at)
        .bind("account", account_id)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?
    .ok_or(crate::StoreError::NotFound("conversation"))
}

pub fn touch(c: &mut dyn Conn, ws: &str, id: &str, at: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "UPDATE conversations SET last_message_at = CASE WHEN :at > last_message_at THEN :at ELSE last_message_at END,
                    updated_at = :at
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("at", at)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    Ok(())
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Conversation>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM conversations WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub status: Option<String>,
    pub assignee_id: Option<String>,
    /// `Some("")` selects unassigned conversations.
    pub unassigned: bool,
    pub team: Option<String>,
    pub channel: Option<String>,
    pub label: Option<String>,
    pub unread: bool,
}

/// Most recent activity first; `before` is the `(last_message_at, id)` of the previous page's last row.
pub fn list(
    c: &mut dyn Conn,
    ws: &str,
    f: &Filter,
    before: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Conversation>> {
    let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM conversations cv
             WHERE cv.workspace_id = :ws AND cv.merged_into IS NULL
               AND (:status = '' OR cv.status = :status)
               AND (:assignee = '' OR cv.assignee_id = :assignee)
               AND (:unassigned = 0 OR cv.assignee_id IS NULL)
               AND (:team = '' OR cv.team = :team)
               AND (:unread = 0 OR cv.unread_count > 0)
               AND (:label = '' OR EXISTS (SELECT 1 FROM conversation_labels l
                                           WHERE l.conversation_id = cv.id AND l.label = :label))
               AND (:channel = '' OR EXISTS (SELECT 1 FROM messages m
                                             WHERE m.conversation_id = cv.id AND m.channel = :channel))
               AND (cv.last_message_at < :before_at OR (cv.last_message_at = :before_at AND cv.id < :before_id))
             ORDER BY cv.last_message_at DESC, cv.id DESC LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("status", f.status.as_deref().unwrap_or(""))
        .bind("assignee", f.assignee_id.as_deref().unwrap_or(""))
        .bind("unassigned", i64::from(f.unassigned))
        .bind("team", f.team.as_deref().unwrap_or(""))
        .bind("unread", i64::from(f.unread))
        .bind("label", f.label.as_deref().unwrap_or(""))
        .bind("channel", f.channel.as_deref().unwrap_or(""))
        .bind("before_at", before_at)
        .bind("before_id", before_id)
        .bind("limit", limit),
    )?)
}

pub fn set_status(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    status: &str,
    snoozed_until: Option<i64>,
    now: i64,
) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("UPDATE conversations SET status = :status, snoozed_until = :until, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("status", status)
            .bind("until", snoozed_until)
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", id),
    )? == 1)
}

/// Ends a snooze that is still in force (the timer may fire after an agent already reopened it).
pub fn wake_if_snoozed(c: &mut dyn Conn, ws: &str, id: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE conversations SET status = 'open', snoozed_until = NULL, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND status = 'snoozed' AND snoozed_until <= :now",
        )
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )? == 1)
}

pub fn assign(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    assignee_id: Option<&str>,
    team: Option<&str>,
    now: i64,
) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("UPDATE conversations SET assignee_id = :assignee, team = :team, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("assignee", assignee_id)
            .bind("team", team)
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", id),
    )? == 1)
}

pub fn mark_read(c: &mut dyn Conn, ws: &str, id: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE conversations SET unread_count = 0, updated_at = :now WHERE workspace_id = :ws AND id = :id",
        )
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )? == 1)
}

pub fn labels(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Vec<String>> {
    c.query(
        &Stmt::new(
            "SELECT label FROM conversation_labels WHERE workspace_id = :ws AND conversation_id = :id ORDER BY label",
        )
        .bind("ws", ws)
        .bind("id", id),
    )?
    .iter()
    .map(|r| Ok(r.get_in("conversation_labels", "label")?))
    .collect()
}

pub fn add_label(c: &mut dyn Conn, ws: &str, id: &str, label: &str) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO conversation_labels (workspace_id, conversation_id, label) VALUES (:ws, :id, :label)
             ON CONFLICT (conversation_id, label) DO NOTHING",
        )
        .bind("ws", ws)
        .bind("id", id)
        .bind("label", label),
    )?;
    Ok(())
}

pub fn remove_label(c: &mut dyn Conn, ws: &str, id: &str, label: &str) -> Result<()> {
    c.execute(
        &Stmt::new(
            "DELETE FROM conversation_labels WHERE workspace_id = :ws AND conversation_id = :id AND label = :label",
        )
        .bind("ws", ws)
        .bind("id", id)
        .bind("label", label),
    )?;
    Ok(())
}

/// The customer's conversation id, if they have one.
pub fn id_for_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Option<String>> {
    Ok(
        match c.query_opt(
            &Stmt::new("SELECT id FROM conversations WHERE workspace_id = :ws AND customer_id = :customer")
                .bind("ws", ws)
                .bind("customer", customer_id),
        )? {
            Some(r) => Some(r.get_in("conversations", "id")?),
            None => None,
        },
    )
}

/// Recomputes a conversation's activity (last message, last inbound and its account) from its
/// messages, after messages moved in or out of it.
pub fn recompute_activity(c: &mut dyn Conn, ws: &str, id: &str, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "UPDATE conversations SET
                last_message_at = COALESCE((SELECT MAX(sent_at) FROM messages WHERE conversation_id = :id), created_at),
                last_inbound_at = (SELECT MAX(sent_at) FROM messages WHERE conversation_id = :id AND direction = 'inbound'),
                last_inbound_account_id = (SELECT channel_account_id FROM messages
                                           WHERE conversation_id = :id AND direction = 'inbound'
                                           ORDER BY sent_at DESC, id DESC LIMIT 1),
                updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("id", id)
        .bind("now", now)
        .bind("ws", ws),
    )?;
    Ok(())
}
