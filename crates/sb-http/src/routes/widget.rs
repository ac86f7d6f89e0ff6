//! The website chat widget over HTTP: the script, the demo page, the visitor API under
//! `/widget/v1` (cross-origin, bearer visitor token, no cookies), and the visitor's live feed
//! over a WebSocket with a server-sent-events fallback. Both resume from `after=<seq>`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use governor::DefaultKeyedRateLimiter;
use std::sync::Arc;

use sb_inbox::live::Delivery;
use sb_inbox::widget::{self, Visitor};
use sb_store::live_events::LiveEvent;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;

const SCRIPT: &str = include_str!("../../assets/widget.js");
const DEMO_PAGE: &str = include_str!("../../assets/demo-widget.html");
/// A socket that fell further behind than this reloads the chat instead of replaying.
const MAX_REPLAY: i64 = 5_000;

pub fn router() -> OpenApiRouter<AppState> {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(axum::extract::DefaultBodyLimit::max(
            sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES + 64 * 1024,
        ));
    OpenApiRouter::new()
        .routes(routes!(start_session))
        .routes(routes!(conversation))
        .routes(routes!(contact))
        .routes(routes!(identify))
        .routes(routes!(post_message))
        .routes(routes!(download))
        .routes(routes!(typing))
        .routes(routes!(seen))
        .routes(routes!(handoff))
        .routes(routes!(socket))
        .routes(routes!(events))
        .merge(uploads)
        .layer(cors)
        .route("/widget.js", axum::routing::get(script))
        .route("/demo/widget/{website_token}", axum::routing::get(demo_page))
}

/// Per-visitor limits on writes (messages, uploads, typing, forms).
pub struct VisitorLimiter(DefaultKeyedRateLimiter<String>);

impl Default for VisitorLimiter {
    fn default() -> Self {
        // A burst of 30, then one write every 200 ms: more than a person types.
        VisitorLimiter(sb_app::limits::keyed_per_second(5, 30))
    }
}

/// New visitor sessions: per client IP a burst of 20, then one a second (an office behind one
/// address still gets in); per widget a burst of 200, then 50 a second. A refused start is
/// counted, and written to the workspace's audit log at most once a minute per widget, so an
/// admin sees the flood.
pub struct SessionLimiter {
    per_ip: DefaultKeyedRateLimiter<String>,
    per_widget: DefaultKeyedRateLimiter<String>,
    noted: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Default for SessionLimiter {
    fn default() -> Self {
        SessionLimiter {
            per_ip: sb_app::limits::keyed_per_second(1, 20),
            per_widget: sb_app::limits::keyed_per_second(50, 200),
            noted: Default::default(),
        }
    }
}

/// Lets a new session through, or refuses it (429) and makes the flood visible.
async fn admit_session(state: &AppState, website_token: &str, ip: &str) -> Result<(), ApiError> {
    let limiter = &state.session_limiter;
    let over = if limiter.per_ip.check_key(&ip.to_owned()).is_err() {
        Some("ip")
    } else if limiter.per_widget.check_key(&website_token.to_owned()).is_err() {
        Some("widget")
    } else {
        None
    };
    let Some(limit) = over else {
        return Ok(());
    };
    metrics::counter!("switchboard_widget_sessions_refused_total", "limit" => limit).increment(1);
    let now = state.store.now();
    let note = {
        let mut noted = limiter.noted.lock().unwrap_or_else(|e| e.into_inner());
        if noted.len() > 10_000 {
            noted.clear();
        }
        let last = noted.entry(website_token.to_owned()).or_insert(i64::MIN);
        let due = *last <= now - 60_000;
        if due {
            *last = now;
        }
        due
    };
    if note {
        let (token, ip, limit) = (website_token.to_owned(), ip.to_owned(), limit);
        let recorded = state
            .store
            .db
            .write(move |c| {
                let Some((account, _)) = sb_store::channel_accounts::for_webhook(c, &token)? else {
                    return Ok(());
                };
                let change = sb_store::audit::Change {
                    action: "widget.sessions_limited",
                    object_kind: "channel_account",
                    object_id: Some(&account.id),
                    before: None,
                    after: Some(serde_json::json!({ "ip": ip, "limit": limit })),
                };
                let actor = sb_store::audit::Actor {
                    kind: "anonymous",
                    ip: Some(ip.clone()),
                    ..Default::default()
                };
                sb_store::audit::record(c, &account.workspace_id, &actor, &change, now)
            })
            .await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, "could not audit a widget flood");
        }
        tracing::warn!(website_token, limit, "widget session starts refused");
    }
    Err(ApiError::rate_limited(1))
}

fn limit(state: &AppState, visitor: &Visitor) -> Result<(), ApiError> {
    state
        .visitor_limiter
        .0
        .check_key(&visitor.visitor_id)
        .map_err(|_| ApiError::rate_limited(1))
}

/// The visitor behind a request: `Authorization: Bearer <visitor token>`, or `?token=` where
/// a header cannot be set (WebSocket, EventSource, a download link).
pub struct WidgetVisitor(pub Visitor);

impl FromRequestParts<AppState> for WidgetVisitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let query = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        });
        let Some(token) = bearer.or(query) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_required",
                "send the visitor token from POST /widget/v1/sessions as `Authorization: Bearer …`",
            ));
        };
        let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        Ok(WidgetVisitor(widget::authenticate(&state.store, &token, origin).await?))
    }
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A page of the demo shop with the widget embedded (the demo's `channels.widget.page_url`).
async fn demo_page(State(state): State<AppState>, Path(website_token): Path<String>) -> ApiResult<Response> {
    let id = website_token.clone();
    let found = state
        .store
        .db
        .read(move |c| sb_store::channel_accounts::for_webhook(c, &id))
        .await?
        .filter(|(a, _)| a.channel == sb_channels::widget::KIND);
    if found.is_none() || !sb_core::ids::is_id(&website_token) {
        return Err(ApiError::not_found(
            "widget_not_found",
            "no widget has this website token",
        ));
    }
    let page = DEMO_PAGE
        .replace("{{ORIGIN}}", state.base_url.trim_end_matches('/'))
        .replace("{{WEBSITE_TOKEN}}", &website_token);
    Ok(Html(page).into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct StartSession {
    /// The widget's website token (its channel account id).
    pub website_token: String,
    /// A token from an earlier session: the same visitor comes back with a fresh token.
    pub token: Option<String>,
}

/// Starts or resumes a visitor session: a visitor token, the widget's settings and where the
/// chat can continue (handoff targets).
#[utoipa::path(post, path = "/widget/v1/sessions", tag = "widget", request_body = StartSession, responses(
    (status = 201, description = "`{token, visitor_id, expires_at, settings}`"),
    (status = 403, description = "`origin_not_allowed`", body = ErrorBody),
    (status = 404, description = "`widget_not_found`", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many new sessions from this address or on this widget", body = ErrorBody)
))]
async fn start_session(
    State(state): State<AppState>,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StartSession>,
) -> ApiResult<(StatusCode, axum::Json<widget::Session>)> {
    if !sb_core::ids::is_id(&body.website_token) {
        return Err(ApiError::not_found(
            "widget_not_found",
            "no widget has this website token",
        ));
    }
    // A visitor coming back with their token is not a new session.
    if body.token.is_none() {
        admit_session(&state, &body.website_token, ip.as_deref().unwrap_or("unknown")).await?;
    }
    let session = widget::start_session(
        &state.store,
        &state.channels,
        &body.website_token,
        body.token.as_deref(),
        origin_of(&headers),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// The visitor's profile fields and the latest messages of their chat, with the sequence
/// number to open the socket after.
#[utoipa::path(get, path = "/widget/v1/conversation", tag = "widget", responses(
    (status = 200, description = "`{customer, messages, last_seq}`"),
    (status = 401, description = "`authentication_required`, `invalid_visitor_token`", body = ErrorBody)
), security(("visitor" = [])))]
async fn conversation(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
) -> ApiResult<axum::Json<widget::ThreadView>> {
    Ok(axum::Json(widget::thread(&state.store, &visitor).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct Contact {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// The pre-chat form. E-mail and phone are claims: linked when nobody has them, never merged.
#[utoipa::path(post, path = "/widget/v1/contact", tag = "widget", request_body = Contact, responses(
    (status = 200, description = "`{customer}`"),
    (status = 422, description = "`invalid_email`, `invalid_phone`, `invalid_name`", body = ErrorBody)
), security(("visitor" = [])))]
async fn contact(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    ApiJson(body): ApiJson<Contact>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    limit(&state, &visitor)?;
    let customer = widget::update_contact(
        &state.store,
        &visitor,
        body.name.as_deref(),
        body.email.as_deref(),
        body.phone.as_deref(),
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "customer": customer })))
}

#[derive(Deserialize, ToSchema)]
pub struct IdentifyBody {
    /// The site's own id for the user.
    pub identifier: String,
    /// hex HMAC-SHA256(widget `hmac_secret`, identifier), computed by the site's backend.
    pub identifier_hash: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Identifies the visitor. Only a valid `identifier_hash` merges the visitor into the
/// customer who has that identifier; the answer carries a fresh token.
#[utoipa::path(post, path = "/widget/v1/identify", tag = "widget", request_body = IdentifyBody, responses(
    (status = 200, description = "`{verified, token, merged_into}`"),
    (status = 401, description = "`invalid_identifier_hash`, `identifier_hash_required`", body = ErrorBody)
), security(("visitor" = [])))]
async fn identify(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    ApiJson(body): ApiJson<IdentifyBody>,
) -> ApiResult<axum::Json<widget::Identified>> {
    limit(&state, &visitor)?;
    let request = widget::Identify {
        identifier: body.identifier,
        identifier_hash: body.identifier_hash,
        name: body.name,
        email: body.email,
        phone: body.phone,
    };
    Ok(axum::Json(widget::identify(&state.store, &visitor, request).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct PostMessage {
    /// Generated by the widget; sending the same id again returns the stored message.
    pub echo_id: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachment_ids: Vec<String>,
}

/// The visitor writes. Idempotent by `echo_id`: 201 when stored now, 200 when it was already.
#[utoipa::path(post, path = "/widget/v1/messages", tag = "widget", request_body = PostMessage, responses(
    (status = 201, description = "`{message}`"),
    (status = 200, description = "`{message}`, stored by an earlier request with this echo_id"),
    (status = 422, description = "`empty_message`, `text_too_long`, `invalid_echo_id`, `attachment_not_found`", body = ErrorBody),
    (status = 429, description = "`rate_limited`", body = ErrorBody)
), security(("visitor" = [])))]
async fn post_message(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    ApiJson(body): ApiJson<PostMessage>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    limit(&state, &visitor)?;
    let (message, created) = widget::post_message(
        &state.engine,
        &state.live,
        &visitor,
        &body.echo_id,
        &body.text,
        &body.attachment_ids,
    )
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(serde_json::json!({ "message": message }))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    pub filename: Option<String>,
}

/// Uploads a file (the raw bytes as the body, its type as `Content-Type`); send a message
/// with its id next. PNG, JPEG, GIF, WebP, PDF and plain text, checked by content.
#[utoipa::path(post, path = "/widget/v1/attachments", tag = "widget", params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses(
    (status = 201, description = "`{id, filename, content_type, size}`"),
    (status = 413, description = "`attachment_too_large`, `payload_too_large`", body = ErrorBody),
    (status = 415, description = "`unsupported_attachment_type`", body = ErrorBody)
), security(("visitor" = [])))]
async fn upload(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<sb_store::attachments::AttachmentMeta>)> {
    limit(&state, &visitor)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "attachment_too_large",
                format!(
                    "the file is larger than {} bytes",
                    widget::max_upload_bytes(&visitor.account)
                ),
            )
        } else {
            ApiError::invalid("invalid_body", e.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let meta = widget::upload(
        &state.store,
        &visitor,
        q.filename.as_deref().unwrap_or("file"),
        content_type,
        body.to_vec(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(meta)))
}

/// A file the visitor uploaded. Served with its checked type, `nosniff`, and as a download
/// unless it is an image, so an upload can never run as a page of this origin.
#[utoipa::path(get, path = "/widget/v1/attachments/{id}", tag = "widget", params(("id" = String, Path)), responses(
    (status = 200, description = "the file"),
    (status = 404, description = "`attachment_not_found`", body = ErrorBody)
), security(("visitor" = [])))]
async fn download(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let found = widget::download(&state.store, &visitor, &id).await?;
    let Some(file) = found else {
        return Err(ApiError::not_found("attachment_not_found", "no such attachment"));
    };
    Ok(file_response(&file))
}

pub(crate) fn file_response(file: &sb_store::attachments::Attachment) -> Response {
    let disposition = if file.content_type.starts_with("image/") {
        "inline"
    } else {
        "attachment"
    };
    let disposition = HeaderValue::from_str(&format!("{disposition}; filename=\"{}\"", file.filename))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = file.data.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    response
}

#[derive(Deserialize, ToSchema)]
pub struct Typing {
    pub on: bool,
}

/// The visitor types or stops; agents see it live (nothing is stored).
#[utoipa::path(post, path = "/widget/v1/typing", tag = "widget", request_body = Typing, responses((status = 204)), security(("visitor" = [])))]
async fn typing(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    ApiJson(body): ApiJson<Typing>,
) -> ApiResult<StatusCode> {
    limit(&state, &visitor)?;
    widget::typing(&state.store, &state.live, &visitor, body.on).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The visitor has seen the chat: agents' messages there become `read`.
#[utoipa::path(post, path = "/widget/v1/seen", tag = "widget", responses((status = 200, description = "`{updated}`")), security(("visitor" = [])))]
async fn seen(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let updated = widget::seen(&state.store, &state.live, &visitor).await?;
    Ok(axum::Json(serde_json::json!({ "updated": updated })))
}

#[derive(Deserialize, ToSchema)]
pub struct HandoffBody {
    /// One of the session's `settings.handoff` targets.
    pub channel_account_id: String,
    /// The visitor's address there (phone, e-mail or the channel's own id).
    pub address: String,
}

/// The visitor moves the chat to another channel: the address is linked to them, a first
/// message goes out there, and their replies there continue this conversation.
#[utoipa::path(post, path = "/widget/v1/handoff", tag = "widget", request_body = HandoffBody, responses(
    (status = 200, description = "`{message}`: the first message on the new channel"),
    (status = 409, description = "`identity_conflict`", body = ErrorBody),
    (status = 422, description = "`invalid_address`, `handoff_unsupported`, `reply_not_allowed`", body = ErrorBody)
), security(("visitor" = [])))]
async fn handoff(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    ApiJson(body): ApiJson<HandoffBody>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    limit(&state, &visitor)?;
    if !sb_core::ids::is_id(&body.channel_account_id) {
        return Err(ApiError::not_found(
            "channel_account_not_found",
            "no such channel account",
        ));
    }
    let customer_id = match visitor.customer_id.clone() {
        Some(id) => id,
        None => widget::ensure_customer(&state.store, &visitor).await?,
    };
    let request = widget::Handoff {
        workspace_id: visitor.workspace_id.clone(),
        customer_id,
        channel_account_id: body.channel_account_id,
        address: Some(body.address),
    };
    let message = widget::handoff(
        &state.engine,
        &state.channels,
        &state.live,
        request,
        widget::HandoffBy::Visitor(visitor),
    )
    .await?;
    let payload = sb_inbox::live::message_payload(&message);
    Ok(axum::Json(
        serde_json::json!({ "message": widget::visitor_message(&payload) }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The visitor token (a socket cannot send headers); read by [`WidgetVisitor`].
    #[allow(dead_code)]
    pub token: Option<String>,
    /// Replay what followed this sequence number (`last_seq` of the conversation, or the
    /// `seq` of the last frame received).
    pub after: Option<i64>,
}

/// The visitor's live feed as a WebSocket: JSON frames `message.created`, `message.updated`,
/// `conversation.updated` (with `seq`), `typing`, `presence`, `resync`; the client may send
/// `{"type":"typing","on"}` and `{"type":"message","echo_id","text","attachment_ids"}`
/// (answered with `ack` or `error`).
#[utoipa::path(get, path = "/widget/v1/socket", tag = "widget", params(FeedQuery), responses(
    (status = 101, description = "switching to the WebSocket protocol"),
    (status = 401, description = "`authentication_required`, `invalid_visitor_token`", body = ErrorBody)
), security(("visitor" = [])))]
async fn socket(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    Query(q): Query<FeedQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let frames = start_feed(&state, visitor.clone(), q.after).await?;
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| run_socket(state, visitor, frames, socket)))
}

/// The same feed as server-sent events, for networks that break WebSockets; `id` is `seq`.
#[utoipa::path(get, path = "/widget/v1/events", tag = "widget", params(FeedQuery), responses(
    (status = 200, content_type = "text/event-stream", body = String, description = "the socket's frames as `data`"),
    (status = 401, description = "`authentication_required`, `invalid_visitor_token`", body = ErrorBody)
), security(("visitor" = [])))]
async fn events(
    State(state): State<AppState>,
    WidgetVisitor(visitor): WidgetVisitor,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after);
    let frames = start_feed(&state, visitor, resume).await?;
    let stream = futures_util::stream::unfold(frames, |mut frames| async move {
        let frame = frames.recv().await?;
        let mut event = Event::default().data(frame.to_string());
        if let Some(seq) = frame["seq"].as_i64() {
            event = event.id(seq.to_string());
        }
        Some((Ok(event), frames))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Subscribes (before reading the log, so nothing in between is missed) and runs the feed
/// in a task of its own; the frames come out of the returned channel, which ends when the
/// server drains or the receiver is dropped.
async fn start_feed(
    state: &AppState,
    visitor: Visitor,
    after: Option<i64>,
) -> Result<mpsc::Receiver<serde_json::Value>, ApiError> {
    let deliveries = state
        .live
        .subscribe(&visitor.workspace_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", e.to_string()))?;
    let (ws, store) = (visitor.workspace_id.clone(), state.store.clone());
    let latest = store.db.read(move |c| sb_store::live_events::latest(c, &ws)).await?;
    let (tx, rx) = mpsc::channel(256);
    let feed = Feed {
        state: state.clone(),
        visitor,
        deliveries,
        last: after.unwrap_or(latest).clamp(0, latest),
        latest,
        conversation: None,
        online: None,
        others: Default::default(),
        tx,
    };
    tokio::spawn(feed.run());
    Ok(rx)
}

struct Feed {
    state: AppState,
    visitor: Visitor,
    deliveries: broadcast::Receiver<Arc<Delivery>>,
    /// The last sequence number handled.
    last: i64,
    latest: i64,
    conversation: Option<String>,
    online: Option<bool>,
    /// Customers seen on this widget that are not this visitor (while they have none).
    others: std::collections::HashSet<String>,
    tx: mpsc::Sender<serde_json::Value>,
}

impl Feed {
    async fn send(&self, frame: serde_json::Value) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    async fn run(mut self) {
        let mut draining = self.state.draining();
        if let Some(customer) = self.visitor.customer_id.clone() {
            let ws = self.visitor.workspace_id.clone();
            self.conversation = self
                .state
                .store
                .db
                .read(move |c| sb_store::conversations::id_for_customer(c, &ws, &customer))
                .await
                .ok()
                .flatten();
        }
        if !self.presence().await {
            return;
        }
        if self.latest - self.last > MAX_REPLAY {
            self.last = self.latest;
            if !self.send(serde_json::json!({ "type": "resync" })).await {
                return;
            }
        }
        if !self.catch_up().await {
            return;
        }
        let tx = self.tx.clone();
        loop {
            let delivery = tokio::select! {
                delivery = self.deliveries.recv() => delivery,
                _ = draining.wait_for(|d| *d) => return,
                _ = tx.closed() => return,
            };
            let ok = match delivery.as_deref() {
                Ok(Delivery::Logged { event, payload, .. }) if event.seq == self.last + 1 => {
                    self.deliver(event, payload).await
                }
                Ok(Delivery::Logged { event, .. }) if event.seq <= self.last => true,
                Ok(Delivery::Ephemeral {
                    kind,
                    conversation_id,
                    data,
                    ..
                }) => self.ephemeral(kind, conversation_id.as_deref(), data).await,
                Err(broadcast::error::RecvError::Closed) => return,
                // A gap (published out of order) or this feed fell behind: the log has it all.
                _ => self.catch_up().await,
            };
            if !ok {
                return;
            }
        }
    }

    /// Replays the log after `last`, keeping what concerns this visitor.
    async fn catch_up(&mut self) -> bool {
        loop {
            let events = match widget::events_after(&self.state.store, &self.visitor.workspace_id, self.last, 500).await
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "reading live events for a visitor failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let done = events.len() < 500;
            for e in &events {
                let payload: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap_or_default();
                if !self.deliver(e, &payload).await {
                    return false;
                }
            }
            if done {
                return true;
            }
        }
    }

    async fn deliver(&mut self, e: &LiveEvent, payload: &serde_json::Value) -> bool {
        self.last = e.seq;
        // A visitor who had sent nothing when the feed opened gets a customer with their first
        // message: look again when a message appears on this widget.
        // Each customer is looked up once: another visitor's messages do not cost a read each.
        if self.visitor.customer_id.is_none()
            && e.kind.starts_with("message.")
            && payload["channel_account_id"].as_str() == Some(self.visitor.account.id.as_str())
            && let Some(customer) = payload["customer_id"].as_str()
            && !self.others.contains(customer)
        {
            self.visitor.customer_id = widget::customer_of_visitor(&self.state.store, &self.visitor)
                .await
                .ok()
                .flatten();
            if self.visitor.customer_id.as_deref() != Some(customer) {
                if self.others.len() >= 1_000 {
                    self.others.clear();
                }
                self.others.insert(customer.to_owned());
            }
        }
        let frame = match e.kind.as_str() {
            "message.created" | "message.updated" if widget::visible_to(&self.visitor, payload) => {
                if self.conversation.is_none() {
                    self.conversation = e.conversation_id.clone();
                }
                serde_json::json!({ "type": e.kind, "seq": e.seq, "message": widget::visitor_message(payload) })
            }
            "conversation.updated"
                if self.visitor.customer_id.is_some()
                    && payload["customer_id"].as_str() == self.visitor.customer_id.as_deref() =>
            {
                self.conversation = e.conversation_id.clone();
                serde_json::json!({ "type": e.kind, "seq": e.seq, "status": payload["status"] })
            }
            _ => return true,
        };
        self.send(frame).await
    }

    async fn ephemeral(&mut self, kind: &str, conversation_id: Option<&str>, data: &serde_json::Value) -> bool {
        match kind {
            // An agent typing in this visitor's conversation (not the visitor's own echo).
            "typing" if conversation_id.is_some() && conversation_id == self.conversation.as_deref() => {
                if data["author"] == "customer" {
                    return true;
                }
                self.send(serde_json::json!({ "type": "typing", "on": data["on"].as_bool().unwrap_or(false) }))
                    .await
            }
            "presence" => self.presence().await,
            _ => true,
        }
    }

    /// Sends whether agents are online, when that changed.
    async fn presence(&mut self) -> bool {
        let Ok(online) = widget::agents_online(&self.state.store, &self.visitor.workspace_id).await else {
            return true;
        };
        if self.online == Some(online) {
            return true;
        }
        self.online = Some(online);
        self.send(serde_json::json!({ "type": "presence", "agents_online": online }))
            .await
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Typing {
        on: bool,
    },
    Message {
        echo_id: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachment_ids: Vec<String>,
    },
}

async fn run_socket(
    state: AppState,
    visitor: Visitor,
    mut frames: mpsc::Receiver<serde_json::Value>,
    mut socket: WebSocket,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(25));
    ping.tick().await;
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                if socket.send(WsMessage::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let reply = handle_client_frame(&state, &visitor, text.as_str()).await;
                if let Some(reply) = reply
                    && socket.send(WsMessage::Text(reply.to_string().into())).await.is_err()
                {
                    break;
                }
            }
            _ = ping.tick() => {
                if socket.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

async fn handle_client_frame(state: &AppState, visitor: &Visitor, text: &str) -> Option<serde_json::Value> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            return Some(serde_json::json!({ "type": "error", "code": "invalid_frame", "message": e.to_string() }));
        }
    };
    if limit(state, visitor).is_err() {
        return Some(serde_json::json!({ "type": "error", "code": "rate_limited", "message": "slow down" }));
    }
    match frame {
        ClientFrame::Typing { on } => {
            let _ = widget::typing(&state.store, &state.live, visitor, on).await;
            None
        }
        ClientFrame::Message {
            echo_id,
            text,
            attachment_ids,
        } => {
            let result =
                widget::post_message(&state.engine, &state.live, visitor, &echo_id, &text, &attachment_ids).await;
            Some(match result {
                Ok((message, _)) => serde_json::json!({ "type": "ack", "echo_id": echo_id, "message": message }),
                Err(e) => {
                    let error = ApiError::from(e);
                    serde_json::json!({ "type": "error", "echo_id": echo_id, "code": error.code, "message": error.message })
                }
            })
        }
    }
}
