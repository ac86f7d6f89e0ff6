//! The inbox's use cases: one conversation per customer, every channel's messages in it.

use http::StatusCode;
use sb_core::Permission;
use sb_core::clock::parse_rfc3339;
use sb_core::inbox::ConversationStatus;
use sb_inbox::live;
use sb_inbox::{ReplyError, ReplyRequest, WAKE_KIND};
use sb_store::audit::{self, Change};
use sb_store::conversations::{self, Conversation, Filter};
use sb_store::customers::Customer;
use sb_store::objects::ObjectKind;
use sb_store::timers::{self, NewTimer};
use sb_store::{StoreError, customers, messages, users};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult};

/// The longest private note (a reply's limit is its channel's).
pub const MAX_NOTE_CHARS: usize = 10_000;
use crate::{App, Principal};

/// The caller's workspace's conversation, or 404 (audited when it is another workspace's).
pub(crate) async fn load(app: &App, principal: &Principal, id: &str) -> Result<Conversation, AppError> {
    let (ws, cid) = (principal.workspace_id().to_owned(), id.to_owned());
    match app.store.db.read(move |c| conversations::get(c, &ws, &cid)).await? {
        Some(conversation) => Ok(conversation),
        None => {
            Err(crate::access::not_found(app, principal, ObjectKind::Conversation, id, "conversation_not_found").await)
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// `open`, `pending`, `snoozed` or `resolved`.
    #[param(value_type = Option<crate::views::names::ConversationStatus>)]
    pub status: Option<String>,
    /// A user id, `me`, or `none` for unassigned.
    pub assignee: Option<String>,
    pub team: Option<String>,
    /// Conversations with at least one message on this channel, e.g. `api`.
    pub channel: Option<String>,
    pub label: Option<String>,
    /// Only conversations with unread messages.
    pub unread: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateMessage {
    #[serde(default)]
    pub text: String,
    /// Which channel account to reply on; default: the one the customer last wrote on.
    pub channel_account_id: Option<String>,
    /// A pre-approved template instead of text (WhatsApp outside the 24-hour window):
    /// `{"name", "language", "parameters": ["…"]}`; see `GET /api/v1/channel-accounts/{id}/templates`.
    #[schema(value_type = Option<Object>)]
    pub template: Option<sb_channels::TemplateSend>,
    /// Files uploaded with `POST /api/v1/attachments`, sent with the text (or alone).
    #[serde(default)]
    pub attachment_ids: Vec<String>,
    /// `conversation` (default), `transactional` or `marketing`: marketing is refused where
    /// the customer opted out on the channel (`consent_revoked`) or the address is suppressed
    /// (`address_suppressed`), when queued and again when sent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub purpose: sb_core::inbox::Purpose,
    /// The client's key for this message (1–200 characters; or the `Idempotency-Key`
    /// header): sending it again answers the message it made and sends nothing more.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl CreateMessage {
    /// A plain text (a note's body, or a reply on the default channel).
    pub fn plain(text: String) -> Self {
        CreateMessage {
            text,
            channel_account_id: None,
            template: None,
            attachment_ids: Vec::new(),
            purpose: Default::default(),
            idempotency_key: None,
        }
    }
}

pub fn reply_error(e: ReplyError) -> AppError {
    match e {
        ReplyError::ConversationNotFound => AppError::not_found("conversation_not_found", "no such conversation"),
        ReplyError::AccountNotFound => AppError::unprocessable("channel_account_not_found", "no such channel account"),
        ReplyError::NoChannel => AppError::unprocessable("no_channel", e.to_string()),
        ReplyError::NotAllowed(text, code) => AppError::unprocessable(code, text),
        ReplyError::Empty => AppError::unprocessable("empty_message", "the message is empty"),
        ReplyError::KeyReused => AppError::new(StatusCode::CONFLICT, "idempotency_key_reused", e.to_string()),
        ReplyError::Store(e) => e.into(),
    }
}

/// A reply (or, with `note`, a private note) through the outbox.
pub async fn post_message(
    app: &App,
    principal: &Principal,
    id: &str,
    body: CreateMessage,
    note: bool,
) -> AppResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    if note && body.text.chars().count() > MAX_NOTE_CHARS {
        return Err(AppError::unprocessable(
            "text_too_long",
            format!("a note holds at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    if body
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.trim().is_empty() || k.len() > 200 || k.chars().any(char::is_control))
    {
        return Err(AppError::unprocessable(
            "invalid_idempotency_key",
            "an idempotency key is 1–200 printable characters",
        ));
    }
    load(app, principal, id).await?;
    let request = ReplyRequest {
        workspace_id: principal.workspace_id().to_owned(),
        conversation_id: id.to_owned(),
        author_id: principal.user.id.clone(),
        text: body.text,
        channel_account_id: if note { None } else { body.channel_account_id },
        note,
        template: if note { None } else { body.template },
        attachment_ids: if note { Vec::new() } else { body.attachment_ids },
        purpose: body.purpose,
        idempotency_key: body.idempotency_key,
    };
    sb_inbox::reply(&app.engine, &app.channels, &app.live, request)
        .await
        .map_err(reply_error)
}

#[derive(Deserialize, ToSchema)]
pub struct CreateNote {
    /// At most 10,000 characters.
    #[schema(max_length = 10000)]
    pub text: String,
    /// As on a reply: the same key again answers the note it made.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeStatus {
    /// `open`, `pending`, `snoozed` or `resolved`.
    #[schema(value_type = crate::views::names::ConversationStatus)]
    pub status: String,
    /// With `snoozed`: when it opens again (RFC 3339).
    pub snooze_until: Option<String>,
}

/// Changes a conversation's status (a snooze schedules the timer that opens it again); audited, pushed live.
pub async fn set_status(app: &App, principal: &Principal, id: &str, body: ChangeStatus) -> AppResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    let status = ConversationStatus::parse(&body.status).ok_or_else(|| {
        AppError::unprocessable("invalid_status", "status must be open, pending, snoozed or resolved")
    })?;
    let now = app.store.now();
    let until = match (status, body.snooze_until.as_deref()) {
        (ConversationStatus::Snoozed, Some(t)) => {
            let at = parse_rfc3339(t)
                .ok_or_else(|| AppError::unprocessable("invalid_snooze", "snooze_until must be an RFC 3339 time"))?;
            if at <= now {
                return Err(AppError::unprocessable(
                    "invalid_snooze",
                    "snooze_until must be in the future",
                ));
            }
            Some(at)
        }
        (ConversationStatus::Snoozed, None) => {
            return Err(AppError::unprocessable("invalid_snooze", "a snooze needs snooze_until"));
        }
        (_, Some(_)) => {
            return Err(AppError::unprocessable(
                "invalid_snooze",
                "snooze_until goes only with `snoozed`",
            ));
        }
        (_, None) => None,
    };
    let before = load(app, principal, id).await?;
    let (ws, cid, actor) = (principal.workspace_id().to_owned(), id.to_owned(), principal.actor());
    let (after, timer, event) = app
        .store
        .db
        .write(move |c| {
            conversations::set_status(c, &ws, &cid, status.as_str(), until, now)?;
            let key = format!("snooze:{cid}");
            let timer = match until {
                Some(due_at) => Some(timers::schedule(
                    c,
                    &NewTimer {
                        workspace_id: Some(ws.clone()),
                        timer_key: key,
                        queue: sb_inbox::QUEUE.into(),
                        kind: WAKE_KIND.into(),
                        payload: serde_json::json!({ "conversation_id": cid }).to_string(),
                        due_at,
                    },
                    now,
                )?),
                None => {
                    timers::cancel(c, Some(&ws), &key)?;
                    None
                }
            };
            let change = Change {
                action: "conversation.status_changed",
                object_kind: "conversation",
                object_id: Some(&cid),
                before: Some(serde_json::json!({ "status": before.status })),
                after: Some(serde_json::json!({ "status": status.as_str(), "snoozed_until": until })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            let after = conversations::get(c, &ws, &cid)?.ok_or(StoreError::NotFound("conversation"))?;
            let event = live::conversation_event(c, &after, now)?;
            Ok::<_, StoreError>((after, timer, event))
        })
        .await?;
    app.live.publish(&[event]).await;
    if let Some((timer_id, due)) = timer {
        app.engine.timer_scheduled(&timer_id, due);
    }
    Ok(after)
}

#[derive(Deserialize, ToSchema)]
pub struct Assign {
    /// A user of this workspace, or null to unassign.
    pub assignee_id: Option<String>,
    pub team: Option<String>,
}

/// Assigns a conversation to an agent of this workspace and/or a team (or unassigns); audited, pushed live.
pub async fn assign_to(app: &App, principal: &Principal, id: &str, body: Assign) -> AppResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    let before = load(app, principal, id).await?;
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    let after = app
        .store
        .db
        .write(move |c| {
            if let Some(user_id) = &body.assignee_id
                && users::get(c, &ws, user_id)?.is_none_or(|u| u.disabled)
            {
                return Ok(None);
            }
            conversations::assign(c, &ws, &cid, body.assignee_id.as_deref(), body.team.as_deref(), now)?;
            let change = Change {
                action: "conversation.assigned",
                object_kind: "conversation",
                object_id: Some(&cid),
                before: Some(serde_json::json!({ "assignee_id": before.assignee_id, "team": before.team })),
                after: Some(serde_json::json!({ "assignee_id": body.assignee_id, "team": body.team })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            let Some(after) = conversations::get(c, &ws, &cid)? else {
                return Ok(None);
            };
            let event = live::conversation_event(c, &after, now)?;
            Ok::<_, StoreError>(Some((after, event)))
        })
        .await?;
    match after {
        Some((conversation, event)) => {
            app.live.publish(&[event]).await;
            Ok(conversation)
        }
        None => Err(AppError::unprocessable(
            "unknown_assignee",
            "the assignee is not an active user of this workspace",
        )),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeLabels {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Adds and removes labels; returns the labels after; audited.
pub async fn relabel(app: &App, principal: &Principal, id: &str, body: ChangeLabels) -> AppResult<Vec<String>> {
    principal.require(Permission::ReplyConversations)?;
    let valid = |l: &String| !l.trim().is_empty() && l.len() <= 50 && !l.chars().any(char::is_control);
    if !body.add.iter().chain(&body.remove).all(valid) {
        return Err(AppError::unprocessable(
            "invalid_label",
            "labels are 1–50 printable characters",
        ));
    }
    load(app, principal, id).await?;
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    app.store
        .db
        .write(move |c| {
            let before = conversations::labels(c, &ws, &cid)?;
            for l in &body.add {
                conversations::add_label(c, &ws, &cid, l.trim())?;
            }
            for l in &body.remove {
                conversations::remove_label(c, &ws, &cid, l.trim())?;
            }
            let after = conversations::labels(c, &ws, &cid)?;
            let change = Change {
                action: "conversation.labels_changed",
                object_kind: "conversation",
                object_id: Some(&cid),
                before: Some(serde_json::json!(before)),
                after: Some(serde_json::json!(after)),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(after)
        })
        .await
        .map_err(Into::into)
}

/// Sets the unread count back to zero; pushed live.
pub async fn mark_conversation_read(app: &App, principal: &Principal, id: &str) -> AppResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    load(app, principal, id).await?;
    let (ws, id, now) = (principal.workspace_id().to_owned(), id.to_owned(), app.store.now());
    let conversation = app
        .store
        .db
        .write(move |c| {
            conversations::mark_read(c, &ws, &id, now)?;
            let Some(after) = conversations::get(c, &ws, &id)? else {
                return Ok(None);
            };
            let event = live::conversation_event(c, &after, now)?;
            Ok::<_, StoreError>(Some((after, event)))
        })
        .await?
        .ok_or_else(|| AppError::not_found("conversation_not_found", "no such conversation"))?;
    let (conversation, event) = conversation;
    app.live.publish(&[event]).await;
    Ok(conversation)
}

/// Puts a failed outbound message back in the outbox.
pub async fn retry_failed(app: &App, principal: &Principal, id: &str) -> AppResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, mid, now) = (principal.workspace_id().to_owned(), id.to_owned(), app.store.now());
    let outcome = app
        .store
        .db
        .write(move |c| {
            let Some(message) = messages::get(c, &ws, &mid)? else {
                return Ok(None);
            };
            if !messages::requeue(c, &ws, &mid, now)? {
                return Ok(Some(Err(message)));
            }
            let message = messages::get(c, &ws, &mid)?.ok_or(StoreError::NotFound("message"))?;
            sb_inbox::outbox::enqueue_send(c, &message, now)?;
            Ok::<_, StoreError>(Some(Ok(message)))
        })
        .await?;
    match outcome {
        Some(Ok(message)) => {
            app.engine.notify_jobs();
            Ok(message)
        }
        Some(Err(_)) => Err(AppError::new(
            StatusCode::CONFLICT,
            "message_not_failed",
            "only a failed outbound message can be retried",
        )),
        None => Err(crate::access::not_found(app, principal, ObjectKind::Message, id, "message_not_found").await),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct Typing {
    /// `true` while the agent types, `false` when they stop.
    pub on: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct HandoffRequest {
    /// Where the conversation continues.
    pub channel_account_id: String,
    /// The customer's address there (phone, e-mail or the channel's id for them); omitted:
    /// the address already known.
    pub address: Option<String>,
}

/// Moves a conversation to another channel (audited); returns the first message sent there.
pub async fn hand_off(
    app: &App,
    principal: &Principal,
    id: &str,
    body: HandoffRequest,
) -> AppResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    let conversation = load(app, principal, id).await?;
    if !sb_core::ids::is_id(&body.channel_account_id) {
        return Err(AppError::unprocessable(
            "channel_account_not_found",
            "no such channel account",
        ));
    }
    let request = sb_inbox::widget::Handoff {
        workspace_id: conversation.workspace_id.clone(),
        customer_id: conversation.customer_id.clone(),
        channel_account_id: body.channel_account_id,
        address: body.address,
    };
    let by = sb_inbox::widget::HandoffBy::Agent(principal.actor());
    Ok(sb_inbox::widget::handoff(&app.engine, &app.channels, &app.live, request, by).await?)
}

/// Conversations of the caller's workspace, most recent activity first, before `before`.
pub async fn list(
    app: &App,
    principal: &Principal,
    q: ConversationQuery,
    before: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<Conversation>> {
    principal.require(Permission::ReadConversations)?;
    if let Some(s) = &q.status
        && ConversationStatus::parse(s).is_none()
    {
        return Err(AppError::invalid(
            "invalid_status",
            "status must be open, pending, snoozed or resolved",
        ));
    }
    let mut filter = Filter {
        status: q.status,
        team: q.team,
        channel: q.channel,
        label: q.label,
        unread: q.unread.unwrap_or(false),
        ..Filter::default()
    };
    match q.assignee.as_deref() {
        Some("none") => filter.unassigned = true,
        Some("me") => filter.assignee_id = Some(principal.user.id.clone()),
        other => filter.assignee_id = other.map(str::to_owned),
    }
    let ws = principal.workspace_id().to_owned();
    Ok(app
        .store
        .db
        .read(move |c| conversations::list(c, &ws, &filter, before, limit))
        .await?)
}

/// A conversation with what an agent needs beside it.
pub struct Detail {
    pub conversation: Conversation,
    pub customer: Customer,
    pub labels: Vec<String>,
    /// Per channel account: may a free-form reply go out there now, and if not, why.
    pub reply_options: Vec<sb_inbox::outbox::ReplyOption>,
}

/// A conversation with its customer, labels and reply options.
pub async fn detail(app: &App, principal: &Principal, id: &str) -> AppResult<Detail> {
    principal.require(Permission::ReadConversations)?;
    let conversation = load(app, principal, id).await?;
    let (ws, cid, customer_id) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        conversation.customer_id.clone(),
    );
    let (customer, labels) = app
        .store
        .db
        .read(move |c| {
            Ok::<_, StoreError>((
                customers::get(c, &ws, &customer_id)?,
                conversations::labels(c, &ws, &cid)?,
            ))
        })
        .await?;
    let customer = customer.ok_or_else(|| AppError::internal("conversation without customer"))?;
    let reply_options = sb_inbox::reply_options(&app.engine, &app.channels, principal.workspace_id(), id)
        .await?
        .unwrap_or_default();
    Ok(Detail {
        conversation,
        customer,
        labels,
        reply_options,
    })
}

/// The thread: every channel's messages and notes in time order, after `after`.
pub async fn thread(
    app: &App,
    principal: &Principal,
    id: &str,
    after: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<messages::Message>> {
    principal.require(Permission::ReadConversations)?;
    load(app, principal, id).await?;
    let (ws, id) = (principal.workspace_id().to_owned(), id.to_owned());
    Ok(app
        .store
        .db
        .read(move |c| messages::thread(c, &ws, &id, after, limit))
        .await?)
}

/// Tells everyone watching the conversation that the agent is typing (not stored).
pub async fn typing(app: &App, principal: &Principal, id: &str, body: Typing) -> AppResult<()> {
    principal.require(Permission::ReplyConversations)?;
    load(app, principal, id).await?;
    let data = serde_json::json!({ "user_id": principal.user.id, "on": body.on });
    app.live
        .publish_ephemeral(principal.workspace_id(), "typing", Some(id), data)
        .await;
    Ok(())
}

/// A conversation of the caller's workspace, for someone who may read conversations.
pub async fn get(app: &App, principal: &Principal, id: &str) -> AppResult<Conversation> {
    principal.require(Permission::ReadConversations)?;
    load(app, principal, id).await
}

/// The live stream of the workspace carries messages and notes: conversation content.
/// Returns the workspace whose stream the principal may open.
pub fn open_live_stream(principal: &Principal) -> AppResult<String> {
    principal.require(Permission::ReadConversations)?;
    Ok(principal.workspace_id().to_owned())
}
