//! "Available at my local branch": per location, how many units of a variant can be sold
//! now, as a number (staff) and a level (shoppers), sorted by distance from a point.

use sb_core::inventory::{StockLevel, distance_km, level};
use sb_store::{StoreError, catalog, inventory};
use serde::Serialize;

/// Units at or below this are shown to shoppers as "low".
pub const LOW_STOCK_AT: i64 = 3;

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
            }
        })
        .collect();
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
