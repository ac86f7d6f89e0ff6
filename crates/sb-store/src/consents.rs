//! Consent per customer, channel and purpose: the current state and every change.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Consent {
    pub channel: String,
    /// `marketing`, …
    pub purpose: String,
    pub granted: bool,
    /// Where it was stated: `whatsapp_preferences`, `keyword`, …
    pub source: String,
    pub at: i64,
}
from_row!(Consent in "consents" { channel, purpose, granted, source, at });

pub struct Change<'a> {
    pub workspace_id: &'a str,
    pub customer_id: &'a str,
    pub channel: &'a str,
    pub purpose: &'a str,
    pub granted: bool,
    pub source: &'a str,
    pub at: i64,
}

/// Records a change; an older statement than the one held does not overwrite it.
pub fn record(c: &mut dyn Conn, change: &Change<'_>) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO consent_events (id, workspace_id, customer_id, channel, purpose, granted, source, at)
             VALUES (:id, :ws, :customer, :channel, :purpose, :granted, :source, :at)",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", change.workspace_id)
        .bind("customer", change.customer_id)
        .bind("channel", change.channel)
        .bind("purpose", change.purpose)
        .bind("granted", change.granted)
        .bind("source", change.source)
        .bind("at", change.at),
    )?;
    c.execute(
        &Stmt::new(
            "INSERT INTO consents (workspace_id, customer_id, channel, purpose, granted, source, at)
             VALUES (:ws, :customer, :channel, :purpose, :granted, :source, :at)
             ON CONFLICT (workspace_id, customer_id, channel, purpose) DO UPDATE
                SET granted = excluded.granted, source = excluded.source, at = excluded.at
                WHERE consents.at <= excluded.at",
        )
        .bind("ws", change.workspace_id)
        .bind("customer", change.customer_id)
        .bind("channel", change.channel)
        .bind("purpose", change.purpose)
        .bind("granted", change.granted)
        .bind("source", change.source)
        .bind("at", change.at),
    )?;
    Ok(())
}

pub fn list(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Consent>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT channel, purpose, granted, source, at FROM consents
             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY channel, purpose",
        )
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

/// The customer's current statement for a channel and purpose: `None` when they made none.
pub fn granted(c: &mut dyn Conn, ws: &str, customer_id: &str, channel: &str, purpose: &str) -> Result<Option<bool>> {
    Ok(c.fetch_opt::<Consent>(
        &Stmt::new(
            "SELECT channel, purpose, granted, source, at FROM consents
             WHERE workspace_id = :ws AND customer_id = :customer AND channel = :channel AND purpose = :purpose",
        )
        .bind("ws", ws)
        .bind("customer", customer_id)
        .bind("channel", channel)
        .bind("purpose", purpose),
    )?
    .map(|c| c.granted))
}
