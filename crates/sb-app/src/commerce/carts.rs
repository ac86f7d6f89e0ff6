//! Carts: lines priced from the catalogue, held stock, checkout.

use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::Permission;
use sb_store::catalog::{self};
use sb_store::{StoreError, StoreError as Se};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct OpenCart {
    /// A known customer: their active cart is returned if they have one.
    pub customer_id: Option<String>,
    /// A guest's device id, until they sign in.
    pub anonymous_id: Option<String>,
    /// `web`, `app`, `pos`, `chat`.
    #[serde(default = "web")]
    pub channel: String,
    #[serde(default = "eur")]
    pub currency: String,
}

/// Where a sale happens: the web shop, the app, a store's till, or an agent in a conversation.
const SALES_CHANNELS: [&str; 4] = ["web", "app", "pos", "chat"];

fn web() -> String {
    "web".into()
}

fn eur() -> String {
    "EUR".into()
}

/// A cart with its lines, prices and availability checked again now.
fn cart_view(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    cart: sb_store::carts::Cart,
) -> Result<serde_json::Value, StoreError> {
    let lines = sb_store::carts::lines(c, &cart.id)?;
    let mut total = 0;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let available: i64 = sb_commerce::availability(c, ws, &line.sku, None)?
            .map(|a| a.locations.iter().filter(|l| l.can_ship).map(|l| l.available).sum())
            .unwrap_or(0);
        total = line
            .current_price_minor
            .checked_mul(line.quantity)
            .and_then(|t| t.checked_add(total))
            .ok_or_else(|| StoreError::Invalid("the cart's total is more than one order can hold".into()))?;
        out.push(serde_json::json!({
            "sku": line.sku,
            "title": line.title,
            "quantity": line.quantity,
            "unit_price_minor": line.current_price_minor,
            "price_when_added_minor": line.unit_price_minor,
            "price_changed": line.unit_price_minor != line.current_price_minor,
            "available_to_ship": available,
            "enough_stock": available >= line.quantity,
        }));
    }
    Ok(serde_json::json!({ "cart": cart, "lines": out, "total_minor": total }))
}

fn no_cart() -> AppError {
    AppError::not_found("cart_not_found", "no such cart")
}

fn cart_conflict(e: StoreError) -> AppError {
    match e {
        Se::NotFound(_) => no_cart(),
        Se::Conflict(m) => AppError::new(StatusCode::CONFLICT, "cart_conflict", m),
        other => other.into(),
    }
}
/// Opens a cart for a customer (their active one when they have it: the same on every
/// device) or for a guest device.
pub async fn open_cart(app: &App, principal: &Principal, body: OpenCart) -> AppResult<serde_json::Value> {
    principal.require(Permission::PlaceOrders)?;
    if body.customer_id.is_none() && body.anonymous_id.as_deref().is_none_or(str::is_empty) {
        return Err(AppError::unprocessable(
            "invalid_cart",
            "a customer_id or an anonymous_id is required",
        ));
    }
    if !SALES_CHANNELS.contains(&body.channel.as_str()) {
        return Err(AppError::unprocessable(
            "invalid_sales_channel",
            "channel is one of web, app, pos, chat",
        ));
    }
    let (ws, now) = (principal.workspace_id().to_owned(), app.store.now());
    let view = app
        .store
        .db
        .write(move |c| {
            if let Some(customer) = &body.customer_id
                && sb_store::customers::get(c, &ws, customer)?.is_none()
            {
                return Ok(None);
            }
            let cart = sb_store::carts::open(
                c,
                &ws,
                body.customer_id.as_deref(),
                body.anonymous_id.as_deref(),
                &body.channel,
                &body.currency,
                now,
            )?;
            cart_view(c, &ws, cart).map(Some)
        })
        .await?
        .ok_or_else(|| AppError::not_found("customer_not_found", "no such customer"))?;
    Ok(view)
}

/// A cart found by `find` (by its id, or a customer's active one), as the API shows it.
async fn read_cart(
    app: &App,
    principal: &Principal,
    key: String,
    find: fn(&mut dyn sb_store::Conn, &str, &str) -> sb_store::Result<Option<sb_store::carts::Cart>>,
) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    app.store
        .db
        .read(move |c| match find(c, &ws, &key)? {
            Some(cart) => cart_view(c, &ws, cart).map(Some),
            None => Ok(None),
        })
        .await?
        .ok_or_else(no_cart)
}

#[derive(Deserialize, ToSchema)]
pub struct SetLine {
    /// The quantity wanted (0 removes the line).
    pub quantity: i64,
}
/// [`set_cart_line_unaudited`], with a 404 for another workspace's cart audited.
pub async fn set_cart_line(
    app: &App,
    principal: &Principal,
    (id, sku): (String, String),
    body: SetLine,
) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = set_cart_line_unaudited(app, principal, (id, sku), body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Cart, &audit_id, result).await
}

/// Sets how many of a variant the cart holds.
async fn set_cart_line_unaudited(
    app: &App,
    principal: &Principal,
    (id, sku): (String, String),
    body: SetLine,
) -> AppResult<serde_json::Value> {
    principal.require(Permission::PlaceOrders)?;
    if !(0..=999).contains(&body.quantity) {
        return Err(AppError::unprocessable("invalid_cart", "quantity must be 0–999"));
    }
    let (ws, now) = (principal.workspace_id().to_owned(), app.store.now());

    app.store
        .db
        .write(move |c| {
            let Some(cart) = sb_store::carts::get(c, &ws, &id)? else {
                return Ok(Err(no_cart()));
            };
            if cart.status != "active" {
                return Ok(Err(AppError::new(
                    StatusCode::CONFLICT,
                    "cart_conflict",
                    format!("the cart is {}", cart.status),
                )));
            }
            let Some(variant) = catalog::variant_by_sku(c, &ws, &sku)? else {
                return Ok(Err(AppError::not_found("not_found", "no variant with this SKU")));
            };
            let before = sb_store::carts::lines(c, &cart.id)?
                .iter()
                .find(|l| l.variant_id == variant.id)
                .map_or(0, |l| l.quantity);
            sb_store::carts::set_line(c, &cart.id, &variant.id, body.quantity, variant.price_minor, now)?;
            // The change on the shopper's timeline, under the e-commerce spec's names.
            if body.quantity != before {
                let name = if body.quantity > before {
                    "Product Added"
                } else {
                    "Product Removed"
                };
                let properties = serde_json::json!({
                    "cart_id": cart.id, "sku": variant.sku, "quantity": (body.quantity - before).abs(),
                    "price": variant.price_minor as f64 / 100.0, "currency": cart.currency,
                });
                sb_store::events::record_commerce(
                    c,
                    &ws,
                    cart.customer_id.as_deref(),
                    cart.anonymous_id.as_deref(),
                    name,
                    &properties,
                    now,
                )?;
            }
            let cart = sb_store::carts::get(c, &ws, &cart.id)?.ok_or(Se::NotFound("cart"))?;
            Ok::<_, StoreError>(Ok(cart_view(c, &ws, cart)?))
        })
        .await?
}

#[derive(Deserialize, ToSchema)]
pub struct AssignCart {
    pub customer_id: String,
}
/// [`assign_cart_unaudited`], with a 404 for another workspace's cart audited.
pub async fn assign_cart(
    app: &App,
    principal: &Principal,
    id: String,
    body: AssignCart,
) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = assign_cart_unaudited(app, principal, id, body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Cart, &audit_id, result).await
}

/// The shopper signed in: the guest cart becomes the customer's, or merges into the cart they
/// already have (the same variant's quantities add up). Returns the customer's cart.
async fn assign_cart_unaudited(
    app: &App,
    principal: &Principal,
    id: String,
    body: AssignCart,
) -> AppResult<serde_json::Value> {
    principal.require(Permission::PlaceOrders)?;
    let (ws, now) = (principal.workspace_id().to_owned(), app.store.now());

    app.store
        .db
        .write(move |c| {
            if sb_store::customers::get(c, &ws, &body.customer_id)?.is_none() {
                return Ok(Err(AppError::not_found("customer_not_found", "no such customer")));
            }
            let guest = sb_store::carts::get(c, &ws, &id)?.and_then(|g| g.anonymous_id);
            let cart = match sb_store::carts::assign(c, &ws, &id, &body.customer_id, now) {
                Ok(cart) => cart,
                Err(e @ (Se::NotFound(_) | Se::Conflict(_))) => return Ok(Err(cart_conflict(e))),
                Err(e) => return Err(e),
            };
            // The guest's cart events join the customer's timeline.
            if let Some(anonymous_id) = guest {
                sb_store::events::claim_anonymous(c, &ws, &anonymous_id, &body.customer_id)?;
            }
            Ok::<_, StoreError>(Ok(cart_view(c, &ws, cart)?))
        })
        .await?
}

#[derive(Deserialize, ToSchema)]
pub struct StartCheckout {
    /// `ship` or `pickup`.
    pub fulfillment: String,
    /// The pickup store; for `ship`, omit to let routing choose.
    pub location_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub ship_to: Option<super::orders::ShipTo>,
    /// Pickup: hold what the store lacks at other locations, to be sent by transfer.
    #[serde(default)]
    pub allow_transfer: bool,
    /// How long the stock is held for this checkout (default 600 s, at most an hour).
    pub hold_seconds: Option<i64>,
}
/// [`start_checkout_unaudited`], with a 404 for another workspace's cart audited.
pub async fn start_checkout(
    app: &App,
    principal: &Principal,
    id: String,
    body: StartCheckout,
) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = start_checkout_unaudited(app, principal, id, body).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Cart, &audit_id, result).await
}

/// Starts the checkout: the cart's stock is held at the fulfilling locations (several when a
/// shipment is split; the senders too for a pickup sourced by transfer) until the order
/// is placed (the holds are committed) or the time runs out (the sweeper gives it back).
/// Starting again while the holds are valid returns them.
async fn start_checkout_unaudited(
    app: &App,
    principal: &Principal,
    id: String,
    body: StartCheckout,
) -> AppResult<serde_json::Value> {
    principal.require(Permission::PlaceOrders)?;
    let hold_ms = body.hold_seconds.unwrap_or(600).clamp(1, 3_600) * 1000;
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let actor_name = super::ledger_actor(&actor);
    let (holds, events) = app
        .store
        .db
        .write(move |c| {
            let request = sb_store::orders::Checkout {
                workspace_id: &ws,
                cart_id: &id,
                idempotency_key: "",
                fulfillment: &body.fulfillment,
                location_id: body.location_id.as_deref(),
                ship_to: body.ship_to.as_ref().map(|p| (p.lat, p.lng)),
                allow_transfer: body.allow_transfer,
                actor: &actor_name,
            };
            let before: Vec<String> = sb_store::inventory::active_holds(c, &ws, "cart", &id)?
                .into_iter()
                .map(|h| h.id)
                .collect();
            let holds = sb_store::orders::start_checkout(c, &request, hold_ms, now)?;
            // A checkout that took new holds started now (asking again keeps the same holds).
            let started = holds.iter().any(|h| !before.contains(&h.id));
            if started && let Some(cart) = sb_store::carts::get(c, &ws, &id)? {
                let value: i64 = sb_store::carts::lines(c, &cart.id)?
                    .iter()
                    .map(|l| l.quantity.saturating_mul(l.current_price_minor))
                    .fold(0, i64::saturating_add);
                let properties = serde_json::json!({
                    "cart_id": cart.id, "value": value as f64 / 100.0, "currency": cart.currency,
                    "fulfillment": body.fulfillment,
                });
                sb_store::events::record_commerce(
                    c,
                    &ws,
                    cart.customer_id.as_deref(),
                    cart.anonymous_id.as_deref(),
                    "Checkout Started",
                    &properties,
                    now,
                )?;
            }
            let touched = holds.iter().map(|h| (h.item_id.clone(), h.location_id.clone()));
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, sb_store::orders::OrderError>((holds, events))
        })
        .await
        .map_err(crate::commerce::orders::order_error)?;
    app.live.publish(&events).await;
    Ok(serde_json::json!({
        "location_id": holds.first().map(|h| h.location_id.clone()),
        "expires_at": holds.first().map(|h| sb_core::clock::rfc3339(h.expires_at)),
        "holds": holds,
    }))
}

/// [`get_cart_unaudited`], with a 404 for another workspace's cart audited.
pub async fn get_cart(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    let audit_id = id.clone();
    let result = get_cart_unaudited(app, principal, id).await;
    crate::access::audited(app, principal, sb_store::objects::ObjectKind::Cart, &audit_id, result).await
}

/// A cart, prices and stock checked now.
async fn get_cart_unaudited(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    read_cart(app, principal, id, sb_store::carts::get).await
}

/// The customer's active cart, whichever device filled it.
pub async fn customer_cart(app: &App, principal: &Principal, customer_id: String) -> AppResult<serde_json::Value> {
    read_cart(app, principal, customer_id, sb_store::carts::active_for_customer).await
}
