//! Files on messages, for agents.

use axum::extract::{Path, State};
use axum::response::Response;
use sb_core::Permission;
use sb_store::attachments;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download))
}

/// A file attached to a message, with its checked type; never served as a page.
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "inbox", params(("id" = String, Path)), responses(
    (status = 200, description = "the file"),
    (status = 404, description = "`attachment_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn download(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    principal.require(Permission::ReadConversations)?;
    let ws = principal.workspace_id().to_owned();
    let found = state.store.db.read(move |c| attachments::get(c, &ws, &id)).await?;
    match found {
        Some(file) => Ok(super::widget::file_response(&file)),
        None => Err(ApiError::not_found("attachment_not_found", "no such attachment")),
    }
}
