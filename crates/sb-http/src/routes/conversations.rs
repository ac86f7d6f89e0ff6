//! The agents' inbox API: one conversation per customer, every channel's messages in it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::Permission;
use sb_core::clock::parse_rfc3339;
use sb_core::inbox::ConversationStatus;
use sb_inbox::live;
use sb_inbox::{ReplyError, ReplyRequest, WAKE_KIND};
use sb_store::audit::{self, Change};
use sb_store::conversations::{self, Conversation, Filter};
use sb_store::objects::ObjectKind;
use sb_store::timers::{self, NewTimer};
use sb_store::{StoreError, customers, messages, users};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{
    ConversationView, CustomerView, MessageView, Page, PageQuery, ReplyOptionView, decode_time_cursor,
    encode_time_cursor,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(list_messages, create_message))
        .routes(routes!(create_note))
        .routes(routes!(change_status))
        .routes(routes!(assign))
        .routes(routes!(change_labels))
        .routes(routes!(mark_read))
        .routes(routes!(retry_message))
        .routes(routes!(typing))
        .routes(routes!(handoff))
}

/// The caller's workspace's conversation, or 404 (audited when it is another workspace's).
pub async fn load(state: &AppState, principal: &Principal, id: &str) -> Result<Conversation, ApiError> {
    let (ws, cid) = (principal.workspace_id().to_owned(), id.to_owned());
    match state.store.db.read(move |c| conversations::get(c, &ws, &cid)).await? {
        Some(conversation) => Ok(conversation),
        None => Err(super::not_found(state, principal, ObjectKind::Conversation, id, "conversation_not_found").await),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// `open`, `pending`, `snoozed` or `resolved`.
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

/// Conversations, most recent activity first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "inbox", params(ConversationQuery, PageQuery), responses(
    (status = 200, body = inline(Page<ConversationView>)),
    (status = 400, description = "`invalid_status`, `invalid_cursor`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_conversations(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ConversationQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ConversationView>>> {
    principal.require(Permission::ReadConversations)?;
    if let Some(s) = &q.status
        && ConversationStatus::parse(s).is_none()
    {
        return Err(ApiError::invalid(
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
    let before = decode_time_cursor(page.cursor.as_deref())?;
    let (ws, limit) = (principal.workspace_id().to_owned(), page.limit());
    let rows = state
        .store
        .db
        .read(move |c| conversations::list(c, &ws, &filter, before, limit))
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| encode_time_cursor(r.last_message_at, &r.id)))
        .flatten();
    Ok(axum::Json(Page {
        items: rows.iter().map(ConversationView::from).collect(),
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub customer: CustomerView,
    pub labels: Vec<String>,
    /// Per channel account: may a free-form reply go out there now, and if not, why.
    pub reply_options: Vec<ReplyOptionView>,
}

/// A conversation with its customer, labels and reply options.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "inbox", params(("id" = String, Path)), responses(
    (status = 200, body = ConversationDetail),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_conversation(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ConversationDetail>> {
    principal.require(Permission::ReadConversations)?;
    let conversation = load(&state, &principal, &id).await?;
    let (ws, cid, customer_id) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        conversation.customer_id.clone(),
    );
    let (customer, labels) = state
        .store
        .db
        .read(move |c| {
            Ok::<_, StoreError>((
                customers::get(c, &ws, &customer_id)?,
                conversations::labels(c, &ws, &cid)?,
            ))
        })
        .await?;
    let customer = customer.ok_or_else(|| ApiError::internal("conversation without customer"))?;
    let options = sb_inbox::reply_options(&state.engine, &state.channels, principal.workspace_id(), &id)
        .await?
        .unwrap_or_default();
    Ok(axum::Json(ConversationDetail {
        conversation: ConversationView::from(&conversation),
        customer: CustomerView::from(&customer),
        labels,
        reply_options: options.iter().map(ReplyOptionView::from).collect(),
    }))
}

/// The thread: every channel's messages and notes in time order.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "inbox", params(("id" = String, Path), PageQuery), responses(
    (status = 200, body = inline(Page<MessageView>)),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<MessageView>>> {
    principal.require(Permission::ReadConversations)?;
    load(&state, &principal, &id).await?;
    let after = decode_time_cursor(page.cursor.as_deref())?;
    let (ws, limit) = (principal.workspace_id().to_owned(), page.limit());
    let rows = state
        .store
        .db
        .read(move |c| messages::thread(c, &ws, &id, after, limit))
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| encode_time_cursor(m.sent_at, &m.id)))
        .flatten();
    Ok(axum::Json(Page {
        items: rows.iter().map(MessageView::from).collect(),
        next_cursor,
    }))
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
        }
    }
}

pub(crate) fn reply_error(e: ReplyError) -> ApiError {
    match e {
        ReplyError::ConversationNotFound => ApiError::not_found("conversation_not_found", "no such conversation"),
        ReplyError::AccountNotFound => ApiError::unprocessable("channel_account_not_found", "no such channel account"),
        ReplyError::NoChannel => ApiError::unprocessable("no_channel", e.to_string()),
        ReplyError::NotAllowed(text, code) => ApiError::unprocessable(code, text),
        ReplyError::Empty => ApiError::unprocessable("empty_message", "the message is empty"),
        ReplyError::Store(e) => e.into(),
    }
}

/// A reply (or, with `note`, a private note) through the outbox.
pub async fn post_message(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: CreateMessage,
    note: bool,
) -> ApiResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    load(state, principal, id).await?;
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
    };
    sb_inbox::reply(&state.engine, &state.channels, &state.live, request)
        .await
        .map_err(reply_error)
}

/// Replies to the customer. The message and its send job are stored together; it goes out
/// from the outbox, and its status moves queued → sent → delivered → read (or failed).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "inbox", params(("id" = String, Path)), request_body = CreateMessage, responses(
    (status = 201, body = MessageView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 422, description = "`no_channel`, `no_address`, `reply_window_closed`, `channel_unavailable`, `text_too_long`, `empty_message`, `channel_account_not_found`, `template_not_found`, `template_not_approved`, `template_parameters_mismatch`, `consent_revoked`, `address_suppressed`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateMessage>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let message = post_message(&state, &principal, &id, body, false).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateNote {
    pub text: String,
}

/// A private note: seen by agents, never sent.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "inbox", params(("id" = String, Path)), request_body = CreateNote, responses(
    (status = 201, body = MessageView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_note(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateNote>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let message = post_message(&state, &principal, &id, CreateMessage::plain(body.text), true).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeStatus {
    /// `open`, `pending`, `snoozed` or `resolved`.
    pub status: String,
    /// With `snoozed`: when it opens again (RFC 3339).
    pub snooze_until: Option<String>,
}

/// Changes the status; a snoozed conversation opens again at `snooze_until`, or earlier
/// when the customer writes.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/status", tag = "inbox", params(("id" = String, Path)), request_body = ChangeStatus, responses(
    (status = 200, body = ConversationView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_status`, `invalid_snooze`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn change_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeStatus>,
) -> ApiResult<axum::Json<ConversationView>> {
    let after = set_status(&state, &principal, &id, body).await?;
    Ok(axum::Json(ConversationView::from(&after)))
}

/// Changes a conversation's status (a snooze schedules the timer that opens it again); audited, pushed live.
pub async fn set_status(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: ChangeStatus,
) -> ApiResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    let status = ConversationStatus::parse(&body.status).ok_or_else(|| {
        ApiError::unprocessable("invalid_status", "status must be open, pending, snoozed or resolved")
    })?;
    let now = state.store.now();
    let until = match (status, body.snooze_until.as_deref()) {
        (ConversationStatus::Snoozed, Some(t)) => {
            let at = parse_rfc3339(t)
                .ok_or_else(|| ApiError::unprocessable("invalid_snooze", "snooze_until must be an RFC 3339 time"))?;
            if at <= now {
                return Err(ApiError::unprocessable(
                    "invalid_snooze",
                    "snooze_until must be in the future",
                ));
            }
            Some(at)
        }
        (ConversationStatus::Snoozed, None) => {
            return Err(ApiError::unprocessable("invalid_snooze", "a snooze needs snooze_until"));
        }
        (_, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_snooze",
                "snooze_until goes only with `snoozed`",
            ));
        }
        (_, None) => None,
    };
    let before = load(state, principal, id).await?;
    let (ws, cid, actor) = (principal.workspace_id().to_owned(), id.to_owned(), principal.actor());
    let (after, timer, event) = state
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
    state.live.publish(&[event]).await;
    if let Some((timer_id, due)) = timer {
        state.engine.timer_scheduled(&timer_id, due);
    }
    Ok(after)
}

#[derive(Deserialize, ToSchema)]
pub struct Assign {
    /// A user of this workspace, or null to unassign.
    pub assignee_id: Option<String>,
    pub team: Option<String>,
}

/// Assigns the conversation to an agent and/or a team.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/assign", tag = "inbox", params(("id" = String, Path)), request_body = Assign, responses(
    (status = 200, body = ConversationView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 422, description = "`unknown_assignee`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn assign(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Assign>,
) -> ApiResult<axum::Json<ConversationView>> {
    let conversation = assign_to(&state, &principal, &id, body).await?;
    Ok(axum::Json(ConversationView::from(&conversation)))
}

/// Assigns a conversation to an agent of this workspace and/or a team (or unassigns); audited, pushed live.
pub async fn assign_to(state: &AppState, principal: &Principal, id: &str, body: Assign) -> ApiResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    let before = load(state, principal, id).await?;
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let after = state
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
            state.live.publish(&[event]).await;
            Ok(conversation)
        }
        None => Err(ApiError::unprocessable(
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

#[derive(Serialize, ToSchema)]
pub struct Labels {
    pub labels: Vec<String>,
}

/// Adds and removes labels.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/labels", tag = "inbox", params(("id" = String, Path)), request_body = ChangeLabels, responses(
    (status = 200, body = Labels),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_label`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn change_labels(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeLabels>,
) -> ApiResult<axum::Json<Labels>> {
    let labels = relabel(&state, &principal, &id, body).await?;
    Ok(axum::Json(Labels { labels }))
}

/// Adds and removes labels; returns the labels after; audited.
pub async fn relabel(state: &AppState, principal: &Principal, id: &str, body: ChangeLabels) -> ApiResult<Vec<String>> {
    principal.require(Permission::ReplyConversations)?;
    let valid = |l: &String| !l.trim().is_empty() && l.len() <= 50 && !l.chars().any(char::is_control);
    if !body.add.iter().chain(&body.remove).all(valid) {
        return Err(ApiError::unprocessable(
            "invalid_label",
            "labels are 1–50 printable characters",
        ));
    }
    load(state, principal, id).await?;
    let (ws, cid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        state.store.now(),
    );
    state
        .store
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

/// Marks the conversation read (unread count back to zero).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "inbox", params(("id" = String, Path)), responses(
    (status = 200, body = ConversationView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn mark_read(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ConversationView>> {
    let conversation = mark_conversation_read(&state, &principal, &id).await?;
    Ok(axum::Json(ConversationView::from(&conversation)))
}

/// Sets the unread count back to zero; pushed live.
pub async fn mark_conversation_read(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Conversation> {
    principal.require(Permission::ReplyConversations)?;
    load(state, principal, id).await?;
    let (ws, id, now) = (principal.workspace_id().to_owned(), id.to_owned(), state.store.now());
    let conversation = state
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
        .ok_or_else(|| ApiError::not_found("conversation_not_found", "no such conversation"))?;
    let (conversation, event) = conversation;
    state.live.publish(&[event]).await;
    Ok(conversation)
}

/// Sends a failed outbound message again.
#[utoipa::path(post, path = "/api/v1/messages/{id}/retry", tag = "inbox", params(("id" = String, Path)), responses(
    (status = 200, body = MessageView),
    (status = 404, description = "`message_not_found`", body = ErrorBody),
    (status = 409, description = "`message_not_failed`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn retry_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<MessageView>> {
    let message = retry_failed(&state, &principal, &id).await?;
    Ok(axum::Json(MessageView::from(&message)))
}

/// Puts a failed outbound message back in the outbox.
pub async fn retry_failed(state: &AppState, principal: &Principal, id: &str) -> ApiResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, mid, now) = (principal.workspace_id().to_owned(), id.to_owned(), state.store.now());
    let outcome = state
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
            state.engine.notify_jobs();
            Ok(message)
        }
        Some(Err(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "message_not_failed",
            "only a failed outbound message can be retried",
        )),
        None => Err(super::not_found(state, principal, ObjectKind::Message, id, "message_not_found").await),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct Typing {
    /// `true` while the agent types, `false` when they stop.
    pub on: bool,
}

/// Tells everyone watching the conversation that the agent is typing (not stored).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/typing", tag = "inbox", params(("id" = String, Path)), request_body = Typing, responses(
    (status = 204),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn typing(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Typing>,
) -> ApiResult<StatusCode> {
    principal.require(Permission::ReplyConversations)?;
    load(&state, &principal, &id).await?;
    let data = serde_json::json!({ "user_id": principal.user.id, "on": body.on });
    state
        .live
        .publish_ephemeral(principal.workspace_id(), "typing", Some(&id), data)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct HandoffRequest {
    /// Where the conversation continues.
    pub channel_account_id: String,
    /// The customer's address there (phone, e-mail or the channel's id for them); omitted:
    /// the address already known.
    pub address: Option<String>,
}

/// Moves the conversation to another channel: links the customer's address there, sends a
/// first message that refers to this conversation, and tells the website chat where it went.
/// The customer's replies on the new channel continue this thread. Audited.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff", tag = "inbox", params(("id" = String, Path)), request_body = HandoffRequest, responses(
    (status = 201, body = MessageView, description = "the first message on the new channel"),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 409, description = "`identity_conflict`: another customer has this address", body = ErrorBody),
    (status = 422, description = "`invalid_address`, `no_address`, `handoff_unsupported`, `reply_window_closed`, `channel_account_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn handoff(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<HandoffRequest>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let message = hand_off(&state, &principal, &id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}

/// Moves a conversation to another channel (audited); returns the first message sent there.
pub async fn hand_off(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: HandoffRequest,
) -> ApiResult<messages::Message> {
    principal.require(Permission::ReplyConversations)?;
    let conversation = load(state, principal, id).await?;
    if !sb_core::ids::is_id(&body.channel_account_id) {
        return Err(ApiError::unprocessable(
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
    Ok(sb_inbox::widget::handoff(&state.engine, &state.channels, &state.live, request, by).await?)
}
