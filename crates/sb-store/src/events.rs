//! Customer-data events: the batch queue (a batch is stored before the client gets its 200,
//! then processed and deleted), processing (de-duplication on messageId, identity resolution,
//! traits), and the customer's timeline of events, messages and orders.

use sb_core::cdp::TrackedEvent;
use sb_core::identity::{self, Identifier};
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, profiles};

/// Stores an accepted batch; processing picks it up in arrival order.
pub fn enqueue_batch(
    c: &mut dyn Conn,
    ws: &str,
    source_id: &str,
    events: &[TrackedEvent],
    received_at: i64,
) -> Result<String> {
    let id = sb_core::new_id();
    let body = serde_json::to_vec(events).map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    c.execute(
        &Stmt::new(
            "INSERT INTO event_batches (id, workspace_id, source_id, received_at, events)
             VALUES (:id, :ws, :source, :at, :events)",
        )
        .bind("id", &id)
        .bind("ws", ws)
        .bind("source", source_id)
        .bind("at", received_at)
        .bind("events", body),
    )?;
    Ok(id)
}

#[derive(Debug, Clone)]
pub struct QueuedBatch {
    pub id: String,
    pub workspace_id: String,
    pub source_id: String,
    pub events: Vec<u8>,
    pub attempts: i32,
}
from_row!(QueuedBatch in "event_batches" { id, workspace_id, source_id, events, attempts });

/// The oldest batches not yet processed (failing ones after a few tries are left for an operator).
pub fn queued(c: &mut dyn Conn, limit: i64) -> Result<Vec<QueuedBatch>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT id, workspace_id, source_id, events, attempts FROM event_batches
             WHERE attempts < 5 ORDER BY id LIMIT :limit",
        )
        .bind("limit", limit),
    )?)
}

/// The workspace's batches still to process, and those set aside after failing five times.
pub fn queue_stats(c: &mut dyn Conn, ws: &str) -> Result<(i64, i64)> {
    let row = c.query_one(
        &Stmt::new(
            "SELECT COUNT(*) AS queued, COALESCE(SUM(CASE WHEN attempts >= 5 THEN 1 ELSE 0 END), 0) AS set_aside
             FROM event_batches WHERE workspace_id = :ws",
        )
        .bind("ws", ws),
    )?;
    Ok((row.get("queued")?, row.get("set_aside")?))
}

/// Counts a failed attempt and keeps the error.
pub fn batch_failed(c: &mut dyn Conn, id: &str, error: &str) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE event_batches SET attempts = attempts + 1, last_error = :error WHERE id = :id")
            .bind("error", error)
            .bind("id", id),
    )?;
    Ok(())
}

/// What processing did with a batch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub stored: usize,
    pub duplicates: usize,
    /// Events of erased customers, not stored again.
    pub suppressed: usize,
    pub merges: usize,
    /// Identifier values refused (blocked or invalid), as `kind: reason`.
    pub refused_identifiers: Vec<String>,
}

/// Processes a queued batch inside the caller's transaction and takes it off the queue.
/// Returns `None` when another processor took it first.
pub fn process_batch(c: &mut dyn Conn, batch: &QueuedBatch) -> Result<Option<Outcome>> {
    let claimed = c.execute(&Stmt::new("DELETE FROM event_batches WHERE id = :id").bind("id", &batch.id))?;
    if claimed == 0 {
        return Ok(None);
    }
    let events: Vec<TrackedEvent> =
        serde_json::from_slice(&batch.events).map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    let mut outcome = Outcome::default();
    // Most workspaces never erased anyone: then no event needs the per-identifier check.
    let erasures = c
        .query_opt(
            &Stmt::new("SELECT 1 AS x FROM erased_identifiers WHERE workspace_id = :ws LIMIT 1")
                .bind("ws", &batch.workspace_id),
        )?
        .is_some();
    for event in &events {
        apply_with(
            c,
            &batch.workspace_id,
            Some(&batch.source_id),
            event,
            &mut outcome,
            erasures,
        )?;
    }
    Ok(Some(outcome))
}

/// Normalised identifiers of an event; refused values are reported, not fatal.
pub fn identifiers_of(event: &TrackedEvent, refused: &mut Vec<String>) -> Vec<Identifier> {
    let mut out = Vec::new();
    for (kind, raw) in event.identifiers() {
        match identity::normalise(&kind, &raw) {
            Ok(value) => out.push(Identifier::new(&kind, "", &value)),
            Err(e) => refused.push(e.to_string()),
        }
    }
    out
}

/// Stores one event (unless its messageId was seen), resolving who it belongs to.
pub fn apply(
    c: &mut dyn Conn,
    ws: &str,
    source_id: Option<&str>,
    event: &TrackedEvent,
    outcome: &mut Outcome,
) -> Result<()> {
    apply_with(c, ws, source_id, event, outcome, true)
}

/// `apply` within a batch: `erasures` says whether the workspace has erased anyone (if not,
/// nobody's identifiers need checking).
fn apply_with(
    c: &mut dyn Conn,
    ws: &str,
    source_id: Option<&str>,
    event: &TrackedEvent,
    outcome: &mut Outcome,
    erasures: bool,
) -> Result<()> {
    let seen = c.query_opt(
        &Stmt::new("SELECT id FROM events WHERE workspace_id = :ws AND message_id = :mid")
            .bind("ws", ws)
            .bind("mid", &event.message_id),
    )?;
    if seen.is_some() {
        outcome.duplicates += 1;
        return Ok(());
    }
    let ids = identifiers_of(event, &mut outcome.refused_identifiers);
    if erasures && profiles::any_erased(c, ws, &ids)? {
        outcome.suppressed += 1;
        return Ok(());
    }
    let event_id = sb_core::new_id();
    let customer = if ids.is_empty() {
        None
    } else {
        let r = profiles::resolve(c, ws, &ids, Some(&event_id), event.ts)?;
        outcome.merges += r.merges.len();
        Some(r.customer_id)
    };
    insert(c, ws, &event_id, source_id, event, customer.as_deref())?;
    outcome.stored += 1;
    if let Some(customer) = customer {
        let traits = if event.kind == "identify" {
            event.all_traits()
        } else {
            match event.context.get("traits") {
                Some(serde_json::Value::Object(t)) => t.clone(),
                _ => serde_json::Map::new(),
            }
        };
        if !traits.is_empty() {
            let source = format!("segment:{}", source_id.unwrap_or("api"));
            profiles::set_traits(c, ws, &customer, &traits, &source, Some(&event_id), event.ts)?;
        }
    }
    Ok(())
}

fn insert(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    source_id: Option<&str>,
    event: &TrackedEvent,
    customer: Option<&str>,
) -> Result<()> {
    let json = |m: &serde_json::Map<String, serde_json::Value>| serde_json::Value::Object(m.clone()).to_string();
    c.execute(
        &Stmt::new(
            "INSERT INTO events (id, workspace_id, source_id, message_id, type, name, category, customer_id, user_id,
                                 anonymous_id, ts, original_ts, sent_at, received_at, properties_json, traits_json,
                                 context_json, integrations_json)
             VALUES (:id, :ws, :source, :mid, :type, :name, :category, :customer, :user, :anon, :ts, :original, :sent,
                     :received, :properties, :traits, :context, :integrations)",
        )
        .bind("id", id)
        .bind("ws", ws)
        .bind("source", source_id)
        .bind("mid", &event.message_id)
        .bind("type", &event.kind)
        .bind("name", event.name.as_deref())
        .bind("category", event.category())
        .bind("customer", customer)
        .bind("user", event.user_id.as_deref())
        .bind("anon", event.anonymous_id.as_deref())
        .bind("ts", event.ts)
        .bind("original", event.original_ts)
        .bind("sent", event.sent_at)
        .bind("received", event.received_at)
        .bind("properties", json(&event.properties))
        .bind("traits", json(&event.traits))
        .bind("context", json(&event.context))
        .bind("integrations", json(&event.integrations)),
    )?;
    if let (Some(customer), Some(name), "track") = (customer, event.name.as_deref(), event.kind.as_str()) {
        let properties = serde_json::Value::Object(event.properties.clone());
        let seen = crate::journeys::Event {
            name,
            properties: &properties,
            at: event.ts,
        };
        crate::journeys::on_event(c, ws, customer, seen, event.received_at)?;
    }
    Ok(())
}

/// Records a commerce event our own APIs caused (a cart line changed, a checkout started)
/// under its e-commerce spec name, on the cart's customer (or its anonymous shopper).
pub fn record_commerce(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: Option<&str>,
    anonymous_id: Option<&str>,
    name: &str,
    properties: &serde_json::Value,
    at: i64,
) -> Result<()> {
    let id = sb_core::new_id();
    let event = TrackedEvent {
        kind: "track".into(),
        message_id: format!("switchboard:{id}"),
        user_id: None,
        anonymous_id: anonymous_id.map(str::to_owned),
        previous_id: None,
        group_id: None,
        name: Some(name.to_owned()),
        properties: properties.as_object().cloned().unwrap_or_default(),
        traits: serde_json::Map::new(),
        context: serde_json::Map::from_iter([("source".to_owned(), serde_json::json!("switchboard"))]),
        integrations: serde_json::Map::new(),
        ts: at,
        original_ts: None,
        sent_at: None,
        received_at: at,
    };
    insert(c, ws, &id, None, &event, customer_id)
}

/// Events of an anonymous shopper that belong to nobody yet become `customer_id`'s.
pub fn claim_anonymous(c: &mut dyn Conn, ws: &str, anonymous_id: &str, customer_id: &str) -> Result<u64> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE events SET customer_id = :customer
             WHERE workspace_id = :ws AND anonymous_id = :anon AND customer_id IS NULL",
        )
        .bind("customer", customer_id)
        .bind("ws", ws)
        .bind("anon", anonymous_id),
    )?)
}

/// One entry of a customer's timeline: an event, a message or an order step.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub id: String,
    /// `event`, `message` or `order`.
    pub source: String,
    /// track/identify/page/… (or `commerce`), the message's direction, the order step's name.
    pub kind: String,
    pub name: Option<String>,
    pub channel: Option<String>,
    pub at: i64,
    /// The event's or order step's properties (JSON), or the message's text.
    pub detail: String,
}
from_row!(TimelineEntry in "timeline" { id, source, kind, name, channel, at, detail });

/// Newest first, `limit` entries before the cursor `(at, id)`.
pub fn timeline(
    c: &mut dyn Conn,
    ws: &str,
    customer: &str,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<TimelineEntry>> {
    let (at, id) = before.unwrap_or((i64::MAX, ""));
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT id, source, kind, name, channel, at, detail FROM (
                 SELECT id, 'event' AS source, category AS kind, name, CAST(NULL AS TEXT) AS channel, ts AS at,
                        properties_json AS detail
                   FROM events WHERE workspace_id = :ws AND customer_id = :customer
                 UNION ALL
                 SELECT id, 'message' AS source, direction AS kind, CAST(NULL AS TEXT) AS name, channel, sent_at AS at,
                        body AS detail
                   FROM messages WHERE workspace_id = :ws AND customer_id = :customer
                 UNION ALL
                 SELECT id, 'order' AS source, 'commerce' AS kind, name, CAST(NULL AS TEXT) AS channel, at,
                        properties_json AS detail
                   FROM order_events WHERE workspace_id = :ws AND customer_id = :customer
             ) timeline
             WHERE at < :at OR (at = :at AND id < :id) OR (:first = 1)
             ORDER BY at DESC, id DESC LIMIT :limit",
        )
        .bind("ws", ws)
        .bind("customer", customer)
        .bind("at", at)
        .bind("id", id)
        .bind("first", i64::from(before.is_none()))
        .bind("limit", limit),
    )?)
}
