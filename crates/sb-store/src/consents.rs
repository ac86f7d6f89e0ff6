//! Consent per customer, channel and purpose: the current state and every change.

use sb_sql::{Conn, Stmt, from_row};
use serde::{Deserialize, Serialize};

use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// What proves the statement: `text_shown`, `ip`, `event_id`, `actor`, the provider's data.
    pub proof: serde_json::Value,
}

/// Records a change; an older statement than the one held does not overwrite it.
pub fn record(c: &mut dyn Conn, change: &Change<'_>) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO consent_events (id, workspace_id, customer_id, channel, purpose, granted, source, at, proof_json)
             VALUES (:id, :ws, :customer, :channel, :purpose, :granted, :source, :at, :proof)",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", change.workspace_id)
        .bind("customer", change.customer_id)
        .bind("channel", change.channel)
        .bind("purpose", change.purpose)
        .bind("granted", change.granted)
        .bind("source", change.source)
        .bind("at", change.at)
        .bind("proof", change.proof.to_string()),
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
    crate::domain_events::consent_changed(c, change)?;
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

/// One statement with its proof, as kept for ever (the history behind the current view).
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub id: String,
    pub channel: String,
    pub purpose: String,
    pub granted: bool,
    pub source: String,
    pub at: i64,
    pub proof_json: String,
}
from_row!(Statement in "consent_events" { id, channel, purpose, granted, source, at, proof_json });

pub fn history(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Statement>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT id, channel, purpose, granted, source, at, proof_json FROM consent_events
             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY at, id",
        )
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

/// The one answer to "may we send this purpose on this channel to this customer now, and if
/// not, why": the customer's statement, the address's suppression and erasure, judged by
/// `sb_core::consent::may_send`.
pub fn may_send(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    channel: &str,
    address: Option<&str>,
    purpose: sb_core::inbox::Purpose,
) -> Result<std::result::Result<(), sb_core::consent::Refusal>> {
    let statement = granted(c, ws, customer_id, channel, sb_core::consent::consent_purpose(purpose))?;
    let suppression = match address {
        Some(a) => crate::suppressions::find(c, ws, channel, a)?,
        None => None,
    };
    let erased = c
        .query_opt(
            &Stmt::new("SELECT erased_at FROM customers WHERE workspace_id = :ws AND id = :id")
                .bind("ws", ws)
                .bind("id", customer_id),
        )?
        .map(|r| r.get::<Option<i64>>("erased_at"))
        .transpose()?
        .flatten()
        .is_some();
    let standing = sb_core::consent::Standing {
        statement,
        suppression: suppression.as_ref().map(|s| s.reason.as_str()),
        erased,
    };
    Ok(sb_core::consent::may_send(purpose, channel, standing))
}
