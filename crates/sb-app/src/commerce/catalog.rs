//! Locations and the catalogue.

use crate::error::{AppError, AppResult};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::Permission;
use sb_store::audit::{self, Change as AuditChange};
use sb_store::catalog::{self, NewLocation, NewVariant};
use sb_store::{StoreError, StoreError as Se};
use serde::Deserialize;
use utoipa::ToSchema;

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
    /// Routing preference among locations that can send the same order, lower first
    /// (after "one location for everything" and "fewest shipments", before distance).
    #[serde(default)]
    pub routing_rank: i64,
}

fn yes() -> bool {
    true
}

fn three() -> i64 {
    3
}
/// Adds a store or warehouse (audited).
pub async fn create_location(app: &App, principal: &Principal, body: CreateLocation) -> AppResult<catalog::Location> {
    principal.require(Permission::ManageInventory)?;
    let invalid = |m: &str| AppError::unprocessable("invalid_location", m.to_owned());
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
    if jiff::tz::TimeZone::get(&body.timezone).is_err() {
        return Err(invalid("timezone must be an IANA time zone, e.g. Europe/Madrid"));
    }
    if body.pickup_prep_minutes < 0 || body.pickup_hold_days < 1 || body.daily_capacity.is_some_and(|c| c < 0) {
        return Err(invalid(
            "pickup_prep_minutes ≥ 0, pickup_hold_days ≥ 1, daily_capacity ≥ 0",
        ));
    }
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let created = app
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
                routing_rank: body.routing_rank,
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
        .ok_or_else(|| AppError::new(StatusCode::CONFLICT, "location_code_taken", "a location has this code"))?;
    Ok(created)
}
/// The workspace's locations.
pub async fn list_locations(app: &App, principal: &Principal) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    let items = app.store.db.read(move |c| catalog::locations(c, &ws)).await?;
    Ok(serde_json::json!({ "items": items }))
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
/// The catalogue.
pub async fn list_products(app: &App, principal: &Principal) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadInventory)?;
    let ws = principal.workspace_id().to_owned();
    let items = app.store.db.read(move |c| catalog::products(c, &ws)).await?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(p, v)| serde_json::json!({ "product": p, "variants": v }))
        .collect();
    Ok(serde_json::json!({ "items": items }))
}
/// Adds a product with its variants; each variant is stocked as an item of its own SKU, or
/// as a kit of other items.
pub async fn create_product(app: &App, principal: &Principal, body: CreateProduct) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageInventory)?;
    let invalid = |m: String| AppError::unprocessable("invalid_product", m);
    if body.title.trim().is_empty() || body.variants.is_empty() {
        return Err(invalid("a title and at least one variant are required".into()));
    }
    for v in &body.variants {
        let currency_ok = v.currency.len() == 3 && v.currency.bytes().all(|b| b.is_ascii_uppercase());
        let price_ok = (0..=sb_core::inventory::MAX_PRICE_MINOR).contains(&v.price_minor);
        if v.sku.trim().is_empty() || v.sku.len() > 64 || !price_ok || !currency_ok {
            return Err(invalid(format!(
                "variant `{}`: sku 1–64 characters, price_minor 0–100,000,000,000, currency like EUR",
                v.sku
            )));
        }
        let max = sb_core::inventory::MAX_LINE_QUANTITY;
        if v.components
            .iter()
            .any(|c| !(1..=max).contains(&c.quantity) || c.sku.trim().is_empty())
        {
            return Err(invalid(format!(
                "variant `{}`: each component needs a sku and a quantity of 1–100,000",
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
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let created = app
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
        Ok(Ok((product, variants))) => Ok(serde_json::json!({ "product": product, "variants": variants })),
        Ok(Err(m)) => Err(AppError::new(StatusCode::CONFLICT, "sku_taken", m)),
        // A taken SKU after the product row was written rolls the whole product back.
        Err(Se::Conflict(m)) => Err(AppError::new(StatusCode::CONFLICT, "sku_taken", m)),
        Err(e) => Err(e.into()),
    }
}
