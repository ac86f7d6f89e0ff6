//! Server-side sessions: the cookie holds a random secret; the table holds its digest.

use sb_sql::{Conn, Stmt};

use crate::Result;
use crate::users::User;

pub fn create(c: &mut dyn Conn, secret_digest: &str, user: &User, now: i64, ttl_ms: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO sessions (token_hash, workspace_id, user_id, created_at, expires_at)
             VALUES (:hash, :ws, :user, :now, :expires)",
        )
        .bind("hash", secret_digest)
        .bind("ws", &user.workspace_id)
        .bind("user", &user.id)
        .bind("now", now)
        .bind("expires", now + ttl_ms),
    )?;
    Ok(())
}

/// The session's user, if the session exists, has not expired and the user is enabled.
pub fn user_for(c: &mut dyn Conn, secret_digest: &str, now: i64) -> Result<Option<User>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT u.id, u.workspace_id, u.email, u.name, u.role, u.is_owner, u.disabled, u.created_at, u.updated_at
             FROM sessions s JOIN users u ON u.id = s.user_id AND u.workspace_id = s.workspace_id
             WHERE s.token_hash = :hash AND s.expires_at > :now AND u.disabled = :no",
        )
        .bind("hash", secret_digest)
        .bind("now", now)
        .bind("no", false),
    )?)
}

pub fn delete(c: &mut dyn Conn, secret_digest: &str) -> Result<bool> {
    Ok(c.execute(&Stmt::new("DELETE FROM sessions WHERE token_hash = :hash").bind("hash", secret_digest))? == 1)
}

pub fn delete_expired(c: &mut dyn Conn, now: i64) -> Result<u64> {
    Ok(c.execute(&Stmt::new("DELETE FROM sessions WHERE expires_at <= :now").bind("now", now))?)
}

/// Ends every session of a user (when the user is disabled); returns how many ended.
pub fn delete_for_user(c: &mut dyn Conn, workspace_id: &str, user_id: &str) -> Result<u64> {
    Ok(c.execute(
        &Stmt::new("DELETE FROM sessions WHERE workspace_id = :ws AND user_id = :user")
            .bind("ws", workspace_id)
            .bind("user", user_id),
    )?)
}
