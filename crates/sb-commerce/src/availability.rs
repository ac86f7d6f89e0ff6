//! "Available at my local branch": per location, how many units of a variant can be sold
//! now, as a number (staff) and a level (shoppers), sorted by distance from a point.

use sb_core::inventory::{StockLevel, distance_km, level};
use sb_store::{StoreError, catalog, inventory};
use serde::Serialize;

/// Units at or below this are shown to shoppers as "low".
pub const LOW_STOCK_AT: i64 = 3;

/// How much longer a pickup takes when the store has to get the stock from another location
/// first (a transfer, commerce.md §5 "Pickup sourcing").
pub const TRANSFER_PICKUP_EXTRA_MINUTES: i64 = 2 * 24 * 60;

#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub sku: String,
    pub title: String,
    pub locations: Vec<LocationAvailability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationAvailability {
    pub location_id: String,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub can_pickup: bool,
    pub can_ship: bool,
    /// Whole units of the variant (a kit: the scarcest component decides).
    pub available: i64,
    pub level: StockLevel,
    pub distance_km: Option<f64>,
    /// Pickup here: minutes until it can be collected (the store's preparation time, plus
    /// [`TRANSFER_PICKUP_EXTRA_MINUTES`] when it must come from another location by
    /// transfer); `None` when it cannot be picked up here at all.
    pub pickup_ready_minutes: Option<i64>,
    /// Pickup here needs a transfer from another location (order with `allow_transfer`).
    pub pickup_by_transfer: bool,
}

/// The variant's availability at every active location; `None` for an unknown SKU.
pub fn availability(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    sku: &str,
    near: Option<(f64, f64)>,
) -> Result<Option<Availability>, StoreError> {
    let Some(variant) = catalog::variant_by_sku(c, ws, sku)? else {
        return Ok(None);
    };
    let components = catalog::components(c, &variant.id)?;
    let mut per_component = Vec::with_capacity(components.len());
    for (item, quantity) in &components {
        let balances = inventory::balances_of_item(c, ws, item).map_err(into_store)?;
        per_component.push((balances, *quantity));
    }
    let mut locations: Vec<LocationAvailability> = catalog::locations(c, ws)?
        .into_iter()
        .filter(|l| l.active)
        .map(|l| {
            let prep = l.pickup_prep_minutes;
            let available = per_component
                .iter()
                .map(|(balances, per_unit)| {
                    let at_location = balances
                        .iter()
                        .find(|(loc, _)| *loc == l.id)
                        .map_or(0, |(_, b)| b.available());
                    at_location / per_unit
                })
                .min()
                .unwrap_or(0)
                .max(0);
            let distance = match (near, l.lat, l.lng) {
                (Some(point), Some(lat), Some(lng)) => Some(distance_km(point, (lat, lng))),
                _ => None,
            };
            LocationAvailability {
                location_id: l.id,
                code: l.code,
                name: l.name,
                kind: l.kind,
                can_pickup: l.can_pickup,
                can_ship: l.can_ship,
                available,
                level: level(available, LOW_STOCK_AT),
                distance_km: distance.map(|d| (d * 10.0).round() / 10.0),
                pickup_ready_minutes: Some(prep),
                pickup_by_transfer: false,
            }
        })
        .collect();
    // A store without it can still offer pickup when another location can send it.
    let elsewhere: Vec<(String, i64)> = locations.iter().map(|l| (l.location_id.clone(), l.available)).collect();
    for l in &mut locations {
        if !l.can_pickup {
            l.pickup_ready_minutes = None;
        } else if l.available <= 0 {
            if elsewhere.iter().any(|(id, a)| *id != l.location_id && *a > 0) {
                l.pickup_by_transfer = true;
                l.pickup_ready_minutes = l.pickup_ready_minutes.map(|m| m + TRANSFER_PICKUP_EXTRA_MINUTES);
            } else {
                l.pickup_ready_minutes = None;
            }
        }
    }
    // Nearest first (unknown distances last), then by code for a stable order.
    locations.sort_by(|a, b| {
        let key = |l: &LocationAvailability| l.distance_km.unwrap_or(f64::MAX);
        key(a).total_cmp(&key(b)).then_with(|| a.code.cmp(&b.code))
    });
    Ok(Some(Availability {
        sku: variant.sku,
        title: variant.title,
        locations,
    }))
}

fn into_store(e: inventory::InventoryError) -> StoreError {
    match e {
        inventory::InventoryError::Store(e) => e,
        other => StoreError::Invalid(other.to_string()),
    }
}
