//! API tokens: shown once at creation, stored as a SHA-256 digest, revocable.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;
use crate::users::User;

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub workspace_id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}
from_row!(ApiToken in "api_tokens" { id, workspace_id, user_id, name, created_at, last_used_at, revoked_at });

const COLUMNS: &str = "id, workspace_id, user_id, name, created_at, last_used_at, revoked_at";

pub fn create(c: &mut dyn Conn, user: &User, name: &str, secret_digest: &str, now: i64) -> Result<ApiToken> {
    let token = ApiToken {
        id: sb_core::new_id(),
        workspace_id: user.workspace_id.clone(),
        user_id: user.id.clone(),
        name: name.to_owned(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    c.execute(
        &Stmt::new(
            "INSERT INTO api_tokens (id, workspace_id, user_id, name, token_hash, created_at)
             VALUES (:id, :ws, :user, :name, :hash, :now)",
        )
        .bind("id", &token.id)
        .bind("ws", &token.workspace_id)
        .bind("user", &token.user_id)
        .bind("name", &token.name)
        .bind("hash", secret_digest)
        .bind("now", now),
    )?;
    Ok(token)
}

/// `(token id, last used, owner)` if the token exists, is not revoked and its user is enabled.
pub fn authenticate(c: &mut dyn Conn, secret_digest: &str) -> Result<Option<(String, Option<i64>, User)>> {
    let row = c.query_opt(
        &Stmt::new(
            "SELECT t.id AS token_id, t.last_used_at AS token_last_used_at, u.id, u.workspace_id, u.email, u.name, u.role, u.is_owner, u.disabled,
                    u.created_at, u.updated_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id AND u.workspace_id = t.workspace_id
             WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND u.disabled = :no",
        )
        .bind("hash", secret_digest)
        .bind("no", false),
    )?;
    Ok(match row {
        None => None,
        Some(r) => Some((
            r.get_in("api_tokens", "token_id")?,
            r.get_in("api_tokens", "token_last_used_at")?,
            sb_sql::FromRow::from_row(&r)?,
        )),
    })
}

pub fn touch(c: &mut dyn Conn, workspace_id: &str, id: &str, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE api_tokens SET last_used_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("now", now)
            .bind("ws", workspace_id)
            .bind("id", id),
    )?;
    Ok(())
}

pub fn get(c: &mut dyn Conn, workspace_id: &str, id: &str) -> Result<Option<ApiToken>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", workspace_id)
        .bind("id", id),
    )?)
}

pub fn list(
    c: &mut dyn Conn,
    workspace_id: &str,
    user_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ApiToken>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM api_tokens
             WHERE workspace_id = :ws AND (:user = '' OR user_id = :user) AND id > :after
             ORDER BY id LIMIT :limit"
        ))
        .bind("ws", workspace_id)
        .bind("user", user_id.unwrap_or(""))
        .bind("after", after.unwrap_or(""))
        .bind("limit", limit),
    )?)
}

pub fn revoke(c: &mut dyn Conn, workspace_id: &str, id: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE api_tokens SET revoked_at = :now WHERE workspace_id = :ws AND id = :id AND revoked_at IS NULL",
        )
        .bind("now", now)
        .bind("ws", workspace_id)
        .bind("id", id),
    )? == 1)
}

/// Revokes every live token of a user (when the user is disabled); returns how many.
pub fn revoke_for_user(c: &mut dyn Conn, workspace_id: &str, user_id: &str, now: i64) -> Result<u64> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE api_tokens SET revoked_at = :now
             WHERE workspace_id = :ws AND user_id = :user AND revoked_at IS NULL",
        )
        .bind("now", now)
        .bind("ws", workspace_id)
        .bind("user", user_id),
    )?)
}
