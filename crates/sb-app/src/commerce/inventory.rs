//! Inventory through the ledger: changes, counts, reservations, availability.

use super::inventory_error;
use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use sb_core::Permission;
use sb_core::inventory::Movement;
use sb_store::audit::{self, Change as AuditChange};
use sb_store::catalog::{self};
use sb_store::inventory::{self, InventoryError, Line, NewReservation, Outcome, Resolution};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct InventoryChange {
    /// The same key again is a replay (no new effect); with another request, refused.
    pub idempotency_key: String,
    /// `received`, `count`, `damaged`, `return`, `transfer`, `correction`, …
    pub reason: String,
    #[serde(default)]
    pub reference_type: Option<String>,
    #[serde(default)]
    pub reference_id: Option<String>,
    pub lines: Vec<ChangeLine>,
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeLine {
    /// An inventory item's SKU.
    pub sku: String,
    pub location_id: String,
    /// `{"kind": "receive", "quantity": 5}`; kinds: `receive`, `adjust` (`delta`), `count`
    /// (`counted`, `expected`: refused with `count_outdated` once on hand is no longer
    /// `expected`),
    /// `set_aside` / `resolve` (`bucket`: `damaged` | `quality_control`), `safety_stock`
    /// (`delta`), `return_in` (`bucket`: `on_hand` | `damaged` | `quality_control`),
    /// `transfer_out`, `expect`, `transfer_in` (`received`, `lost`).
    #[schema(value_type = Object)]
    pub movement: Movement,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateReservation {
    pub idempotency_key: String,
    /// An inventory item's SKU.
    pub sku: String,
    pub location_id: String,
    pub quantity: i64,
    /// How long the hold lasts (default 900 s, at most a day).
    pub ttl_seconds: Option<i64>,
    /// `cart`, `order_line`, `manual`.
    #[serde(default = "manual")]
    pub owner_type: String,
    pub owner_id: Option<String>,
}

fn manual() -> String {
    "manual".into()
}
/// Holds stock for a checkout until it is committed, released or expires.
pub async fn create_reservation(
    app: &App,
    principal: &Principal,
    body: CreateReservation,
) -> AppResult<inventory::Reservation> {
    principal.require(Permission::ManageOrders)?;
    let ttl = body.ttl_seconds.unwrap_or(900);
    if !(1..=86_400).contains(&ttl) || body.quantity < 1 || body.idempotency_key.trim().is_empty() {
        return Err(AppError::unprocessable(
            "invalid_reservation",
            "quantity ≥ 1, ttl_seconds 1–86400 and an idempotency_key are required",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (reservation, events) = app
        .store
        .db
        .write(move |c| {
            let item = catalog::find_item(c, &ws, &body.sku)?.ok_or(InventoryError::NotFound("SKU"))?;
            let reservation = inventory::reserve(
                c,
                &NewReservation {
                    workspace_id: &ws,
                    idempotency_key: &body.idempotency_key,
                    actor: &actor_name,
                    item_id: &item,
                    location_id: &body.location_id,
                    quantity: body.quantity,
                    owner_type: &body.owner_type,
                    owner_id: body.owner_id.as_deref(),
                    expires_at: now + ttl * 1000,
                },
                now,
            )?;
            let touched = [(reservation.item_id.clone(), reservation.location_id.clone())];
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, InventoryError>((reservation, events))
        })
        .await
        .map_err(inventory_error)?;
    app.live.publish(&events).await;
    Ok(reservation)
}
/// [`resolve_reservation_unaudited`], with a 404 for another workspace's reservation audited.
pub async fn resolve_reservation(
    app: &App,
    principal: &Principal,
    (id, action): (String, String),
) -> AppResult<inventory::Reservation> {
    let audit_id = id.clone();
    let result = resolve_reservation_unaudited(app, principal, (id, action)).await;
    crate::access::audited(
        app,
        principal,
        sb_store::objects::ObjectKind::Reservation,
        &audit_id,
        result,
    )
    .await
}

/// Commits (to an order) or releases a hold; doing the same again changes nothing.
async fn resolve_reservation_unaudited(
    app: &App,
    principal: &Principal,
    (id, action): (String, String),
) -> AppResult<inventory::Reservation> {
    principal.require(Permission::ManageOrders)?;
    let to = match action.as_str() {
        "commit" => Resolution::Committed,
        "release" => Resolution::Released,
        _ => {
            return Err(AppError::not_found(
                "not_found",
                "no such action: use commit or release",
            ));
        }
    };
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (resolved, events) = app
        .store
        .db
        .write(move |c| {
            let resolved = inventory::resolve(c, &ws, &id, to, &actor_name, now)?;
            let touched = [(resolved.item_id.clone(), resolved.location_id.clone())];
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, InventoryError>((resolved, events))
        })
        .await
        .map_err(inventory_error)?;
    app.live.publish(&events).await;
    Ok(resolved)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// A variant's SKU.
    pub sku: String,
    /// Sort by distance from this point.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
}
/// "Available at my local branch": per location, the units and the level (in stock / low /
/// out of stock), nearest first, and how soon it can be picked up there (longer when the
/// store must get it from another location by transfer).
pub async fn get_availability(
    app: &App,
    principal: &Principal,
    q: AvailabilityQuery,
) -> AppResult<sb_commerce::Availability> {
    principal.require(Permission::ReadInventory)?;
    let near = q.lat.zip(q.lng);
    let ws = principal.workspace_id().to_owned();
    let found = app
        .store
        .db
        .read(move |c| sb_commerce::availability(c, &ws, &q.sku, near))
        .await?;
    found.ok_or_else(|| AppError::not_found("not_found", "no variant with this SKU"))
}
/// Recomputes every balance from the ledger and the active holds, and checks that every
/// closed transfer's units were received, lost or returned: `{problems: []}` when all agree.
pub async fn check_inventory(app: &App, principal: &Principal) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    let ws = principal.workspace_id().to_owned();
    let problems = app
        .store
        .db
        .read(move |c| {
            let mut problems = inventory::check(c, &ws)?;
            problems.extend(sb_store::transfers::check(c, &ws)?);
            Ok::<_, sb_store::orders::OrderError>(problems)
        })
        .await
        .map_err(crate::commerce::orders::order_error)?;
    Ok(serde_json::json!({ "problems": problems }))
}
/// Changes stock through the ledger, all lines or none: a delivery, a count, damage,
/// a return received, a transfer. Holds and order commitments go through reservations and
/// orders instead.
pub async fn change_inventory(app: &App, principal: &Principal, body: InventoryChange) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 || body.lines.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_inventory_change",
            "an idempotency_key (1–200 characters) and at least one line are required",
        ));
    }
    if body.lines.iter().any(|l| {
        matches!(
            l.movement,
            Movement::Reserve { .. }
                | Movement::Unreserve { .. }
                | Movement::Commit { .. }
                | Movement::CommitDirect { .. }
                | Movement::Uncommit { .. }
                | Movement::Fulfil { .. }
        )
    }) {
        return Err(AppError::unprocessable(
            "invalid_inventory_change",
            "holds and commitments change through reservations and orders, not here",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let outcome = app
        .store
        .db
        .write(move |c| {
            let mut lines = Vec::with_capacity(body.lines.len());
            for l in &body.lines {
                let item = catalog::find_item(c, &ws, &l.sku)?.ok_or(InventoryError::NotFound("SKU"))?;
                lines.push(Line {
                    item_id: item,
                    location_id: l.location_id.clone(),
                    movement: l.movement,
                });
            }
            let change = inventory::Change {
                workspace_id: &ws,
                idempotency_key: &body.idempotency_key,
                reason: &body.reason,
                actor: &actor_name,
                reference_type: body.reference_type.as_deref().unwrap_or("manual"),
                reference_id: body.reference_id.as_deref(),
                lines,
            };
            let outcome = inventory::apply(c, &change, now)?;
            let mut events = Vec::new();
            if matches!(outcome, Outcome::Applied { .. }) {
                let touched = change.lines.iter().map(|l| (l.item_id.clone(), l.location_id.clone()));
                events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
                let audit = AuditChange {
                    action: "inventory.changed",
                    object_kind: "inventory_group",
                    object_id: Some(outcome.group_id()),
                    before: None,
                    after: Some(serde_json::json!({ "reason": body.reason, "lines": change.lines })),
                };
                audit::record(c, &ws, &actor, &audit, now)?;
            }
            Ok::<_, InventoryError>((outcome, events))
        })
        .await
        .map_err(inventory_error)?;
    let (outcome, events) = outcome;
    app.live.publish(&events).await;
    Ok(serde_json::json!({
        "group_id": outcome.group_id(),
        "replayed": matches!(outcome, Outcome::Replayed { .. }),
    }))
}
