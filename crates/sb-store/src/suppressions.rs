//! Addresses that get no marketing on a channel: hard bounces, complaints, carrier
//! opt-outs. The first reason recorded is kept.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub channel: String,
    pub address: String,
    /// `bounced`, `complained`, `unsubscribed`, …
    pub reason: String,
    pub detail: String,
    pub at: i64,
}
from_row!(Suppression in "suppressions" { channel, address, reason, detail, at });

pub fn add(
    c: &mut dyn Conn,
    ws: &str,
    channel: &str,
    address: &str,
    reason: &str,
    detail: &str,
    at: i64,
) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO suppressions (workspace_id, channel, address, reason, detail, at)
             VALUES (:ws, :channel, :address, :reason, :detail, :at)
             ON CONFLICT (workspace_id, channel, address) DO NOTHING",
        )
        .bind("ws", ws)
        .bind("channel", channel)
        .bind("address", address)
        .bind("reason", reason)
        .bind("detail", detail)
        .bind("at", at),
    )?;
    Ok(())
}

pub fn find(c: &mut dyn Conn, ws: &str, channel: &str, address: &str) -> Result<Option<Suppression>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT channel, address, reason, detail, at FROM suppressions
             WHERE workspace_id = :ws AND channel = :channel AND address = :address",
        )
        .bind("ws", ws)
        .bind("channel", channel)
        .bind("address", address),
    )?)
}

/// Lifts a suppression (an admin who checked the address); whether there was one.
pub fn remove(c: &mut dyn Conn, ws: &str, channel: &str, address: &str) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("DELETE FROM suppressions WHERE workspace_id = :ws AND channel = :channel AND address = :address")
            .bind("ws", ws)
            .bind("channel", channel)
            .bind("address", address),
    )? > 0)
}
