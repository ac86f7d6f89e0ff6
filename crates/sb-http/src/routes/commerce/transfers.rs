//! Transfers between locations: units sent are off the sender's shelf and `incoming` at the
//! receiver until received there; every step goes through the ledger and is audited.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::Permission;
use sb_store::audit::{self, Change as AuditChange};
use sb_store::catalog;
use sb_store::orders::OrderError;
use sb_store::transfers;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};

use super::orders::order_error;

#[derive(Deserialize, ToSchema)]
pub struct CreateTransfer {
    /// The same key and request again returns the first transfer; with another request, 409.
    pub idempotency_key: String,
    pub from_location_id: String,
    pub to_location_id: String,
    #[serde(default)]
    pub reason: String,
    pub lines: Vec<TransferLineBody>,
}

#[derive(Deserialize, ToSchema)]
pub struct TransferLineBody {
    /// An inventory item's SKU.
    pub sku: String,
    pub quantity: i64,
}

fn transfer_view(c: &mut dyn sb_store::Conn, t: transfers::Transfer) -> Result<serde_json::Value, OrderError> {
    let lines = transfers::lines(c, &t.id)?;
    let mut shown = serde_json::to_value(&t).map_err(|e| OrderError::Invalid(e.to_string()))?;
    shown["lines"] = serde_json::json!(lines);
    Ok(shown)
}

/// The (item, location) pairs a transfer moves, for availability events.
fn touched(c: &mut dyn sb_store::Conn, t: &transfers::Transfer) -> Result<Vec<(String, String)>, OrderError> {
    let mut touched = Vec::new();
    for line in transfers::lines(c, &t.id)? {
        touched.push((line.item_id.clone(), t.from_location_id.clone()));
        touched.push((line.item_id, t.to_location_id.clone()));
    }
    Ok(touched)
}

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
    principal.require(Permission::ManageInventory)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 || body.lines.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_order",
            "an idempotency_key (1–200 characters) and at least one line are required",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = super::ledger_actor(&actor);
    let (view, events) = state
        .store
        .db
        .write(move |c| {
            let mut items: BTreeMap<String, i64> = BTreeMap::new();
            for line in &body.lines {
                let item = catalog::find_item(c, &ws, &line.sku)?.ok_or(OrderError::NotFound("SKU"))?;
                if line.quantity < 1 {
                    return Err(OrderError::Invalid("each line needs a quantity of at least 1".into()));
                }
                *items.entry(item).or_insert(0) += line.quantity;
            }
            let key = format!("transfer:{}", body.idempotency_key);
            let (transfer, created) = transfers::create(
                c,
                &transfers::NewTransfer {
                    workspace_id: &ws,
                    idempotency_key: &key,
                    from_location_id: &body.from_location_id,
                    to_location_id: &body.to_location_id,
                    order_id: None,
                    reason: if body.reason.is_empty() { "replenishment" } else { &body.reason },
                    actor: &actor_name,
                    items: &items,
                },
                now,
            )?;
            let mut events = Vec::new();
            if created {
                let moved = touched(c, &transfer)?;
                events = sb_commerce::live::availability_changed(c, &ws, moved, now)?;
                let change = AuditChange {
                    action: "transfer.created",
                    object_kind: "transfer",
                    object_id: Some(&transfer.id),
                    before: None,
                    after: Some(serde_json::json!({
                        "from_location_id": transfer.from_location_id, "to_location_id": transfer.to_location_id,
                        "lines": body.lines.iter().map(|l| serde_json::json!({"sku": l.sku, "quantity": l.quantity})).collect::<Vec<_>>(),
                    })),
                };
                audit::record(c, &ws, &actor, &change, now)?;
            }
            Ok::<_, OrderError>((transfer_view(c, transfer)?, events))
        })
        .await
        .map_err(order_error)?;
    state.live.publish(&events).await;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// From or to this location.
    pub location_id: Option<String>,
    /// `in_transit`, `received` or `canceled`.
    pub status: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
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
    principal.require(Permission::ReadInventory)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let ws = principal.workspace_id().to_owned();
    let (items, next) = state
        .store
        .db
        .read(move |c| {
            let list = transfers::list(
                c,
                &ws,
                q.location_id.as_deref(),
                q.status.as_deref(),
                q.cursor.as_deref(),
                limit + 1,
            )?;
            let next = (list.len() as i64 > limit).then(|| list[limit as usize - 1].id.clone());
            let mut items = Vec::new();
            for t in list.into_iter().take(limit as usize) {
                items.push(transfer_view(c, t)?);
            }
            Ok::<_, OrderError>((items, next))
        })
        .await
        .map_err(order_error)?;
    Ok(axum::Json(serde_json::json!({ "items": items, "next_cursor": next })))
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
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    state
        .store
        .db
        .read(move |c| match transfers::get(c, &ws, &id)? {
            Some(t) => transfer_view(c, t).map(Some),
            None => Ok(None),
        })
        .await
        .map_err(order_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("not_found", "transfer not found"))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct TransferActionBody {
    /// `receive` of a plain transfer: units that never arrived, written off
    /// (`qty_sent = qty_received + qty_lost`).
    #[serde(default)]
    pub lost: Vec<TransferLineBody>,
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
    transfer_step(&state, &principal, &id, &action, body)
        .await
        .map(axum::Json)
}

/// Receives or cancels a transfer (the API's and the store page's use case): idempotent,
/// audited, availability changes pushed live. Returns the transfer with its lines.
pub async fn transfer_step(
    state: &AppState,
    principal: &Principal,
    id: &str,
    action: &str,
    body: TransferActionBody,
) -> ApiResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    if !matches!(action, "receive" | "cancel") {
        return Err(ApiError::not_found("not_found", "no such action: receive or cancel"));
    }
    let (id, action) = (id.to_owned(), action.to_owned());
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = super::ledger_actor(&actor);
    let (view, events) = state
        .store
        .db
        .write(move |c| {
            let before = transfers::get(c, &ws, &id)?.ok_or(OrderError::NotFound("transfer"))?;
            let changed = if action == "receive" {
                let mut lost: BTreeMap<String, i64> = BTreeMap::new();
                for line in &body.lost {
                    let item = catalog::find_item(c, &ws, &line.sku)?.ok_or(OrderError::NotFound("SKU"))?;
                    *lost.entry(item).or_insert(0) += line.quantity;
                }
                transfers::receive(c, &ws, &id, &lost, &actor_name, now)?.1
            } else {
                if before.order_id.is_some() {
                    return Err(OrderError::TransferState(
                        "this transfer sources an order: cancel the order to send the units back".into(),
                    ));
                }
                !transfers::cancel(c, &ws, &id, &actor_name, now)?.is_empty()
            };
            let transfer = transfers::get(c, &ws, &id)?.ok_or(OrderError::NotFound("transfer"))?;
            let mut events = Vec::new();
            if changed {
                let moved = touched(c, &transfer)?;
                events = sb_commerce::live::availability_changed(c, &ws, moved, now)?;
                let change = AuditChange {
                    action: if action == "receive" {
                        "transfer.received"
                    } else {
                        "transfer.canceled"
                    },
                    object_kind: "transfer",
                    object_id: Some(&transfer.id),
                    before: Some(serde_json::json!({ "status": before.status })),
                    after: Some(serde_json::json!({ "status": transfer.status, "order_id": transfer.order_id })),
                };
                audit::record(c, &ws, &actor, &change, now)?;
            }
            Ok::<_, OrderError>((transfer_view(c, transfer)?, events))
        })
        .await
        .map_err(order_error)?;
    state.live.publish(&events).await;
    Ok(view)
}
