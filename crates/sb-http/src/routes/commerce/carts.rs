//! Carts that belong to the customer.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::commerce::carts as app;
#[allow(unused_imports)]
use sb_app::commerce::carts::*;

/// Opens a cart for a customer (their active one when they have it: the same on every
/// device) or for a guest device.
#[utoipa::path(post, path = "/api/v1/carts", tag = "commerce", request_body = OpenCart, responses(
    (status = 201, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_cart`, `invalid_sales_channel`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn open_cart(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<OpenCart>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::open_cart(&state.app, &principal, body).await?),
    ))
}

/// A cart, prices and stock checked now.
#[utoipa::path(get, path = "/api/v1/carts/{id}", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn get_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::get_cart(&state.app, &principal, id).await?))
}

/// Sets how many of a variant the cart holds.
#[utoipa::path(put, path = "/api/v1/carts/{id}/lines/{sku}", tag = "commerce",
    params(("id" = String, Path), ("sku" = String, Path)), request_body = SetLine, responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`, `not_found` (SKU)", body = ErrorBody),
    (status = 409, description = "`cart_conflict`: the cart is closed", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn set_cart_line(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sku)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetLine>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(
        app::set_cart_line(&state.app, &principal, (id, sku), body).await?,
    ))
}

/// The shopper signed in: the guest cart becomes the customer's, or merges into the cart they
/// already have (the same variant's quantities add up). Returns the customer's cart.
#[utoipa::path(post, path = "/api/v1/carts/{id}/assign", tag = "commerce", params(("id" = String, Path)),
    request_body = AssignCart, responses(
    (status = 200, description = "`{cart, lines, total_minor}` of the customer's cart"),
    (status = 404, description = "`cart_not_found`, `customer_not_found`", body = ErrorBody),
    (status = 409, description = "`cart_conflict`: someone else's or a closed cart", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn assign_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignCart>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::assign_cart(&state.app, &principal, id, body).await?))
}

/// The customer's active cart, whichever device filled it.
#[utoipa::path(get, path = "/api/v1/customers/{id}/cart", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn customer_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::customer_cart(&state.app, &principal, id).await?))
}

/// Starts the checkout: the cart's stock is held at the fulfilling locations (several when a
/// shipment is split; the senders too for a pickup sourced by transfer) until the order
/// is placed (the holds are committed) or the time runs out (the sweeper gives it back).
/// Starting again while the holds are valid returns them.
#[utoipa::path(post, path = "/api/v1/carts/{id}/checkout", tag = "commerce", params(("id" = String, Path)),
    request_body = StartCheckout, responses(
    (status = 200, description = "`{location_id, expires_at, holds: [reservation]}`"),
    (status = 404, description = "`not_found`: cart or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `order_state`", body = ErrorBody),
    (status = 422, description = "`invalid_order`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn start_checkout(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartCheckout>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::start_checkout(&state.app, &principal, id, body).await?))
}
