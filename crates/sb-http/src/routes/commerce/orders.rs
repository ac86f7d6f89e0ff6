//! Orders (pickup and shipping) and returns.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};
use sb_app::commerce::orders as app;
#[allow(unused_imports)]
use sb_app::commerce::orders::*;
use sb_app::commerce::orders::{OrderActionBody, ReceiveReturn, take_return};

/// Checkout from any sales channel (web, app, store, an agent in a conversation): the cart's
/// stock is committed at the fulfilling locations (one fulfilment each) in the same
/// transaction as the order, and the transfers sourcing a pickup are sent.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commerce", request_body = PlaceOrder, responses(
    (status = 201, description = "`{order: {…, fulfillments: [{id, location_id, status, lines}], transfers}, lines}`"),
    (status = 404, description = "`not_found`: cart or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `order_state` (the cart is closed)", body = ErrorBody),
    (status = 422, description = "`invalid_order`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn place_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::place_order(&state.app, &principal, body).await?),
    ))
}

/// An order with its lines, fulfilments and transfers.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{order: {…, fulfillments: [{id, location_id, status, lines}], transfers}, lines}`"),
    (status = 404, description = "`not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::get_order(&state.app, &principal, id).await?))
}

/// Store and warehouse steps (body `{}` or with `code` / `reason`): `ready` (a pickup order is prepared: a pickup code and a
/// deadline, and the customer is told on the channel they last used; refused with
/// `transfer_not_received` while a transfer sourcing it is on its way), `pickup` (handed over
/// with the code: the stock leaves), `ship` (every fulfilment not yet shipped), `cancel` (the
/// stock is sellable again where it is; transfers on their way go back). Each is idempotent.
#[utoipa::path(post, path = "/api/v1/orders/{id}/{action}", tag = "commerce",
    params(("id" = String, Path), ("action" = String, Path, description = "`ready`, `pickup`, `ship` or `cancel`")),
    request_body = OrderActionBody, responses(
    (status = 200, description = "`{order, lines}`"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`order_state`, `transfer_not_received`", body = ErrorBody),
    (status = 422, description = "`invalid_order` (e.g. a wrong pickup code)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn order_action(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<OrderActionBody>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(
        app::order_action(&state.app, &principal, &id, &action, body).await?,
    ))
}

/// Ships one fulfilment of a (possibly split) ship order from its location; the order is
/// `shipped` once all of its fulfilments are. Again: unchanged.
#[utoipa::path(post, path = "/api/v1/orders/{id}/fulfillments/{fulfillment_id}/ship", tag = "commerce",
    params(("id" = String, Path), ("fulfillment_id" = String, Path)), responses(
    (status = 200, description = "`{order: {…, fulfillments}, lines}`"),
    (status = 404, description = "`not_found`: order or fulfilment", body = ErrorBody),
    (status = 409, description = "`order_state`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn ship_fulfillment(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, fulfillment_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(
        app::ship_fulfillment(&state.app, &principal, (id, fulfillment_id)).await?,
    ))
}

/// The customer's orders and their timeline (`Order Completed`, `Order Ready For Pickup`,
/// `Order Picked Up`, `Order Shipped`, `Order Cancelled`).
#[utoipa::path(get, path = "/api/v1/customers/{id}/orders", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{items: [order], events: [{order_id, name, properties, at}]}`")
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn customer_orders(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(app::customer_orders(&state.app, &principal, id).await?))
}

/// Return anywhere: a shipped or collected order handed back at any location that accepts
/// returns; each line disposed of there, the refund recorded from the prices paid.
#[utoipa::path(post, path = "/api/v1/orders/{id}/returns", tag = "commerce", params(("id" = String, Path)),
    request_body = ReceiveReturn, responses(
    (status = 201, description = "`{return, lines}`"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`order_state`", body = ErrorBody),
    (status = 422, description = "`invalid_order` (more than bought, unknown SKU or disposition)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
pub(super) async fn receive_return(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReceiveReturn>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    let (received, lines) = take_return(&state.app, &principal, &id, body).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "return": received, "lines": lines })),
    ))
}
