//! The agents' inbox API: one conversation per customer, every channel's messages in it.
//! Each handler extracts its input and calls its use case in `sb_app::conversations`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_app::conversations::{
    self as app, Assign, ChangeLabels, ChangeStatus, ConversationQuery, CreateMessage, CreateNote, HandoffRequest,
    Typing,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
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
    let before = decode_time_cursor(page.cursor.as_deref())?;
    let limit = page.limit()?;
    let rows = app::list(&state.app, &principal, q, before, limit).await?;
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
    let d = app::detail(&state.app, &principal, &id).await?;
    Ok(axum::Json(ConversationDetail {
        conversation: ConversationView::from(&d.conversation),
        customer: CustomerView::from(&d.customer),
        labels: d.labels,
        reply_options: d.reply_options.iter().map(ReplyOptionView::from).collect(),
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
    let after = decode_time_cursor(page.cursor.as_deref())?;
    let limit = page.limit()?;
    let rows = app::thread(&state.app, &principal, &id, after, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| encode_time_cursor(m.sent_at, &m.id)))
        .flatten();
    Ok(axum::Json(Page {
        items: rows.iter().map(MessageView::from).collect(),
        next_cursor,
    }))
}

/// Replies to the customer. The message and its send job are stored together; it goes out
/// from the outbox, and its status moves queued → sent → delivered → read (or failed).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "inbox", params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "the client's key: the same key again answers the message it made and sends nothing more")), request_body = CreateMessage, responses(
    (status = 201, body = MessageView),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    (status = 409, description = "`idempotency_key_reused`: the key made a message in another conversation", body = ErrorBody),
    (status = 422, description = "`invalid_idempotency_key`, `no_channel`, `no_address`, `reply_window_closed`, `channel_unavailable`, `text_too_long`, `empty_message`, `channel_account_not_found`, `template_not_found`, `template_not_approved`, `template_parameters_mismatch`, `consent_revoked`, `address_suppressed`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(mut body): ApiJson<CreateMessage>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    body.idempotency_key = idempotency_key(&headers).or(body.idempotency_key);
    let message = app::post_message(&state.app, &principal, &id, body, false).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}

/// A private note: seen by agents, never sent.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "inbox", params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "the client's key: the same key again answers the note it made")), request_body = CreateNote, responses(
    (status = 201, body = MessageView),
    (status = 409, description = "`idempotency_key_reused`", body = ErrorBody),
    (status = 404, description = "`conversation_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_note(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<CreateNote>,
) -> ApiResult<(StatusCode, axum::Json<MessageView>)> {
    let mut note = CreateMessage::plain(body.text);
    note.idempotency_key = idempotency_key(&headers).or(body.idempotency_key);
    let message = app::post_message(&state.app, &principal, &id, note, true).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}

/// The `Idempotency-Key` header, when sent.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
    let after = app::set_status(&state.app, &principal, &id, body).await?;
    Ok(axum::Json(ConversationView::from(&after)))
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
    let conversation = app::assign_to(&state.app, &principal, &id, body).await?;
    Ok(axum::Json(ConversationView::from(&conversation)))
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
    let labels = app::relabel(&state.app, &principal, &id, body).await?;
    Ok(axum::Json(Labels { labels }))
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
    let conversation = app::mark_conversation_read(&state.app, &principal, &id).await?;
    Ok(axum::Json(ConversationView::from(&conversation)))
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
    let message = app::retry_failed(&state.app, &principal, &id).await?;
    Ok(axum::Json(MessageView::from(&message)))
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
    app::typing(&state.app, &principal, &id, body).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let message = app::hand_off(&state.app, &principal, &id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(MessageView::from(&message))))
}
