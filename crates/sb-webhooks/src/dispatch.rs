//! Fan-out: the event log of each workspace with endpoints is read after the dispatcher's
//! cursor; each event of a subscribed type becomes one message (the signed body) and one
//! delivery per subscribed endpoint, and the cursor moves, all in one transaction. An event is
//! therefore fanned out exactly once, whoever crashes when; two dispatchers (two nodes) race
//! on the cursor and one of them rolls back.

use sb_core::clock::rfc3339;
use sb_store::live_events::{self, LiveEvent};
use sb_store::webhooks::{self, NewMessage};
use sb_store::{Store, StoreError};
use sha2::{Digest, Sha256};

use crate::catalogue;

/// Events read per workspace and transaction.
const BATCH: i64 = 1_000;
/// Workspaces looked at per round.
const WORKSPACES_PER_ROUND: i64 = 200;

/// The message id of a logged event: stable (a retry, a replay, another endpoint and a second
/// dispatcher all use the same one), opaque, without dots (the signature's separator).
pub fn message_id(ws: &str, seq: i64) -> String {
    let digest = Sha256::digest(format!("{ws}:{seq}").as_bytes());
    format!("msg_{}", &hex::encode(digest)[..26])
}

/// The body sent for an event: `{id, type, timestamp, workspace_id, sequence, data}`. `id` is
/// also the `webhook-id` header: the key a receiver de-duplicates on.
pub fn body(id: &str, event_type: &str, ws: &str, seq: Option<i64>, at: i64, data: &str) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let seq = seq.map_or_else(|| "null".to_owned(), |s| s.to_string());
    format!(
        r#"{{"id":{},"type":{},"timestamp":{},"workspace_id":{},"sequence":{seq},"data":{data}}}"#,
        quoted(id),
        quoted(event_type),
        quoted(&rfc3339(at)),
        quoted(ws),
    )
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    /// Messages queued.
    pub queued: usize,
    /// Write transactions made (one per workspace that was behind).
    pub transactions: usize,
}

/// One round over the workspaces that are behind.
pub async fn round(store: &Store) -> Result<Round, StoreError> {
    let behind = store.db.read(|c| webhooks::behind(c, WORKSPACES_PER_ROUND)).await?;
    let mut done = Round::default();
    for (ws, _) in behind {
        done.transactions += 1;
        let now = store.now();
        let result = store
            .db
            .write(move |c| {
                let Some(cursor) = c
                    .query_opt(
                        &sb_store::Stmt::new("SELECT seq FROM webhook_cursors WHERE workspace_id = :ws")
                            .bind("ws", &ws),
                    )?
                    .map(|r| r.get::<i64>("seq"))
                    .transpose()?
                else {
                    return Ok(0);
                };
                let events = live_events::after(c, &ws, cursor, BATCH)?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    return Ok(0);
                };
                let endpoints = webhooks::enabled(c, &ws)?;
                let mut queued = 0;
                for event in &events {
                    queued += usize::from(fan_out(c, &endpoints, event, now)?);
                }
                if !webhooks::advance_cursor(c, &ws, cursor, last)? {
                    return Err(StoreError::Conflict(
                        "another dispatcher moved the webhook cursor".into(),
                    ));
                }
                Ok::<_, StoreError>(queued)
            })
            .await;
        match result {
            Ok(n) => done.queued += n,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn fan_out(
    c: &mut dyn sb_store::Conn,
    endpoints: &[webhooks::Endpoint],
    event: &LiveEvent,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(event_type) = catalogue::type_of_log_kind(&event.kind) else {
        return Ok(false);
    };
    let subscribed: Vec<&str> = endpoints
        .iter()
        .filter(|e| e.subscribes_to(event_type))
        .map(|e| e.id.as_str())
        .collect();
    if subscribed.is_empty() {
        return Ok(false);
    }
    let id = message_id(&event.workspace_id, event.seq);
    let body = body(
        &id,
        event_type,
        &event.workspace_id,
        Some(event.seq),
        event.at,
        &event.payload_json,
    );
    webhooks::enqueue(
        c,
        &NewMessage {
            id: &id,
            workspace_id: &event.workspace_id,
            seq: Some(event.seq),
            event_type,
            body: &body,
        },
        &subscribed,
        now,
    )?;
    Ok(true)
}

/// Queues a `webhook.test` message to one endpoint (not in the event log: only this endpoint
/// gets it). Returns its id.
pub fn test_message(c: &mut dyn sb_store::Conn, endpoint: &webhooks::Endpoint, now: i64) -> Result<String, StoreError> {
    let id = format!("msg_{}", sb_core::new_id().replace('-', ""));
    let data = serde_json::json!({
        "endpoint_id": endpoint.id,
        "message": "A test event from Switchboard. Verify its signature and answer 2xx.",
    })
    .to_string();
    let body = body(&id, "webhook.test", &endpoint.workspace_id, None, now, &data);
    webhooks::enqueue(
        c,
        &NewMessage {
            id: &id,
            workspace_id: &endpoint.workspace_id,
            seq: None,
            event_type: "webhook.test",
            body: &body,
        },
        &[endpoint.id.as_str()],
        now,
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_have_no_dots() {
        let a = message_id("ws-1", 7);
        assert_eq!(a, message_id("ws-1", 7));
        assert_ne!(a, message_id("ws-1", 8));
        assert_ne!(a, message_id("ws-2", 7));
        assert!(a.starts_with("msg_") && !a.contains('.'));
    }

    #[test]
    fn the_body_is_json_with_the_standard_fields() {
        let b = body("msg_x", "message.created", "ws", Some(3), 0, r#"{"id":"m1"}"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["id"], "msg_x");
        assert_eq!(v["type"], "message.created");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["sequence"], 3);
        assert_eq!(v["data"]["id"], "m1");
    }
}
