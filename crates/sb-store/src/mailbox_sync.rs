//! How far each connected IMAP mailbox has been read.

use sb_sql::{Conn, Stmt};

use crate::Result;

/// `(uid_validity, last_uid)` as last saved.
pub fn get(c: &mut dyn Conn, account_id: &str, mailbox: &str) -> Result<Option<(i64, i64)>> {
    let row = c.query_opt(
        &Stmt::new(
            "SELECT uid_validity, last_uid FROM mailbox_sync WHERE channel_account_id = :account AND mailbox = :mailbox",
        )
        .bind("account", account_id)
        .bind("mailbox", mailbox),
    )?;
    Ok(match row {
        Some(row) => Some((row.get("uid_validity")?, row.get("last_uid")?)),
        None => None,
    })
}

pub fn save(
    c: &mut dyn Conn,
    ws: &str,
    account_id: &str,
    mailbox: &str,
    uid_validity: i64,
    last_uid: i64,
    now: i64,
) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO mailbox_sync (workspace_id, channel_account_id, mailbox, uid_validity, last_uid, updated_at)
             VALUES (:ws, :account, :mailbox, :validity, :last, :now)
             ON CONFLICT (channel_account_id, mailbox) DO UPDATE
                SET uid_validity = excluded.uid_validity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        )
        .bind("ws", ws)
        .bind("account", account_id)
        .bind("mailbox", mailbox)
        .bind("validity", uid_validity)
        .bind("last", last_uid)
        .bind("now", now),
    )?;
    Ok(())
}
