//! Outgoing webhooks: endpoints, the dispatcher's cursor over the event log, messages (the
//! signed bodies), deliveries (one message to one endpoint) and the attempt log.

use sb_sql::{Backend, Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    pub description: String,
    pub event_types_json: String,
    pub ordered: bool,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub first_failure_at: Option<i64>,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Endpoint in "webhook_endpoints" {
    id, workspace_id, url, description, event_types_json, ordered, status, disabled_reason, first_failure_at,
    secret, previous_secret, previous_secret_until, created_at, updated_at
});

const ENDPOINT_COLUMNS: &str = "id, workspace_id, url, description, event_types_json, ordered, status, \
    disabled_reason, first_failure_at, secret, previous_secret, previous_secret_until, created_at, updated_at";

impl Endpoint {
    pub fn event_types(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types_json).unwrap_or_default()
    }

    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.event_types().iter().any(|t| t == event_type)
    }
}

pub struct NewEndpoint<'a> {
    pub workspace_id: &'a str,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: &'a [String],
    pub ordered: bool,
    pub secret: &'a str,
}

/// Adds an endpoint and starts the workspace's cursor at the end of its log, so the endpoint
/// receives what happens from now on.
pub fn create(c: &mut dyn Conn, new: &NewEndpoint<'_>, now: i64) -> Result<Endpoint> {
    let id = sb_core::new_id();
    c.execute(
        &Stmt::new(
            "INSERT INTO webhook_endpoints (id, workspace_id, url, description, event_types_json, ordered, status,
                 secret, created_at, updated_at)
             VALUES (:id, :ws, :url, :description, :types, :ordered, 'enabled', :secret, :now, :now)",
        )
        .bind("id", &id)
        .bind("ws", new.workspace_id)
        .bind("url", new.url)
        .bind("description", new.description)
        .bind(
            "types",
            serde_json::to_string(new.event_types).unwrap_or_else(|_| "[]".into()),
        )
        .bind("ordered", new.ordered)
        .bind("secret", new.secret)
        .bind("now", now),
    )?;
    let latest = crate::live_events::latest(c, new.workspace_id)?;
    c.execute(
        &Stmt::new(
            "INSERT INTO webhook_cursors (workspace_id, seq) VALUES (:ws, :seq) ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind("ws", new.workspace_id)
        .bind("seq", latest),
    )?;
    get(c, new.workspace_id, &id)?.ok_or(StoreError::NotFound("webhook endpoint"))
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Endpoint>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn list(c: &mut dyn Conn, ws: &str) -> Result<Vec<Endpoint>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = :ws ORDER BY created_at, id"
        ))
        .bind("ws", ws),
    )?)
}

pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub description: Option<&'a str>,
    pub event_types: Option<&'a [String]>,
    pub ordered: Option<bool>,
    /// `Some(true)` enables (and forgets the failure run), `Some(false)` disables.
    pub enabled: Option<bool>,
}

pub fn update(c: &mut dyn Conn, ws: &str, id: &str, change: &EndpointChange<'_>, now: i64) -> Result<Option<Endpoint>> {
    let Some(before) = get(c, ws, id)? else {
        return Ok(None);
    };
    let (status, reason, first_failure_at) = match change.enabled {
        Some(true) => ("enabled".to_owned(), None, None),
        Some(false) => ("disabled".to_owned(), Some("disabled by an admin".to_owned()), None),
        None => (
            before.status.clone(),
            before.disabled_reason.clone(),
            before.first_failure_at,
        ),
    };
    c.execute(
        &Stmt::new(
            "UPDATE webhook_endpoints SET url = :url, description = :description, event_types_json = :types,
                 ordered = :ordered, status = :status, disabled_reason = :reason, first_failure_at = :first_failure,
                 updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("url", change.url.unwrap_or(&before.url))
        .bind("description", change.description.unwrap_or(&before.description))
        .bind(
            "types",
            change
                .event_types
                .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()))
                .unwrap_or(before.event_types_json.clone()),
        )
        .bind("ordered", change.ordered.unwrap_or(before.ordered))
        .bind("status", status)
        .bind("reason", reason)
        .bind("first_failure", first_failure_at)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    get(c, ws, id)
}

/// Removes an endpoint with its deliveries and attempt log.
pub fn delete(c: &mut dyn Conn, ws: &str, id: &str) -> Result<bool> {
    let removed = c.execute(
        &Stmt::new("DELETE FROM webhook_endpoints WHERE workspace_id = :ws AND id = :id")
            .bind("ws", ws)
            .bind("id", id),
    )?;
    if removed == 0 {
        return Ok(false);
    }
    for table in ["webhook_deliveries", "webhook_attempts"] {
        c.execute(
            &Stmt::new(format!(
                "DELETE FROM {table} WHERE workspace_id = :ws AND endpoint_id = :id"
            ))
            .bind("ws", ws)
            .bind("id", id),
        )?;
    }
    Ok(true)
}

/// Replaces the secret; the old one keeps signing until `previous_until`.
pub fn rotate_secret(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    secret: &str,
    previous_until: i64,
    now: i64,
) -> Result<Option<Endpoint>> {
    c.execute(
        &Stmt::new(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = :until, secret = :secret,
                 updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("until", previous_until)
        .bind("secret", secret)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    get(c, ws, id)
}

/// Enabled endpoints of a workspace (the dispatcher's subscriptions).
pub fn enabled(c: &mut dyn Conn, ws: &str) -> Result<Vec<Endpoint>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = :ws AND status = 'enabled'"
        ))
        .bind("ws", ws),
    )?)
}

/// Workspaces whose log has moved past the dispatcher's cursor, with the cursor.
pub fn behind(c: &mut dyn Conn, limit: i64) -> Result<Vec<(String, i64)>> {
    c.query(
        &Stmt::new(
            "SELECT w.workspace_id, w.seq FROM webhook_cursors w
             JOIN event_counters e ON e.workspace_id = w.workspace_id
             WHERE e.seq > w.seq ORDER BY w.workspace_id LIMIT :limit",
        )
        .bind("limit", limit),
    )?
    .into_iter()
    .map(|r| Ok((r.get("workspace_id")?, r.get("seq")?)))
    .collect()
}

/// Moves the cursor from `from` to `to`; false when another dispatcher moved it first (the
/// caller's transaction must then not commit what it planned).
pub fn advance_cursor(c: &mut dyn Conn, ws: &str, from: i64, to: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("UPDATE webhook_cursors SET seq = :to WHERE workspace_id = :ws AND seq = :from")
            .bind("to", to)
            .bind("ws", ws)
            .bind("from", from),
    )? == 1)
}

pub struct NewMessage<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub seq: Option<i64>,
    pub event_type: &'a str,
    pub body: &'a str,
}

/// Stores a message and one pending delivery per endpoint, due now.
pub fn enqueue(c: &mut dyn Conn, message: &NewMessage<'_>, endpoint_ids: &[&str], now: i64) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO webhook_messages (id, workspace_id, seq, event_type, body, created_at)
             VALUES (:id, :ws, :seq, :type, :body, :now) ON CONFLICT DO NOTHING",
        )
        .bind("id", message.id)
        .bind("ws", message.workspace_id)
        .bind("seq", message.seq)
        .bind("type", message.event_type)
        .bind("body", message.body)
        .bind("now", now),
    )?;
    for endpoint_id in endpoint_ids {
        insert_delivery(
            c,
            message.workspace_id,
            message.id,
            endpoint_id,
            message.seq,
            false,
            now,
        )?;
    }
    Ok(())
}

fn insert_delivery(
    c: &mut dyn Conn,
    ws: &str,
    message_id: &str,
    endpoint_id: &str,
    seq: Option<i64>,
    manual: bool,
    now: i64,
) -> Result<u64> {
    Ok(c.execute(
        &Stmt::new(
            "INSERT INTO webhook_deliveries (id, workspace_id, message_id, endpoint_id, seq, status, attempts,
                 next_attempt_at, manual, created_at, updated_at)
             VALUES (:id, :ws, :message, :endpoint, :seq, 'pending', 0, :now, :manual, :now, :now)
             ON CONFLICT (message_id, endpoint_id) DO NOTHING",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", ws)
        .bind("message", message_id)
        .bind("endpoint", endpoint_id)
        .bind("seq", seq)
        .bind("manual", manual)
        .bind("now", now),
    )?)
}

/// Releases every lease: on SQLite one process owns the database, so at its start no request
/// is in flight and what a killed process had leased can go at once, not after the lease.
pub fn release_leases(c: &mut dyn Conn) -> Result<u64> {
    Ok(c.execute(&Stmt::new(
        "UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL AND status = 'pending'",
    ))?)
}

/// Whether any delivery is due: a read, so idle workers never open a write transaction.
pub fn any_due(c: &mut dyn Conn, now: i64) -> Result<bool> {
    Ok(c.query_opt(
        &Stmt::new(
            "SELECT 1 AS due FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= :now
                   AND (lease_until IS NULL OR lease_until < :now) LIMIT 1",
        )
        .bind("now", now),
    )?
    .is_some())
}

/// A delivery taken by a worker, with what it needs to make the request.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: String,
    /// The lease this claim holds: the fence its result is written under.
    pub lease_until: i64,
    pub workspace_id: String,
    pub message_id: String,
    pub endpoint_id: String,
    pub attempts: i64,
    pub manual: bool,
    pub url: String,
    pub secrets: Vec<String>,
    pub body: String,
}

/// Takes up to `limit` due deliveries of enabled endpoints until `now + lease_ms`. An ordered
/// endpoint gives only its oldest pending delivery, and only once nothing older is pending.
pub fn claim(c: &mut dyn Conn, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    let lock = match c.backend() {
        Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let rows = c.query(
        &Stmt::new(format!(
            "SELECT d.id AS delivery_id, d.workspace_id, d.message_id, d.endpoint_id, d.attempts, d.manual,
                    e.url, e.secret, e.previous_secret, e.previous_secret_until, m.body
             FROM webhook_deliveries d
             JOIN webhook_endpoints e ON e.id = d.endpoint_id
             JOIN webhook_messages m ON m.id = d.message_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= :now
               AND (d.lease_until IS NULL OR d.lease_until < :now)
               AND e.status = 'enabled'
               AND (NOT e.ordered OR NOT EXISTS (
                   SELECT 1 FROM webhook_deliveries p
                   WHERE p.endpoint_id = d.endpoint_id AND p.status = 'pending' AND p.seq < d.seq))
             ORDER BY d.next_attempt_at, d.seq
             LIMIT :limit{lock}"
        ))
        .bind("now", now)
        .bind("limit", limit),
    )?;
    let mut claimed = Vec::with_capacity(rows.len());
    for r in rows {
        let delivery_id: String = r.get("delivery_id")?;
        c.execute(
            &Stmt::new("UPDATE webhook_deliveries SET lease_until = :until WHERE id = :id")
                .bind("until", now + lease_ms)
                .bind("id", &delivery_id),
        )?;
        let mut secrets = vec![r.get::<String>("secret")?];
        if let (Some(previous), Some(until)) = (
            r.get::<Option<String>>("previous_secret")?,
            r.get::<Option<i64>>("previous_secret_until")?,
        ) && now < until
        {
            secrets.push(previous);
        }
        claimed.push(Claimed {
            delivery_id,
            lease_until: now + lease_ms,
            workspace_id: r.get("workspace_id")?,
            message_id: r.get("message_id")?,
            endpoint_id: r.get("endpoint_id")?,
            attempts: r.get("attempts")?,
            manual: r.get("manual")?,
            url: r.get("url")?,
            secrets,
            body: r.get("body")?,
        });
    }
    Ok(claimed)
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub claimed: Claimed,
    pub signed_at: i64,
    pub response_status: Option<i64>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub at: i64,
    /// What becomes of the delivery.
    pub next: Next,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(i64),
    /// Retries exhausted, or the receiver asked not to retry.
    Failed,
    /// The endpoint answered 410 Gone: it is disabled.
    Gone,
}

/// Records attempts and their consequences. Returns the endpoints that this call disabled
/// after `disable_after_ms` of failures only (or a 410), with their workspace.
pub fn record(c: &mut dyn Conn, outcomes: &[Outcome], disable_after_ms: i64) -> Result<Vec<(String, String)>> {
    let mut disabled = Vec::new();
    for o in outcomes {
        let d = &o.claimed;
        let trigger = if d.manual { "manual" } else { "scheduled" };
        c.execute(
            &Stmt::new(
                "INSERT INTO webhook_attempts (id, workspace_id, delivery_id, endpoint_id, message_id, attempt, url,
                     signed_at, trigger_kind, response_status, response_excerpt, error, latency_ms, at)
                 VALUES (:id, :ws, :delivery, :endpoint, :message, :attempt, :url, :signed_at, :trigger, :status,
                     :excerpt, :error, :latency, :at)",
            )
            .bind("id", sb_core::new_id())
            .bind("ws", &d.workspace_id)
            .bind("delivery", &d.delivery_id)
            .bind("endpoint", &d.endpoint_id)
            .bind("message", &d.message_id)
            .bind("attempt", d.attempts + 1)
            .bind("url", &d.url)
            .bind("signed_at", o.signed_at)
            .bind("trigger", trigger)
            .bind("status", o.response_status)
            .bind("excerpt", o.response_excerpt.as_deref())
            .bind("error", o.error.as_deref())
            .bind("latency", o.latency_ms)
            .bind("at", o.at),
        )?;
        let (status, next_at) = match o.next {
            Next::Succeeded => ("succeeded", o.at),
            Next::RetryAt(at) => ("pending", at),
            Next::Failed | Next::Gone => ("failed", o.at),
        };
        // Fenced by the claim's lease: a result that comes back after a resend, a replay or
        // another worker's claim changes nothing but the log.
        let current = c.execute(
            &Stmt::new(
                "UPDATE webhook_deliveries SET status = :status, attempts = attempts + 1, next_attempt_at = :next,
                     lease_until = NULL, manual = FALSE, last_status = :code, last_error = :error, updated_at = :at
                 WHERE id = :id AND lease_until = :lease",
            )
            .bind("status", status)
            .bind("next", next_at)
            .bind("code", o.response_status)
            .bind("error", o.error.as_deref())
            .bind("at", o.at)
            .bind("id", &d.delivery_id)
            .bind("lease", d.lease_until),
        )? == 1;
        if !current {
            continue;
        }
        match o.next {
            Next::Succeeded => {
                c.execute(
                    &Stmt::new(
                        "UPDATE webhook_endpoints SET first_failure_at = NULL
                         WHERE id = :id AND first_failure_at IS NOT NULL",
                    )
                    .bind("id", &d.endpoint_id),
                )?;
            }
            Next::Gone => {
                if disable(c, &d.endpoint_id, "the endpoint answered 410 Gone", o.at)? {
                    disabled.push((d.workspace_id.clone(), d.endpoint_id.clone()));
                }
            }
            Next::RetryAt(_) | Next::Failed => {
                c.execute(
                    &Stmt::new(
                        "UPDATE webhook_endpoints SET first_failure_at = :at WHERE id = :id AND first_failure_at IS NULL",
                    )
                    .bind("at", o.at)
                    .bind("id", &d.endpoint_id),
                )?;
                let failing_since: Option<i64> = c
                    .query_opt(
                        &Stmt::new("SELECT first_failure_at FROM webhook_endpoints WHERE id = :id")
                            .bind("id", &d.endpoint_id),
                    )?
                    .map(|r| r.get("first_failure_at"))
                    .transpose()?
                    .flatten();
                if failing_since.is_some_and(|since| o.at - since >= disable_after_ms) {
                    let days = disable_after_ms / 86_400_000;
                    let reason = format!("every delivery failed for {days} days");
                    if disable(c, &d.endpoint_id, &reason, o.at)? {
                        disabled.push((d.workspace_id.clone(), d.endpoint_id.clone()));
                    }
                }
            }
        }
    }
    Ok(disabled)
}

fn disable(c: &mut dyn Conn, endpoint_id: &str, reason: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE webhook_endpoints SET status = 'failing', disabled_reason = :reason, updated_at = :now
             WHERE id = :id AND status = 'enabled'",
        )
        .bind("reason", reason)
        .bind("now", now)
        .bind("id", endpoint_id),
    )? == 1)
}

/// Sends a message to an endpoint again now, whatever became of it before. False when the
/// endpoint never had this message.
pub fn resend(c: &mut dyn Conn, ws: &str, endpoint_id: &str, message_id: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = :now, manual = TRUE,
                 lease_until = NULL, updated_at = :now
             WHERE workspace_id = :ws AND endpoint_id = :endpoint AND message_id = :message",
        )
        .bind("now", now)
        .bind("ws", ws)
        .bind("endpoint", endpoint_id)
        .bind("message", message_id),
    )? == 1)
}

/// Replays a time range to an endpoint: messages of its types that it did not receive
/// (failed, still waiting for a retry, or logged while it was disabled or before it
/// subscribed) are sent now. Test messages go only to the endpoint they were made for.
/// Returns how many were queued.
pub fn replay(c: &mut dyn Conn, endpoint: &Endpoint, since: i64, until: i64, limit: i64, now: i64) -> Result<u64> {
    let mut queued = 0;
    let types = endpoint.event_types();
    let rows = c.query(
        &Stmt::new(
            "SELECT m.id, m.seq, m.event_type, d.status FROM webhook_messages m
             LEFT JOIN webhook_deliveries d ON d.message_id = m.id AND d.endpoint_id = :endpoint
             WHERE m.workspace_id = :ws AND m.created_at >= :since AND m.created_at < :until
               AND ((d.status IS NULL AND m.seq IS NOT NULL) OR d.status IN ('failed', 'pending'))
             ORDER BY m.created_at, m.seq LIMIT :limit",
        )
        .bind("endpoint", &endpoint.id)
        .bind("ws", &endpoint.workspace_id)
        .bind("since", since)
        .bind("until", until)
        .bind("limit", limit),
    )?;
    for r in rows {
        let event_type: String = r.get("event_type")?;
        if !types.contains(&event_type) {
            continue;
        }
        let message_id: String = r.get("id")?;
        let seq: Option<i64> = r.get("seq")?;
        let status: Option<String> = r.get("status")?;
        queued += match status {
            None => insert_delivery(c, &endpoint.workspace_id, &message_id, &endpoint.id, seq, true, now)?,
            Some(_) => u64::from(resend(c, &endpoint.workspace_id, &endpoint.id, &message_id, now)?),
        };
    }
    Ok(queued)
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub id: String,
    pub message_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(DeliveryRow in "webhook_deliveries" {
    id, message_id, event_type, status, attempts, next_attempt_at, last_status, last_error, created_at, updated_at
});

/// An endpoint's deliveries, newest first, optionally of one status.
pub fn deliveries(
    c: &mut dyn Conn,
    ws: &str,
    endpoint_id: &str,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    let filter = if status.is_some() {
        " AND d.status = :status"
    } else {
        ""
    };
    let mut stmt = Stmt::new(format!(
        "SELECT d.id, d.message_id, m.event_type, d.status, d.attempts, d.next_attempt_at, d.last_status,
                    d.last_error, d.created_at, d.updated_at
             FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
             WHERE d.workspace_id = :ws AND d.endpoint_id = :endpoint{filter}
             ORDER BY d.created_at DESC, d.seq DESC LIMIT :limit"
    ))
    .bind("ws", ws)
    .bind("endpoint", endpoint_id)
    .bind("limit", limit);
    if let Some(status) = status {
        stmt = stmt.bind("status", status);
    }
    Ok(c.fetch_all(&stmt)?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub message_id: String,
    pub attempt: i64,
    pub url: String,
    pub signed_at: i64,
    pub trigger_kind: String,
    pub response_status: Option<i64>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub at: i64,
}
from_row!(Attempt in "webhook_attempts" {
    id, delivery_id, message_id, attempt, url, signed_at, trigger_kind, response_status, response_excerpt, error,
    latency_ms, at
});

/// An endpoint's attempt log, newest first, optionally for one message.
pub fn attempts(
    c: &mut dyn Conn,
    ws: &str,
    endpoint_id: &str,
    message_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Attempt>> {
    let filter = if message_id.is_some() {
        " AND message_id = :message"
    } else {
        ""
    };
    let mut stmt = Stmt::new(format!(
        "SELECT id, delivery_id, message_id, attempt, url, signed_at, trigger_kind, response_status,
                    response_excerpt, error, latency_ms, at
             FROM webhook_attempts
             WHERE workspace_id = :ws AND endpoint_id = :endpoint{filter}
             ORDER BY at DESC, attempt DESC LIMIT :limit"
    ))
    .bind("ws", ws)
    .bind("endpoint", endpoint_id)
    .bind("limit", limit);
    if let Some(message_id) = message_id {
        stmt = stmt.bind("message", message_id);
    }
    Ok(c.fetch_all(&stmt)?)
}

/// A stored message (what was signed), for the log's request view.
pub fn message_body(c: &mut dyn Conn, ws: &str, message_id: &str) -> Result<Option<String>> {
    c.query_opt(
        &Stmt::new("SELECT body FROM webhook_messages WHERE workspace_id = :ws AND id = :id")
            .bind("ws", ws)
            .bind("id", message_id),
    )?
    .map(|r| r.get("body"))
    .transpose()
    .map_err(Into::into)
}

/// Counts by status of an endpoint's deliveries (the settings page's summary).
pub fn counts(c: &mut dyn Conn, ws: &str, endpoint_id: &str) -> Result<Vec<(String, i64)>> {
    c.query(
        &Stmt::new(
            "SELECT status, COUNT(*) AS n FROM webhook_deliveries WHERE workspace_id = :ws AND endpoint_id = :endpoint
             GROUP BY status",
        )
        .bind("ws", ws)
        .bind("endpoint", endpoint_id),
    )?
    .into_iter()
    .map(|r| Ok((r.get("status")?, r.get("n")?)))
    .collect()
}
