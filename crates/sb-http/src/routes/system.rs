//! Workspaces and the audit log.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{AuditView, Page, PageQuery};
use sb_app::system as app;
#[allow(unused_imports)]
use sb_app::system::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace))
        .routes(routes!(list_audit))
}

/// Creates a workspace with its first admin. Only the instance owner may.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = CreateWorkspace, responses(
    (status = 201, body = CreatedWorkspace),
    (status = 403, description = "`permission_denied` (not the instance owner)", body = ErrorBody),
    (status = 409, description = "`email_taken`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_workspace(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> ApiResult<(StatusCode, axum::Json<CreatedWorkspace>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_workspace(&state.app, &principal, body).await?),
    ))
}

/// The workspace's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditFilter, PageQuery), responses(
    (status = 200, body = inline(Page<AuditView>))
), security(("bearer" = []), ("session" = [])))]
async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<AuditFilter>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<AuditView>>> {
    Ok(axum::Json(app::list_audit(&state.app, &principal, filter, q).await?))
}
