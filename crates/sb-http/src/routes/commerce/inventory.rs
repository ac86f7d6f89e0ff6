//! Stock through the ledger, checkout holds, availability and the ledger check.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_store::inventory::{self};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::commerce::inventory as app;
#[allow(unused_imports)]
use sb_app::commerce::inventory::*;

/// Changes stock through the ledger, all lines or none: a delivery, a count, damage,
/// a return received, a transfer. Holds and order commitments go through reservations and
/// orders instead.
#[utoipa::path(post, path = "/api/v1/inventory/changes", tag = "commerce", request_body = InventoryChange, responses(
    (status = 201, description = "`{group_id, replayed}`"),
    (status = 404, description = "`not_found`: an unknown SKU or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `count_outdated` (on hand moved since the count began; `details.on_hand`), `idempotency_key_reused`", body = ErrorBody),
    (status = 422, description = "`invalid_inventory_change`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn change_inventory(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InventoryChange>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::change_inventory(&state.app, &principal, body).await?),
    ))
}

/// Holds stock for a checkout until it is committed, released or expires.
#[utoipa::path(post, path = "/api/v1/inventory/reservations", tag = "commerce", request_body = CreateReservation, responses(
    (status = 201, description = "the reservation"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `idempotency_key_reused`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn create_reservation(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateReservation>,
) -> ApiResult<(StatusCode, axum::Json<inventory::Reservation>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::create_reservation(&state.app, &principal, body).await?),
    ))
}

/// Commits (to an order) or releases a hold; doing the same again changes nothing.
#[utoipa::path(post, path = "/api/v1/inventory/reservations/{id}/{action}", tag = "commerce",
    params(("id" = String, Path), ("action" = String, Path, description = "`commit` or `release`")), responses(
    (status = 200, description = "the reservation"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`reservation_resolved` (e.g. it expired)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn resolve_reservation(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<axum::Json<inventory::Reservation>> {
    Ok(axum::Json(
        app::resolve_reservation(&state.app, &principal, (id, action)).await?,
    ))
}

/// "Available at my local branch": per location, the units and the level (in stock / low /
/// out of stock), nearest first, and how soon it can be picked up there (longer when the
/// store must get it from another location by transfer).
#[utoipa::path(get, path = "/api/v1/inventory/availability", tag = "commerce", params(AvailabilityQuery), responses(
    (status = 200, description = "`{sku, title, locations: [{location_id, code, name, available, level, distance_km, can_pickup, can_ship, pickup_ready_minutes, pickup_by_transfer}]}`"),
    (status = 404, description = "`not_found`: no such SKU", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn get_availability(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AvailabilityQuery>,
) -> ApiResult<axum::Json<sb_commerce::Availability>> {
    Ok(axum::Json(app::get_availability(&state.app, &principal, q).await?))
}

/// Recomputes every balance from the ledger and the active holds, and checks that every
/// closed transfer's units were received, lost or returned: `{problems: []}` when all agree.
#[utoipa::path(get, path = "/api/v1/inventory/check", tag = "commerce", responses(
    (status = 200, description = "`{problems: [text]}`")
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn check_inventory(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::check_inventory(&state.app, &principal).await?))
}
