use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{Page, PageQuery, UserView};
use sb_app::users as app;
#[allow(unused_imports)]
use sb_app::users::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
}

/// Users of the caller's workspace.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery), responses(
    (status = 200, body = inline(Page<UserView>)),
    (status = 403, description = "`permission_denied`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<UserView>>> {
    Ok(axum::Json(app::list_users(&state.app, &principal, q).await?))
}

/// Adds a user to the caller's workspace.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, responses(
    (status = 201, body = UserView),
    (status = 409, description = "`email_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_role`, `weak_password`, `invalid_request`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_user(&state.app, &principal, body).await?),
    ))
}

/// One user of the caller's workspace.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)), responses(
    (status = 200, body = UserView),
    (status = 404, description = "`user_not_found` (also for another workspace's user)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(app::get_user(&state.app, &principal, id).await?))
}

/// Changes a user's role or disables the account (which ends its sessions and tokens).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)), request_body = UpdateUser, responses(
    (status = 200, body = UserView),
    (status = 404, description = "`user_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_role`, `cannot_change_own_account`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(app::update_user(&state.app, &principal, id, body).await?))
}
