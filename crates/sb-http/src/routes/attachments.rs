//! Files on messages, for agents.

use axum::extract::{Path, State};
use axum::response::Response;
use sb_app::attachments as app;
use sb_store::attachments;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(axum::extract::DefaultBodyLimit::max(
            sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES + 64 * 1024,
        ));
    OpenApiRouter::new().routes(routes!(download)).merge(uploads).route(
        "/media/{account_id}/{attachment_id}",
        axum::routing::get(provider_fetch),
    )
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    pub filename: Option<String>,
}

/// An agent uploads a file (raw bytes, its type as `Content-Type`) to send with a reply
/// (`attachment_ids`). Same types and checks as the widget's uploads.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "inbox", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses(
    (status = 201, description = "`{id, filename, content_type, size}`"),
    (status = 413, description = "`attachment_too_large`", body = ErrorBody),
    (status = 415, description = "`unsupported_attachment_type`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    axum::extract::Query(q): axum::extract::Query<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<attachments::AttachmentMeta>)> {
    let max = sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES;
    let body = body.map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "attachment_too_large",
            format!("the file is larger than {max} bytes"),
        )
    })?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let meta = app::upload(&state.app, &principal, q.filename.as_deref(), content_type, body).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(meta)))
}

#[derive(serde::Deserialize)]
struct FetchQuery {
    exp: i64,
    sig: String,
}

/// A provider fetching a file we sent (the URL is signed for that account and file, and
/// expires). Not part of the API document: only providers call it.
async fn provider_fetch(
    State(state): State<AppState>,
    axum::extract::Path((account_id, attachment_id)): axum::extract::Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<FetchQuery>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("attachment_not_found", "no such file, or the link expired");
    let now = state.store.now();
    let found = state
        .store
        .db
        .read(move |c| {
            let Some((account, secrets)) = sb_store::channel_accounts::for_webhook(c, &account_id)? else {
                return Ok(None);
            };
            let key = sb_core::credentials::secret_digest(&secrets);
            if !sb_channels::signing::media_signature_valid(&key, &account.id, &attachment_id, q.exp, &q.sig, now) {
                return Ok(None);
            }
            attachments::get(c, &account.workspace_id, &attachment_id)
        })
        .await?
        .ok_or_else(not_found)?;
    Ok(super::widget::file_response(&found))
}

/// A file attached to a message, with its checked type; never served as a page.
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "inbox", params(("id" = String, Path)), responses(
    (status = 200, description = "the file"),
    (status = 404, description = "`attachment_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn download(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    let file = app::download(&state.app, &principal, &id).await?;
    Ok(super::widget::file_response(&file))
}
