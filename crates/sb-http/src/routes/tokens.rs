use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{Page, PageQuery, TokenView};
use sb_app::tokens as app;
#[allow(unused_imports)]
use sb_app::tokens::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Creates an API token for the caller. The secret is returned once and stored only hashed.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken, responses(
    (status = 201, body = CreatedToken),
    (status = 422, description = "`invalid_request`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_token(&state.app, &principal, body).await?),
    ))
}

/// The caller's tokens (an admin sees every token of the workspace). Secrets are never listed.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(PageQuery), responses(
    (status = 200, body = inline(Page<TokenView>))
), security(("bearer" = []), ("session" = [])))]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<TokenView>>> {
    Ok(axum::Json(app::list_tokens(&state.app, &principal, q).await?))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)), responses(
    (status = 204),
    (status = 404, description = "`token_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app::revoke_token(&state.app, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
