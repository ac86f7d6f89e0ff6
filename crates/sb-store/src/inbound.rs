//! Raw inbound requests: stored (with their de-duplication key) before the provider gets its
//! 2xx, processed afterwards by a durable job.

use sb_sql::{Conn, Stmt, from_row};

use crate::Result;

#[derive(Debug, Clone)]
pub struct InboundRequest {
    pub id: String,
    pub workspace_id: String,
    pub channel_account_id: String,
    pub dedupe_key: String,
    pub body: Vec<u8>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}
from_row!(InboundRequest in "inbound_requests" { id, workspace_id, channel_account_id, dedupe_key, body, received_at, processed_at });

pub struct NewInbound<'a> {
    pub workspace_id: &'a str,
    pub channel_account_id: &'a str,
    pub dedupe_key: &'a str,
    pub signature_digest: &'a str,
    pub headers_json: &'a str,
    pub body: &'a [u8],
}

/// Stores the request; `None` when the account already has one with this key (a provider
/// retry), which the caller answers 2xx without doing anything else.
pub fn store(c: &mut dyn Conn, r: &NewInbound<'_>, now: i64) -> Result<Option<String>> {
    let id = sb_core::new_id();
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO inbound_requests (id, workspace_id, channel_account_id, dedupe_key, signature_digest, headers_json, body, received_at)
             VALUES (:id, :ws, :account, :key, :signature, :headers, :body, :now)
             ON CONFLICT (channel_account_id, dedupe_key) DO NOTHING",
        )
        .bind("id", &id)
        .bind("ws", r.workspace_id)
        .bind("account", r.channel_account_id)
        .bind("key", r.dedupe_key)
        .bind("signature", r.signature_digest)
        .bind("headers", r.headers_json)
        .bind("body", r.body.to_vec())
        .bind("now", now),
    )?;
    Ok((inserted == 1).then_some(id))
}

/// Whether exactly this signed request was seen before (a replay).
pub fn signature_seen(c: &mut dyn Conn, account_id: &str, signature_digest: &str) -> Result<bool> {
    Ok(c.query_opt(
        &Stmt::new(
            "SELECT id FROM inbound_requests WHERE channel_account_id = :account AND signature_digest = :signature",
        )
        .bind("account", account_id)
        .bind("signature", signature_digest),
    )?
    .is_some())
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<InboundRequest>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT id, workspace_id, channel_account_id, dedupe_key, body, received_at, processed_at
             FROM inbound_requests WHERE workspace_id = :ws AND id = :id",
        )
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn mark_processed(c: &mut dyn Conn, id: &str, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE inbound_requests SET processed_at = :now WHERE id = :id")
            .bind("now", now)
            .bind("id", id),
    )?;
    Ok(())
}
