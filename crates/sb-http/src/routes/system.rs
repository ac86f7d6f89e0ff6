//! Workspaces and the audit log.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use sb_core::{Permission, Role};
use sb_store::audit::{self, Change};
use sb_store::users::{self, NewUser};
use sb_store::workspaces;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use crate::views::{AuditView, Page, PageQuery, UserView, WorkspaceView, page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace))
        .routes(routes!(list_audit))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateWorkspace {
    pub name: String,
    pub admin_email: String,
    pub admin_name: String,
    /// At least 10 characters.
    pub admin_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWorkspace {
    pub workspace: WorkspaceView,
    pub admin: UserView,
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
    principal.require(Permission::ManageWorkspace)?;
    if !principal.user.is_owner {
        return Err(ApiError::forbidden("only the instance owner creates workspaces"));
    }
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters",
        ));
    }
    let hash = super::users::new_password_hash(&body.admin_password).await?;
    let (actor, owner_ws, now) = (
        principal.actor(),
        principal.workspace_id().to_owned(),
        state.store.now(),
    );
    let (ws, admin) = state
        .store
        .db
        .write(move |c| {
            let ws = workspaces::create(c, &name, now)?;
            let new = NewUser {
                workspace_id: &ws.id,
                email: &body.admin_email,
                name: &body.admin_name,
                role: Role::Admin,
                password_hash: &hash,
                is_owner: false,
            };
            let admin = users::create(c, &new, now)?;
            let after = serde_json::to_value(WorkspaceView::from(&ws)).unwrap_or_default();
            for audited in [&owner_ws, &ws.id] {
                let change = Change {
                    action: "workspace.created",
                    object_kind: "workspace",
                    object_id: Some(&ws.id),
                    before: None,
                    after: Some(after.clone()),
                };
                audit::record(c, audited, &actor, &change, now)?;
            }
            Ok::<_, sb_store::StoreError>((ws, admin))
        })
        .await
        .map_err(super::users::email_taken)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWorkspace {
            workspace: WorkspaceView::from(&ws),
            admin: UserView::from(&admin),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only entries with this action, e.g. `user.updated`.
    pub action: Option<String>,
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
    principal.require(Permission::ReadAuditLog)?;
    let (ws, before, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit());
    let rows = state
        .store
        .db
        .read(move |c| audit::list(c, &ws, filter.action.as_deref(), before.as_deref(), limit))
        .await?;
    Ok(axum::Json(page(&rows, limit, |a| &a.id)))
}
