//! API tokens: each user's own, shown once, stored hashed.

use crate::error::{AppError, AppResult};
use crate::views::{Page, PageQuery, TokenView, page};
use crate::{App, Principal};
use sb_core::{Permission, credentials};
use sb_store::audit::{self, Change};
use sb_store::objects::ObjectKind;
use sb_store::tokens;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
/// The caller's tokens (an admin sees every token of the workspace). Secrets are never listed.
pub async fn list_tokens(app: &App, principal: &Principal, q: PageQuery) -> AppResult<Page<TokenView>> {
    principal.require(Permission::ManageOwnTokens)?;
    let only_user = (!principal.user.role().allows(Permission::ManageUsers)).then(|| principal.user.id.clone());
    let (ws, after, limit) = (principal.workspace_id().to_owned(), q.after()?, q.limit()?);
    let rows = app
        .store
        .db
        .read(move |c| tokens::list(c, &ws, only_user.as_deref(), after.as_deref(), limit))
        .await?;
    Ok(page(&rows, limit, |t| &t.id))
}
/// Revokes a token at once.
pub async fn revoke_token(app: &App, principal: &Principal, id: String) -> AppResult<()> {
    principal.require(Permission::ManageOwnTokens)?;
    let is_admin = principal.user.role().allows(Permission::ManageUsers);
    let (ws, tid, user_id, actor, now) = (
        principal.workspace_id().to_owned(),
        id.clone(),
        principal.user.id.clone(),
        principal.actor(),
        app.store.now(),
    );
    let revoked = app
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
        Ok(())
    } else {
        Err(crate::access::not_found(app, principal, ObjectKind::ApiToken, &id, "token_not_found").await)
    }
}
/// Creates an API token for the caller. The secret is returned once and stored only hashed.
pub async fn create_token(app: &App, principal: &Principal, body: CreateToken) -> AppResult<CreatedToken> {
    principal.require(Permission::ManageOwnTokens)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(AppError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters",
        ));
    }
    let secret = credentials::new_api_token();
    let digest = credentials::secret_digest(&secret);
    let (user, actor, now) = (principal.user.clone(), principal.actor(), app.store.now());
    let token = app
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
    Ok(CreatedToken {
        token: TokenView::from(&token),
        secret,
    })
}
