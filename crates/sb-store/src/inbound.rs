//! Raw inbound requests: stored (with their de-duplication key) before the provider gets its
//! 2xx, processed afterwards in batches. The table is the queue: a row without
//! `processed_at` is still to do, and survives any crash.

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
    pub attempts: i64,
}
from_row!(InboundRequest in "inbound_requests" { id, workspace_id, channel_account_id, dedupe_key, body, received_at, processed_at, attempts });

const COLUMNS: &str = "id, workspace_id, channel_account_id, dedupe_key, body, received_at, processed_at, attempts";

/// What storing a request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, with this id.
    New(String),
    /// The account already has a request with this key (a provider retry).
    Duplicate,
    /// Exactly these signed bytes were received before.
    Replayed,
}

pub struct NewInbound<'a> {
    pub workspace_id: &'a str,
    pub channel_account_id: &'a str,
    pub dedupe_key: &'a str,
    pub signature_digest: &'a str,
    pub headers_json: &'a str,
    pub body: &'a [u8],
}

/// Stores the request in one statement; on a conflict, a second look tells a replay (the
/// same signature) from a provider retry (the same key, signed anew).
/// One statement changes rows, and nothing runs after it when it did (`Db::write_single`).
pub fn store(c: &mut dyn Conn, r: &NewInbound<'_>, now: i64) -> Result<Stored> {
    let id = sb_core::new_id();
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO inbound_requests (id, workspace_id, channel_account_id, dedupe_key, signature_digest, headers_json, body, received_at)
             VALUES (:id, :ws, :account, :key, :signature, :headers, :body, :now)
             ON CONFLICT DO NOTHING",
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
    if inserted == 1 {
        return Ok(Stored::New(id));
    }
    // The same signed bytes again carry the same message id: the stored row tells a replay
    // (same signature) from a provider's retry (signed anew).
    let replayed = c
        .query_opt(
            &Stmt::new(
                "SELECT id FROM inbound_requests
                 WHERE channel_account_id = :account AND dedupe_key = :key AND signature_digest = :signature",
            )
            .bind("account", r.channel_account_id)
            .bind("key", r.dedupe_key)
            .bind("signature", r.signature_digest),
        )?
        .is_some();
    Ok(if replayed { Stored::Replayed } else { Stored::Duplicate })
}

/// Remembers a signed token until `expires_at`; `false` when it was seen before (a replay).
pub fn remember_token(c: &mut dyn Conn, account_id: &str, token_digest: &str, expires_at: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "INSERT INTO signed_tokens (channel_account_id, token_digest, expires_at)
             VALUES (:account, :token, :expires) ON CONFLICT DO NOTHING",
        )
        .bind("account", account_id)
        .bind("token", token_digest)
        .bind("expires", expires_at),
    )? == 1)
}

/// Forgets tokens whose signature window has passed.
pub fn forget_tokens(c: &mut dyn Conn, now: i64) -> Result<u64> {
    Ok(c.execute(&Stmt::new("DELETE FROM signed_tokens WHERE expires_at <= :now").bind("now", now))?)
}

/// The oldest unprocessed requests, for one batch. Dialects: on PostgreSQL the rows are
/// locked with SKIP LOCKED so processors on several nodes take different rows; SQLite's
/// single writer needs no lock.
pub fn claim_batch(c: &mut dyn Conn, limit: i64) -> Result<Vec<InboundRequest>> {
    let lock = match c.backend() {
        sb_sql::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        sb_sql::Backend::Sqlite => "",
    };
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM inbound_requests WHERE processed_at IS NULL
             ORDER BY received_at, id LIMIT :limit{lock}"
        ))
        .bind("limit", limit),
    )?)
}

/// One unprocessed request, locked like [`claim_batch`] (for processing it on its own).
pub fn claim_one(c: &mut dyn Conn, id: &str) -> Result<Option<InboundRequest>> {
    let lock = match c.backend() {
        sb_sql::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        sb_sql::Backend::Sqlite => "",
    };
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM inbound_requests WHERE id = :id AND processed_at IS NULL{lock}"
        ))
        .bind("id", id),
    )?)
}

/// A request that failed: counts the attempt and keeps the error; with `give_up` it is
/// marked processed so it no longer blocks anything (the error stays for the operator).
pub fn record_failure(c: &mut dyn Conn, id: &str, error: &str, give_up: bool, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "UPDATE inbound_requests SET attempts = attempts + 1, last_error = :error,
                    processed_at = CASE WHEN :give_up THEN :now ELSE processed_at END
             WHERE id = :id",
        )
        .bind("error", error)
        .bind("give_up", give_up)
        .bind("now", now)
        .bind("id", id),
    )?;
    Ok(())
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<InboundRequest>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM inbound_requests WHERE workspace_id = :ws AND id = :id"
        ))
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

/// The workspace's queue: requests not processed yet, and requests set aside after failing.
pub fn stats(c: &mut dyn Conn, ws: &str) -> Result<(i64, i64)> {
    let row = c.query_one(
        &Stmt::new(
            "SELECT
                (SELECT COUNT(*) FROM inbound_requests WHERE workspace_id = :ws AND processed_at IS NULL) AS unprocessed,
                (SELECT COUNT(*) FROM inbound_requests WHERE workspace_id = :ws AND last_error IS NOT NULL
                    AND processed_at IS NOT NULL) AS set_aside",
        )
        .bind("ws", ws),
    )?;
    Ok((
        row.get_in("inbound_requests", "unprocessed")?,
        row.get_in("inbound_requests", "set_aside")?,
    ))
}
