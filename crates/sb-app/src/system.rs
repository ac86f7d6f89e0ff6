//! The instance: workspaces and the audit log.

use crate::error::{AppError, AppResult};
use crate::views::{AuditView, Page, PageQuery, UserView, WorkspaceView, page};
use crate::{App, Principal};
use sb_core::{Permission, Role};
use sb_store::audit::{self, Change};
use sb_store::users::{self, NewUser};
use sb_store::workspaces;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only entries with this action, e.g. `user.updated`.
    pub action: Option<String>,
}
/// The workspace's audit log, newest first.
pub async fn list_audit(
    app: &App,
    principal: &Principal,
    filter: AuditFilter,
    q: PageQuery,
) -> AppResult<Page<AuditView>> {
    principal.require(Permission::ReadAuditLog)?;
    let (ws, before, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit()?);
    let rows = app
        .store
        .db
        .read(move |c| audit::list(c, &ws, filter.action.as_deref(), before.as_deref(), limit))
        .await?;
    Ok(page(&rows, limit, |a| &a.id))
}
/// Creates a workspace with its first admin. Only the instance owner may.
pub async fn create_workspace(app: &App, principal: &Principal, body: CreateWorkspace) -> AppResult<CreatedWorkspace> {
    principal.require(Permission::ManageWorkspace)?;
    if !principal.user.is_owner {
        return Err(AppError::forbidden("only the instance owner creates workspaces"));
    }
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(AppError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters",
        ));
    }
    let hash = super::users::new_password_hash(&body.admin_password).await?;
    let (actor, owner_ws, now) = (principal.actor(), principal.workspace_id().to_owned(), app.store.now());
    let (ws, admin) = app
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
    Ok(CreatedWorkspace {
        workspace: WorkspaceView::from(&ws),
        admin: UserView::from(&admin),
    })
}
