//! The demo's shop: three stores and a warehouse, a small catalogue (with a kit) and stock
//! received through the ledger, so availability, holds and the staff screens have something
//! real to show.

use sb_core::inventory::Movement;
use sb_store::catalog::{self, NewLocation, NewVariant};
use sb_store::inventory::{self, Change, InventoryError, Line};
use sb_store::{Conn, StoreError};

/// (code, name, address, lat, lng, kind)
const LOCATIONS: [(&str, &str, &str, f64, f64, &str); 4] = [
    (
        "MAD-CENTRO",
        "Madrid Centro",
        "Calle de Preciados 10, Madrid",
        40.4189,
        -3.7058,
        "store",
    ),
    (
        "BCN-GRACIA",
        "Barcelona Gràcia",
        "Carrer Gran de Gràcia 50, Barcelona",
        41.4011,
        2.1555,
        "store",
    ),
    (
        "VLC-RUZAFA",
        "Valencia Ruzafa",
        "Carrer de Sueca 20, Valencia",
        39.4623,
        -0.3746,
        "store",
    ),
    (
        "ZGZ-WH",
        "Zaragoza warehouse",
        "Plataforma Logística, Zaragoza",
        41.6488,
        -0.8891,
        "warehouse",
    ),
];

/// (product, [(sku, variant, price in cents)], stock per location in LOCATIONS order)
type Row = (&'static str, &'static [(&'static str, &'static str, i64)], [i64; 4]);
const CATALOGUE: [Row; 4] = [
    (
        "Trail jacket",
        &[
            ("JKT-BLU-S", "Blue S", 8999),
            ("JKT-BLU-M", "Blue M", 8999),
            ("JKT-BLU-L", "Blue L", 8999),
        ],
        [3, 2, 0, 40],
    ),
    (
        "Hiking boots",
        &[("BOOT-42", "EU 42", 12999), ("BOOT-43", "EU 43", 12999)],
        [4, 1, 6, 25],
    ),
    ("Wool gloves", &[("GLV-1", "One size", 1999)], [10, 8, 0, 100]),
    ("Rain poncho", &[("PONCHO-1", "One size", 2999)], [0, 0, 2, 12]),
];

pub fn seed(c: &mut dyn Conn, ws: &str, now: i64) -> Result<(), StoreError> {
    let mut locations = Vec::new();
    for (code, name, address, lat, lng, kind) in LOCATIONS {
        let new = NewLocation {
            workspace_id: ws,
            code,
            kind,
            name,
            address,
            lat: Some(lat),
            lng: Some(lng),
            timezone: "Europe/Madrid",
            can_ship: true,
            can_pickup: kind == "store",
            accepts_returns: true,
            pickup_prep_minutes: 30,
            pickup_hold_days: 5,
            daily_capacity: None,
            routing_rank: 0,
        };
        let location = catalog::create_location(c, &new, now)?.ok_or(StoreError::Conflict(code.into()))?;
        locations.push(location.id);
    }
    let mut lines = Vec::new();
    for (title, variants, stock) in CATALOGUE {
        let new: Vec<NewVariant> = variants
            .iter()
            .map(|(sku, name, price)| NewVariant {
                sku: (*sku).into(),
                title: (*name).into(),
                price_minor: *price,
                currency: "EUR".into(),
                components: Vec::new(),
            })
            .collect();
        catalog::create_product(c, ws, title, "", &new, now)?;
        for (sku, _, _) in variants {
            let item = catalog::find_item(c, ws, sku)?.ok_or(StoreError::NotFound("demo item"))?;
            for (location, quantity) in locations.iter().zip(stock) {
                if quantity > 0 {
                    lines.push(Line {
                        item_id: item.clone(),
                        location_id: location.clone(),
                        movement: Movement::Receive { quantity },
                    });
                }
            }
        }
    }
    let kit = NewVariant {
        sku: "KIT-TRAIL-M".into(),
        title: "Jacket M + gloves".into(),
        price_minor: 9999,
        currency: "EUR".into(),
        components: vec![("JKT-BLU-M".into(), 1), ("GLV-1".into(), 1)],
    };
    catalog::create_product(c, ws, "Trail kit", "A jacket and a pair of gloves", &[kit], now)?;
    let change = Change {
        workspace_id: ws,
        idempotency_key: "demo:opening-stock",
        reason: "received",
        actor: "system:demo",
        reference_type: "manual",
        reference_id: None,
        lines,
    };
    inventory::apply(c, &change, now).map_err(|e| match e {
        InventoryError::Store(e) => e,
        other => StoreError::Invalid(other.to_string()),
    })?;
    Ok(())
}
