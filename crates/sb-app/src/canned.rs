//! Canned responses: the workspace's shared replies under a short code.

use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::Permission;
use sb_store::StoreError;
use sb_store::audit::{self, Change};
use sb_store::canned_responses::{self, CannedResponse, validate_content, validate_short_code};
use sb_store::objects::ObjectKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most a list shows at once.
const LIST_LIMIT: i64 = 500;

#[derive(Deserialize, IntoParams)]
pub struct CannedResponseQuery {
    /// Only responses whose short code or content contains this, ignoring case.
    pub q: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateCannedResponse {
    /// 1–50 characters of `a-z`, `0-9`, `_` and `-`.
    #[schema(min_length = 1, max_length = 50, pattern = "^[a-z0-9_-]+$")]
    pub short_code: String,
    /// 1–5,000 characters.
    #[schema(min_length = 1, max_length = 5000)]
    pub content: String,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateCannedResponse {
    pub short_code: Option<String>,
    pub content: Option<String>,
}

fn invalid(message: String) -> AppError {
    AppError::unprocessable("invalid_canned_response", message)
}

/// The store's short-code conflict gets this resource's own code.
fn short_code_conflict(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict(message) => AppError::new(StatusCode::CONFLICT, "canned_response_exists", message),
        other => other.into(),
    }
}

fn change<'a>(
    action: &'static str,
    id: &'a str,
    before: Option<&CannedResponse>,
    after: Option<&CannedResponse>,
) -> Change<'a> {
    let view = |r: &CannedResponse| serde_json::to_value(CannedResponseView::from(r)).unwrap_or_default();
    Change {
        action,
        object_kind: "canned_response",
        object_id: Some(id),
        before: before.map(view),
        after: after.map(view),
    }
}

/// The workspace's library (the JSON list and the web app's picker and page).
pub async fn list_library(app: &App, principal: &Principal, search: Option<String>) -> AppResult<Vec<CannedResponse>> {
    principal.require(Permission::ReplyConversations)?;
    let ws = principal.workspace_id().to_owned();
    Ok(app
        .store
        .db
        .read(move |c| canned_responses::list(c, &ws, search.as_deref(), LIST_LIMIT))
        .await?)
}

/// Validates and adds a response, audited.
pub async fn add(app: &App, principal: &Principal, body: CreateCannedResponse) -> AppResult<CannedResponse> {
    principal.require(Permission::ReplyConversations)?;
    validate_short_code(&body.short_code).map_err(invalid)?;
    validate_content(&body.content).map_err(invalid)?;
    let (ws, user_id, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.user.id.clone(),
        principal.actor(),
        app.store.now(),
    );
    app.store
        .db
        .write(move |c| {
            let created = canned_responses::create(c, &ws, &body.short_code, &body.content, Some(&user_id), now)?;
            let created_change = change("canned_response.created", &created.id, None, Some(&created));
            audit::record(c, &ws, &actor, &created_change, now)?;
            Ok::<_, StoreError>(created)
        })
        .await
        .map_err(short_code_conflict)
}

/// Validates and applies a change, audited; 404 for an id the workspace does not have.
pub async fn edit(app: &App, principal: &Principal, id: &str, body: UpdateCannedResponse) -> AppResult<CannedResponse> {
    principal.require(Permission::ReplyConversations)?;
    if let Some(short_code) = &body.short_code {
        validate_short_code(short_code).map_err(invalid)?;
    }
    if let Some(content) = &body.content {
        validate_content(content).map_err(invalid)?;
    }
    let (ws, rid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    let updated = app
        .store
        .db
        .write(move |c| {
            let Some(before) = canned_responses::get(c, &ws, &rid)? else {
                return Ok(None);
            };
            let after =
                canned_responses::update(c, &ws, &rid, body.short_code.as_deref(), body.content.as_deref(), now)?
                    .ok_or(StoreError::NotFound("canned response"))?;
            let updated_change = change("canned_response.updated", &rid, Some(&before), Some(&after));
            audit::record(c, &ws, &actor, &updated_change, now)?;
            Ok::<_, StoreError>(Some(after))
        })
        .await
        .map_err(short_code_conflict)?;
    match updated {
        Some(r) => Ok(r),
        None => Err(not_found(app, principal, id).await),
    }
}

/// Deletes a response, audited; 404 for an id the workspace does not have.
pub async fn remove(app: &App, principal: &Principal, id: &str) -> AppResult<()> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, rid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.store.now(),
    );
    let deleted = app
        .store
        .db
        .write(move |c| {
            let Some(before) = canned_responses::get(c, &ws, &rid)? else {
                return Ok(false);
            };
            canned_responses::delete(c, &ws, &rid)?;
            audit::record(
                c,
                &ws,
                &actor,
                &change("canned_response.deleted", &rid, Some(&before), None),
                now,
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(not_found(app, principal, id).await)
    }
}

async fn not_found(app: &App, principal: &Principal, id: &str) -> AppError {
    crate::access::not_found(
        app,
        principal,
        ObjectKind::CannedResponse,
        id,
        "canned_response_not_found",
    )
    .await
}

#[derive(Serialize, ToSchema)]
pub struct CannedResponseView {
    pub id: String,
    /// Typed in the composer after a slash: `/hours`.
    pub short_code: String,
    pub content: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&CannedResponse> for CannedResponseView {
    fn from(r: &CannedResponse) -> Self {
        CannedResponseView {
            id: r.id.clone(),
            short_code: r.short_code.clone(),
            content: r.content.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
