//! Transfers between locations: send, receive (with losses), cancel.

use super::orders::order_error;
use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use sb_core::Permission;
use sb_store::audit::{self, Change as AuditChange};
use sb_store::catalog;
use sb_store::orders::OrderError;
use sb_store::transfers;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

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

#[derive(Deserialize, ToSchema, Default)]
pub struct TransferActionBody {
    /// `receive` of a plain transfer: units that never arrived, written off
    /// (`qty_sent = qty_received + qty_lost`).
    #[serde(default)]
    pub lost: Vec<TransferLineBody>,
}

/// [`transfer_step_unaudited`], with a 404 for another workspace's transfer audited.
pub async fn transfer_step(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &str,
    body: TransferActionBody,
) -> AppResult<serde_json::Value> {
    let result = transfer_step_unaudited(app, principal, id, action, body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Transfer, id, result).await
}

/// Receives or cancels a transfer (the API's and the store page's use case): idempotent,
/// audited, availability changes pushed live. Returns the transfer with its lines.
async fn transfer_step_unaudited(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &str,
    body: TransferActionBody,
) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    if !matches!(action, "receive" | "cancel") {
        return Err(AppError::not_found("not_found", "no such action: receive or cancel"));
    }
    let (id, action) = (id.to_owned(), action.to_owned());
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (view, events) = app
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
    app.live.publish(&events).await;
    Ok(view)
}

#[derive(Deserialize, ToSchema)]
pub struct TransferLineBody {
    /// An inventory item's SKU.
    pub sku: String,
    pub quantity: i64,
}

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
/// Sends stock from one location to another: off the sender's shelf at once, `incoming` at
/// the receiver until received there.
pub async fn create_transfer(app: &App, principal: &Principal, body: CreateTransfer) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 || body.lines.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_order",
            "an idempotency_key (1–200 characters) and at least one line are required",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (view, events) = app
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
    app.live.publish(&events).await;
    Ok(view)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// From or to this location.
    pub location_id: Option<String>,
    /// `in_transit`, `received` or `canceled`.
    #[param(value_type = Option<crate::views::names::TransferStatus>)]
    pub status: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}
/// Transfers from or to a location (a store's incoming deliveries: `status=in_transit`),
/// newest first.
pub async fn list_transfers(app: &App, principal: &Principal, q: TransferQuery) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadInventory)?;
    let limit = crate::views::page_limit(q.limit)?;
    let ws = principal.workspace_id().to_owned();
    let (items, next) = app
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
    Ok(serde_json::json!({ "items": items, "next_cursor": next }))
}
/// [`get_transfer_unaudited`], with a 404 for another workspace's transfer audited.
pub async fn get_transfer(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = get_transfer_unaudited(app, principal, id).await;
    crate::access::audited(
        app,
        principal,
        sb_store::objects::ObjectKind::Transfer,
        &audit_id,
        result,
    )
    .await
}

/// One transfer with its lines.
async fn get_transfer_unaudited(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    app.store
        .db
        .read(move |c| match transfers::get(c, &ws, &id)? {
            Some(t) => transfer_view(c, t).map(Some),
            None => Ok(None),
        })
        .await
        .map_err(order_error)?
        .ok_or_else(|| AppError::not_found("not_found", "transfer not found"))
}
