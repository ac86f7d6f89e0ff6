//! Commerce: locations, the catalogue, inventory changes through the ledger, checkout holds
//! and per-location availability.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use sb_core::Permission;
use sb_core::inventory::Movement;
use sb_store::audit::{self, Change as AuditChange};
use sb_store::catalog::{self, NewLocation, NewVariant};
use sb_store::inventory::{self, InventoryError, Line, NewReservation, Outcome, Resolution};
use sb_store::{StoreError, StoreError as Se};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Principal};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_locations, create_location))
        .routes(routes!(list_products, create_product))
        .routes(routes!(change_inventory))
        .routes(routes!(create_reservation))
        .routes(routes!(resolve_reservation))
        .routes(routes!(get_availability))
        .routes(routes!(check_inventory))
        .routes(routes!(open_cart))
        .routes(routes!(get_cart))
        .routes(routes!(set_cart_line))
        .routes(routes!(assign_cart))
        .routes(routes!(customer_cart))
        .routes(routes!(place_order))
        .routes(routes!(get_order))
        .routes(routes!(order_action))
        .routes(routes!(customer_orders))
        .routes(routes!(receive_return))
}

fn inventory_error(e: InventoryError) -> ApiError {
    match e {
        InventoryError::Insufficient {
            item,
            location,
            available,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!("not enough stock: {available} available at that location"),
        )
        .with_details(serde_json::json!({ "item_id": item, "location_id": location, "available": available })),
        InventoryError::KeyReused => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency key was used for a different request",
        ),
        InventoryError::Invalid(m) => ApiError::unprocessable("invalid_inventory_change", m),
        InventoryError::NotFound(what) => ApiError::not_found("not_found", format!("{what} not found")),
        InventoryError::AlreadyResolved(status) => ApiError::new(
            StatusCode::CONFLICT,
            "reservation_resolved",
            format!("the reservation is already {status}"),
        ),
        InventoryError::Store(e) => e.into(),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateLocation {
    /// Short unique code, e.g. `MAD-01`.
    pub code: String,
    /// `store` or `warehouse`.
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub address: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    /// IANA name, e.g. `Europe/Madrid`.
    pub timezone: String,
    #[serde(default = "yes")]
    pub can_ship: bool,
    #[serde(default)]
    pub can_pickup: bool,
    #[serde(default)]
    pub accepts_returns: bool,
    #[serde(default)]
    pub pickup_prep_minutes: i64,
    #[serde(default = "three")]
    pub pickup_hold_days: i64,
    pub daily_capacity: Option<i64>,
}

fn yes() -> bool {
    true
}

fn three() -> i64 {
    3
}

/// Adds a store or warehouse (audited).
#[utoipa::path(post, path = "/api/v1/locations", tag = "commerce", request_body = CreateLocation, responses(
    (status = 201, description = "the location"),
    (status = 409, description = "`location_code_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_location`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_location(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateLocation>,
) -> ApiResult<(StatusCode, axum::Json<catalog::Location>)> {
    principal.require(Permission::ManageInventory)?;
    let invalid = |m: &str| ApiError::unprocessable("invalid_location", m.to_owned());
    if body.code.trim().is_empty() || body.code.len() > 32 || body.name.trim().is_empty() {
        return Err(invalid("code (1–32 characters) and name are required"));
    }
    if !matches!(body.kind.as_str(), "store" | "warehouse") {
        return Err(invalid("kind must be `store` or `warehouse`"));
    }
    if body.lat.is_some_and(|l| !(-90.0..=90.0).contains(&l))
        || body.lng.is_some_and(|l| !(-180.0..=180.0).contains(&l))
    {
        return Err(invalid("lat must be within ±90 and lng within ±180"));
    }
    if body.pickup_prep_minutes < 0 || body.pickup_hold_days < 1 || body.daily_capacity.is_some_and(|c| c < 0) {
        return Err(invalid(
            "pickup_prep_minutes ≥ 0, pickup_hold_days ≥ 1, daily_capacity ≥ 0",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let created = state
        .store
        .db
        .write(move |c| {
            let new = NewLocation {
                workspace_id: &ws,
                code: body.code.trim(),
                kind: &body.kind,
                name: body.name.trim(),
                address: &body.address,
                lat: body.lat,
                lng: body.lng,
                timezone: &body.timezone,
                can_ship: body.can_ship,
                can_pickup: body.can_pickup,
                accepts_returns: body.accepts_returns,
                pickup_prep_minutes: body.pickup_prep_minutes,
                pickup_hold_days: body.pickup_hold_days,
                daily_capacity: body.daily_capacity,
            };
            let Some(location) = catalog::create_location(c, &new, now)? else {
                return Ok(None);
            };
            let change = AuditChange {
                action: "location.created",
                object_kind: "location",
                object_id: Some(&location.id),
                before: None,
                after: Some(serde_json::json!({ "code": location.code, "name": location.name })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(Some(location))
        })
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "location_code_taken", "a location has this code"))?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// The workspace's locations.
#[utoipa::path(get, path = "/api/v1/locations", tag = "commerce", responses(
    (status = 200, description = "`{items: [location]}`")
), security(("bearer" = []), ("session" = [])))]
async fn list_locations(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    let items = state.store.db.read(move |c| catalog::locations(c, &ws)).await?;
    Ok(axum::Json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateProduct {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub variants: Vec<CreateVariant>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateVariant {
    pub sku: String,
    pub title: String,
    /// In minor units (cents).
    pub price_minor: i64,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    /// A kit: `[{"sku", "quantity"}]` of the inventory items one unit takes.
    #[serde(default)]
    pub components: Vec<Component>,
}

#[derive(Deserialize, ToSchema)]
pub struct Component {
    pub sku: String,
    pub quantity: i64,
}

/// Adds a product with its variants; each variant is stocked as an item of its own SKU, or
/// as a kit of other items.
#[utoipa::path(post, path = "/api/v1/products", tag = "commerce", request_body = CreateProduct, responses(
    (status = 201, description = "`{product, variants}`"),
    (status = 409, description = "`sku_taken`", body = ErrorBody),
    (status = 422, description = "`invalid_product`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_product(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    principal.require(Permission::ManageInventory)?;
    let invalid = |m: String| ApiError::unprocessable("invalid_product", m);
    if body.title.trim().is_empty() || body.variants.is_empty() {
        return Err(invalid("a title and at least one variant are required".into()));
    }
    for v in &body.variants {
        let currency_ok = v.currency.len() == 3 && v.currency.bytes().all(|b| b.is_ascii_uppercase());
        if v.sku.trim().is_empty() || v.sku.len() > 64 || v.price_minor < 0 || !currency_ok {
            return Err(invalid(format!(
                "variant `{}`: sku 1–64 characters, price_minor ≥ 0, currency like EUR",
                v.sku
            )));
        }
        if v.components.iter().any(|c| c.quantity < 1 || c.sku.trim().is_empty()) {
            return Err(invalid(format!(
                "variant `{}`: each component needs a sku and quantity ≥ 1",
                v.sku
            )));
        }
    }
    let variants: Vec<NewVariant> = body
        .variants
        .iter()
        .map(|v| NewVariant {
            sku: v.sku.trim().to_owned(),
            title: v.title.clone(),
            price_minor: v.price_minor,
            currency: v.currency.clone(),
            components: v
                .components
                .iter()
                .map(|c| (c.sku.trim().to_owned(), c.quantity))
                .collect(),
        })
        .collect();
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let created = state
        .store
        .db
        .write(move |c| {
            let (product, variants) = match catalog::create_product(c, &ws, &body.title, &body.description, &variants, now)
            {
                Ok(created) => created,
                Err(Se::Conflict(m)) => return Ok(Err(m)),
                Err(e) => return Err(e),
            };
            let change = AuditChange {
                action: "product.created",
                object_kind: "product",
                object_id: Some(&product.id),
                before: None,
                after: Some(serde_json::json!({ "title": product.title, "skus": variants.iter().map(|v| &v.sku).collect::<Vec<_>>() })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, StoreError>(Ok((product, variants)))
        })
        .await;
    match created {
        Ok(Ok((product, variants))) => Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "product": product, "variants": variants })),
        )),
        Ok(Err(m)) => Err(ApiError::new(StatusCode::CONFLICT, "sku_taken", m)),
        // A taken SKU after the product row was written rolls the whole product back.
        Err(Se::Conflict(m)) => Err(ApiError::new(StatusCode::CONFLICT, "sku_taken", m)),
        Err(e) => Err(e.into()),
    }
}

/// The catalogue.
#[utoipa::path(get, path = "/api/v1/products", tag = "commerce", responses(
    (status = 200, description = "`{items: [{product, variants}]}`")
), security(("bearer" = []), ("session" = [])))]
async fn list_products(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    let items = state.store.db.read(move |c| catalog::products(c, &ws)).await?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(p, v)| serde_json::json!({ "product": p, "variants": v }))
        .collect();
    Ok(axum::Json(serde_json::json!({ "items": items })))
}

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
    /// `{"kind": "receive", "quantity": 5}`; kinds: `receive`, `adjust` (`delta`),
    /// `set_aside` / `resolve` (`bucket`: `damaged` | `quality_control`), `safety_stock`
    /// (`delta`), `return_in` (`bucket`: `on_hand` | `damaged` | `quality_control`),
    /// `transfer_out`, `expect`, `transfer_in` (`received`, `lost`).
    #[schema(value_type = Object)]
    pub movement: Movement,
}

/// Changes stock through the ledger, all lines or none: a delivery, a count, damage,
/// a return received, a transfer. Holds and order commitments go through reservations and
/// orders instead.
#[utoipa::path(post, path = "/api/v1/inventory/changes", tag = "commerce", request_body = InventoryChange, responses(
    (status = 201, description = "`{group_id, replayed}`"),
    (status = 404, description = "`not_found`: an unknown SKU or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `idempotency_key_reused`", body = ErrorBody),
    (status = 422, description = "`invalid_inventory_change`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn change_inventory(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<InventoryChange>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    principal.require(Permission::ManageInventory)?;
    if body.idempotency_key.trim().is_empty() || body.idempotency_key.len() > 200 || body.lines.is_empty() {
        return Err(ApiError::unprocessable(
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
        return Err(ApiError::unprocessable(
            "invalid_inventory_change",
            "holds and commitments change through reservations and orders, not here",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = format!("{}:{}", actor.kind, actor.id.clone().unwrap_or_default());
    let outcome = state
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
    state.live.publish(&events).await;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "group_id": outcome.group_id(),
            "replayed": matches!(outcome, Outcome::Replayed { .. }),
        })),
    ))
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
#[utoipa::path(post, path = "/api/v1/inventory/reservations", tag = "commerce", request_body = CreateReservation, responses(
    (status = 201, description = "the reservation"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `idempotency_key_reused`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn create_reservation(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateReservation>,
) -> ApiResult<(StatusCode, axum::Json<inventory::Reservation>)> {
    principal.require(Permission::ManageOrders)?;
    let ttl = body.ttl_seconds.unwrap_or(900);
    if !(1..=86_400).contains(&ttl) || body.quantity < 1 || body.idempotency_key.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_reservation",
            "quantity ≥ 1, ttl_seconds 1–86400 and an idempotency_key are required",
        ));
    }
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = format!("{}:{}", actor.kind, actor.id.unwrap_or_default());
    let (reservation, events) = state
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
    state.live.publish(&events).await;
    Ok((StatusCode::CREATED, axum::Json(reservation)))
}

/// Commits (to an order) or releases a hold; doing the same again changes nothing.
#[utoipa::path(post, path = "/api/v1/inventory/reservations/{id}/{action}", tag = "commerce",
    params(("id" = String, Path), ("action" = String, Path, description = "`commit` or `release`")), responses(
    (status = 200, description = "the reservation"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`reservation_resolved` (e.g. it expired)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn resolve_reservation(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<axum::Json<inventory::Reservation>> {
    principal.require(Permission::ManageOrders)?;
    let to = match action.as_str() {
        "commit" => Resolution::Committed,
        "release" => Resolution::Released,
        _ => {
            return Err(ApiError::not_found(
                "not_found",
                "no such action: use commit or release",
            ));
        }
    };
    let (ws, actor, now) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        state.store.now(),
    );
    let actor_name = format!("{}:{}", actor.kind, actor.id.unwrap_or_default());
    let (resolved, events) = state
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
    state.live.publish(&events).await;
    Ok(axum::Json(resolved))
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
/// out of stock), nearest first.
#[utoipa::path(get, path = "/api/v1/inventory/availability", tag = "commerce", params(AvailabilityQuery), responses(
    (status = 200, description = "`{sku, title, locations: [{location_id, code, name, available, level, distance_km, can_pickup, can_ship}]}`"),
    (status = 404, description = "`not_found`: no such SKU", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_availability(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AvailabilityQuery>,
) -> ApiResult<axum::Json<sb_commerce::Availability>> {
    principal.require(Permission::ReadInventory)?;
    let near = q.lat.zip(q.lng);
    let ws = principal.workspace_id().to_owned();
    let found = state
        .store
        .db
        .read(move |c| sb_commerce::availability(c, &ws, &q.sku, near))
        .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("not_found", "no variant with this SKU"))
}

/// Recomputes every balance from the ledger and the active holds: `{problems: []}` when all
/// agree.
#[utoipa::path(get, path = "/api/v1/inventory/check", tag = "commerce", responses(
    (status = 200, description = "`{problems: [text]}`")
), security(("bearer" = []), ("session" = [])))]
async fn check_inventory(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ManageInventory)?;
    let ws = principal.workspace_id().to_owned();
    let problems = state
        .store
        .db
        .read(move |c| inventory::check(c, &ws))
        .await
        .map_err(inventory_error)?;
    Ok(axum::Json(serde_json::json!({ "problems": problems })))
}

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
        total += line.current_price_minor * line.quantity;
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

fn no_cart() -> ApiError {
    ApiError::not_found("cart_not_found", "no such cart")
}

fn cart_conflict(e: StoreError) -> ApiError {
    match e {
        Se::NotFound(_) => no_cart(),
        Se::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "cart_conflict", m),
        other => other.into(),
    }
}

/// Opens a cart for a customer (their active one when they have it: the same on every
/// device) or for a guest device.
#[utoipa::path(post, path = "/api/v1/carts", tag = "commerce", request_body = OpenCart, responses(
    (status = 201, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`customer_not_found`", body = ErrorBody),
    (status = 422, description = "`invalid_cart`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn open_cart(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<OpenCart>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    principal.require(Permission::ManageOrders)?;
    if body.customer_id.is_none() && body.anonymous_id.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::unprocessable(
            "invalid_cart",
            "a customer_id or an anonymous_id is required",
        ));
    }
    let (ws, now) = (principal.workspace_id().to_owned(), state.store.now());
    let view = state
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
        .ok_or_else(|| ApiError::not_found("customer_not_found", "no such customer"))?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// A cart, prices and stock checked now.
#[utoipa::path(get, path = "/api/v1/carts/{id}", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    state
        .store
        .db
        .read(move |c| match sb_store::carts::get(c, &ws, &id)? {
            Some(cart) => cart_view(c, &ws, cart).map(Some),
            None => Ok(None),
        })
        .await?
        .map(axum::Json)
        .ok_or_else(no_cart)
}

#[derive(Deserialize, ToSchema)]
pub struct SetLine {
    /// The quantity wanted (0 removes the line).
    pub quantity: i64,
}

/// Sets how many of a variant the cart holds.
#[utoipa::path(put, path = "/api/v1/carts/{id}/lines/{sku}", tag = "commerce",
    params(("id" = String, Path), ("sku" = String, Path)), request_body = SetLine, responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`, `not_found` (SKU)", body = ErrorBody),
    (status = 409, description = "`cart_conflict`: the cart is closed", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn set_cart_line(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, sku)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetLine>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ManageOrders)?;
    if !(0..=999).contains(&body.quantity) {
        return Err(ApiError::unprocessable("invalid_cart", "quantity must be 0–999"));
    }
    let (ws, now) = (principal.workspace_id().to_owned(), state.store.now());
    let outcome = state
        .store
        .db
        .write(move |c| {
            let Some(cart) = sb_store::carts::get(c, &ws, &id)? else {
                return Ok(Err(no_cart()));
            };
            if cart.status != "active" {
                return Ok(Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "cart_conflict",
                    format!("the cart is {}", cart.status),
                )));
            }
            let Some(variant) = catalog::variant_by_sku(c, &ws, &sku)? else {
                return Ok(Err(ApiError::not_found("not_found", "no variant with this SKU")));
            };
            sb_store::carts::set_line(c, &cart.id, &variant.id, body.quantity, variant.price_minor, now)?;
            let cart = sb_store::carts::get(c, &ws, &cart.id)?.ok_or(Se::NotFound("cart"))?;
            Ok::<_, StoreError>(Ok(cart_view(c, &ws, cart)?))
        })
        .await?;
    outcome.map(axum::Json)
}

#[derive(Deserialize, ToSchema)]
pub struct AssignCart {
    pub customer_id: String,
}

/// The shopper signed in: the guest cart becomes the customer's, or merges into the cart they
/// already have (the same variant's quantities add up). Returns the customer's cart.
#[utoipa::path(post, path = "/api/v1/carts/{id}/assign", tag = "commerce", params(("id" = String, Path)),
    request_body = AssignCart, responses(
    (status = 200, description = "`{cart, lines, total_minor}` of the customer's cart"),
    (status = 404, description = "`cart_not_found`, `customer_not_found`", body = ErrorBody),
    (status = 409, description = "`cart_conflict`: someone else's or a closed cart", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn assign_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignCart>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ManageOrders)?;
    let (ws, now) = (principal.workspace_id().to_owned(), state.store.now());
    let outcome = state
        .store
        .db
        .write(move |c| {
            if sb_store::customers::get(c, &ws, &body.customer_id)?.is_none() {
                return Ok(Err(ApiError::not_found("customer_not_found", "no such customer")));
            }
            let cart = match sb_store::carts::assign(c, &ws, &id, &body.customer_id, now) {
                Ok(cart) => cart,
                Err(e @ (Se::NotFound(_) | Se::Conflict(_))) => return Ok(Err(cart_conflict(e))),
                Err(e) => return Err(e),
            };
            Ok::<_, StoreError>(Ok(cart_view(c, &ws, cart)?))
        })
        .await?;
    outcome.map(axum::Json)
}

/// The customer's active cart, whichever device filled it.
#[utoipa::path(get, path = "/api/v1/customers/{id}/cart", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{cart, lines, total_minor}`"),
    (status = 404, description = "`cart_not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn customer_cart(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    state
        .store
        .db
        .read(move |c| match sb_store::carts::active_for_customer(c, &ws, &id)? {
            Some(cart) => cart_view(c, &ws, cart).map(Some),
            None => Ok(None),
        })
        .await?
        .map(axum::Json)
        .ok_or_else(no_cart)
}

fn order_error(e: sb_store::orders::OrderError) -> ApiError {
    use sb_store::orders::OrderError;
    match e {
        OrderError::NotFound(what) => ApiError::not_found("not_found", format!("{what} not found")),
        OrderError::Invalid(m) => ApiError::unprocessable("invalid_order", m),
        OrderError::State(m) => ApiError::new(StatusCode::CONFLICT, "order_state", m),
        OrderError::Inventory(e) => inventory_error(e),
    }
}

fn order_view(c: &mut dyn sb_store::Conn, order: sb_store::orders::Order) -> Result<serde_json::Value, StoreError> {
    let lines = sb_store::orders::lines(c, &order.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(serde_json::json!({ "order": order, "lines": lines }))
}

#[derive(Deserialize, ToSchema)]
pub struct PlaceOrder {
    pub cart_id: String,
    /// The same key (or cart) again returns the order placed the first time.
    pub idempotency_key: String,
    /// `ship` or `pickup`.
    pub fulfillment: String,
    /// The pickup store; for `ship`, omit to let routing choose a location that can send the
    /// whole order (any store can ship).
    pub location_id: Option<String>,
}

/// Checkout from any sales channel (web, app, store, an agent in a conversation): the cart's
/// stock is committed at the fulfilling location in the same transaction as the order.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commerce", request_body = PlaceOrder, responses(
    (status = 201, description = "`{order, lines}`"),
    (status = 404, description = "`not_found`: cart or location", body = ErrorBody),
    (status = 409, description = "`insufficient_stock`, `order_state` (the cart is closed)", body = ErrorBody),
    (status = 422, description = "`invalid_order`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn place_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
    principal.require(Permission::ManageOrders)?;
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
    let actor_name = format!("{}:{}", actor.kind, actor.id.unwrap_or_default());
    let outcome = state
        .store
        .db
        .write(move |c| {
            let request = sb_store::orders::Checkout {
                workspace_id: &ws,
                cart_id: &body.cart_id,
                idempotency_key: &body.idempotency_key,
                fulfillment: &body.fulfillment,
                location_id: body.location_id.as_deref(),
                actor: &actor_name,
            };
            let order = sb_store::orders::checkout(c, &request, now)?;
            let lines = sb_store::orders::lines(c, &order.id)?;
            let mut touched = Vec::new();
            for line in &lines {
                for (item, _) in catalog::components(c, &line.variant_id)? {
                    touched.push((item, order.location_id.clone()));
                }
            }
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, sb_store::orders::OrderError>((serde_json::json!({ "order": order, "lines": lines }), events))
        })
        .await
        .map_err(order_error)?;
    let (view, events) = outcome;
    state.live.publish(&events).await;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// An order with its lines.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{order, lines}`"),
    (status = 404, description = "`not_found`", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ReadOrders)?;
    let ws = principal.workspace_id().to_owned();
    state
        .store
        .db
        .read(
            move |c| match sb_store::orders::get(c, &ws, &id).map_err(|e| StoreError::Invalid(e.to_string()))? {
                Some(order) => order_view(c, order).map(Some),
                None => Ok(None),
            },
        )
        .await?
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
/// deadline, and the customer is told on the channel they last used), `pickup` (handed over
/// with the code: the stock leaves), `ship`, `cancel` (the stock is sellable again). Each is
/// idempotent.
#[utoipa::path(post, path = "/api/v1/orders/{id}/{action}", tag = "commerce",
    params(("id" = String, Path), ("action" = String, Path, description = "`ready`, `pickup`, `ship` or `cancel`")),
    request_body = OrderActionBody, responses(
    (status = 200, description = "`{order, lines}`"),
    (status = 404, description = "`not_found`", body = ErrorBody),
    (status = 409, description = "`order_state`", body = ErrorBody),
    (status = 422, description = "`invalid_order` (e.g. a wrong pickup code)", body = ErrorBody)
), security(("bearer" = []), ("session" = [])))]
async fn order_action(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<OrderActionBody>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    principal.require(Permission::ManageOrders)?;
    if !matches!(action.as_str(), "ready" | "pickup" | "ship" | "cancel") {
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
    let actor_name = format!("{}:{}", actor.kind, actor.id.unwrap_or_default());
    let channels = state.channels.clone();
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
            let mut touched = Vec::new();
            for line in &lines {
                for (item, _) in catalog::components(c, &line.variant_id)? {
                    touched.push((item, order.location_id.clone()));
                }
            }
            events.extend(sb_commerce::live::availability_changed(c, &ws, touched, now)?);
            Ok::<_, orders::OrderError>((serde_json::json!({ "order": order, "lines": lines }), events))
        })
        .await
        .map_err(order_error)?;
    state.engine.notify_jobs();
    state.live.publish(&events).await;
    Ok(axum::Json(view))
}

/// The customer's orders and their timeline (`Order Completed`, `Order Ready For Pickup`,
/// `Order Picked Up`, `Order Shipped`, `Order Cancelled`).
#[utoipa::path(get, path = "/api/v1/customers/{id}/orders", tag = "commerce", params(("id" = String, Path)), responses(
    (status = 200, description = "`{items: [order], events: [{order_id, name, properties, at}]}`")
), security(("bearer" = []), ("session" = [])))]
async fn customer_orders(
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
async fn receive_return(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReceiveReturn>,
) -> ApiResult<(StatusCode, axum::Json<serde_json::Value>)> {
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
    let actor_name = format!("{}:{}", actor.kind, actor.id.unwrap_or_default());
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
            let mut touched = Vec::new();
            for line in &lines {
                if let Some(variant) = catalog::variant_by_sku(c, &ws, &line.sku)? {
                    for (item, _) in catalog::components(c, &variant.id)? {
                        touched.push((item, received.location_id.clone()));
                    }
                }
            }
            let events = sb_commerce::live::availability_changed(c, &ws, touched, now)?;
            Ok::<_, sb_store::orders::OrderError>((serde_json::json!({ "return": received, "lines": lines }), events))
        })
        .await
        .map_err(order_error)?;
    state.live.publish(&events).await;
    Ok((StatusCode::CREATED, axum::Json(view)))
}
