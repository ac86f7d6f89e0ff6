//! Replies go through a durable outbox: the message and its send job are written in one
//! transaction, and the sender delivers it with retries, pacing per channel account, and
//! the provider's reason on permanent failure.

use std::num::NonZeroU32;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sb_engine::{Engine, JobContext, JobError, JobHandler};
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::conversations::{self, Conversation};
use sb_store::jobs::{self, NewJob};
use sb_store::messages::{self, Message, NewMessage};
use sb_store::{Conn, StoreError, attachments, customers};
use serde::{Deserialize, Serialize};

use crate::live::{self, Live};
use crate::{Channels, QUEUE, SEND_KIND, account_of};
use sb_channels::TemplateSend;
use sb_core::inbox::Purpose;

#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub workspace_id: String,
    pub conversation_id: String,
    pub author_id: String,
    pub text: String,
    /// `None`: the channel account the customer last wrote on.
    pub channel_account_id: Option<String>,
    /// A private note for agents, never sent.
    pub note: bool,
    /// Send this pre-approved template instead of free text (allowed outside a reply window).
    pub template: Option<TemplateSend>,
    /// Files uploaded by an agent (`POST /api/v1/attachments`) to send with the text.
    pub attachment_ids: Vec<String>,
    /// Marketing needs consent and an address that is not suppressed.
    pub purpose: Purpose,
    /// The client's key for this reply: the same key again answers the message it made,
    /// sending nothing more (a retry after a lost answer).
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("channel account not found")]
    AccountNotFound,
    #[error("the customer has not written on any channel yet: choose a channel account")]
    NoChannel,
    #[error("{0}")]
    NotAllowed(String, &'static str),
    #[error("the message is empty")]
    Empty,
    #[error("this idempotency key was used for a message in another conversation")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a free-form reply may go out on one channel account now, and if not, why.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyOption {
    pub channel_account_id: String,
    pub channel: String,
    pub name: String,
    /// The customer's address there.
    pub address: Option<String>,
    pub allowed: bool,
    /// `no_address`, `reply_window_closed`, `channel_unavailable` when not allowed.
    pub reason: Option<&'static str>,
    pub reason_text: Option<String>,
    /// The account the customer last wrote on: the default choice.
    pub default: bool,
}

fn option_for(
    c: &mut dyn Conn,
    channels: &Channels,
    conversation: &Conversation,
    account: &ChannelAccount,
    now: i64,
) -> Result<ReplyOption, StoreError> {
    let ws = &conversation.workspace_id;
    let mut option = ReplyOption {
        channel_account_id: account.id.clone(),
        channel: account.channel.clone(),
        name: account.name.clone(),
        address: None,
        allowed: false,
        reason: None,
        reason_text: None,
        default: conversation.last_inbound_account_id.as_deref() == Some(&account.id),
    };
    let Some(channel) = channels.get(&account.channel).filter(|_| !account.disabled) else {
        option.reason = Some("channel_unavailable");
        option.reason_text = Some("this channel account is disabled or not supported by this build".into());
        return Ok(option);
    };
    option.address = customers::address(c, ws, &conversation.customer_id, channel.address_kind(), &account.id)?;
    if option.address.is_none() {
        option.reason = Some("no_address");
        option.reason_text = Some(format!(
            "the customer has no {} address on this account",
            channel.address_kind()
        ));
        return Ok(option);
    }
    if let Some(window) = channel.policy().reply_window_ms {
        let last = messages::last_inbound_at(c, ws, &conversation.id, &account.id)?;
        if last.is_none_or(|at| now - at > window) {
            option.reason = Some("reply_window_closed");
            option.reason_text = Some(format!(
                "free-form replies are allowed within {} hours of the customer's last message on this channel",
                window / 3_600_000
            ));
            return Ok(option);
        }
    }
    option.allowed = true;
    Ok(option)
}

/// The reply choice per channel account for a conversation.
pub async fn reply_options(
    engine: &Engine,
    channels: &Channels,
    ws: &str,
    conversation_id: &str,
) -> Result<Option<Vec<ReplyOption>>, StoreError> {
    let (ws, id, channels, now) = (
        ws.to_owned(),
        conversation_id.to_owned(),
        channels.clone(),
        engine.store().now(),
    );
    engine
        .store()
        .db
        .read(move |c| {
            let Some(conversation) = conversations::get(c, &ws, &id)? else {
                return Ok(None);
            };
            let accounts = channel_accounts::list(c, &ws)?;
            let mut options = Vec::with_capacity(accounts.len());
            for account in &accounts {
                options.push(option_for(c, &channels, &conversation, account, now)?);
            }
            Ok(Some(options))
        })
        .await
}

/// Writes the reply (or note) and, for a reply, its send job, in one transaction.
pub async fn reply(
    engine: &Engine,
    channels: &Channels,
    live: &Live,
    request: ReplyRequest,
) -> Result<Message, ReplyError> {
    if request.text.trim().is_empty() && request.template.is_none() && request.attachment_ids.is_empty() {
        return Err(ReplyError::Empty);
    }
    let (channels, now) = (channels.clone(), engine.store().now());
    let message = engine
        .store()
        .db
        .write(move |c| {
            let ws = request.workspace_id.as_str();
            let Some(conversation) = conversations::get(c, ws, &request.conversation_id)? else {
                return Ok(Err(ReplyError::ConversationNotFound));
            };
            if let Some(key) = &request.idempotency_key
                && let Some(made) = messages::by_idempotency_key(c, ws, key)?
            {
                return Ok(if made.conversation_id == conversation.id {
                    Ok((made, Vec::new()))
                } else {
                    Err(ReplyError::KeyReused)
                });
            }
            let keyed = |c: &mut dyn Conn, message: &Message| match &request.idempotency_key {
                Some(key) => messages::set_idempotency_key(c, ws, &message.id, key),
                None => Ok(()),
            };
            if request.note {
                let note = NewMessage {
                    workspace_id: ws,
                    conversation_id: &conversation.id,
                    customer_id: &conversation.customer_id,
                    channel_account_id: None,
                    channel: None,
                    direction: "note",
                    author_kind: "user",
                    author_id: Some(&request.author_id),
                    body: &request.text,
                    provider_message_id: None,
                    status: "note",
                    sent_at: now,
                    attachments_json: "[]",
                    template_json: None,
                    purpose: "conversation",
                    meta_json: None,
                };
                let message = messages::insert(c, &note, now)?.ok_or(StoreError::Conflict("note".into()))?;
                keyed(c, &message)?;
                let event = live::message_event(c, "message.created", &message, now)?;
                return Ok(Ok((message, vec![event])));
            }
            let Some(account_id) = request
                .channel_account_id
                .clone()
                .or(conversation.last_inbound_account_id.clone())
            else {
                return Ok(Err(ReplyError::NoChannel));
            };
            let Some(account) = channel_accounts::get(c, ws, &account_id)? else {
                return Ok(Err(ReplyError::AccountNotFound));
            };
            let author = Author::Agent(&request.author_id);
            let content = match &request.template {
                Some(t) => Content::Template(t),
                None if request.attachment_ids.is_empty() => Content::Text(&request.text),
                None => Content::Files(&request.text, &request.attachment_ids),
            };
            let queued = queue_reply(
                c,
                &channels,
                &conversation,
                &account,
                Draft {
                    author,
                    content,
                    purpose: request.purpose,
                    meta_json: None,
                },
                now,
            )?;
            if let Ok((message, _)) = &queued {
                keyed(c, message)?;
            }
            Ok::<_, StoreError>(queued.map(|(message, event)| (message, vec![event])))
        })
        .await??;
    engine.notify_jobs();
    let (message, events) = message;
    live.publish(&events).await;
    Ok(message)
}

/// A notice from the business to a customer (an order ready for pickup), written in their
/// one conversation and sent on the channel they last wrote on, inside the caller's
/// transaction. `None` when there is no conversation or the channel will not take it now
/// (a closed reply window): the caller decides what else to do.
pub fn notify_customer(
    c: &mut dyn Conn,
    channels: &Channels,
    ws: &str,
    customer_id: &str,
    text: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<(Message, sb_store::live_events::LiveEvent)>, StoreError> {
    let Some(conversation_id) = conversations::id_for_customer(c, ws, customer_id)? else {
        return Ok(None);
    };
    let Some(conversation) = conversations::get(c, ws, &conversation_id)? else {
        return Ok(None);
    };
    let Some(account_id) = conversation.last_inbound_account_id.clone() else {
        return Ok(None);
    };
    let Some(account) = channel_accounts::get(c, ws, &account_id)? else {
        return Ok(None);
    };
    let draft = Draft {
        author: Author::System,
        content: Content::Text(text),
        purpose,
        meta_json: None,
    };
    match queue_reply(c, channels, &conversation, &account, draft, now)? {
        Ok(queued) => Ok(Some(queued)),
        Err(e) => {
            tracing::info!(customer_id, error = %e, "a notice could not go on the customer's last channel");
            Ok(None)
        }
    }
}

/// An automated message (a journey's send) to a customer on one channel account: written in
/// their one conversation (opened if they have none yet, so agents see what was sent) with
/// its send job, inside the caller's transaction, after the same checks as an agent's reply.
pub fn queue_automated(
    c: &mut dyn Conn,
    channels: &Channels,
    ws: &str,
    customer_id: &str,
    account: &ChannelAccount,
    draft: Draft<'_>,
    now: i64,
) -> Result<Result<(Message, sb_store::live_events::LiveEvent), ReplyError>, StoreError> {
    let conversation = conversations::for_customer(c, ws, customer_id, now)?;
    queue_reply(c, channels, &conversation, account, draft, now)
}

/// Whether a free-form message may go to this customer on `account` now, and if not, why
/// (`no_address`, `reply_window_closed`, `channel_unavailable`).
pub fn reach(
    c: &mut dyn Conn,
    channels: &Channels,
    ws: &str,
    customer_id: &str,
    account: &ChannelAccount,
    now: i64,
) -> Result<ReplyOption, StoreError> {
    let conversation = match conversations::id_for_customer(c, ws, customer_id)? {
        Some(id) => conversations::get(c, ws, &id)?,
        None => None,
    };
    let conversation = conversation.unwrap_or_else(|| Conversation {
        id: String::new(),
        workspace_id: ws.to_owned(),
        customer_id: customer_id.to_owned(),
        status: "open".into(),
        snoozed_until: None,
        assignee_id: None,
        team: None,
        unread_count: 0,
        last_message_at: now,
        last_inbound_at: None,
        last_inbound_account_id: None,
        created_at: now,
        updated_at: now,
    });
    option_for(c, channels, &conversation, account, now)
}

/// Who writes an outbound message.
#[derive(Debug, Clone, Copy)]
pub enum Author<'a> {
    Agent(&'a str),
    /// The product itself (a handoff's first message).
    System,
}

/// An outbound message to queue: who writes it, what it says, and why it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub author: Author<'a>,
    pub content: Content<'a>,
    pub purpose: Purpose,
    /// Channel details stored with the message (an automated message's richer parts).
    pub meta_json: Option<&'a str>,
}

/// What an outbound message says.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Text(&'a str),
    /// Text (may be empty) with files an agent uploaded.
    Files(&'a str, &'a [String]),
    /// A pre-approved template of the account (validated here, before anything is sent).
    Template(&'a TemplateSend),
}

/// Writes an outbound message on `account` with its send job, after checking that it may go
/// there now: free text inside the channel's reply window, a template (known, approved,
/// with its parameters) at any time. Runs inside the caller's transaction.
pub(crate) fn queue_reply(
    c: &mut dyn Conn,
    channels: &Channels,
    conversation: &Conversation,
    account: &ChannelAccount,
    draft: Draft<'_>,
    now: i64,
) -> Result<Result<(Message, sb_store::live_events::LiveEvent), ReplyError>, StoreError> {
    let Draft {
        author,
        content,
        purpose,
        meta_json,
    } = draft;
    let option = option_for(c, channels, conversation, account, now)?;
    if let Err(refusal) = sb_store::consents::may_send(
        c,
        &conversation.workspace_id,
        &conversation.customer_id,
        &account.channel,
        option.address.as_deref(),
        purpose,
    )? {
        return Ok(Err(ReplyError::NotAllowed(refusal.reason, refusal.code)));
    }
    let window_only = option.reason == Some("reply_window_closed");
    let files: &[String] = match content {
        Content::Files(_, ids) => ids,
        _ => &[],
    };
    let (body, template_json) = match content {
        Content::Text(text) | Content::Files(text, _) => {
            if !option.allowed {
                let reason = option.reason.unwrap_or("not_allowed");
                return Ok(Err(ReplyError::NotAllowed(
                    option.reason_text.unwrap_or_default(),
                    reason,
                )));
            }
            let max = channels
                .get(&account.channel)
                .map_or(usize::MAX, |ch| ch.policy().max_text_chars);
            if text.chars().count() > max {
                return Ok(Err(ReplyError::NotAllowed(
                    format!("this channel takes at most {max} characters"),
                    "text_too_long",
                )));
            }
            let policy = channels.get(&account.channel).map(|ch| ch.policy());
            if files.len() > policy.map_or(0, |p| p.max_files) {
                return Ok(Err(ReplyError::NotAllowed(
                    format!(
                        "this channel takes at most {} file(s) per message",
                        policy.map_or(0, |p| p.max_files)
                    ),
                    "too_many_attachments",
                )));
            }
            (text.to_owned(), None)
        }
        Content::Template(t) => {
            // A template may go out when only the reply window is closed.
            if !option.allowed && !window_only {
                let reason = option.reason.unwrap_or("not_allowed");
                return Ok(Err(ReplyError::NotAllowed(
                    option.reason_text.unwrap_or_default(),
                    reason,
                )));
            }
            let ws = &conversation.workspace_id;
            let Some(found) = sb_store::templates::find(c, ws, &account.id, &t.name, &t.language)? else {
                return Ok(Err(ReplyError::NotAllowed(
                    format!(
                        "no template `{}` ({}) on this account: sync the templates from the provider",
                        t.name, t.language
                    ),
                    "template_not_found",
                )));
            };
            if !found.status.eq_ignore_ascii_case("APPROVED") {
                return Ok(Err(ReplyError::NotAllowed(
                    format!("template `{}` is {}, not approved", t.name, found.status),
                    "template_not_approved",
                )));
            }
            if t.parameters.len() as i64 != found.parameter_count {
                return Ok(Err(ReplyError::NotAllowed(
                    format!(
                        "template `{}` takes {} parameters, {} given",
                        t.name,
                        found.parameter_count,
                        t.parameters.len()
                    ),
                    "template_parameters_mismatch",
                )));
            }
            let rendered = sb_channels::whatsapp::render_template(&found.body, &t.parameters);
            (rendered, serde_json::to_string(t).ok())
        }
    };
    let metas = match attachments::unowned(c, &conversation.workspace_id, files)? {
        Some(metas) => metas,
        None => {
            return Ok(Err(ReplyError::NotAllowed(
                "one of attachment_ids is unknown or attached already".into(),
                "attachment_not_found",
            )));
        }
    };
    let attachments_json = serde_json::to_string(&metas).unwrap_or_else(|_| "[]".into());
    let (author_kind, author_id) = match author {
        Author::Agent(id) => ("user", Some(id)),
        Author::System => ("system", None),
    };
    let new = NewMessage {
        workspace_id: &conversation.workspace_id,
        conversation_id: &conversation.id,
        customer_id: &conversation.customer_id,
        channel_account_id: Some(&account.id),
        channel: Some(&account.channel),
        direction: "outbound",
        author_kind,
        author_id,
        body: &body,
        provider_message_id: None,
        status: "queued",
        sent_at: now,
        attachments_json: &attachments_json,
        template_json: template_json.as_deref(),
        purpose: purpose.as_str(),
        meta_json,
    };
    let message = messages::insert(c, &new, now)?.ok_or(StoreError::Conflict("reply".into()))?;
    attachments::claim_unowned(c, &conversation.workspace_id, files, &message.id)?;
    enqueue_send(c, &message, now)?;
    conversations::touch(c, &conversation.workspace_id, &conversation.id, now)?;
    let event = live::message_event(c, "message.created", &message, now)?;
    Ok(Ok((message, event)))
}

/// Why marketing may not go to this address on this account now: the customer revoked
/// marketing consent on the channel (STOP, an unsubscribe), or the address is suppressed (a
/// hard bounce). Checked when queued and again just before sending.
/// The send job of an outbound message: one at a time per conversation, so replies keep
/// their order.
pub fn enqueue_send(c: &mut dyn Conn, message: &Message, now: i64) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "message_id": message.id }).to_string();
    let job = NewJob::new(QUEUE, SEND_KIND, payload, now)
        .workspace(&message.workspace_id)
        .concurrency(format!("send:{}", message.conversation_id))
        .dedupe(format!("send:{}", message.id))
        .max_attempts(8);
    jobs::enqueue(c, &job, now)?;
    Ok(())
}

type SharedLimiter = std::sync::Arc<DefaultKeyedRateLimiter<String>>;

/// Rate limiters by quota, each keyed by an account or an (account, recipient) pair: the
/// quotas come from the channels and their accounts, so they are made on first use.
#[derive(Default)]
struct Pacers {
    by_quota: std::sync::Mutex<std::collections::HashMap<(u32, u64), SharedLimiter>>,
}

impl Pacers {
    /// Waits until `cost` units may go under a quota of `burst` units, then one more per
    /// `period_ms`.
    async fn wait(&self, key: String, burst: u32, period_ms: u64, cost: u32) {
        let burst = burst.max(1);
        let limiter = self
            .by_quota
            .lock()
            .expect("pace lock")
            .entry((burst, period_ms))
            .or_insert_with(|| {
                let period = std::time::Duration::from_millis(period_ms.max(1));
                let quota = Quota::with_period(period)
                    .expect("a non-zero period")
                    .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
                std::sync::Arc::new(RateLimiter::keyed(quota))
            })
            .clone();
        // A message larger than the burst waits for a full bucket, then goes.
        let cost = NonZeroU32::new(cost.clamp(1, burst)).expect("non-zero");
        let _ = limiter.until_key_n_ready(&key, cost).await;
    }
}

pub struct Send {
    channels: Channels,
    live: Live,
    /// Pacing per channel account (the sender's limit) and per recipient where the channel
    /// has a pair limit, in this process.
    pacers: Pacers,
    public_url: std::sync::Arc<str>,
}

/// How long a file URL handed to a provider stays valid (they fetch at once, and on retries).
const MEDIA_URL_TTL_MS: i64 = 24 * 3_600_000;

impl Send {
    pub fn new(channels: Channels, live: Live, public_url: &str) -> Self {
        Send {
            channels,
            live,
            pacers: Pacers::default(),
            public_url: public_url.trim_end_matches('/').into(),
        }
    }
}

#[derive(Deserialize)]
struct SendPayload {
    message_id: String,
}

#[async_trait]
impl JobHandler for Send {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let payload: SendPayload = ctx.payload()?;
        let ws = ctx.workspace_id()?;
        let (w, id) = (ws.clone(), payload.message_id.clone());
        let loaded = ctx
            .store
            .db
            .read(move |c| {
                let Some(message) = messages::get(c, &w, &id)? else {
                    return Ok(None);
                };
                let Some(account_id) = message.channel_account_id.clone() else {
                    return Ok(None);
                };
                let Some((account, secrets)) = channel_accounts::for_webhook(c, &account_id)? else {
                    return Ok(None);
                };
                let kind = message.channel.clone().unwrap_or_default();
                Ok::<_, StoreError>(Some((message, account, secrets, kind)))
            })
            .await?;
        let Some((message, account, secrets, kind)) = loaded else {
            return Ok(());
        };
        if message.status != "queued" {
            return Ok(()); // sent already (a rerun after a crash) or failed and not retried
        }
        let channel = self
            .channels
            .get(&kind)
            .ok_or_else(|| JobError::Permanent(format!("no channel `{kind}`")))?
            .clone();
        let (w, customer, account_id, address_kind) = (
            ws.clone(),
            message.customer_id.clone(),
            account.id.clone(),
            channel.address_kind(),
        );
        let conversation_id = message.conversation_id.clone();
        let (purpose, kind_of_account) = (Purpose::parse(&message.purpose).unwrap_or_default(), kind.clone());
        let (to, last_inbound_at_ms, refusal, thread) = ctx
            .store
            .db
            .read(move |c| {
                let to = customers::address(c, &w, &customer, address_kind, &account_id)?;
                let last = messages::last_inbound_at(c, &w, &conversation_id, &account_id)?;
                let thread = messages::last_inbound_meta(c, &w, &conversation_id, &account_id)?;
                // Consent may have been revoked since the message was queued (a STOP in between).
                let refusal =
                    sb_store::consents::may_send(c, &w, &customer, &kind_of_account, to.as_deref(), purpose)?.err();
                Ok::<_, StoreError>((to, last, refusal, thread))
            })
            .await?;
        let now = ctx.store.now();
        let Some(to) = to else {
            let reason = "the customer has no address on this channel";
            self.record(&ctx.store, &ws, &message.id, now, move |c, w, id| {
                messages::mark_failed(c, w, id, "no_address", reason, now)
            })
            .await?;
            return Ok(());
        };
        if let Some(refusal) = refusal {
            self.record(&ctx.store, &ws, &message.id, now, move |c, w, id| {
                messages::mark_failed(c, w, id, refusal.code, &refusal.reason, now)
            })
            .await?;
            return Ok(());
        }
        let outbound = sb_channels::OutboundMessage {
            message_id: message.id.clone(),
            conversation_id: message.conversation_id.clone(),
            text: message.body.clone(),
            created_at_ms: message.created_at,
            template: message
                .template_json
                .as_deref()
                .and_then(|t| serde_json::from_str::<TemplateSend>(t).ok()),
            last_inbound_at_ms,
            files: self.file_urls(&message, &account.id, &secrets, now),
            status_callback_url: Some(format!("{}/hooks/{kind}/{}", self.public_url, account.id)),
            purpose: Purpose::parse(&message.purpose).unwrap_or_default(),
            unsubscribe_url: (purpose == Purpose::Marketing).then(|| self.unsubscribe_url(&account.id, &secrets, &to)),
            thread: thread.and_then(|t| serde_json::from_str(&t).ok()),
            rich: message
                .meta_json
                .as_deref()
                .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                .and_then(|m| serde_json::from_value(m["rich"].clone()).ok()),
            to,
        };
        let connection = account_of(&account, &secrets);
        let per_second = channel.sends_per_second(&connection).max(1);
        let cost = channel.send_cost(&outbound);
        // The sender's pace, with a burst of a second's worth (at least ten units).
        self.pacers
            .wait(
                account.id.clone(),
                per_second.max(10),
                1_000 / u64::from(per_second),
                cost,
            )
            .await;
        if let Some((burst, period_ms)) = channel.policy().recipient_pace {
            self.pacers
                .wait(format!("{}|{}", account.id, outbound.to), burst, period_ms, 1)
                .await;
        }
        let result = channel.send(&outbound, &connection).await;
        let now = ctx.store.now();
        match result {
            Ok(provider_id) => {
                self.record(&ctx.store, &ws, &message.id, now, move |c, w, id| {
                    messages::mark_sent(c, w, id, &provider_id, now)
                })
                .await?;
                metrics::counter!("switchboard_outbound_sent_total", "channel" => kind).increment(1);
                Ok(())
            }
            Err(e) if e.retryable && ctx.job.attempts < ctx.job.max_attempts => Err(match e.retry_after_ms {
                Some(after) => JobError::RetryAfter(e.to_string(), after),
                None => JobError::Retry(e.to_string()),
            }),
            Err(e) => {
                tracing::warn!(message_id = %message.id, code = %e.code, "outbound message failed");
                self.record(&ctx.store, &ws, &message.id, now, move |c, w, id| {
                    messages::mark_failed(c, w, id, &e.code, &e.message, now)
                })
                .await?;
                metrics::counter!("switchboard_outbound_failed_total", "channel" => kind).increment(1);
                Ok(())
            }
        }
    }
}

impl Send {
    /// Signed, expiring URLs of the message's files, for the provider to fetch.
    fn file_urls(
        &self,
        message: &Message,
        account_id: &str,
        secrets_json: &str,
        now: i64,
    ) -> Vec<sb_channels::OutboundFile> {
        let metas: Vec<sb_store::attachments::AttachmentMeta> =
            serde_json::from_str(&message.attachments_json).unwrap_or_default();
        let key = sb_core::credentials::secret_digest(secrets_json);
        let expires = now + MEDIA_URL_TTL_MS;
        metas
            .into_iter()
            .map(|m| {
                let sig = sb_channels::signing::media_signature(&key, account_id, &m.id, expires);
                sb_channels::OutboundFile {
                    url: format!(
                        "{}/media/{account_id}/{}?exp={expires}&sig={sig}",
                        self.public_url, m.id
                    ),
                    filename: m.filename,
                    content_type: m.content_type,
                }
            })
            .collect()
    }

    /// The one-click unsubscribe link for `address` on this account (RFC 8058): signed with
    /// a key derived from the account's secrets.
    fn unsubscribe_url(&self, account_id: &str, secrets_json: &str, address: &str) -> String {
        let key = sb_core::credentials::secret_digest(secrets_json);
        let sig = sb_channels::signing::unsubscribe_signature(&key, account_id, address);
        let address: String = form_urlencoded::byte_serialize(address.as_bytes()).collect();
        format!("{}/unsubscribe/{account_id}/{address}/{sig}", self.public_url)
    }

    /// Applies a status change to a message and emits `message.updated`, in one transaction.
    async fn record(
        &self,
        store: &sb_store::Store,
        ws: &str,
        id: &str,
        now: i64,
        change: impl FnOnce(&mut dyn Conn, &str, &str) -> Result<(), StoreError> + std::marker::Send + 'static,
    ) -> Result<(), StoreError> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        let events = store
            .db
            .write(move |c| {
                change(c, &ws, &id)?;
                let Some(message) = messages::get(c, &ws, &id)? else {
                    return Ok(Vec::new());
                };
                Ok::<_, StoreError>(vec![live::message_event(c, "message.updated", &message, now)?])
            })
            .await?;
        self.live.publish(&events).await;
        Ok(())
    }
}
