//! Canned responses: the workspace's shared library of replies. Agents read and manage it
//! (as in Chatwoot), so both need only the permission to reply.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::canned::{
    CannedResponseQuery, CannedResponseView, CreateCannedResponse, UpdateCannedResponse, add, edit, list_library,
    remove,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_canned_responses, create_canned_response))
        .routes(routes!(update_canned_response, delete_canned_response))
}

#[derive(Serialize, ToSchema)]
pub struct CannedResponseList {
    pub items: Vec<CannedResponseView>,
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
    let rows = list_library(&state.app, &principal, q.q).await?;
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
    let created = add(&state.app, &principal, body).await?;
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
    let updated = edit(&state.app, &principal, &id, body).await?;
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
    remove(&state.app, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
