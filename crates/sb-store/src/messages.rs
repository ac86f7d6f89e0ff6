//! Messages of every channel in one thread, and the delivery status of outbound ones.

use sb_core::inbox::DeliveryStatus;
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: String,
    pub workspace_id: String,
    pub conversation_id: String,
    pub customer_id: String,
    pub channel_account_id: Option<String>,
    pub channel: Option<String>,
    /// `inbound`, `outbound` or `note`.
    pub direction: String,
    /// `customer`, `user` (an agent) or `system`.
    pub author_kind: String,
    pub author_id: Option<String>,
    pub body: String,
    pub provider_message_id: Option<String>,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `[{"id","filename","content_type","size"}]`.
    pub attachments_json: String,
    /// The template call when sent as a template (`{"name","language","parameters"}`).
    pub template_json: Option<String>,
    /// `conversation`, `transactional` or `marketing` (needs consent).
    pub purpose: String,
    /// Channel details kept for later (e-mail: subject, `References`).
    pub meta_json: Option<String>,
    pub sent_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Message in "messages" {
    id, workspace_id, conversation_id, customer_id, channel_account_id, channel, direction, author_kind, author_id, body,
    provider_message_id, status, error_code, error_message, attachments_json, template_json, purpose, meta_json, sent_at,
    created_at, updated_at
});

const COLUMNS: &str = "id, workspace_id, conversation_id, customer_id, channel_account_id, channel, direction, author_kind, \
                       author_id, body, provider_message_id, status, error_code, error_message, attachments_json, template_json, purpose, meta_json, sent_at, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub workspace_id: &'a str,
    pub conversation_id: &'a str,
    pub customer_id: &'a str,
    pub channel_account_id: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub direction: &'a str,
    pub author_kind: &'a str,
    pub author_id: Option<&'a str>,
    pub body: &'a str,
    pub provider_message_id: Option<&'a str>,
    pub status: &'a str,
    pub sent_at: i64,
    /// `[]` when there are none.
    pub attachments_json: &'a str,
    pub template_json: Option<&'a str>,
    pub purpose: &'a str,
    pub meta_json: Option<&'a str>,
}

/// Inserts a message. An inbound message the account already has (the same provider id) is
/// not inserted again: `None`.
pub fn insert(c: &mut dyn Conn, m: &NewMessage<'_>, now: i64) -> Result<Option<Message>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "INSERT INTO messages (id, workspace_id, conversation_id, customer_id, channel_account_id, channel, direction,
                                   author_kind, author_id, body, provider_message_id, status, attachments_json, template_json, purpose, meta_json,
                                   sent_at, created_at, updated_at)
             VALUES (:id, :ws, :conversation, :customer, :account, :channel, :direction, :author_kind, :author_id, :body,
                     :provider_id, :status, :attachments, :template, :purpose, :meta, :sent_at, :now, :now)
             ON CONFLICT (channel_account_id, provider_message_id) DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind("id", sb_core::new_id())
        .bind("ws", m.workspace_id)
        .bind("conversation", m.conversation_id)
        .bind("customer", m.customer_id)
        .bind("account", m.channel_account_id)
        .bind("channel", m.channel)
        .bind("direction", m.direction)
        .bind("author_kind", m.author_kind)
        .bind("author_id", m.author_id)
        .bind("body", m.body)
        .bind("provider_id", m.provider_message_id)
        .bind("status", m.status)
        .bind("attachments", m.attachments_json)
        .bind("template", m.template_json)
        .bind("purpose", m.purpose)
        .bind("meta", m.meta_json)
        .bind("sent_at", m.sent_at)
        .bind("now", now),
    )?)
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Message>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// The message a client's idempotency key made, if any.
pub fn by_idempotency_key(c: &mut dyn Conn, ws: &str, key: &str) -> Result<Option<Message>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages WHERE workspace_id = :ws AND idempotency_key = :key"
        ))
        .bind("ws", ws)
        .bind("key", key),
    )?)
}

/// Records the idempotency key a message was made under (in the transaction that made it).
pub fn set_idempotency_key(c: &mut dyn Conn, ws: &str, id: &str, key: &str) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE messages SET idempotency_key = :key WHERE workspace_id = :ws AND id = :id")
            .bind("key", key)
            .bind("ws", ws)
            .bind("id", id),
    )?;
    Ok(())
}

/// The thread in time order; `after` is `(sent_at, id)` of the previous page's last message.
pub fn thread(
    c: &mut dyn Conn,
    ws: &str,
    conversation_id: &str,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Message>> {
    let (after_at, after_id) = after.unwrap_or((i64::MIN, String::new()));
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = :ws AND conversation_id = :conversation
               AND (sent_at > :after_at OR (sent_at = :after_at AND id > :after_id))
             ORDER BY sent_at, id LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("after_at", after_at)
        .bind("after_id", after_id)
        .bind("limit", limit),
    )?)
}

/// The last `limit` messages of a conversation, in time order (the web app's thread; 1 for a preview).
pub fn recent(c: &mut dyn Conn, ws: &str, conversation_id: &str, limit: i64) -> Result<Vec<Message>> {
    let mut rows: Vec<Message> = c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = :ws AND conversation_id = :conversation
             ORDER BY sent_at DESC, id DESC LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("limit", limit),
    )?;
    rows.reverse();
    Ok(rows)
}

pub fn mark_sent(c: &mut dyn Conn, ws: &str, id: &str, provider_message_id: &str, now: i64) -> Result<()> {
    let status = current(c, ws, id)?;
    let next = status.map_or(DeliveryStatus::Sent, |s| s.advance(DeliveryStatus::Sent));
    c.execute(
        &Stmt::new(
            "UPDATE messages SET provider_message_id = :provider_id, status = :status, error_code = NULL, error_message = NULL,
                    updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("provider_id", provider_message_id)
        .bind("status", next.as_str())
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    Ok(())
}

pub fn mark_failed(c: &mut dyn Conn, ws: &str, id: &str, code: &str, message: &str, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "UPDATE messages SET status = 'failed', error_code = :code, error_message = :message, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND status IN ('queued', 'sent')",
        )
        .bind("code", code)
        .bind("message", message)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    Ok(())
}

/// Puts a failed outbound message back in the queue (the agent pressed retry).
pub fn requeue(c: &mut dyn Conn, ws: &str, id: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE messages SET status = 'queued', error_code = NULL, error_message = NULL, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND direction = 'outbound' AND status = 'failed'",
        )
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )? == 1)
}

fn current(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<DeliveryStatus>> {
    Ok(
        match c.query_opt(
            &Stmt::new("SELECT status FROM messages WHERE workspace_id = :ws AND id = :id")
                .bind("ws", ws)
                .bind("id", id),
        )? {
            Some(r) => DeliveryStatus::parse(&r.get_in::<String>("messages", "status")?),
            None => None,
        },
    )
}

/// Applies a provider's status report to the message it sent, only ever moving forward.
/// Returns the message when its status changed.
pub fn apply_report(
    c: &mut dyn Conn,
    account_id: &str,
    provider_message_id: &str,
    our_message_id: Option<&str>,
    reported: DeliveryStatus,
    error: Option<(&str, &str)>,
    now: i64,
) -> Result<Option<Message>> {
    let Some(message) = c.fetch_opt::<Message>(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages
             WHERE channel_account_id = :account AND (provider_message_id = :provider_id OR id = :ours)
             ORDER BY CASE WHEN provider_message_id = :provider_id THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind("account", account_id)
        .bind("provider_id", provider_message_id)
        .bind("ours", our_message_id.unwrap_or("")),
    )?
    else {
        return Ok(None);
    };
    let Some(status) = DeliveryStatus::parse(&message.status) else {
        return Ok(None);
    };
    let next = status.advance(reported);
    if next == status {
        return Ok(None);
    }
    let (code, text) = if next == DeliveryStatus::Failed {
        error.map_or((None, None), |(c, m)| (Some(c), Some(m)))
    } else {
        (None, None)
    };
    // Guarded on the status read above, so two reports racing cannot move it backwards.
    let changed = c.execute(
        &Stmt::new(
            "UPDATE messages SET status = :next, error_code = :code, error_message = :text, updated_at = :now
             WHERE id = :id AND status = :prev",
        )
        .bind("next", next.as_str())
        .bind("code", code)
        .bind("text", text)
        .bind("now", now)
        .bind("id", &message.id)
        .bind("prev", status.as_str()),
    )?;
    if changed == 0 {
        return Ok(None);
    }
    Ok(Some(Message {
        status: next.as_str().to_owned(),
        updated_at: now,
        ..message
    }))
}

/// When the customer last wrote in this conversation through this account (reply windows).
pub fn last_inbound_at(c: &mut dyn Conn, ws: &str, conversation_id: &str, account_id: &str) -> Result<Option<i64>> {
    Ok(c.query_one(
        &Stmt::new(
            "SELECT MAX(sent_at) AS at FROM messages
                 WHERE workspace_id = :ws AND conversation_id = :conversation AND channel_account_id = :account
                   AND direction = 'inbound'",
        )
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("account", account_id),
    )?
    .get("at")?)
}

/// The channel details of the customer's last message here (to reply in their e-mail thread).
pub fn last_inbound_meta(
    c: &mut dyn Conn,
    ws: &str,
    conversation_id: &str,
    account_id: &str,
) -> Result<Option<String>> {
    let row = c.query_opt(
        &Stmt::new(
            "SELECT meta_json FROM messages
             WHERE workspace_id = :ws AND conversation_id = :conversation AND channel_account_id = :account
               AND direction = 'inbound' AND meta_json IS NOT NULL
             ORDER BY sent_at DESC, id DESC LIMIT 1",
        )
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("account", account_id),
    )?;
    Ok(match row {
        Some(row) => row.get("meta_json")?,
        None => None,
    })
}

/// The message an account stored under a provider id (the widget's echo id).
pub fn by_provider_id(
    c: &mut dyn Conn,
    ws: &str,
    account_id: &str,
    provider_message_id: &str,
) -> Result<Option<Message>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = :ws AND channel_account_id = :account AND provider_message_id = :provider_id"
        ))
        .bind("ws", ws)
        .bind("account", account_id)
        .bind("provider_id", provider_message_id),
    )?)
}

/// The latest messages of a conversation on one channel account, oldest first (what a
/// website visitor sees: their chat, not what the customer said elsewhere).
pub fn latest_on_account(
    c: &mut dyn Conn,
    ws: &str,
    conversation_id: &str,
    account_id: &str,
    limit: i64,
) -> Result<Vec<Message>> {
    let mut rows: Vec<Message> = c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = :ws AND conversation_id = :conversation AND channel_account_id = :account
             ORDER BY sent_at DESC, id DESC LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("account", account_id)
        .bind("limit", limit),
    )?;
    rows.reverse();
    Ok(rows)
}

/// The recipient has seen everything up to `at` on this account: outbound messages that are
/// sent or delivered become read (status only moves forward). Returns the changed messages.
pub fn mark_read_through(
    c: &mut dyn Conn,
    ws: &str,
    conversation_id: &str,
    account_id: &str,
    at: i64,
    now: i64,
) -> Result<Vec<Message>> {
    mark_through(c, ws, conversation_id, account_id, DeliveryStatus::Read, at, now)
}

/// A watermark receipt: outbound messages on this account sent up to `at` move forward to
/// `status` (delivered or read), never back. Returns the changed messages.
pub fn mark_through(
    c: &mut dyn Conn,
    ws: &str,
    conversation_id: &str,
    account_id: &str,
    status: DeliveryStatus,
    at: i64,
    now: i64,
) -> Result<Vec<Message>> {
    let from: &[&str] = match status {
        DeliveryStatus::Read => &["sent", "delivered"],
        DeliveryStatus::Delivered => &["sent"],
        _ => return Ok(Vec::new()),
    };
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "UPDATE messages SET status = :status, updated_at = :now
             WHERE workspace_id = :ws AND conversation_id = :conversation AND channel_account_id = :account
               AND direction = 'outbound' AND status IN (:from_a, :from_b) AND sent_at <= :at
             RETURNING {COLUMNS}"
        ))
        .bind("status", status.as_str())
        .bind("from_a", from[0])
        .bind("from_b", *from.last().unwrap_or(&from[0]))
        .bind("now", now)
        .bind("ws", ws)
        .bind("conversation", conversation_id)
        .bind("account", account_id)
        .bind("at", at),
    )?)
}

/// Sets the files a message shows (media fetched after the message was stored).
pub fn set_attachments(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    attachments_json: &str,
    now: i64,
) -> Result<Option<Message>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "UPDATE messages SET attachments_json = :attachments, updated_at = :now
             WHERE workspace_id = :ws AND id = :id RETURNING {COLUMNS}"
        ))
        .bind("attachments", attachments_json)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?)
}
