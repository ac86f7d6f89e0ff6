//! Files attached to messages. A visitor uploads first and then sends a message naming the
//! upload; only the uploader can attach it, and only once.

use sb_sql::{Conn, Stmt, from_row};
use serde::{Deserialize, Serialize};

use crate::Result;

/// What a message shows of a file (the bytes are fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
}
from_row!(AttachmentMeta in "attachments" { id, filename, content_type, size });

#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: String,
    pub customer_id: Option<String>,
    pub message_id: Option<String>,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}
from_row!(Attachment in "attachments" { id, customer_id, message_id, filename, content_type, data });

pub struct NewAttachment<'a> {
    pub workspace_id: &'a str,
    pub channel_account_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
}

pub fn insert(c: &mut dyn Conn, a: &NewAttachment<'_>, now: i64) -> Result<AttachmentMeta> {
    use sha2::Digest;
    let meta = AttachmentMeta {
        id: sb_core::new_id(),
        filename: a.filename.to_owned(),
        content_type: a.content_type.to_owned(),
        size: a.data.len() as i64,
    };
    c.execute(
        &Stmt::new(
            "INSERT INTO attachments (id, workspace_id, channel_account_id, customer_id, message_id, filename, content_type,
                                      size, sha256, data, created_at)
             VALUES (:id, :ws, :account, :customer, NULL, :filename, :content_type, :size, :sha256, :data, :now)",
        )
        .bind("id", &meta.id)
        .bind("ws", a.workspace_id)
        .bind("account", a.channel_account_id)
        .bind("customer", a.customer_id)
        .bind("filename", a.filename)
        .bind("content_type", a.content_type)
        .bind("size", meta.size)
        .bind("sha256", hex::encode(sha2::Sha256::digest(a.data)))
        .bind("data", a.data.to_vec())
        .bind("now", now),
    )?;
    Ok(meta)
}

/// The metadata of the customer's unattached uploads, in the order asked. `None` when any id
/// is unknown, not the customer's, or attached already.
pub fn unclaimed(c: &mut dyn Conn, ws: &str, customer_id: &str, ids: &[String]) -> Result<Option<Vec<AttachmentMeta>>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<AttachmentMeta> = c.fetch_opt(
            &Stmt::new(
                "SELECT id, filename, content_type, size FROM attachments
                 WHERE workspace_id = :ws AND id = :id AND customer_id = :customer AND message_id IS NULL",
            )
            .bind("ws", ws)
            .bind("id", id)
            .bind("customer", customer_id),
        )?;
        match row {
            Some(meta) if !found.contains(&meta) => found.push(meta),
            _ => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// Binds the customer's unattached uploads to a message. `None` when any id is unknown, not
/// the customer's, or already attached.
pub fn claim(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    ids: &[String],
    message_id: &str,
) -> Result<Option<Vec<AttachmentMeta>>> {
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<AttachmentMeta> = c.fetch_opt(
            &Stmt::new(
                "UPDATE attachments SET message_id = :message
                 WHERE workspace_id = :ws AND id = :id AND customer_id = :customer AND message_id IS NULL
                 RETURNING id, filename, content_type, size",
            )
            .bind("message", message_id)
            .bind("ws", ws)
            .bind("id", id)
            .bind("customer", customer_id),
        )?;
        match row {
            Some(meta) => claimed.push(meta),
            None => return Ok(None),
        }
    }
    Ok(Some(claimed))
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Attachment>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT id, customer_id, message_id, filename, content_type, data FROM attachments
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// Agents' uploads (no customer) not attached yet, in the order asked; `None` when any id is
/// unknown in this workspace, a customer's, or attached already.
pub fn unowned(c: &mut dyn Conn, ws: &str, ids: &[String]) -> Result<Option<Vec<AttachmentMeta>>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<AttachmentMeta> = c.fetch_opt(
            &Stmt::new(
                "SELECT id, filename, content_type, size FROM attachments
                 WHERE workspace_id = :ws AND id = :id AND customer_id IS NULL AND message_id IS NULL",
            )
            .bind("ws", ws)
            .bind("id", id),
        )?;
        match row {
            Some(meta) if !found.contains(&meta) => found.push(meta),
            _ => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// Binds agents' uploads to a message (checked with [`unowned`] in the same transaction).
pub fn claim_unowned(c: &mut dyn Conn, ws: &str, ids: &[String], message_id: &str) -> Result<()> {
    for id in ids {
        c.execute(
            &Stmt::new(
                "UPDATE attachments SET message_id = :message
                 WHERE workspace_id = :ws AND id = :id AND customer_id IS NULL AND message_id IS NULL",
            )
            .bind("message", message_id)
            .bind("ws", ws)
            .bind("id", id),
        )?;
    }
    Ok(())
}
