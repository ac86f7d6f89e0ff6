//! Pre-approved message templates of a channel account, as last synced from the provider.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Template {
    pub id: String,
    pub channel_account_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    /// As the provider reports it: `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`…
    pub status: String,
    pub body: String,
    pub parameter_count: i64,
    pub synced_at: i64,
}
from_row!(Template in "channel_templates" { id, channel_account_id, name, language, category, status, body, parameter_count, synced_at });

const COLUMNS: &str = "id, channel_account_id, name, language, category, status, body, parameter_count, synced_at";

pub struct SyncedTemplate<'a> {
    pub name: &'a str,
    pub language: &'a str,
    pub category: &'a str,
    pub status: &'a str,
    pub body: &'a str,
    pub parameter_count: i64,
}

/// Replaces the account's templates with what the provider lists now.
pub fn replace_all(c: &mut dyn Conn, ws: &str, account_id: &str, list: &[SyncedTemplate<'_>], now: i64) -> Result<()> {
    c.execute(
        &Stmt::new("DELETE FROM channel_templates WHERE workspace_id = :ws AND channel_account_id = :account")
            .bind("ws", ws)
            .bind("account", account_id),
    )?;
    for t in list {
        c.execute(
            &Stmt::new(
                "INSERT INTO channel_templates (id, workspace_id, channel_account_id, name, language, category, status,
                                                body, parameter_count, synced_at)
                 VALUES (:id, :ws, :account, :name, :language, :category, :status, :body, :count, :now)
                 ON CONFLICT (channel_account_id, name, language) DO NOTHING",
            )
            .bind("id", sb_core::new_id())
            .bind("ws", ws)
            .bind("account", account_id)
            .bind("name", t.name)
            .bind("language", t.language)
            .bind("category", t.category)
            .bind("status", t.status)
            .bind("body", t.body)
            .bind("count", t.parameter_count)
            .bind("now", now),
        )?;
    }
    Ok(())
}

pub fn list(c: &mut dyn Conn, ws: &str, account_id: &str) -> Result<Vec<Template>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM channel_templates WHERE workspace_id = :ws AND channel_account_id = :account
             ORDER BY name, language"
        ))
        .bind("ws", ws)
        .bind("account", account_id),
    )?)
}

pub fn find(c: &mut dyn Conn, ws: &str, account_id: &str, name: &str, language: &str) -> Result<Option<Template>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM channel_templates
             WHERE workspace_id = :ws AND channel_account_id = :account AND name = :name AND language = :language"
        ))
        .bind("ws", ws)
        .bind("account", account_id)
        .bind("name", name)
        .bind("language", language),
    )?)
}
