//! Merging two customers, by hand or by an identity rule, and undoing it. The merge moves the
//! source's identities, messages, events, orders and consent history to the target (its
//! conversation folds into the target's), merges traits and consents newest-first, and records
//! exactly which rows moved and both sides' traits and consents before; undo moves those rows
//! back and restores both sides.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::conversations;
use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Merge {
    pub id: String,
    pub workspace_id: String,
    pub target_customer_id: String,
    pub source_customer_id: String,
    pub target_conversation_id: Option<String>,
    pub source_conversation_id: Option<String>,
    pub identity_ids_json: String,
    pub message_ids_json: String,
    pub source_unread: i64,
    pub actor_id: Option<String>,
    pub merged_at: i64,
    pub undone_at: Option<i64>,
    /// `manual`, or the identity rule that merged automatically (`shared_identifier`).
    pub rule: String,
    /// What caused it: the shared identifier and the event that carried it.
    pub evidence_json: String,
    /// Rows of other tables that moved, by table.
    pub moved_json: String,
    /// Both sides' traits and consents before the merge.
    pub snapshot_json: String,
}
from_row!(Merge in "customer_merges" {
    id, workspace_id, target_customer_id, source_customer_id, target_conversation_id, source_conversation_id,
    identity_ids_json, message_ids_json, source_unread, actor_id, merged_at, undone_at, rule, evidence_json,
    moved_json, snapshot_json
});

const COLUMNS: &str = "id, workspace_id, target_customer_id, source_customer_id, target_conversation_id, \
                       source_conversation_id, identity_ids_json, message_ids_json, source_unread, actor_id, merged_at, undone_at, \
                       rule, evidence_json, moved_json, snapshot_json";

/// Tables whose rows follow their customer into a merge (and back on undo).
const MOVED_TABLES: &[&str] = &[
    "journey_instances",
    "deliveries",
    "events",
    "orders",
    "order_events",
    "returns",
    "consent_events",
    "loyalty_members",
];

/// Who or what merged, and why.
pub struct Cause<'a> {
    pub actor_id: Option<&'a str>,
    pub rule: &'a str,
    pub evidence: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("customer not found")]
    NotFound,
    #[error("a customer cannot be merged into itself")]
    SameCustomer,
    #[error("one of the customers was already merged into another")]
    AlreadyMerged,
    #[error("this merge was already undone")]
    AlreadyUndone,
    #[error("the target was merged into another customer since; undo that merge first")]
    TargetMergedSince,
    #[error("both customers hold a different {0}; two of those never merge")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sb_sql::SqlError> for MergeError {
    fn from(e: sb_sql::SqlError) -> Self {
        MergeError::Store(e.into())
    }
}

fn ids(c: &mut dyn Conn, sql: &'static str, ws: &str, owner: &str) -> Result<Vec<String>> {
    c.query(&Stmt::new(sql).bind("ws", ws).bind("owner", owner))?
        .iter()
        .map(|r| Ok(r.get::<String>("id")?))
        .collect()
}

fn merged_into(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Option<Option<String>>> {
    Ok(
        match c.query_opt(
            &Stmt::new("SELECT merged_into FROM customers WHERE workspace_id = :ws AND id = :id")
                .bind("ws", ws)
                .bind("id", customer),
        )? {
            Some(r) => Some(r.get::<Option<String>>("merged_into")?),
            None => None,
        },
    )
}

/// Merges `source` into `target` by an agent's hand.
pub fn merge(
    c: &mut dyn Conn,
    ws: &str,
    target: &str,
    source: &str,
    actor_id: Option<&str>,
    now: i64,
) -> Result<Merge, MergeError> {
    let cause = Cause {
        actor_id,
        rule: "manual",
        evidence: serde_json::json!({}),
    };
    merge_with(c, ws, target, source, cause, now)
}

fn identifiers_of(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Vec<sb_core::identity::Identifier>> {
    Ok(crate::customers::identities(c, ws, customer)?
        .into_iter()
        .map(|i| sb_core::identity::Identifier::new(&i.kind, &i.scope, &i.value))
        .collect())
}

/// Merges `source` into `target`; refused when the two hold different values of a kind
/// limited to one per profile (two user ids).
pub fn merge_with(
    c: &mut dyn Conn,
    ws: &str,
    target: &str,
    source: &str,
    cause: Cause<'_>,
    now: i64,
) -> Result<Merge, MergeError> {
    let actor_id = cause.actor_id;
    if target == source {
        return Err(MergeError::SameCustomer);
    }
    match (merged_into(c, ws, target)?, merged_into(c, ws, source)?) {
        (Some(None), Some(None)) => {}
        (None, _) | (_, None) => return Err(MergeError::NotFound),
        _ => return Err(MergeError::AlreadyMerged),
    }
    let (mine, theirs) = (identifiers_of(c, ws, target)?, identifiers_of(c, ws, source)?);
    if let Some(kind) = sb_core::identity::conflicting_kind(&mine, &theirs) {
        return Err(MergeError::Conflict(kind));
    }
    let snapshot = serde_json::json!({
        "target": crate::profiles::snapshot(c, ws, target)?,
        "source": crate::profiles::snapshot(c, ws, source)?,
    });
    let mut moved = serde_json::Map::new();
    // One live instance per journey and key: of two, the older stays and the other ends.
    crate::journeys::before_merge(c, ws, target, source, now)?;
    for table in MOVED_TABLES {
        let rows = ids_in(c, table, ws, source)?;
        c.execute(
            &Stmt::new(format!(
                "UPDATE {table} SET customer_id = :target WHERE workspace_id = :ws AND customer_id = :source"
            ))
            .bind("target", target)
            .bind("ws", ws)
            .bind("source", source),
        )?;
        moved.insert((*table).to_owned(), serde_json::json!(rows));
    }
    crate::profiles::absorb(c, ws, target, source)?;
    let identity_ids = ids(
        c,
        "SELECT id FROM identities WHERE workspace_id = :ws AND customer_id = :owner",
        ws,
        source,
    )?;
    let message_ids = ids(
        c,
        "SELECT id FROM messages WHERE workspace_id = :ws AND customer_id = :owner",
        ws,
        source,
    )?;
    let source_conversation = conversations::id_for_customer(c, ws, source)?;
    let source_unread = match &source_conversation {
        Some(id) => conversations::get(c, ws, id)?.map_or(0, |cv| cv.unread_count),
        None => 0,
    };
    let target_conversation = match (&source_conversation, conversations::id_for_customer(c, ws, target)?) {
        (_, Some(id)) => Some(id),
        (Some(_), None) => Some(conversations::for_customer(c, ws, target, now)?.id),
        (None, None) => None,
    };
    c.execute(
        &Stmt::new("UPDATE identities SET customer_id = :target WHERE workspace_id = :ws AND customer_id = :source")
            .bind("target", target)
            .bind("ws", ws)
            .bind("source", source),
    )?;
    if let (Some(from), Some(to)) = (&source_conversation, &target_conversation) {
        c.execute(
            &Stmt::new("UPDATE messages SET customer_id = :target, conversation_id = :to WHERE workspace_id = :ws AND customer_id = :source")
                .bind("target", target)
                .bind("to", to)
                .bind("ws", ws)
                .bind("source", source),
        )?;
        c.execute(
            &Stmt::new("UPDATE conversations SET unread_count = unread_count + :unread, status = 'open', snoozed_until = NULL WHERE workspace_id = :ws AND id = :to")
                .bind("unread", source_unread)
                .bind("ws", ws)
                .bind("to", to),
        )?;
        c.execute(
            &Stmt::new(
                "UPDATE conversations SET merged_into = :to, unread_count = 0 WHERE workspace_id = :ws AND id = :from",
            )
            .bind("to", to)
            .bind("ws", ws)
            .bind("from", from),
        )?;
        conversations::recompute_activity(c, ws, to, now)?;
    }
    c.execute(
        &Stmt::new(
            "UPDATE customers SET merged_into = :target, updated_at = :now WHERE workspace_id = :ws AND id = :source",
        )
        .bind("target", target)
        .bind("now", now)
        .bind("ws", ws)
        .bind("source", source),
    )?;
    let merge = Merge {
        id: sb_core::new_id(),
        workspace_id: ws.to_owned(),
        target_customer_id: target.to_owned(),
        source_customer_id: source.to_owned(),
        target_conversation_id: target_conversation,
        source_conversation_id: source_conversation,
        identity_ids_json: serde_json::to_string(&identity_ids).unwrap_or_else(|_| "[]".into()),
        message_ids_json: serde_json::to_string(&message_ids).unwrap_or_else(|_| "[]".into()),
        source_unread,
        actor_id: actor_id.map(str::to_owned),
        merged_at: now,
        undone_at: None,
        rule: cause.rule.to_owned(),
        evidence_json: cause.evidence.to_string(),
        moved_json: serde_json::Value::Object(moved).to_string(),
        snapshot_json: snapshot.to_string(),
    };
    c.execute(
        &Stmt::new(format!(
            "INSERT INTO customer_merges ({COLUMNS}) VALUES (:id, :ws, :target, :source, :target_conversation, :source_conversation,
             :identities, :messages, :unread, :actor, :now, NULL, :rule, :evidence, :moved, :snapshot)"
        ))
        .bind("id", &merge.id)
        .bind("ws", ws)
        .bind("target", target)
        .bind("source", source)
        .bind("target_conversation", merge.target_conversation_id.as_deref())
        .bind("source_conversation", merge.source_conversation_id.as_deref())
        .bind("identities", &merge.identity_ids_json)
        .bind("messages", &merge.message_ids_json)
        .bind("unread", source_unread)
        .bind("actor", actor_id)
        .bind("now", now)
        .bind("rule", &merge.rule)
        .bind("evidence", &merge.evidence_json)
        .bind("moved", &merge.moved_json)
        .bind("snapshot", &merge.snapshot_json),
    )?;
    crate::domain_events::customer_merged(c, &merge, false, now)?;
    Ok(merge)
}

fn ids_in(c: &mut dyn Conn, table: &str, ws: &str, owner: &str) -> Result<Vec<String>> {
    let key = if table == "loyalty_members" { "loyalty_id" } else { "id" };
    c.query(
        &Stmt::new(format!(
            "SELECT {key} AS id FROM {table} WHERE workspace_id = :ws AND customer_id = :owner"
        ))
        .bind("ws", ws)
        .bind("owner", owner),
    )?
    .iter()
    .map(|r| Ok(r.get::<String>("id")?))
    .collect()
}

/// The merges a customer took part in, newest first.
pub fn list_for(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Vec<Merge>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM customer_merges
             WHERE workspace_id = :ws AND (target_customer_id = :customer OR source_customer_id = :customer)
             ORDER BY merged_at DESC, id DESC"
        ))
        .bind("ws", ws)
        .bind("customer", customer),
    )?)
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Merge>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM customer_merges WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// Undoes a merge: the identities and messages that moved go back, and both conversations
/// are restored. Identities and messages that arrived after the merge stay with the target.
pub fn undo(c: &mut dyn Conn, ws: &str, id: &str, now: i64) -> Result<Merge, MergeError> {
    let merge = get(c, ws, id)?.ok_or(MergeError::NotFound)?;
    if merge.undone_at.is_some() {
        return Err(MergeError::AlreadyUndone);
    }
    if merged_into(c, ws, &merge.target_customer_id)?.flatten().is_some() {
        return Err(MergeError::TargetMergedSince);
    }
    let identity_ids: Vec<String> = serde_json::from_str(&merge.identity_ids_json).unwrap_or_default();
    let message_ids: Vec<String> = serde_json::from_str(&merge.message_ids_json).unwrap_or_default();
    for identity in &identity_ids {
        c.execute(
            &Stmt::new("UPDATE identities SET customer_id = :source WHERE workspace_id = :ws AND id = :id AND customer_id = :target")
                .bind("source", &merge.source_customer_id)
                .bind("ws", ws)
                .bind("id", identity)
                .bind("target", &merge.target_customer_id),
        )?;
    }
    if let Some(source_conversation) = &merge.source_conversation_id {
        for message in &message_ids {
            c.execute(
                &Stmt::new("UPDATE messages SET customer_id = :source, conversation_id = :conversation WHERE workspace_id = :ws AND id = :id")
                    .bind("source", &merge.source_customer_id)
                    .bind("conversation", source_conversation)
                    .bind("ws", ws)
                    .bind("id", message),
            )?;
        }
        c.execute(
            &Stmt::new("UPDATE conversations SET merged_into = NULL, unread_count = :unread WHERE workspace_id = :ws AND id = :id")
                .bind("unread", merge.source_unread)
                .bind("ws", ws)
                .bind("id", source_conversation),
        )?;
        conversations::recompute_activity(c, ws, source_conversation, now)?;
    }
    if let Some(target_conversation) = &merge.target_conversation_id {
        c.execute(
            &Stmt::new("UPDATE conversations SET unread_count = CASE WHEN unread_count > :unread THEN unread_count - :unread ELSE 0 END WHERE workspace_id = :ws AND id = :id")
                .bind("unread", merge.source_unread)
                .bind("ws", ws)
                .bind("id", target_conversation),
        )?;
        conversations::recompute_activity(c, ws, target_conversation, now)?;
    }
    let moved: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&merge.moved_json).unwrap_or_default();
    for table in MOVED_TABLES {
        let key = if *table == "loyalty_members" {
            "loyalty_id"
        } else {
            "id"
        };
        for row in moved.get(*table).and_then(|v| v.as_array()).into_iter().flatten() {
            c.execute(
                &Stmt::new(format!(
                    "UPDATE {table} SET customer_id = :source WHERE workspace_id = :ws AND {key} = :row AND customer_id = :target"
                ))
                .bind("source", &merge.source_customer_id)
                .bind("ws", ws)
                .bind("row", row.as_str().unwrap_or_default())
                .bind("target", &merge.target_customer_id),
            )?;
        }
    }
    let snapshot: serde_json::Value = serde_json::from_str(&merge.snapshot_json).unwrap_or_default();
    if snapshot.get("target").is_some() {
        crate::profiles::restore(c, ws, &merge.target_customer_id, &snapshot["target"])?;
        crate::profiles::restore(c, ws, &merge.source_customer_id, &snapshot["source"])?;
    }
    c.execute(
        &Stmt::new("UPDATE customers SET merged_into = NULL, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", &merge.source_customer_id),
    )?;
    c.execute(
        &Stmt::new("UPDATE customer_merges SET undone_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", id),
    )?;
    crate::domain_events::customer_merged(c, &merge, true, now)?;
    Ok(Merge {
        undone_at: Some(now),
        ..merge
    })
}
