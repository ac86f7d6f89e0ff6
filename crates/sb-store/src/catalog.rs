//! Where stock lives and what is sold: locations (stores, warehouses), products, variants
//! with SKUs and prices in minor units, and the inventory items whose stock they draw on
//! (one per SKU, or several for a kit).

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub id: String,
    pub workspace_id: String,
    pub code: String,
    /// `store`, `warehouse`.
    pub kind: String,
    pub name: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub timezone: String,
    pub can_ship: bool,
    pub can_pickup: bool,
    pub accepts_returns: bool,
    pub pickup_prep_minutes: i64,
    pub pickup_hold_days: i64,
    pub daily_capacity: Option<i64>,
    /// Routing preference among locations that can send the same order: lower first.
    pub routing_rank: i64,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Location in "locations" {
    id, workspace_id, code, kind, name, address, lat, lng, timezone, can_ship, can_pickup, accepts_returns,
    pickup_prep_minutes, pickup_hold_days, daily_capacity, routing_rank, active, created_at, updated_at
});

const LOCATION_COLUMNS: &str = "id, workspace_id, code, kind, name, address, lat, lng, timezone, can_ship, can_pickup, \
    accepts_returns, pickup_prep_minutes, pickup_hold_days, daily_capacity, routing_rank, active, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewLocation<'a> {
    pub workspace_id: &'a str,
    pub code: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub address: &'a str,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub timezone: &'a str,
    pub can_ship: bool,
    pub can_pickup: bool,
    pub accepts_returns: bool,
    pub pickup_prep_minutes: i64,
    pub pickup_hold_days: i64,
    pub daily_capacity: Option<i64>,
    pub routing_rank: i64,
}

/// Creates a location; `None` when the workspace already has its code.
pub fn create_location(c: &mut dyn Conn, l: &NewLocation<'_>, now: i64) -> Result<Option<Location>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "INSERT INTO locations ({LOCATION_COLUMNS})
             VALUES (:id, :ws, :code, :kind, :name, :address, :lat, :lng, :tz, :ship, :pickup, :returns, :prep, :hold,
                     :capacity, :rank, :active, :now, :now)
             ON CONFLICT (workspace_id, code) DO NOTHING
             RETURNING {LOCATION_COLUMNS}"
        ))
        .bind("id", sb_core::new_id())
        .bind("ws", l.workspace_id)
        .bind("code", l.code)
        .bind("kind", l.kind)
        .bind("name", l.name)
        .bind("address", l.address)
        .bind("lat", l.lat)
        .bind("lng", l.lng)
        .bind("tz", l.timezone)
        .bind("ship", l.can_ship)
        .bind("pickup", l.can_pickup)
        .bind("returns", l.accepts_returns)
        .bind("prep", l.pickup_prep_minutes)
        .bind("hold", l.pickup_hold_days)
        .bind("capacity", l.daily_capacity)
        .bind("rank", l.routing_rank)
        .bind("active", true)
        .bind("now", now),
    )?)
}

pub fn locations(c: &mut dyn Conn, ws: &str) -> Result<Vec<Location>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE workspace_id = :ws ORDER BY code"
        ))
        .bind("ws", ws),
    )?)
}

pub fn location(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Location>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {LOCATION_COLUMNS} FROM locations WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub id: String,
    pub product_id: String,
    pub sku: String,
    pub title: String,
    pub price_minor: i64,
    pub currency: String,
}
from_row!(Variant in "variants" { id, product_id, sku, title, price_minor, currency });

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub description: String,
    pub created_at: i64,
}
from_row!(Product in "products" { id, title, description, created_at });

#[derive(Debug, Clone)]
pub struct NewVariant {
    pub sku: String,
    pub title: String,
    pub price_minor: i64,
    pub currency: String,
    /// A kit: the inventory items (by SKU) and how many of each one unit takes. Empty: the
    /// variant is stocked as an item of its own SKU.
    pub components: Vec<(String, i64)>,
}

/// The inventory item of a SKU, created when new.
pub fn item_for_sku(c: &mut dyn Conn, ws: &str, sku: &str, now: i64) -> Result<String> {
    c.execute(
        &Stmt::new(
            "INSERT INTO inventory_items (id, workspace_id, sku, created_at) VALUES (:id, :ws, :sku, :now)
             ON CONFLICT (workspace_id, sku) DO NOTHING",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", ws)
        .bind("sku", sku)
        .bind("now", now),
    )?;
    find_item(c, ws, sku)?.ok_or(StoreError::NotFound("inventory item"))
}

pub fn find_item(c: &mut dyn Conn, ws: &str, sku: &str) -> Result<Option<String>> {
    Ok(
        match c.query_opt(
            &Stmt::new("SELECT id FROM inventory_items WHERE workspace_id = :ws AND sku = :sku")
                .bind("ws", ws)
                .bind("sku", sku),
        )? {
            Some(row) => Some(row.get("id")?),
            None => None,
        },
    )
}

/// Creates a product with its variants; `Conflict` when a SKU is taken.
pub fn create_product(
    c: &mut dyn Conn,
    ws: &str,
    title: &str,
    description: &str,
    variants: &[NewVariant],
    now: i64,
) -> Result<(Product, Vec<Variant>)> {
    let product = Product {
        id: sb_core::new_id(),
        title: title.to_owned(),
        description: description.to_owned(),
        created_at: now,
    };
    c.execute(
        &Stmt::new(
            "INSERT INTO products (id, workspace_id, title, description, created_at, updated_at)
             VALUES (:id, :ws, :title, :description, :now, :now)",
        )
        .bind("id", &product.id)
        .bind("ws", ws)
        .bind("title", title)
        .bind("description", description)
        .bind("now", now),
    )?;
    let mut created = Vec::with_capacity(variants.len());
    for v in variants {
        let variant: Option<Variant> = c.fetch_opt(
            &Stmt::new(
                "INSERT INTO variants (id, workspace_id, product_id, sku, title, price_minor, currency, created_at)
                 VALUES (:id, :ws, :product, :sku, :title, :price, :currency, :now)
                 ON CONFLICT (workspace_id, sku) DO NOTHING
                 RETURNING id, product_id, sku, title, price_minor, currency",
            )
            .bind("id", sb_core::new_id())
            .bind("ws", ws)
            .bind("product", &product.id)
            .bind("sku", &v.sku)
            .bind("title", &v.title)
            .bind("price", v.price_minor)
            .bind("currency", &v.currency)
            .bind("now", now),
        )?;
        let variant = variant.ok_or_else(|| StoreError::Conflict(format!("SKU {} exists", v.sku)))?;
        let components = if v.components.is_empty() {
            vec![(v.sku.clone(), 1)]
        } else {
            v.components.clone()
        };
        for (sku, quantity) in components {
            let item = item_for_sku(c, ws, &sku, now)?;
            c.execute(
                &Stmt::new(
                    "INSERT INTO variant_components (variant_id, item_id, quantity) VALUES (:variant, :item, :q)",
                )
                .bind("variant", &variant.id)
                .bind("item", &item)
                .bind("q", quantity),
            )?;
        }
        created.push(variant);
    }
    Ok((product, created))
}

pub fn variant_by_sku(c: &mut dyn Conn, ws: &str, sku: &str) -> Result<Option<Variant>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT id, product_id, sku, title, price_minor, currency FROM variants
             WHERE workspace_id = :ws AND sku = :sku",
        )
        .bind("ws", ws)
        .bind("sku", sku),
    )?)
}

/// What a shopper calls a SKU: the product's title with the variant's ("Trail jacket Blue
/// M"), or the product's alone for a single "One size" variant.
pub fn display_name(c: &mut dyn Conn, ws: &str, sku: &str) -> Result<Option<String>> {
    let row = c.query_opt(
        &Stmt::new(
            "SELECT p.title AS product, v.title AS variant FROM variants v JOIN products p ON p.id = v.product_id
             WHERE v.workspace_id = :ws AND v.sku = :sku",
        )
        .bind("ws", ws)
        .bind("sku", sku),
    )?;
    Ok(match row {
        Some(r) => {
            let (product, variant): (String, String) = (r.get("product")?, r.get("variant")?);
            Some(if variant.is_empty() || variant.eq_ignore_ascii_case("one size") {
                product
            } else {
                format!("{product} {variant}")
            })
        }
        None => None,
    })
}

/// The inventory items one unit of a variant takes, with their quantities.
pub fn components(c: &mut dyn Conn, variant_id: &str) -> Result<Vec<(String, i64)>> {
    c.query(
        &Stmt::new("SELECT item_id, quantity FROM variant_components WHERE variant_id = :variant ORDER BY item_id")
            .bind("variant", variant_id),
    )?
    .iter()
    .map(|r| Ok((r.get("item_id")?, r.get("quantity")?)))
    .collect()
}

pub fn products(c: &mut dyn Conn, ws: &str) -> Result<Vec<(Product, Vec<Variant>)>> {
    let products: Vec<Product> = c.fetch_all(
        &Stmt::new(
            "SELECT id, title, description, created_at FROM products WHERE workspace_id = :ws ORDER BY title, id",
        )
        .bind("ws", ws),
    )?;
    let mut out = Vec::with_capacity(products.len());
    for p in products {
        let variants = c.fetch_all(
            &Stmt::new(
                "SELECT id, product_id, sku, title, price_minor, currency FROM variants
                 WHERE workspace_id = :ws AND product_id = :product ORDER BY sku",
            )
            .bind("ws", ws)
            .bind("product", &p.id),
        )?;
        out.push((p, variants));
    }
    Ok(out)
}
