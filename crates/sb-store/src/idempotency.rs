//! API requests made idempotent by the client's `Idempotency-Key`: the first request under a
//! key is recorded before it runs and its answer after; a retry gets that answer.

use sb_sql::{Conn, Stmt};

use crate::Result;

/// What a key already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// Nothing: this request is the first, and is now recorded as running.
    Fresh,
    /// The same request is still running (or never recorded its answer).
    Running,
    /// The same request's answer.
    Answered {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// The key was used for another request (method, path or body).
    Mismatch,
}

pub struct Request<'a> {
    pub credential_digest: &'a str,
    pub key: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub body_digest: &'a str,
}

/// Records the request under its key, or says what the key already holds.
pub fn begin(c: &mut dyn Conn, r: &Request<'_>, now: i64) -> Result<Prior> {
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO idempotent_requests (credential_digest, idempotency_key, method, path, body_digest, created_at)
             VALUES (:credential, :key, :method, :path, :body, :now) ON CONFLICT DO NOTHING",
        )
        .bind("credential", r.credential_digest)
        .bind("key", r.key)
        .bind("method", r.method)
        .bind("path", r.path)
        .bind("body", r.body_digest)
        .bind("now", now),
    )?;
    if inserted == 1 {
        return Ok(Prior::Fresh);
    }
    let Some(row) = c.query_opt(
        &Stmt::new(
            "SELECT method, path, body_digest, status, response_body, content_type FROM idempotent_requests
             WHERE credential_digest = :credential AND idempotency_key = :key",
        )
        .bind("credential", r.credential_digest)
        .bind("key", r.key),
    )?
    else {
        return Ok(Prior::Running);
    };
    let same = row.get::<String>("method")? == r.method
        && row.get::<String>("path")? == r.path
        && row.get::<String>("body_digest")? == r.body_digest;
    if !same {
        return Ok(Prior::Mismatch);
    }
    Ok(match row.get::<Option<i64>>("status")? {
        None => Prior::Running,
        Some(status) => Prior::Answered {
            status: u16::try_from(status).unwrap_or(500),
            content_type: row.get("content_type")?,
            body: row.get::<Option<Vec<u8>>>("response_body")?.unwrap_or_default(),
        },
    })
}

/// Keeps the answer of a request recorded by [`begin`].
pub fn finish(
    c: &mut dyn Conn,
    credential_digest: &str,
    key: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<()> {
    c.execute(
        &Stmt::new(
            "UPDATE idempotent_requests SET status = :status, content_type = :type, response_body = :body
             WHERE credential_digest = :credential AND idempotency_key = :key",
        )
        .bind("status", i64::from(status))
        .bind("type", content_type)
        .bind("body", body.to_vec())
        .bind("credential", credential_digest)
        .bind("key", key),
    )?;
    Ok(())
}

/// Forgets a request that failed on our side, so that its retry runs again.
pub fn abandon(c: &mut dyn Conn, credential_digest: &str, key: &str) -> Result<()> {
    c.execute(
        &Stmt::new("DELETE FROM idempotent_requests WHERE credential_digest = :credential AND idempotency_key = :key")
            .bind("credential", credential_digest)
            .bind("key", key),
    )?;
    Ok(())
}

/// How long a key and its answer are kept.
pub const KEEP_MS: i64 = 24 * 3_600_000;

/// Forgets keys older than `before` (kept a day).
pub fn forget_before(c: &mut dyn Conn, before: i64) -> Result<u64> {
    Ok(c.execute(&Stmt::new("DELETE FROM idempotent_requests WHERE created_at < :before").bind("before", before))?)
}
