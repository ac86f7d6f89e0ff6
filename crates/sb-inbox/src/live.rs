//! Live events: appended to the workspace's event log inside the writing transaction, then
//! published on the bus after commit so open streams pick them up at once. The log is the
//! source of truth; the bus message is a shortcut.
//!
//! Fan-out: a process holds one bus subscription per workspace, decodes each message once
//! (and renders the agents' SSE data once) and hands the same `Arc` to every open stream
//! through a broadcast channel. A stream that falls behind sees `Lagged` and reads the log.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sb_bus::{Bus, BusError};
use sb_core::clock::rfc3339;
use sb_store::conversations::Conversation;
use sb_store::live_events::{self, LiveEvent};
use sb_store::messages::Message;
use sb_store::{Conn, StoreError};
use tokio::sync::broadcast;

/// Deliveries buffered per workspace for slow streams before they lag.
const HUB_CAPACITY: usize = 8192;

type Hub = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Delivery>>>>>;

#[derive(Clone)]
pub struct Live {
    bus: Arc<dyn Bus>,
    hub: Hub,
}

/// A bus message decoded once for every stream of the process.
#[derive(Debug)]
pub enum Delivery {
    Logged {
        event: LiveEvent,
        payload: serde_json::Value,
        /// The agents' SSE frame for it, rendered once and shared by every agent's stream.
        agent_frame: Bytes,
    },
    Ephemeral {
        kind: String,
        conversation_id: Option<String>,
        data: serde_json::Value,
        agent_frame: Bytes,
    },
}

/// The agents' SSE `data` of a logged event, built without re-parsing its payload.
pub fn sse_data(e: &LiveEvent) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let conversation = e.conversation_id.as_deref().map_or_else(|| "null".to_owned(), quoted);
    format!(
        r#"{{"seq":{},"kind":{},"conversation_id":{},"occurred_at":{},"occurred_at_ms":{},"data":{}}}"#,
        e.seq,
        quoted(&e.kind),
        conversation,
        quoted(&rfc3339(e.at)),
        e.at,
        e.payload_json
    )
}

/// One server-sent event as it goes on the wire: an optional `id`, the `event` name and its
/// `data`, one `data:` line per line of it.
pub fn sse_frame(id: Option<i64>, kind: &str, data: &str) -> Bytes {
    let mut frame = String::with_capacity(data.len() + kind.len() + 40);
    if let Some(id) = id {
        let _ = writeln!(frame, "id: {id}");
    }
    frame.push_str("event: ");
    frame.push_str(kind);
    frame.push('\n');
    for line in data.lines() {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

/// The agents' SSE frame of a logged event: its sequence number is the id.
pub fn agent_frame(e: &LiveEvent) -> Bytes {
    sse_frame(Some(e.seq), &e.kind, &sse_data(e))
}

fn decode(bytes: &[u8]) -> Option<Delivery> {
    Some(match serde_json::from_slice::<BusMessage>(bytes).ok()? {
        BusMessage::Logged(event) => Delivery::Logged {
            payload: serde_json::from_str(&event.payload_json).unwrap_or_default(),
            agent_frame: agent_frame(&event),
            event,
        },
        BusMessage::Ephemeral {
            kind,
            conversation_id,
            data,
        } => Delivery::Ephemeral {
            agent_frame: sse_frame(
                None,
                &kind,
                &serde_json::json!({ "kind": kind, "conversation_id": conversation_id, "data": data }).to_string(),
            ),
            kind,
            conversation_id,
            data,
        },
    })
}

/// What travels on a workspace's live subject: a logged event (with its sequence number,
/// replayable) or an ephemeral one (typing, presence) that only matters to who is watching now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusMessage {
    Logged(LiveEvent),
    Ephemeral {
        kind: String,
        conversation_id: Option<String>,
        data: serde_json::Value,
    },
}

/// The bus subject of a workspace's live events.
pub fn subject(workspace_id: &str) -> String {
    format!("ws.{workspace_id}.events")
}

impl Live {
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Live {
            bus,
            hub: Arc::default(),
        }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// The workspace's deliveries from now on. Subscribe before reading the log, so nothing
    /// committed in between is missed.
    pub async fn subscribe(&self, workspace_id: &str) -> Result<broadcast::Receiver<Arc<Delivery>>, BusError> {
        if let Some(tx) = self.hub.lock().expect("hub").get(workspace_id) {
            return Ok(tx.subscribe());
        }
        let subscription = self.bus.subscribe(&subject(workspace_id)).await?;
        let mut hub = self.hub.lock().expect("hub");
        if let Some(tx) = hub.get(workspace_id) {
            return Ok(tx.subscribe()); // another stream started the pump meanwhile
        }
        let (tx, rx) = broadcast::channel(HUB_CAPACITY);
        hub.insert(workspace_id.to_owned(), tx.clone());
        tokio::spawn(pump(subscription, tx, self.hub.clone(), workspace_id.to_owned()));
        Ok(rx)
    }

    /// Call after the transaction that appended `events` committed.
    pub async fn publish(&self, events: &[LiveEvent]) {
        for event in events {
            let Ok(bytes) = serde_json::to_vec(&BusMessage::Logged(event.clone())) else {
                continue;
            };
            if let Err(e) = self.bus.publish(&subject(&event.workspace_id), bytes.into()).await {
                // Streams still catch up from the log on their next wake-up.
                tracing::warn!(error = %e, "publishing a live event failed");
            }
        }
    }

    /// Publishes an event that is not logged (typing, presence): gone if nobody listens.
    pub async fn publish_ephemeral(
        &self,
        workspace_id: &str,
        kind: &str,
        conversation_id: Option<&str>,
        data: serde_json::Value,
    ) {
        let message = BusMessage::Ephemeral {
            kind: kind.to_owned(),
            conversation_id: conversation_id.map(str::to_owned),
            data,
        };
        let Ok(bytes) = serde_json::to_vec(&message) else {
            return;
        };
        if let Err(e) = self.bus.publish(&subject(workspace_id), bytes.into()).await {
            tracing::debug!(error = %e, "publishing an ephemeral event failed");
        }
    }
}

/// Decodes a workspace's bus messages once and broadcasts them to its streams; ends (and
/// unsubscribes) when no stream is left.
async fn pump(mut subscription: sb_bus::Subscription, tx: broadcast::Sender<Arc<Delivery>>, hub: Hub, ws: String) {
    let mut idle = tokio::time::interval(Duration::from_secs(30));
    loop {
        let message = tokio::select! {
            message = subscription.next() => message,
            _ = idle.tick() => {
                let mut hub = hub.lock().expect("hub");
                if tx.receiver_count() == 0 {
                    hub.remove(&ws);
                    return;
                }
                continue;
            }
        };
        let Some(message) = message else {
            // The bus is gone: drop the entry so the next stream subscribes anew.
            hub.lock().expect("hub").remove(&ws);
            return;
        };
        if let Some(delivery) = decode(&message.payload) {
            let _ = tx.send(Arc::new(delivery));
        }
    }
}

pub fn message_payload(m: &Message) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "conversation_id": m.conversation_id,
        "customer_id": m.customer_id,
        "direction": m.direction,
        "channel": m.channel,
        "channel_account_id": m.channel_account_id,
        "author_kind": m.author_kind,
        "body": m.body,
        "attachments": serde_json::from_str::<serde_json::Value>(&m.attachments_json).unwrap_or_default(),
        "provider_message_id": m.provider_message_id,
        "status": m.status,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "sent_at": rfc3339(m.sent_at),
        // An automated message's card, for the website widget.
        "card": m.meta_json.as_deref()
            .filter(|_| m.direction == "outbound")
            .and_then(|meta| serde_json::from_str::<serde_json::Value>(meta).ok())
            .map(|meta| meta["rich"]["card"].clone())
            .unwrap_or(serde_json::Value::Null),
    })
}

pub fn conversation_payload(c: &Conversation) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "customer_id": c.customer_id,
        "status": c.status,
        "assignee_id": c.assignee_id,
        "team": c.team,
        "unread_count": c.unread_count,
        "last_message_at": rfc3339(c.last_message_at),
    })
}

pub fn message_event(c: &mut dyn Conn, kind: &str, m: &Message, now: i64) -> Result<LiveEvent, StoreError> {
    live_events::append(
        c,
        &m.workspace_id,
        kind,
        Some(&m.conversation_id),
        &message_payload(m),
        now,
    )
}

/// A new message and the conversation it changed, as two events with one counter bump.
pub fn message_created_events(
    c: &mut dyn Conn,
    m: &Message,
    conversation: &Conversation,
    now: i64,
) -> Result<Vec<LiveEvent>, StoreError> {
    let (message, conversation_json) = (message_payload(m), conversation_payload(conversation));
    live_events::append_all(
        c,
        &m.workspace_id,
        &[
            ("message.created", Some(m.conversation_id.as_str()), &message),
            (
                "conversation.updated",
                Some(conversation.id.as_str()),
                &conversation_json,
            ),
        ],
        now,
    )
}

pub fn conversation_event(c: &mut dyn Conn, conversation: &Conversation, now: i64) -> Result<LiveEvent, StoreError> {
    live_events::append(
        c,
        &conversation.workspace_id,
        "conversation.updated",
        Some(&conversation.id),
        &conversation_payload(conversation),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::sse_frame;

    #[test]
    fn an_sse_frame_has_one_data_line_per_line_and_ends_with_a_blank_line() {
        assert_eq!(
            &sse_frame(Some(7), "message.created", r#"{"a":1}"#)[..],
            b"id: 7\nevent: message.created\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &sse_frame(None, "typing", "one\r\ntwo\nthree")[..],
            b"event: typing\ndata: one\ndata: two\ndata: three\n\n"
        );
    }
}
