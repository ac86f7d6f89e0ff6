//! Processing a stored inbound request: resolve the customer, append to their one
//! conversation, update unread counts and the last inbound channel, apply status reports.
//! One transaction per request, marked processed in it, so a rerun changes nothing.

use async_trait::async_trait;
use sb_channels::{Inbound, InboundMessage};
use sb_engine::{JobContext, JobError, JobHandler};
use sb_store::channel_accounts::ChannelAccount;
use sb_store::customers::{self, Hint};
use sb_store::live_events::LiveEvent;
use sb_store::messages::{self, Message, NewMessage};
use sb_store::{Conn, StoreError, channel_accounts, conversations, inbound};
use serde::Deserialize;

use crate::Channels;
use crate::live::{self, Live};

pub struct ProcessInbound {
    pub channels: Channels,
    pub live: Live,
}

#[derive(Deserialize)]
struct Payload {
    request_id: String,
}

#[async_trait]
impl JobHandler for ProcessInbound {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let payload: Payload = ctx.payload()?;
        let ws = ctx.workspace_id()?;
        let channels = self.channels.clone();
        let now = ctx.store.now();
        let events = ctx
            .store
            .db
            .write(move |c| {
                let mut events = Vec::new();
                let Some(request) = inbound::get(c, &ws, &payload.request_id)? else {
                    return Ok(events);
                };
                if request.processed_at.is_some() {
                    return Ok(events);
                }
                let account = channel_accounts::get(c, &ws, &request.channel_account_id)?
                    .ok_or(StoreError::NotFound("channel account"))?;
                let channel = channels
                    .get(&account.channel)
                    .ok_or_else(|| StoreError::Invalid(format!("no channel `{}` in this build", account.channel)))?;
                let parsed = channel
                    .parse(&request.body, request.received_at)
                    .map_err(|e| StoreError::Invalid(format!("stored request no longer parses: {e}")))?;
                for event in parsed {
                    match event {
                        Inbound::Message(m) => {
                            apply_message(c, &ws, &account, &m, "[]", now, &mut events)?;
                        }
                        Inbound::Status(s) => {
                            let error = s
                                .error_code
                                .as_deref()
                                .map(|code| (code, s.error_message.as_deref().unwrap_or("")));
                            if let Some(updated) =
                                messages::apply_report(c, &account.id, &s.provider_message_id, s.status, error, now)?
                            {
                                events.push(live::message_event(c, "message.updated", &updated, now)?);
                            }
                        }
                    }
                }
                inbound::mark_processed(c, &request.id, now)?;
                Ok::<_, StoreError>(events)
            })
            .await
            .map_err(|e| match e {
                StoreError::Invalid(m) => JobError::Permanent(m),
                other => JobError::Retry(other.to_string()),
            })?;
        self.live.publish(&events).await;
        metrics::counter!("switchboard_inbound_processed_total").increment(1);
        Ok(())
    }
}

/// Appends one inbound message to its customer's one conversation: resolve the customer,
/// open (and round-robin assign) the conversation if new, store the message unless the account
/// already has its provider id (then `None`), and update unread count and last inbound channel.
pub(crate) fn apply_message(
    c: &mut dyn Conn,
    ws: &str,
    account: &ChannelAccount,
    m: &InboundMessage,
    attachments_json: &str,
    now: i64,
    events: &mut Vec<LiveEvent>,
) -> Result<Option<Message>, StoreError> {
    let hints: Vec<Hint<'_>> = m
        .identities
        .iter()
        .map(|i| Hint {
            kind: &i.kind,
            value: &i.value,
            verified: i.verified,
        })
        .collect();
    let customer = customers::resolve(c, ws, &account.id, &hints, m.sender_name.as_deref(), now)?;
    let conversation = conversations::for_customer(c, ws, &customer, now)?;
    if conversation.created_at == now
        && conversation.assignee_id.is_none()
        && let Some(agent) = sb_store::presence::pick_agent(c, ws, now)?
    {
        conversations::assign(c, ws, &conversation.id, Some(&agent), None, now)?;
    }
    let new = NewMessage {
        workspace_id: ws,
        conversation_id: &conversation.id,
        customer_id: &customer,
        channel_account_id: Some(&account.id),
        channel: Some(&account.channel),
        direction: "inbound",
        author_kind: "customer",
        author_id: Some(&customer),
        body: &m.text,
        provider_message_id: Some(&m.provider_message_id),
        status: "received",
        sent_at: m.sent_at_ms,
        attachments_json,
    };
    let Some(message) = messages::insert(c, &new, now)? else {
        return Ok(None);
    };
    let updated = conversations::record_inbound(c, ws, &conversation.id, &account.id, m.sent_at_ms, now)?;
    events.push(live::message_event(c, "message.created", &message, now)?);
    events.push(live::conversation_event(c, &updated, now)?);
    Ok(Some(message))
}

/// A snooze ends: the conversation opens again, unless an agent already changed it.
pub struct WakeSnoozed {
    pub live: Live,
}

#[derive(Deserialize)]
struct WakePayload {
    conversation_id: String,
}

#[async_trait]
impl JobHandler for WakeSnoozed {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let payload: WakePayload = ctx.payload()?;
        let ws = ctx.workspace_id()?;
        let now = ctx.store.now();
        let events = ctx
            .store
            .db
            .write(move |c| {
                if !conversations::wake_if_snoozed(c, &ws, &payload.conversation_id, now)? {
                    return Ok(Vec::new());
                }
                let Some(conversation) = conversations::get(c, &ws, &payload.conversation_id)? else {
                    return Ok(Vec::new());
                };
                Ok::<_, StoreError>(vec![live::conversation_event(c, &conversation, now)?])
            })
            .await?;
        self.live.publish(&events).await;
        Ok(())
    }
}
