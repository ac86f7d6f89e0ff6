use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{ChannelAccountView, Page};
use sb_app::channel_accounts as app;
#[allow(unused_imports)]
use sb_app::channel_accounts::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account))
        .routes(routes!(list_templates))
        .routes(routes!(sync_templates))
        .routes(routes!(measure_text))
}

/// What a text costs on this account before it is sent: length against the channel's limit
/// and, for SMS, its encoding and segments (GSM 03.38 rules).
#[utoipa::path(post, path = "/api/v1/channel-accounts/{id}/measure", tag = "channels", params(("id" = String, Path)),
    request_body = MeasureText, responses(
    (status = 200, body = TextMeasure),
    (status = 404, description = "`channel_account_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn measure_text(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MeasureText>,
) -> ApiResult<axum::Json<TextMeasure>> {
    Ok(axum::Json(app::measure_text(&state.app, &principal, id, body).await?))
}

/// Connects a channel account (one number, one bot, one integration).
#[utoipa::path(post, path = "/api/v1/channel-accounts", tag = "channels", request_body = CreateChannelAccount, responses(
    (status = 201, body = CreatedChannelAccount),
    (status = 422, description = "`unknown_channel`, `invalid_settings`, `provider_refused`: the provider refused these credentials (e.g. Telegram's setWebhook)", body = ErrorBody),
    (status = 502, description = "`provider_error`: the provider could not be reached", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_account(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateChannelAccount>,
) -> ApiResult<(StatusCode, axum::Json<CreatedChannelAccount>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_account(&state.app, &principal, body).await?),
    ))
}

/// The workspace's channel accounts (secrets are never returned).
#[utoipa::path(get, path = "/api/v1/channel-accounts", tag = "channels", responses(
    (status = 200, body = inline(Page<ChannelAccountView>))
), security(("bearer" = []), ("session" = [])))]
async fn list_accounts(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Page<ChannelAccountView>>> {
    Ok(axum::Json(app::list_accounts(&state.app, &principal).await?))
}

/// One channel account.
#[utoipa::path(get, path = "/api/v1/channel-accounts/{id}", tag = "channels", params(("id" = String, Path)), responses(
    (status = 200, body = ChannelAccountView),
    (status = 404, description = "`channel_account_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_account(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ChannelAccountView>> {
    Ok(axum::Json(app::get_account(&state.app, &principal, id).await?))
}

/// The account's message templates, as last synced from the provider.
#[utoipa::path(get, path = "/api/v1/channel-accounts/{id}/templates", tag = "channels", params(("id" = String, Path)), responses(
    (status = 200, description = "`{items: [{name, language, category, status, body, parameter_count, synced_at}]}`"),
    (status = 404, description = "`channel_account_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_templates(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::list_templates(&state.app, &principal, id).await?))
}

/// Fetches the account's templates from the provider and replaces the stored list (audited).
#[utoipa::path(post, path = "/api/v1/channel-accounts/{id}/templates/sync", tag = "channels", params(("id" = String, Path)), responses(
    (status = 200, description = "`{items: [...]}` as stored now"),
    (status = 404, description = "`channel_account_not_found`", body = ErrorBody),
    (status = 422, description = "`templates_unsupported`: the channel has no templates", body = ErrorBody),
    (status = 502, description = "`provider_error`, with the provider's code and message", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn sync_templates(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::sync_templates(&state.app, &principal, id).await?))
}
