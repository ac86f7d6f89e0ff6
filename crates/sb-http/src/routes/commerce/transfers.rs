//! Transfers between locations: units sent are off the sender's shelf and `incoming` at the
//! receiver until received there; every step goes through the ledger and is audited.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::commerce::transfers as app;
#[allow(unused_imports)]
use sb_app::commerce::transfers::*;

use sb_app::commerce::transfers::{TransferActionBody, transfer_step};

/// Sends stock from one location to another: off the sender's shelf at once, `incoming` at
/// the receiver until received there.
#[utoipa::path(post, path = "/api/v1/transfers", tag = "commerce", request_body = CreateTransfer, responses(
    (status = 201, description = "the transfer with its `lines`"),
    (status = 404, description = "`not_found`: an unknown SKU or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `idempotency_key_reused`", body = ErrorBody),
    (status = 422, description = "`invalid_order`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn create_transfer(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTransfer>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_transfer(&state.app, &principal, body).await?),
    ))
}

/// Transfers from or to a location (a store's incoming deliveries: `status=in_transit`),
/// newest first.
#[utoipa::path(get, path = "/api/v1/transfers", tag = "commerce", params(TransferQuery), responses(
    (status = 200, description = "`{items: [transfer with lines], next_cursor}`")
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn list_transfers(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<TransferQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::list_transfers(&state.app, &principal, q).await?))
}

/// One transfer with its lines.
#[utoipa::path(get, path = "/api/v1/transfers/{id}", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "the transfer with its `lines`"),
    (status = 404, description = "`not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn get_transfer(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::get_transfer(&state.app, &principal, id).await?))
}

/// `receive` (body `{}` or `{"lost": [{sku, quantity}]}`): the units arrive at the receiving
/// location (on hand there; committed to the pickup order the transfer sources, which staff
/// can then mark ready). `cancel`: a transfer on its way goes back to the sender's shelf
/// (one sourcing an order: cancel the order). Each is idempotent and audited.
#[utoipa::path(post, path = "/api/v1/transfers/{id}/{action}", tag = "commerce",
    params(("id" = String, Path), ("action" = String, Path, description = "`receive` or `cancel`")),
    request_body = TransferActionBody, responses(
    (status = 200, description = "the transfer with its `lines`"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`transfer_state`", body = ErrorBody),
    (status = 422, description = "`invalid_order` (lost units out of range, or on an order's transfer)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn transfer_action(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<TransferActionBody>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    transfer_step(&state.app, &principal, &id, &action, body)
        .await
        .map(axum::Json)
}
