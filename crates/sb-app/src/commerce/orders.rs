//! Orders: fulfilment steps (ready, hand over, ship, cancel) and returns.

use super::{inventory_error, touched_by};
use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::Permission;
use sb_sql::SqlError;
use sb_store::StoreError;
use sb_store::catalog;
use serde::Deserialize;
use utoipa::ToSchema;

/// An order failure as the API answers it.
pub fn order_error(e: sb_store::orders::OrderError) -> AppError {
    use sb_store::orders::OrderError;
    match e {
        OrderError::NotFound(what) => AppError::not_found("not_found", format!("{what} not found")),
        OrderError::Invalid(m) => AppError::unprocessable("invalid_order", m),
        OrderError::State(m) => AppError::new(StatusCode::CONFLICT, "order_state", m),
        e @ OrderError::AtCapacity(_) => AppError::new(StatusCode::CONFLICT, "location_at_capacity", e.to_string()),
        OrderError::AwaitingTransfer(m) => AppError::new(StatusCode::CONFLICT, "transfer_not_received", m),
        OrderError::TransferState(m) => AppError::new(StatusCode::CONFLICT, "transfer_state", m),
        OrderError::Inventory(e) => inventory_error(e),
    }
}

#[derive(Deserialize, ToSchema, Default)]
pub struct OrderActionBody {
    /// `pickup`: the code the customer shows.
    pub code: Option<String>,
    /// `cancel`: why.
    pub reason: Option<String>,
}

/// [`order_step_unaudited`], with a 404 for another workspace's order audited.
pub async fn order_step(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &str,
    body: OrderActionBody,
) -> AppResult<(sb_store::orders::Order, Vec<sb_store::orders::OrderLine>)> {
    let result = order_step_unaudited(app, principal, id, action, body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Order, id, result).await
}

/// A store or warehouse step on an order: `ready` (a pickup code and deadline, the customer
/// told on the channel they last used), `pickup` (with the code), `ship` or `cancel`.
/// Idempotent; availability changes and the notice are pushed live.
async fn order_step_unaudited(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &str,
    body: OrderActionBody,
) -> AppResult<(sb_store::orders::Order, Vec<sb_store::orders::OrderLine>)> {
    principal.require(Permission::ManageOrders)?;
    if !matches!(action, "ready" | "pickup" | "ship" | "cancel") {
        return Err(AppError::not_found(
            "not_found",
            "no such action: ready, pickup, ship or cancel",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let channels = app.channels.clone();
    let (id, action) = (id.to_owned(), action.to_owned());
    let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let (view, events) = app
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
    app.engine.notify_jobs();
    app.live.publish(&events).await;
    Ok(view)
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

/// [`take_return_unaudited`], with a 404 for another workspace's order audited.
pub async fn take_return(
    app: &App,
    principal: &Principal,
    id: &str,
    body: ReceiveReturn,
) -> AppResult<(sb_store::returns::Return, Vec<sb_store::returns::ReturnLine>)> {
    let result = take_return_unaudited(app, principal, id, body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Order, id, result).await
}

/// Takes a return of an order at a location that accepts returns: each line restocked there,
/// set aside as damaged or not restocked, the refund recorded; the same key again returns the
/// first result. Availability changes are pushed live.
async fn take_return_unaudited(
    app: &App,
    principal: &Principal,
    id: &str,
    body: ReceiveReturn,
) -> AppResult<(sb_store::returns::Return, Vec<sb_store::returns::ReturnLine>)> {
    principal.require(Permission::ManageOrders)?;
    if body.idempotency_key.trim().is_empty() {
        return Err(AppError::unprocessable(
            "invalid_order",
            "an idempotency_key is required",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let id = id.to_owned();
    let (view, events) = app
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
    app.live.publish(&events).await;
    Ok(view)
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
pub async fn place_order(app: &App, principal: &Principal, body: PlaceOrder) -> AppResult<serde_json::Value> {
    principal.require(Permission::PlaceOrders)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 {
        return Err(AppError::unprocessable(
            "invalid_order",
            "an idempotency_key of 1–200 characters is required",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
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
        let result = app
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
    app.live.publish(&events).await;
    Ok(view)
}
/// [`get_order_unaudited`], with a 404 for another workspace's order audited.
pub async fn get_order(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = get_order_unaudited(app, principal, id).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Order, &audit_id, result).await
}

/// An order with its lines, fulfilments and transfers.
async fn get_order_unaudited(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    show_order(app, ws, id).await
}

async fn show_order(app: &App, ws: String, id: String) -> AppResult<serde_json::Value> {
    app.store
        .db
        .read(move |c| match sb_store::orders::get(c, &ws, &id)? {
            Some(order) => sb_store::orders::view(c, &ws, &order).map(Some),
            None => Ok(None),
        })
        .await
        .map_err(order_error)?
        .ok_or_else(|| AppError::not_found("not_found", "order not found"))
}
/// [`ship_fulfillment_unaudited`], with a 404 for another workspace's order audited.
pub async fn ship_fulfillment(
    app: &App,
    principal: &Principal,
    (id, fulfillment_id): (String, String),
) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = ship_fulfillment_unaudited(app, principal, (id, fulfillment_id)).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Order, &audit_id, result).await
}

/// Ships one fulfilment of a (possibly split) ship order from its location; the order is
/// `shipped` once all of its fulfilments are. Again: unchanged.
async fn ship_fulfillment_unaudited(
    app: &App,
    principal: &Principal,
    (id, fulfillment_id): (String, String),
) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageOrders)?;
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (view, events) = app
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
    app.live.publish(&events).await;
    Ok(view)
}
/// The customer's orders and their timeline (`Order Completed`, `Order Ready For Pickup`,
/// `Order Picked Up`, `Order Shipped`, `Order Cancelled`).
pub async fn customer_orders(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadOrders)?;
    let (ws, cid) = (principal.workspace_id().to_owned(), id.clone());
    let found = app
        .store
        .db
        .read(move |c| {
            if sb_store::customers::get(c, &ws, &cid)?.is_none() {
                return Ok(None);
            }
            let orders = sb_store::orders::for_customer(c, &ws, &cid)?;
            let events = sb_store::orders::events_for_customer(c, &ws, &cid)?;
            Ok::<_, sb_store::orders::OrderError>(Some((orders, events)))
        })
        .await
        .map_err(order_error)?;
    let Some((orders, events)) = found else {
        let kind = sb_store::objects::ObjectKind::Customer;
        return Err(crate::access::not_found(app, principal, kind, &id, "customer_not_found").await);
    };
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
    Ok(serde_json::json!({ "items": orders, "events": events }))
}

/// A fulfilment step (see [`order_step`]), answered with the order as it is after it.
pub async fn order_action(
    app: &App,
    principal: &Principal,
    id: &str,
    action: &str,
    body: OrderActionBody,
) -> AppResult<serde_json::Value> {
    let (order, _) = order_step(app, principal, id, action, body).await?;
    show_order(app, principal.workspace_id().to_owned(), order.id).await
}
