//! Orders (pickup and shipping) and returns.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sb_core::Permission;
use sb_sql::SqlError;
use sb_store::StoreError;
use sb_store::catalog;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};

use super::{inventory_error, touched_by};

/// An order failure as the API answers it.
pub fn order_error(e: sb_store::orders::OrderError) -> ApiError {
    use sb_store::orders::OrderError;
    match e {
        OrderError::NotFound(what) => ApiError::not_found("not_found", format!("{what} not found")),
        OrderError::Invalid(m) => ApiError::unprocessable("invalid_order", m),
        OrderError::State(m) => ApiError::new(StatusCode::CONFLICT, "order_state", m),
        e @ OrderError::AtCapacity(_) => ApiError::new(StatusCode::CONFLICT, "location_at_capacity", e.to_string()),
        OrderError::AwaitingTransfer(m) => ApiError::new(StatusCode::CONFLICT, "transfer_not_received", m),
        OrderError::TransferState(m) => ApiError::new(StatusCode::CONFLICT, "transfer_state", m),
        OrderError::Inventory(e) => inventory_error(e),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct PlaceOrder {
    pub cart_id: String,
    /// The same key (or cart) again returns the order placed the first time.
    pub idempotency_key: String,
    /// `ship` or `pickup`.
    pub fulfillment: String,
    /// The pickup store; for `ship`, omit to let routing choose: one location that can send
    /// the whole order when there is one (any store can ship), else the fewest locations that
    /// together can (one fulfilment each); the nearest to `ship_to` first when given.
    pub location_id: Option<String>,
    /// Where a shipment goes: `{"lat", "lng"}`.
    #[schema(value_type = Option<Object>)]
    pub ship_to: Option<ShipTo>,
    /// Pickup: what the store lacks may be sent there from other locations by transfer (the
    /// order is ready once the transfers are received). Without it, a store short of stock
    /// answers `insufficient_stock`.
    #[serde(default)]
    pub allow_transfer: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct ShipTo {
    pub lat: f64,
    pub lng: f64,
}

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
    principal.require(Permission::PlaceOrders)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_order",
            "an idempotency_key of 1–200 characters is required",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = super::ledger_actor(&actor);
    let body = std::sync::Arc::new(body);
    // A routed shipment can lose the last units to a concurrent order between reading the
    // balances and taking the stock (PostgreSQL runs them side by side): the whole checkout
    // is then planned again on the balances as they are now, a few times before giving up.
    let routed = (body.fulfillment == "ship" && body.location_id.is_none()) || body.allow_transfer;
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let (ws, actor_name, body) = (ws.clone(), actor_name.clone(), body.clone());
        let result = state
            .store
            .db
            .write(move |c| {
                let request = sb_store::orders::Checkout {
                    workspace_id: &ws,
                    cart_id: &body.cart_id,
                    idempotency_key: &body.idempotency_key,
                    fulfillment: &body.fulfillment,
                    location_id: body.location_id.as_deref(),
                    ship_to: body.ship_to.as_ref().map(|p| (p.lat, p.lng)),
                    allow_transfer: body.allow_transfer,
                    actor: &actor_name,
                };
                let order = sb_store::orders::checkout(c, &request, now)?;
                let touched = sb_store::orders::touched(c, &ws, &order.id)?;
                let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
                Ok::<_, sb_store::orders::OrderError>((sb_store::orders::view(c, &ws, &order)?, events))
            })
            .await;
        use sb_store::inventory::InventoryError;
        use sb_store::orders::OrderError;
        match result {
            Err(OrderError::Inventory(InventoryError::Insufficient { .. })) if routed && attempt < 3 => {
                metrics::counter!("switchboard_order_replans_total").increment(1);
            }
            // A concurrent checkout took the same order number (or placed this very order):
            // again, it gets the next number (or returns the order placed).
            Err(OrderError::Inventory(InventoryError::Store(StoreError::Sql(SqlError::UniqueViolation(_)))))
                if attempt < 3 =>
            {
                metrics::counter!("switchboard_order_replans_total").increment(1);
            }
            other => break other.map_err(order_error)?,
        }
    };
    let (view, events) = outcome;
    state.live.publish(&events).await;
    Ok((StatusCode::CREATED, axum::Json(view)))
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
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    show_order(&state, ws, id).await
}

async fn show_order(state: &AppState, ws: String, id: String) -> ApiResult<axum::Json<serde_json::Value>> {
    state
        .store
        .db
        .read(move |c| match sb_store::orders::get(c, &ws, &id)? {
            Some(order) => sb_store::orders::view(c, &ws, &order).map(Some),
            None => Ok(None),
        })
        .await
        .map_err(order_error)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("not_found", "order not found"))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct OrderActionBody {
    /// `pickup`: the code the customer shows.
    pub code: Option<String>,
    /// `cancel`: why.
    pub reason: Option<String>,
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
    let (order, _) = order_step(&state, &principal, &id, &action, body).await?;
    show_order(&state, principal.workspace_id().to_owned(), order.id).await
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
    principal.require(Permission::ManageOrders)?;
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
            use sb_store::orders;
            let order = orders::ship_fulfillment(c, &ws, &id, &fulfillment_id, &actor_name, now)?;
            let touched = orders::touched(c, &ws, &order.id)?;
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, orders::OrderError>((orders::view(c, &ws, &order)?, events))
        })
        .await
        .map_err(order_error)?;
    state.live.publish(&events).await;
    Ok(axum::Json(view))
}

/// A store or warehouse step on an order: `ready` (a pickup code and deadline, the customer
/// told on the channel they last used), `pickup` (with the code), `ship` or `cancel`.
/// Idempotent; availability changes and the notice are pushed live.
pub async fn order_step(
    state: &AppState,
    principal: &Principal,
    id: &str,
    action: &str,
    body: OrderActionBody,
) -> ApiResult<(sb_store::orders::Order, Vec<sb_store::orders::OrderLine>)> {
    principal.require(Permission::ManageOrders)?;
    if !matches!(action, "ready" | "pickup" | "ship" | "cancel") {
        return Err(ApiError::not_found(
            "not_found",
            "no such action: ready, pickup, ship or cancel",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = super::ledger_actor(&actor);
    let channels = state.channels.clone();
    let (id, action) = (id.to_owned(), action.to_owned());
    let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let (view, events) = state
        .store
        .db
        .write(move |c| {
            use sb_store::orders;
            let mut events = Vec::new();
            let order = match action.as_str() {
                "ready" => {
                    let (order, changed) = orders::ready_for_pickup(c, &ws, &id, &code, &actor_name, now)?;
                    if changed {
                        let location = catalog::location(c, &ws, &order.location_id)?;
                        let place = location.as_ref().map_or("the store", |l| l.name.as_str());
                        let text = format!(
                            "Your order {} is ready for pickup at {place}. Show code {} at the counter. We keep it for you until {}.",
                            order.number,
                            order.pickup_code.as_deref().unwrap_or_default(),
                            sb_core::clock::rfc3339(order.pickup_deadline.unwrap_or(now)).get(..10).unwrap_or_default(),
                        );
                        let purpose = sb_core::inbox::Purpose::Transactional;
                        if let Some((_, event)) =
                            sb_inbox::outbox::notify_customer(c, &channels, &ws, &order.customer_id, &text, purpose, now)?
                        {
                            events.push(event);
                        }
                    }
                    order
                }
                "pickup" => orders::pick_up(c, &ws, &id, body.code.as_deref().unwrap_or_default(), &actor_name, now)?,
                "ship" => orders::ship(c, &ws, &id, &actor_name, now)?,
                _ => orders::cancel(c, &ws, &id, body.reason.as_deref().unwrap_or("requested"), &actor_name, now)?,
            };
            let lines = orders::lines(c, &order.id)?;
            let touched = orders::touched(c, &ws, &order.id)?;
            events.extend(sb_commerce::live::availability_changed(c, &ws, touched, now)?);
            Ok::<_, orders::OrderError>(((order, lines), events))
        })
        .await
        .map_err(order_error)?;
    state.engine.notify_jobs();
    state.live.publish(&events).await;
    Ok(view)
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
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    let (orders, events) = state
        .store
        .db
        .read(move |c| {
            let orders = sb_store::orders::for_customer(c, &ws, &id)?;
            let events = sb_store::orders::events_for_customer(c, &ws, &id)?;
            Ok::<_, sb_store::orders::OrderError>((orders, events))
        })
        .await
        .map_err(order_error)?;
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "order_id": e.order_id, "name": e.name, "actor": e.actor,
                "properties": serde_json::from_str::<serde_json::Value>(&e.properties_json).unwrap_or_default(),
                "at": sb_core::clock::rfc3339(e.at),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "items": orders, "events": events })))
}

#[derive(Deserialize, ToSchema)]
pub struct ReceiveReturn {
    /// The same key again returns the return recorded the first time.
    pub idempotency_key: String,
    /// Where it was handed in: any location that accepts returns.
    pub location_id: String,
    #[serde(default)]
    pub reason: String,
    pub lines: Vec<ReturnLineBody>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReturnLineBody {
    pub sku: String,
    pub quantity: i64,
    /// `restock` (sellable there at once), `damaged` or `not_restocked`.
    pub disposition: String,
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
    let (received, lines) = take_return(&state, &principal, &id, body).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "return": received, "lines": lines })),
    ))
}

/// Takes a return of an order at a location that accepts returns: each line restocked there,
/// set aside as damaged or not restocked, the refund recorded; the same key again returns the
/// first result. Availability changes are pushed live.
pub async fn take_return(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: ReceiveReturn,
) -> ApiResult<(sb_store::returns::Return, Vec<sb_store::returns::ReturnLine>)> {
    principal.require(Permission::ManageOrders)?;
    if body.idempotency_key.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_order",
            "an idempotency_key is required",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = super::ledger_actor(&actor);
    let id = id.to_owned();
    let (view, events) = state
        .store
        .db
        .write(move |c| {
            let request = sb_store::returns::ReturnRequest {
                workspace_id: &ws,
                order_id: &id,
                location_id: &body.location_id,
                idempotency_key: &body.idempotency_key,
                reason: &body.reason,
                actor: &actor_name,
                lines: body
                    .lines
                    .iter()
                    .map(|l| (l.sku.clone(), l.quantity, l.disposition.clone()))
                    .collect(),
            };
            let received = sb_store::returns::receive(c, &request, now)?;
            let lines = sb_store::returns::lines(c, &received.id)?;
            let mut variants = Vec::new();
            for line in &lines {
                variants.extend(catalog::variant_by_sku(c, &ws, &line.sku)?.map(|v| v.id));
            }
            let touched = touched_by(c, variants, &received.location_id)?;
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, sb_store::orders::OrderError>(((received, lines), events))
        })
        .await
        .map_err(order_error)?;
    state.live.publish(&events).await;
    Ok(view)
}
