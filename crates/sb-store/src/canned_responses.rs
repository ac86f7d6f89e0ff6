//! Canned responses: a workspace's shared library of replies, each under a short code
//! (`hours`) that agents type in the composer as `/hours`.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CannedResponse {
    pub id: String,
    pub workspace_id: String,
    pub short_code: String,
    pub content: String,
    /// The user who added it; `None` for seeded responses.
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(CannedResponse in "canned_responses" { id, workspace_id, short_code, content, created_by, created_at, updated_at });

/// Longest short code accepted, in characters.
pub const MAX_SHORT_CODE_CHARS: usize = 50;
/// Longest content accepted, in characters.
pub const MAX_CONTENT_CHARS: usize = 5_000;

/// Checks a short code; the error says what is allowed. Lowercase ASCII so `/code` is typed
/// the same way by everyone.
pub fn validate_short_code(short_code: &str) -> Result<(), String> {
    let allowed = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-';
    let length = short_code.chars().count();
    if (1..=MAX_SHORT_CODE_CHARS).contains(&length) && short_code.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "short_code must be 1–{MAX_SHORT_CODE_CHARS} characters of a-z, 0-9, _ and -"
        ))
    }
}

/// Checks a response's text; the error says what is allowed.
pub fn validate_content(content: &str) -> Result<(), String> {
    if content.trim().is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
        Err(format!("content must be 1–{MAX_CONTENT_CHARS} characters"))
    } else {
        Ok(())
    }
}

const COLUMNS: &str = "id, workspace_id, short_code, content, created_by, created_at, updated_at";

fn short_code_taken(short_code: &str) -> StoreError {
    StoreError::Conflict(format!("a canned response with short code {short_code} exists"))
}

/// Adds a response; `Conflict` when the workspace already has this short code.
pub fn create(
    c: &mut dyn Conn,
    ws: &str,
    short_code: &str,
    content: &str,
    created_by: Option<&str>,
    now: i64,
) -> Result<CannedResponse> {
    let response = CannedResponse {
        id: sb_core::new_id(),
        workspace_id: ws.to_owned(),
        short_code: short_code.to_owned(),
        content: content.to_owned(),
        created_by: created_by.map(str::to_owned),
        created_at: now,
        updated_at: now,
    };
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO canned_responses (id, workspace_id, short_code, content, created_by, created_at, updated_at)
             VALUES (:id, :ws, :code, :content, :by, :now, :now)",
        )
        .bind("id", &response.id)
        .bind("ws", ws)
        .bind("code", short_code)
        .bind("content", content)
        .bind("by", created_by)
        .bind("now", now),
    );
    match inserted {
        Ok(_) => Ok(response),
        Err(e) if e.is_unique_violation() => Err(short_code_taken(short_code)),
        Err(e) => Err(e.into()),
    }
}

/// The workspace's responses by short code; with a search term, only those whose short code
/// or content contains it, ignoring case.
pub fn list(c: &mut dyn Conn, ws: &str, search: Option<&str>, limit: i64) -> Result<Vec<CannedResponse>> {
    let term = search.map(str::trim).filter(|s| !s.is_empty());
    let Some(term) = term else {
        return Ok(c.fetch_all(
            &Stmt::new(format!(
                "SELECT {COLUMNS} FROM canned_responses WHERE workspace_id = :ws ORDER BY short_code LIMIT :limit"
            ))
            .bind("ws", ws)
            .bind("limit", limit),
        )?);
    };
    // Short codes contain `_`, so LIKE's wildcards are escaped rather than dropped.
    let escaped = term
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM canned_responses
             WHERE workspace_id = :ws AND (LOWER(short_code) LIKE :p ESCAPE '\\' OR LOWER(content) LIKE :p ESCAPE '\\')
             ORDER BY short_code LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("p", format!("%{escaped}%"))
        .bind("limit", limit),
    )?)
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<CannedResponse>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM canned_responses WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn find_by_short_code(c: &mut dyn Conn, ws: &str, short_code: &str) -> Result<Option<CannedResponse>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM canned_responses WHERE workspace_id = :ws AND short_code = :code"
        ))
        .bind("ws", ws)
        .bind("code", short_code),
    )?)
}

/// Changes the short code and/or content; `None` when the workspace has no such response,
/// `Conflict` when the new short code is taken.
pub fn update(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    short_code: Option<&str>,
    content: Option<&str>,
    now: i64,
) -> Result<Option<CannedResponse>> {
    let Some(current) = get(c, ws, id)? else {
        return Ok(None);
    };
    let updated = CannedResponse {
        short_code: short_code.unwrap_or(&current.short_code).to_owned(),
        content: content.unwrap_or(&current.content).to_owned(),
        updated_at: now,
        ..current
    };
    let written = c.execute(
        &Stmt::new(
            "UPDATE canned_responses SET short_code = :code, content = :content, updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("code", &updated.short_code)
        .bind("content", &updated.content)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    );
    match written {
        Ok(_) => Ok(Some(updated)),
        Err(e) if e.is_unique_violation() => Err(short_code_taken(&updated.short_code)),
        Err(e) => Err(e.into()),
    }
}

/// Removes a response; `false` when the workspace has no such response.
pub fn delete(c: &mut dyn Conn, ws: &str, id: &str) -> Result<bool> {
    let removed = c.execute(
        &Stmt::new("DELETE FROM canned_responses WHERE workspace_id = :ws AND id = :id")
            .bind("ws", ws)
            .bind("id", id),
    )?;
    Ok(removed > 0)
}
