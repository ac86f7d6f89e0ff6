//! Channel accounts (one WhatsApp number, one bot, one API integration…) with their
//! settings and secrets. Secrets are read only by the channel code, never by the API.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct ChannelAccount {
    pub id: String,
    pub workspace_id: String,
    pub channel: String,
    pub name: String,
    pub settings_json: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(ChannelAccount in "channel_accounts" { id, workspace_id, channel, name, settings_json, disabled, created_at, updated_at });

const COLUMNS: &str = "id, workspace_id, channel, name, settings_json, disabled, created_at, updated_at";

pub fn create(
    c: &mut dyn Conn,
    workspace_id: &str,
    channel: &str,
    name: &str,
    settings_json: &str,
    secrets_json: &str,
    now: i64,
) -> Result<ChannelAccount> {
    let account = ChannelAccount {
        id: sb_core::new_id(),
        workspace_id: workspace_id.to_owned(),
        channel: channel.to_owned(),
        name: name.to_owned(),
        settings_json: settings_json.to_owned(),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    c.execute(
        &Stmt::new(
            "INSERT INTO channel_accounts (id, workspace_id, channel, name, settings_json, secrets_json, disabled, created_at, updated_at)
             VALUES (:id, :ws, :channel, :name, :settings, :secrets, :disabled, :now, :now)",
        )
        .bind("id", &account.id)
        .bind("ws", workspace_id)
        .bind("channel", channel)
        .bind("name", name)
        .bind("settings", settings_json)
        .bind("secrets", secrets_json)
        .bind("disabled", false)
        .bind("now", now),
    )?;
    Ok(account)
}

pub fn get(c: &mut dyn Conn, workspace_id: &str, id: &str) -> Result<Option<ChannelAccount>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM channel_accounts WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", workspace_id)
        .bind("id", id),
    )?)
}

pub fn list(c: &mut dyn Conn, workspace_id: &str) -> Result<Vec<ChannelAccount>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM channel_accounts WHERE workspace_id = :ws ORDER BY id"
        ))
        .bind("ws", workspace_id),
    )?)
}

/// For a provider's webhook, which names the account in its URL: the account (whatever its
/// workspace: the id is the scope) and its secrets.
pub fn for_webhook(c: &mut dyn Conn, id: &str) -> Result<Option<(ChannelAccount, String)>> {
    let row = c.query_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS}, secrets_json FROM channel_accounts WHERE id = :id"
        ))
        .bind("id", id),
    )?;
    Ok(match row {
        None => None,
        Some(r) => Some((
            sb_sql::FromRow::from_row(&r)?,
            r.get_in("channel_accounts", "secrets_json")?,
        )),
    })
}

/// Every enabled account of one channel, in every workspace, with its secrets: for ingress
/// we run ourselves (IMAP mailboxes to read, addresses our SMTP listener accepts).
pub fn enabled_of_kind(c: &mut dyn Conn, channel: &str) -> Result<Vec<(ChannelAccount, String)>> {
    let rows = c.query(
        &Stmt::new(format!(
            "SELECT {COLUMNS}, secrets_json FROM channel_accounts
             WHERE channel = :channel AND disabled = :no ORDER BY id"
        ))
        .bind("channel", channel)
        .bind("no", false),
    )?;
    rows.iter()
        .map(|r| {
            Ok((
                sb_sql::FromRow::from_row(r)?,
                r.get_in("channel_accounts", "secrets_json")?,
            ))
        })
        .collect()
}

/// Replaces an account's settings (the secrets stay).
pub fn update_settings(c: &mut dyn Conn, workspace_id: &str, id: &str, settings_json: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE channel_accounts SET settings_json = :settings, updated_at = :now WHERE workspace_id = :ws AND id = :id",
        )
        .bind("settings", settings_json)
        .bind("now", now)
        .bind("ws", workspace_id)
        .bind("id", id),
    )? == 1)
}

/// Removes an account that was never used (its connection to the provider failed).
pub fn delete_unused(c: &mut dyn Conn, workspace_id: &str, id: &str) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "DELETE FROM channel_accounts WHERE workspace_id = :ws AND id = :id
               AND NOT EXISTS (SELECT 1 FROM messages WHERE channel_account_id = :id)
               AND NOT EXISTS (SELECT 1 FROM inbound_requests WHERE channel_account_id = :id)",
        )
        .bind("ws", workspace_id)
        .bind("id", id),
    )? == 1)
}
