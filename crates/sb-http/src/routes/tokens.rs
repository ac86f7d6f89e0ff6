use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::{Permission, credentials};
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::tokens;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{Page, PageQuery, TokenView, page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateToken {
    /// What the token is for, e.g. "shop backend".
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret. Shown only in this response; store it now.
    pub secret: String,
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
    principal.require(Permission::ManageOwnTokens)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters",
        ));
    }
    let secret = credentials::new_api_token();
    let digest = credentials::secret_digest(&secret);
    let (user, actor, now) = (principal.user.clone(), principal.actor(), state.store.now());
    let token = state
        .store
        .db
        .write(move |c| {
            let token = tokens::create(c, &user, &name, &digest, now)?;
            let change = Change {
                action: "api_token.created",
                object_kind: "api_token",
                object_id: Some(&token.id),
                before: None,
                after: Some(serde_json::to_value(TokenView::from(&token)).unwrap_or_default()),
            };
            audit::record(c, &user.workspace_id, &actor, &change, now)?;
            Ok::<_, sb_store::StoreError>(token)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            token: TokenView::from(&token),
            secret,
        }),
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
    principal.require(Permission::ManageOwnTokens)?;
    let only_user = (!principal.user.role().allows(Permission::ManageUsers)).then(|| principal.user.id.clone());
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit());
    let rows = state
        .store
        .db
        .read(move |c| tokens::list(c, &ws, only_user.as_deref(), after.as_deref(), limit))
        .await?;
    Ok(axum::Json(page(&rows, limit, |t| &t.id)))
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
    principal.require(Permission::ManageOwnTokens)?;
    let is_admin = principal.user.role().allows(Permission::ManageUsers);
    let (ws, tid, user_id, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.user.id.clone(),
        principal.actor(),
        state.store.now(),
    );
    let revoked = state
        .store
        .db
        .write(move |c| {
            let Some(token) = tokens::get(c, &ws, &tid)? else {
                return Ok(false);
            };
            if token.user_id != user_id && !is_admin {
                return Ok(false);
            }
            if tokens::revoke(c, &ws, &tid, now)? {
                let change = Change {
                    action: "api_token.revoked",
                    object_kind: "api_token",
                    object_id: Some(&tid),
                    before: Some(serde_json::to_value(TokenView::from(&token)).unwrap_or_default()),
                    after: None,
                };
                audit::record(c, &ws, &actor, &change, now)?;
            }
            Ok::<_, sb_store::StoreError>(true)
        })
        .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(super::not_found(&state, &principal, ObjectKind::ApiToken, &id, "token_not_found").await)
    }
}
