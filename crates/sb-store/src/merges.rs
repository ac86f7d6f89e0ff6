//! Merging two customers by hand, and undoing it. The merge moves the source's identities
//! and messages to the target (its conversation folds into the target's) and records exactly
//! which rows moved; undo moves those rows back and restores both conversations.

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
}
from_row!(Merge in "customer_merges" {
    id, workspace_id, target_customer_id, source_customer_id, target_conversation_id, source_conversation_id,
    identity_ids_json, message_ids_json, source_unread, actor_id, merged_at, undone_at
});

const COLUMNS: &str = "id, workspace_id, target_customer_id, source_customer_id, target_conversation_id, \
                       source_conversation_id, identity_ids_json, message_ids_json, source_unread, actor_id, merged_at, undone_at";

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

/// Merges `source` into `target`.
pub fn merge(
    c: &mut dyn Conn,
    ws: &str,
    target: &str,
    source: &str,
    actor_id: Option<&str>,
    now: i64,
) -> Result<Merge, MergeError> {
    if target == source {
        return Err(MergeError::SameCustomer);
    }
    match (merged_into(c, ws, target)?, merged_into(c, ws, source)?) {
        (Some(None), Some(None)) => {}
        (None, _) | (_, None) => return Err(MergeError::NotFound),
        _ => return Err(MergeError::AlreadyMerged),
    }
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
    };
    c.execute(
        &Stmt::new(format!(
            "INSERT INTO customer_merges ({COLUMNS}) VALUES (:id, :ws, :target, :source, :target_conversation, :source_conversation,
             :identities, :messages, :unread, :actor, :now, NULL)"
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
        .bind("now", now),
    )?;
    Ok(merge)
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
    Ok(Merge {
        undone_at: Some(now),
        ..merge
    })
}
