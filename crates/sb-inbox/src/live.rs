//! Live events: appended to the workspace's event log inside the writing transaction, then
//! published on the bus after commit so open streams pick them up at once. The log is the
//! source of truth; the bus message is a shortcut.

use std::sync::Arc;

use sb_bus::Bus;
use sb_core::clock::rfc3339;
use sb_store::conversations::Conversation;
use sb_store::live_events::{self, LiveEvent};
use sb_store::messages::Message;
use sb_store::{Conn, StoreError};

#[derive(Clone)]
pub struct Live {
    bus: Arc<dyn Bus>,
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
        Live { bus }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
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
