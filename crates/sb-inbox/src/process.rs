//! Processing stored inbound requests: resolve the customer, append to their one
//! conversation, update unread counts and the last inbound channel, apply status reports.
//! A request is marked processed in the transaction that applies it, so a rerun after a
//! crash changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use sb_channels::{Inbound, InboundMessage};
use sb_engine::{JobContext, JobError, JobHandler};
use sb_store::channel_accounts::ChannelAccount;
use sb_store::customers::{self, Hint};
use sb_store::inbound::{self, InboundRequest};
use sb_store::live_events::LiveEvent;
use sb_store::messages::{self, Message, NewMessage};
use sb_store::{Conn, Store, StoreError, channel_accounts, conversations};
use serde::Deserialize;

use crate::live::{self, Live};
use crate::{Channels, Intake};

/// How many stored requests one transaction processes.
const BATCH: i64 = 256;
/// Requests a batch processes before it yields to waiting acknowledgements (it commits what
/// it did; the rest stays queued for the next batch).
const BEFORE_YIELDING: usize = 8;
/// Requests claimed at a time after the first few.
const CLAIM_CHUNK: i64 = 32;
/// A request whose processing fails this often is set aside (with its error kept).
const MAX_ATTEMPTS: i64 = 5;

/// Processes one stored request inside the caller's transaction and marks it processed.
/// A request that no longer parses is set aside with its error; other failures are errors.
fn process_request(
    c: &mut dyn Conn,
    channels: &Channels,
    request: &InboundRequest,
    now: i64,
    events: &mut Vec<LiveEvent>,
) -> Result<(), StoreError> {
    let ws = request.workspace_id.as_str();
    let Some(account) = channel_accounts::get(c, ws, &request.channel_account_id)? else {
        return inbound::record_failure(c, &request.id, "the channel account is gone", true, now);
    };
    let Some(channel) = channels.get(&account.channel) else {
        let error = format!("no channel `{}` in this build", account.channel);
        return inbound::record_failure(c, &request.id, &error, true, now);
    };
    // Settings only: parsing needs no secrets.
    let connection = sb_channels::Account {
        id: account.id.clone(),
        settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
        secrets: serde_json::Value::Null,
    };
    let parsed = match channel.parse(&request.body, request.received_at, &connection) {
        Ok(parsed) => parsed,
        Err(e) => {
            let error = format!("the stored request no longer parses: {e}");
            return inbound::record_failure(c, &request.id, &error, true, now);
        }
    };
    for event in parsed {
        match event {
            Inbound::Message(m) => {
                let applied = apply_message(c, ws, &account, &m, "[]", now, events)?;
                // A machine's message (an out-of-office) is never answered automatically.
                if let (Some(message), Some(reply), false) = (applied, &m.auto_reply, m.automatic) {
                    send_auto_reply(c, channels, &account, &message, reply, now, events)?;
                }
            }
            Inbound::Consent(change) => {
                let hints = hints_of(&change.identities);
                let customer = customers::resolve(c, ws, &account.id, &hints, None, now)?;
                let record = sb_store::consents::Change {
                    workspace_id: ws,
                    customer_id: &customer,
                    channel: &account.channel,
                    purpose: &change.purpose,
                    granted: change.granted,
                    source: &change.source,
                    at: change.at_ms,
                    proof: serde_json::json!({"provider_source": change.source, "channel_account_id": account.id}),
                };
                sb_store::consents::record(c, &record)?;
            }
            Inbound::Suppress(s) => {
                sb_store::suppressions::add(c, ws, &account.channel, &s.address, &s.reason, &s.detail, now)?;
            }
            Inbound::Echo(echo) => {
                apply_echo(c, ws, &account, &echo, now, events)?;
            }
            Inbound::Receipt(receipt) => {
                let Some(first) = receipt.identities.first() else {
                    continue;
                };
                let scope = customers::scope_of(&first.kind, &account.id);
                let Some(customer) = customers::find_identity_owner(c, ws, &first.kind, &scope, &first.value)? else {
                    continue;
                };
                let Some(conversation) = conversations::id_for_customer(c, ws, &customer)? else {
                    continue;
                };
                let changed = messages::mark_through(
                    c,
                    ws,
                    &conversation,
                    &account.id,
                    receipt.status,
                    receipt.watermark_ms,
                    now,
                )?;
                for m in &changed {
                    events.push(live::message_event(c, "message.updated", m, now)?);
                }
            }
            Inbound::Status(s) => {
                let error = s
                    .error_code
                    .as_deref()
                    .map(|code| (code, s.error_message.as_deref().unwrap_or("")));
                if let Some(updated) = messages::apply_report(
                    c,
                    &account.id,
                    &s.provider_message_id,
                    s.our_message_id.as_deref(),
                    s.status,
                    error,
                    now,
                )? {
                    events.push(live::message_event(c, "message.updated", &updated, now)?);
                }
            }
        }
    }
    inbound::mark_processed(c, &request.id, now)
}

/// Drains stored inbound requests in batches: one transaction (one commit) for up to
/// [`BATCH`] requests, woken by ingest and by a timer (for rows another node stored, or
/// left over from before a crash). When a batch fails, its requests are retried one by one,
/// so one bad request cannot hold the others back.
pub struct Processor {
    engine: sb_engine::Engine,
    store: Store,
    channels: Channels,
    live: Live,
    intake: Intake,
}

impl Processor {
    pub fn new(engine: sb_engine::Engine, channels: Channels, live: Live, intake: Intake) -> Self {
        Processor {
            store: engine.store().clone(),
            engine,
            channels,
            live,
            intake,
        }
    }

    /// Runs until `stop` turns true (finishing the batch in hand).
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            loop {
                match self.batch().await {
                    Ok((n, more)) if (more || n as i64 == BATCH) && !*stop.borrow() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "processing inbound requests failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.intake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Processes one batch; returns how many requests it took, and whether it left some
    /// for the next batch to let waiting writes go first.
    pub async fn batch(&self) -> Result<(usize, bool), StoreError> {
        let (channels, now) = (self.channels.clone(), self.store.now());
        // Background: a burst of webhooks is acknowledged first, processed right after.
        let result = self
            .store
            .db
            .write_background(move |c| {
                let mut events = Vec::new();
                let (mut done, mut more) = (0, false);
                // Claimed a few at a time: under a burst the batch yields after
                // BEFORE_YIELDING requests, and reading a full batch of bodies for those would
                // cost the writer more than processing them.
                'batch: while (done as i64) < BATCH {
                    let chunk = if done == 0 { BEFORE_YIELDING as i64 } else { CLAIM_CHUNK };
                    let requests = inbound::claim_batch(c, chunk.min(BATCH - done as i64))?;
                    let claimed = requests.len() as i64;
                    for request in &requests {
                        if done >= BEFORE_YIELDING && c.others_waiting() {
                            more = true;
                            break 'batch;
                        }
                        process_request(c, &channels, request, now, &mut events)?;
                        done += 1;
                    }
                    if claimed < chunk {
                        break;
                    }
                    more = true;
                }
                Ok::<_, StoreError>((done, more, events))
            })
            .await;
        match result {
            Ok((n, more, events)) => {
                // Processing may have queued jobs (media to fetch).
                if n > 0 {
                    self.engine.notify_jobs();
                }
                self.live.publish(&events).await;
                metrics::counter!("switchboard_inbound_processed_total").increment(n as u64);
                Ok((n, more))
            }
            Err(e) => {
                tracing::warn!(error = %e, "an inbound batch failed; processing its requests one by one");
                Ok((self.one_by_one().await?, false))
            }
        }
    }

    async fn one_by_one(&self) -> Result<usize, StoreError> {
        let ids: Vec<String> = self
            .store
            .db
            .write(|c| Ok::<_, StoreError>(inbound::claim_batch(c, BATCH)?.into_iter().map(|r| r.id).collect()))
            .await?;
        for id in &ids {
            let (channels, now, key) = (self.channels.clone(), self.store.now(), id.clone());
            let result = self
                .store
                .db
                .write(move |c| {
                    let mut events = Vec::new();
                    if let Some(request) = inbound::claim_one(c, &key)? {
                        process_request(c, &channels, &request, now, &mut events)?;
                    }
                    Ok::<_, StoreError>(events)
                })
                .await;
            match result {
                Ok(events) => {
                    self.engine.notify_jobs();
                    self.live.publish(&events).await;
                }
                Err(e) => {
                    let (key, error) = (id.clone(), e.to_string());
                    tracing::warn!(request_id = %id, error = %error, "an inbound request failed");
                    self.store
                        .db
                        .write(move |c| {
                            let attempts = inbound::claim_one(c, &key)?.map_or(0, |r| r.attempts);
                            inbound::record_failure(c, &key, &error, attempts + 1 >= MAX_ATTEMPTS, now)
                        })
                        .await?;
                }
            }
        }
        Ok(ids.len())
    }
}

/// Requests queued as jobs by an earlier version are processed like the others.
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
        let (channels, now) = (self.channels.clone(), ctx.store.now());
        let events = ctx
            .store
            .db
            .write(move |c| {
                let mut events = Vec::new();
                if let Some(request) = inbound::claim_one(c, &payload.request_id)? {
                    process_request(c, &channels, &request, now, &mut events)?;
                }
                Ok::<_, StoreError>(events)
            })
            .await?;
        self.live.publish(&events).await;
        Ok(())
    }
}

/// Queues the one reply a new message asked for (an SMS keyword's confirmation), from the
/// product itself; one the channel cannot take now is logged, not retried.
fn send_auto_reply(
    c: &mut dyn Conn,
    channels: &Channels,
    account: &ChannelAccount,
    message: &Message,
    reply: &str,
    now: i64,
    events: &mut Vec<LiveEvent>,
) -> Result<(), StoreError> {
    let Some(conversation) = conversations::get(c, &message.workspace_id, &message.conversation_id)? else {
        return Ok(());
    };
    let author = crate::outbox::Author::System;
    let content = crate::outbox::Content::Text(reply);
    match crate::outbox::queue_reply(
        c,
        channels,
        &conversation,
        account,
        crate::outbox::Draft {
            author,
            content,
            purpose: sb_core::inbox::Purpose::Conversation,
            meta_json: None,
        },
        now,
    )? {
        Ok((_, event)) => events.push(event),
        Err(e) => tracing::warn!(message_id = %message.id, error = %e, "an automatic reply was not sent"),
    }
    Ok(())
}

/// A channel's identity hints as the customer resolver takes them.
fn hints_of(identities: &[sb_channels::IdentityHint]) -> Vec<Hint<'_>> {
    identities
        .iter()
        .map(|i| Hint {
            kind: &i.kind,
            value: &i.value,
            verified: i.verified,
        })
        .collect()
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
    let hints = hints_of(&m.identities);
    let meta_json = m.meta.as_ref().map(|meta| meta.to_string());
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
        template_json: None,
        purpose: "conversation",
        meta_json: meta_json.as_deref(),
    };
    let Some(mut message) = messages::insert(c, &new, now)? else {
        return Ok(None);
    };
    if !m.files.is_empty() {
        message = store_files(c, ws, account, &customer, message, &m.files, now)?;
    }
    if !m.media.is_empty() {
        crate::media::enqueue_fetch(c, &message, &m.media, now)?;
    }
    let updated = conversations::record_inbound(c, ws, &conversation.id, &account.id, m.sent_at_ms, now)?;
    events.extend(live::message_created_events(c, &message, &updated, now)?);
    Ok(Some(message))
}

/// Stores the files a message carried (e-mail attachments) as the customer's, on the message.
fn store_files(
    c: &mut dyn Conn,
    ws: &str,
    account: &ChannelAccount,
    customer: &str,
    message: Message,
    files: &[sb_channels::InboundFile],
    now: i64,
) -> Result<Message, StoreError> {
    let mut ids = Vec::with_capacity(files.len());
    for file in files {
        let new = sb_store::attachments::NewAttachment {
            workspace_id: ws,
            channel_account_id: Some(&account.id),
            customer_id: Some(customer),
            filename: &file.filename,
            content_type: &file.content_type,
            data: &file.data,
        };
        ids.push(sb_store::attachments::insert(c, &new, now)?.id);
    }
    let metas = sb_store::attachments::claim(c, ws, customer, &ids, &message.id)?.unwrap_or_default();
    let json = serde_json::to_string(&metas).unwrap_or_else(|_| "[]".into());
    Ok(messages::set_attachments(c, ws, &message.id, &json, now)?.unwrap_or(message))
}

/// A copy of what the business sent: one of ours (known by our id or the provider's) changes
/// nothing; one sent from the provider's own app joins the thread as an agent's message.
fn apply_echo(
    c: &mut dyn Conn,
    ws: &str,
    account: &ChannelAccount,
    echo: &sb_channels::Echo,
    now: i64,
    events: &mut Vec<LiveEvent>,
) -> Result<(), StoreError> {
    let m = &echo.message;
    if let Some(ours) = echo.our_message_id.as_deref()
        && messages::get(c, ws, ours)?.is_some_and(|found| found.channel_account_id.as_deref() == Some(&account.id))
    {
        return Ok(());
    }
    if messages::by_provider_id(c, ws, &account.id, &m.provider_message_id)?.is_some() {
        return Ok(());
    }
    let hints = hints_of(&m.identities);
    let customer = customers::resolve(c, ws, &account.id, &hints, None, now)?;
    let conversation = conversations::for_customer(c, ws, &customer, now)?;
    let new = NewMessage {
        workspace_id: ws,
        conversation_id: &conversation.id,
        customer_id: &customer,
        channel_account_id: Some(&account.id),
        channel: Some(&account.channel),
        direction: "outbound",
        author_kind: "user",
        author_id: None,
        body: &m.text,
        provider_message_id: Some(&m.provider_message_id),
        status: "sent",
        sent_at: m.sent_at_ms,
        attachments_json: "[]",
        template_json: None,
        purpose: "conversation",
        meta_json: None,
    };
    if let Some(message) = messages::insert(c, &new, now)? {
        conversations::touch(c, ws, &conversation.id, now)?;
        events.push(live::message_event(c, "message.created", &message, now)?);
    }
    Ok(())
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
