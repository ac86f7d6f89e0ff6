//! Carts that belong to the customer (commerce.md §8.3): one active cart per customer,
//! the same from the phone and the laptop; a guest cart merges into it at sign-in (the
//! quantities of the same variant add up) and is marked merged.

use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Cart {
    pub id: String,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub channel: String,
    pub currency: String,
    /// `active`, `merged`, `converted` or `abandoned`.
    pub status: String,
    pub merged_into: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Cart in "carts" {
    id, customer_id, anonymous_id, channel, currency, status, merged_into, created_at, updated_at
});

const COLUMNS: &str = "id, customer_id, anonymous_id, channel, currency, status, merged_into, created_at, updated_at";

#[derive(Debug, Clone, Serialize)]
pub struct CartLine {
    pub variant_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: i64,
    /// When added.
    pub unit_price_minor: i64,
    /// Now.
    pub current_price_minor: i64,
}
from_row!(CartLine in "cart_lines" { variant_id, sku, title, quantity, unit_price_minor, current_price_minor });

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Cart>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM carts WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// The customer's active cart.
pub fn active_for_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Option<Cart>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM carts WHERE workspace_id = :ws AND customer_id = :customer AND status = 'active'"
        ))
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

/// A new cart; for a known customer, their active cart if they have one.
pub fn open(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: Option<&str>,
    anonymous_id: Option<&str>,
    channel: &str,
    currency: &str,
    now: i64,
) -> Result<Cart> {
    if let Some(customer) = customer_id
        && let Some(cart) = active_for_customer(c, ws, customer)?
    {
        return Ok(cart);
    }
    let created: Option<Cart> = c.fetch_opt(
        &Stmt::new(format!(
            "INSERT INTO carts ({COLUMNS}, workspace_id)
             VALUES (:id, :customer, :anonymous, :channel, :currency, 'active', NULL, :now, :now, :ws)
             ON CONFLICT DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind("id", sb_core::new_id())
        .bind("customer", customer_id)
        .bind("anonymous", anonymous_id)
        .bind("channel", channel)
        .bind("currency", currency)
        .bind("now", now)
        .bind("ws", ws),
    )?;
    match (created, customer_id) {
        (Some(cart), _) => Ok(cart),
        // Another device opened it at the same moment.
        (None, Some(customer)) => active_for_customer(c, ws, customer)?.ok_or(StoreError::NotFound("cart")),
        (None, None) => Err(StoreError::Conflict("cart".into())),
    }
}

pub fn lines(c: &mut dyn Conn, cart_id: &str) -> Result<Vec<CartLine>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT l.variant_id AS variant_id, v.sku AS sku, v.title AS title, l.quantity AS quantity,
                    l.unit_price_minor AS unit_price_minor, v.price_minor AS current_price_minor
             FROM cart_lines l JOIN variants v ON v.id = l.variant_id
             WHERE l.cart_id = :cart ORDER BY l.added_at, v.sku",
        )
        .bind("cart", cart_id),
    )?)
}

/// Sets a line's quantity (0 removes it); the price is taken now when the line is new.
pub fn set_line(
    c: &mut dyn Conn,
    cart_id: &str,
    variant_id: &str,
    quantity: i64,
    price_minor: i64,
    now: i64,
) -> Result<()> {
    if quantity <= 0 {
        c.execute(
            &Stmt::new("DELETE FROM cart_lines WHERE cart_id = :cart AND variant_id = :variant")
                .bind("cart", cart_id)
                .bind("variant", variant_id),
        )?;
    } else {
        c.execute(
            &Stmt::new(
                "INSERT INTO cart_lines (cart_id, variant_id, quantity, unit_price_minor, added_at, updated_at)
                 VALUES (:cart, :variant, :q, :price, :now, :now)
                 ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = excluded.quantity, updated_at = excluded.updated_at",
            )
            .bind("cart", cart_id)
            .bind("variant", variant_id)
            .bind("q", quantity)
            .bind("price", price_minor)
            .bind("now", now),
        )?;
    }
    touch(c, cart_id, now)
}

fn touch(c: &mut dyn Conn, cart_id: &str, now: i64) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE carts SET updated_at = :now WHERE id = :id")
            .bind("now", now)
            .bind("id", cart_id),
    )?;
    Ok(())
}

/// The shopper signed in as `customer_id`: a guest cart becomes theirs, or, when they already
/// have an active cart, its lines are added to that one and the guest cart is marked merged.
/// Returns the customer's cart. Doing it again returns the same cart.
pub fn assign(c: &mut dyn Conn, ws: &str, cart_id: &str, customer_id: &str, now: i64) -> Result<Cart> {
    let cart = get(c, ws, cart_id)?.ok_or(StoreError::NotFound("cart"))?;
    if cart.status == "merged"
        && let Some(target) = &cart.merged_into
    {
        return get(c, ws, target)?.ok_or(StoreError::NotFound("cart"));
    }
    if cart.customer_id.as_deref() == Some(customer_id) {
        return Ok(cart);
    }
    if cart.status != "active" || cart.customer_id.is_some() {
        return Err(StoreError::Conflict(
            "the cart belongs to someone else or is closed".into(),
        ));
    }
    match active_for_customer(c, ws, customer_id)? {
        None => {
            c.execute(
                &Stmt::new("UPDATE carts SET customer_id = :customer, updated_at = :now WHERE id = :id")
                    .bind("customer", customer_id)
                    .bind("now", now)
                    .bind("id", cart_id),
            )?;
            get(c, ws, cart_id)?.ok_or(StoreError::NotFound("cart"))
        }
        Some(target) => {
            c.execute(
                &Stmt::new(
                    "INSERT INTO cart_lines (cart_id, variant_id, quantity, unit_price_minor, added_at, updated_at)
                     SELECT :target, variant_id, quantity, unit_price_minor, added_at, :now FROM cart_lines WHERE cart_id = :guest
                     ON CONFLICT (cart_id, variant_id) DO UPDATE
                        SET quantity = cart_lines.quantity + excluded.quantity, updated_at = excluded.updated_at",
                )
                .bind("target", &target.id)
                .bind("guest", cart_id)
                .bind("now", now),
            )?;
            c.execute(
                &Stmt::new(
                    "UPDATE carts SET status = 'merged', merged_into = :target, updated_at = :now WHERE id = :id",
                )
                .bind("target", &target.id)
                .bind("now", now)
                .bind("id", cart_id),
            )?;
            touch(c, &target.id, now)?;
            get(c, ws, &target.id)?.ok_or(StoreError::NotFound("cart"))
        }
    }
}
