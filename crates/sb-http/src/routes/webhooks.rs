//! Provider webhooks: `/hooks/{channel}/{account_id}`. Authenticated by the channel's own
//! signature over the raw bytes; stored before the 2xx.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use sb_inbox::{IngestError, IngestOutcome};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive, handshake))
        .routes(routes!(inbound_stats))
}

/// The raw body; an oversize one is `payload_too_large`.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(crate::extract::body_rejection)
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// `accepted` (stored now) or `duplicate` (already had it; nothing changed).
    pub status: &'static str,
}

/// Receives a provider's request. Answered 200 only once the request is durably stored.
#[utoipa::path(post, path = "/hooks/{channel}/{account_id}", tag = "webhooks",
    params(("channel" = String, Path, description = "e.g. `api`"), ("account_id" = String, Path)),
    request_body(content = String, description = "the provider's payload, verified over its raw bytes"),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "`malformed_payload`", body = ErrorBody),
        (status = 401, description = "`missing_signature`, `invalid_signature`, `expired_timestamp`", body = ErrorBody),
        (status = 403, description = "`channel_account_disabled`, `channel_account_not_configured` (the account lacks the secret its provider signs with)", body = ErrorBody),
        (status = 404, description = "`channel_account_not_found`", body = ErrorBody),
        (status = 409, description = "`request_replayed`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody)
    ))]
async fn receive(
    State(state): State<AppState>,
    Path((channel, account_id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<axum::Json<WebhookAck>> {
    // The URL as the provider was told it: the public base, then the path and query we got.
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{path_and_query}", state.base_url.trim_end_matches('/'));
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned())))
        .collect();
    let outcome = sb_inbox::ingest(
        &state.store,
        &state.channels,
        &state.intake,
        sb_inbox::WebhookRequest {
            channel_kind: &channel,
            account_id: &account_id,
            url: &url,
            headers,
            body: body.to_vec(),
        },
    )
    .await;
    match outcome {
        Ok(IngestOutcome::Accepted) => Ok(axum::Json(WebhookAck { status: "accepted" })),
        Ok(IngestOutcome::Duplicate) => Ok(axum::Json(WebhookAck { status: "duplicate" })),
        Err(IngestError::UnknownAccount) => Err(ApiError::not_found(
            "channel_account_not_found",
            "no channel account of this kind with this id",
        )),
        Err(IngestError::Disabled) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "channel_account_disabled",
            "this channel account is disabled",
        )),
        Err(IngestError::Replayed) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "request_replayed",
            "this exact signed request was received before",
        )),
        // An account without the secret its provider signs with cannot take a request: the
        // business has to finish its set-up. Said as a refusal, and logged for the admin.
        Err(IngestError::Channel(sb_channels::ChannelError::Misconfigured(problem))) => {
            tracing::error!(channel = %channel, account_id = %account_id, problem = %problem, "webhook to an account that is not set up");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "channel_account_not_configured",
                format!("this channel account is not set up to receive webhooks: {problem}"),
            ))
        }
        Err(IngestError::Channel(e)) => {
            let status = match e {
                sb_channels::ChannelError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            Err(ApiError::new(status, e.code(), e.to_string()))
        }
        Err(IngestError::Store(e)) => Err(e.into()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct InboundStats {
    /// Stored and acknowledged, not processed yet.
    pub unprocessed: i64,
    /// Failed repeatedly and set aside; each keeps its last error.
    pub set_aside: i64,
}

/// The workspace's inbound queue: what is still to process, and what was set aside.
#[utoipa::path(get, path = "/api/v1/inbound-requests/stats", tag = "channels", responses(
    (status = 200, body = InboundStats)
), security(("bearer" = []), ("session" = [])))]
async fn inbound_stats(State(state): State<AppState>, principal: Principal) -> ApiResult<axum::Json<InboundStats>> {
    principal.require(sb_core::Permission::ManageJobs)?;
    let ws = principal.workspace_id().to_owned();
    let (unprocessed, set_aside) = state.store.db.read(move |c| sb_store::inbound::stats(c, &ws)).await?;
    Ok(axum::Json(InboundStats { unprocessed, set_aside }))
}

/// A provider verifying the webhook URL (Meta: `hub.mode=subscribe`, `hub.verify_token`,
/// `hub.challenge`): the bare challenge when the account's verify token matches.
#[utoipa::path(get, path = "/hooks/{channel}/{account_id}", tag = "channels",
    params(("channel" = String, Path), ("account_id" = String, Path)),
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "the challenge"),
        (status = 403, description = "`verify_token_mismatch`", body = ErrorBody),
        (status = 404, description = "`channel_account_not_found`", body = ErrorBody)
    ))]
async fn handshake(
    State(state): State<AppState>,
    Path((channel, account_id)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
) -> ApiResult<String> {
    let not_found = || {
        ApiError::not_found(
            "channel_account_not_found",
            "no channel account of this kind with this id",
        )
    };
    let kind = state.channels.get(&channel).cloned().ok_or_else(not_found)?;
    if !sb_core::ids::is_id(&account_id) {
        return Err(not_found());
    }
    let found = state
        .store
        .db
        .read(move |c| sb_store::channel_accounts::for_webhook(c, &account_id))
        .await?
        .filter(|(a, _)| a.channel == channel)
        .ok_or_else(not_found)?;
    let (account, secrets) = found;
    let account = sb_channels::Account {
        id: account.id.clone(),
        settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
        secrets: serde_json::from_str(&secrets).unwrap_or_default(),
    };
    match kind.handshake(&query, &account) {
        Some(Ok(challenge)) => Ok(challenge),
        Some(Err(sb_channels::ChannelError::Malformed(m))) => Err(ApiError::invalid("malformed_handshake", m)),
        Some(Err(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "verify_token_mismatch",
            "hub.verify_token does not match this channel account",
        )),
        None => Err(not_found()),
    }
}
