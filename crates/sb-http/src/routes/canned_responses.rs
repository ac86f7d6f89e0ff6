//! Canned responses: the workspace's shared library of replies. Agents read and manage it
//! (as in Chatwoot), so both need only the permission to reply.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::Permission;
use sb_store::StoreError;
use sb_store::audit::{self, Change};
use sb_store::canned_responses::{self, CannedResponse, validate_content, validate_short_code};
use sb_store::objects::ObjectKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};

/// A library is small; one list answer holds all of it.
const LIST_LIMIT: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_canned_responses, create_canned_response))
        .routes(routes!(update_canned_response, delete_canned_response))
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

#[derive(Serialize, ToSchema)]
pub struct CannedResponseList {
    pub items: Vec<CannedResponseView>,
}

#[derive(Deserialize, IntoParams)]
pub struct CannedResponseQuery {
    /// Only responses whose short code or content contains this, ignoring case.
    pub q: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateCannedResponse {
    /// 1–50 characters of `a-z`, `0-9`, `_` and `-`.
    pub short_code: String,
    /// 1–5,000 characters.
    pub content: String,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateCannedResponse {
    pub short_code: Option<String>,
    pub content: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::unprocessable("invalid_canned_response", message)
}

/// The store's short-code conflict gets this resource's own code.
fn short_code_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "canned_response_exists", message),
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
pub async fn list_library(
    state: &AppState,
    principal: &Principal,
    search: Option<String>,
) -> ApiResult<Vec<CannedResponse>> {
    principal.require(Permission::ReplyConversations)?;
    let ws = principal.workspace_id().to_owned();
    Ok(state
        .store
        .db
        .read(move |c| canned_responses::list(c, &ws, search.as_deref(), LIST_LIMIT))
        .await?)
}

/// Validates and adds a response, audited.
pub async fn add(state: &AppState, principal: &Principal, body: CreateCannedResponse) -> ApiResult<CannedResponse> {
    principal.require(Permission::ReplyConversations)?;
    validate_short_code(&body.short_code).map_err(invalid)?;
    validate_content(&body.content).map_err(invalid)?;
    let (ws, user_id, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.user.id.clone(),
        principal.actor(),
        state.store.now(),
    );
    state
        .store
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
pub async fn edit(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: UpdateCannedResponse,
) -> ApiResult<CannedResponse> {
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
        state.store.now(),
    );
    let updated = state
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
        None => Err(not_found(state, principal, id).await),
    }
}

/// Deletes a response, audited; 404 for an id the workspace does not have.
pub async fn remove(state: &AppState, principal: &Principal, id: &str) -> ApiResult<()> {
    principal.require(Permission::ReplyConversations)?;
    let (ws, rid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let deleted = state
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
        Err(not_found(state, principal, id).await)
    }
}

async fn not_found(state: &AppState, principal: &Principal, id: &str) -> ApiError {
    super::not_found(
        state,
        principal,
        ObjectKind::CannedResponse,
        id,
        "canned_response_not_found",
    )
    .await
}

/// The workspace's canned responses by short code, optionally filtered by a search term.
#[utoipa::path(get, path = "/api/v1/canned-responses", tag = "canned responses", params(CannedResponseQuery), responses(
    (status = 200, body = CannedResponseList)
), security(("bearer" = []), ("session" = [])))]
async fn list_canned_responses(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<CannedResponseQuery>,
) -> ApiResult<axum::Json<CannedResponseList>> {
    let rows = list_library(&state, &principal, q.q).await?;
    Ok(axum::Json(CannedResponseList {
        items: rows.iter().map(CannedResponseView::from).collect(),
    }))
}

/// Adds a canned response to the workspace's library.
#[utoipa::path(post, path = "/api/v1/canned-responses", tag = "canned responses", request_body = CreateCannedResponse, responses(
    (status = 201, body = CannedResponseView),
    (status = 409, description = "`canned_response_exists`", body = ErrorBody),
    (status = 422, description = "`invalid_canned_response`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_canned_response(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateCannedResponse>,
) -> ApiResult<(StatusCode, axum::Json<CannedResponseView>)> {
    let created = add(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, axum::Json(CannedResponseView::from(&created))))
}

/// Changes a canned response's short code and/or content.
#[utoipa::path(patch, path = "/api/v1/canned-responses/{id}", tag = "canned responses", params(("id" = String, Path)), request_body = UpdateCannedResponse, responses(
    (status = 200, body = CannedResponseView),
    (status = 404, description = "`canned_response_not_found`", body = ErrorBody),
    (status = 409, description = "`canned_response_exists`", body = ErrorBody),
    (status = 422, description = "`invalid_canned_response`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn update_canned_response(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateCannedResponse>,
) -> ApiResult<axum::Json<CannedResponseView>> {
    let updated = edit(&state, &principal, &id, body).await?;
    Ok(axum::Json(CannedResponseView::from(&updated)))
}

/// Removes a canned response from the library.
#[utoipa::path(delete, path = "/api/v1/canned-responses/{id}", tag = "canned responses", params(("id" = String, Path)), responses(
    (status = 204),
    (status = 404, description = "`canned_response_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn delete_canned_response(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    remove(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
