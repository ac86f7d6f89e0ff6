//! Deliveries: one row per automated message (a journey's send now; campaigns, surveys and
//! announcements later). The idempotency key makes planning the same send twice a no-op;
//! the row records the channel chosen and why, and why a send was held or refused.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: String,
    pub workspace_id: String,
    pub idempotency_key: String,
    pub origin: String,
    pub journey_id: Option<String>,
    pub instance_id: Option<String>,
    pub step_id: String,
    pub customer_id: String,
    pub purpose: String,
    pub state: String,
    pub not_before: i64,
    pub channel: Option<String>,
    pub channel_account_id: Option<String>,
    pub message_id: Option<String>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub queued_at: Option<i64>,
}
from_row!(Delivery in "deliveries" {
    id, workspace_id, idempotency_key, origin, journey_id, instance_id, step_id, customer_id, purpose, state,
    not_before, channel, channel_account_id, message_id, reason_code, reason, created_at, updated_at, queued_at
});

const COLUMNS: &str = "id, workspace_id, idempotency_key, origin, journey_id, instance_id, step_id, customer_id, \
    purpose, state, not_before, channel, channel_account_id, message_id, reason_code, reason, created_at, updated_at, \
    queued_at";

pub struct NewDelivery<'a> {
    pub workspace_id: &'a str,
    pub idempotency_key: &'a str,
    pub origin: &'a str,
    pub journey_id: Option<&'a str>,
    pub instance_id: Option<&'a str>,
    pub step_id: &'a str,
    pub customer_id: &'a str,
    pub purpose: &'a str,
    pub not_before: i64,
}

/// Plans a send; `false` when this key was planned already (a duplicate timer, a rerun).
pub fn plan(c: &mut dyn Conn, d: &NewDelivery<'_>, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "INSERT INTO deliveries (id, workspace_id, idempotency_key, origin, journey_id, instance_id, step_id,
                 customer_id, purpose, state, not_before, created_at, updated_at)
             VALUES (:id, :ws, :key, :origin, :journey, :instance, :step, :customer, :purpose, 'planned', :not_before,
                 :now, :now)
             ON CONFLICT (workspace_id, idempotency_key) DO NOTHING",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", d.workspace_id)
        .bind("key", d.idempotency_key)
        .bind("origin", d.origin)
        .bind("journey", d.journey_id)
        .bind("instance", d.instance_id)
        .bind("step", d.step_id)
        .bind("customer", d.customer_id)
        .bind("purpose", d.purpose)
        .bind("not_before", d.not_before)
        .bind("now", now),
    )? == 1)
}

/// Planned or deferred deliveries whose time has come.
pub fn due(c: &mut dyn Conn, now: i64, limit: i64) -> Result<Vec<Delivery>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE state IN ('planned', 'deferred') AND not_before <= :now
             ORDER BY not_before LIMIT :limit"
        ))
        .bind("now", now)
        .bind("limit", limit),
    )?)
}

pub fn next_due(c: &mut dyn Conn) -> Result<Option<i64>> {
    Ok(c.query_one(&Stmt::new(
        "SELECT MIN(not_before) AS at FROM deliveries WHERE state IN ('planned', 'deferred')",
    ))?
    .get("at")?)
}

/// The outcome of handling a due delivery, written only if it is still planned or deferred.
#[derive(Debug, Clone, Default)]
pub struct Outcome<'a> {
    pub state: &'a str,
    pub not_before: Option<i64>,
    pub channel: Option<&'a str>,
    pub channel_account_id: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub reason: Option<&'a str>,
}

pub fn settle(c: &mut dyn Conn, ws: &str, id: &str, o: &Outcome<'_>, now: i64) -> Result<bool> {
    let queued = (o.state == "queued").then_some(now);
    Ok(c.execute(
        &Stmt::new(
            "UPDATE deliveries SET state = :state, not_before = COALESCE(:not_before, not_before),
                 channel = COALESCE(:channel, channel), channel_account_id = COALESCE(:account, channel_account_id),
                 message_id = :message, reason_code = :code, reason = :reason, queued_at = :queued, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND state IN ('planned', 'deferred')",
        )
        .bind("state", o.state)
        .bind("not_before", o.not_before)
        .bind("channel", o.channel)
        .bind("account", o.channel_account_id)
        .bind("message", o.message_id)
        .bind("code", o.reason_code)
        .bind("reason", o.reason)
        .bind("queued", queued)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )? == 1)
}

/// Marketing messages handed to the outbox for a customer since `since` (the frequency cap
/// counts these; transactional ones are exempt).
pub fn marketing_sent_since(c: &mut dyn Conn, ws: &str, customer_id: &str, since: i64) -> Result<i64> {
    Ok(c.query_one(
        &Stmt::new(
            "SELECT COUNT(*) AS n FROM deliveries
                 WHERE workspace_id = :ws AND customer_id = :customer AND purpose = 'marketing' AND state = 'queued'
                   AND queued_at >= :since",
        )
        .bind("ws", ws)
        .bind("customer", customer_id)
        .bind("since", since),
    )?
    .get("n")?)
}

pub fn for_instance(c: &mut dyn Conn, ws: &str, instance_id: &str) -> Result<Vec<Delivery>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE workspace_id = :ws AND instance_id = :instance
             ORDER BY created_at, id"
        ))
        .bind("ws", ws)
        .bind("instance", instance_id),
    )?)
}
