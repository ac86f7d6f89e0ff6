//! What a template can say about one customer: their profile and traits, their cart, their
//! last order, chosen products they have not bought, and the event that started the journey.

use std::collections::HashSet;

use sb_core::journey::ProductBlock;
use sb_store::{Conn, StoreError, carts, catalog, customers, orders, profiles};
use serde_json::{Value, json};

fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.abs();
    format!("{sign}{}.{:02} {currency}", m / 100, m % 100)
}

fn order_error(e: orders::OrderError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// The template context for `customer_id`; `trigger` is the instance's stored context
/// (`{event, properties}`).
pub fn build(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    trigger: &Value,
    products: &ProductBlock,
    public_url: &str,
) -> Result<Value, StoreError> {
    let customer = customers::get(c, ws, customer_id)?.ok_or(StoreError::NotFound("customer"))?;
    let mut traits = serde_json::Map::new();
    for name in profiles::trait_names(c, ws)? {
        traits.insert(name, Value::String(String::new()));
    }
    for t in profiles::traits(c, ws, customer_id)? {
        traits.insert(t.name, serde_json::from_str(&t.value_json).unwrap_or(Value::Null));
    }
    let name = customer.name.clone().unwrap_or_default();
    let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    let first = traits
        .get("first_name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(first)
        .to_owned();
    let cart_id = sb_core::journey::lookup(trigger, "properties.cart_id").and_then(Value::as_str);
    let cart = match cart_id {
        Some(id) => carts::get(c, ws, id)?,
        None => carts::active_for_customer(c, ws, customer_id)?,
    };
    let cart = match cart {
        Some(cart) => {
            let lines = carts::lines(c, &cart.id)?;
            let total: i64 = lines.iter().map(|l| l.quantity * l.current_price_minor).sum();
            let mut items: Vec<Value> = Vec::with_capacity(lines.len());
            for l in &lines {
                let name = catalog::display_name(c, ws, &l.sku)?.unwrap_or_else(|| l.title.clone());
                items.push(json!({"sku": l.sku, "name": name, "quantity": l.quantity,
                                  "price": money(l.current_price_minor, &cart.currency), "image_url": ""}));
            }
            json!({"id": cart.id, "total": money(total, &cart.currency), "currency": cart.currency, "items": items})
        }
        None => json!({"id": "", "total": "", "currency": "", "items": []}),
    };
    let last_order = match orders::for_customer(c, ws, customer_id)
        .map_err(order_error)?
        .into_iter()
        .next()
    {
        Some(o) => {
            let mut items: Vec<Value> = Vec::new();
            for l in orders::lines(c, &o.id).map_err(order_error)? {
                let name = catalog::display_name(c, ws, &l.sku)?.unwrap_or_else(|| l.title.clone());
                items.push(json!({"sku": l.sku, "name": name, "quantity": l.quantity,
                                  "price": money(l.unit_price_minor, &o.currency), "image_url": ""}));
            }
            json!({"number": o.number, "total": money(o.total_minor, &o.currency), "currency": o.currency, "items": items})
        }
        None => json!({"number": "", "total": "", "currency": "", "items": []}),
    };
    let picked = match products {
        ProductBlock::Pick { skus } => not_bought(c, ws, customer_id, skus)?,
        _ => Vec::new(),
    };
    let workspace = sb_store::workspaces::get(c, ws)?.map(|w| w.name).unwrap_or_default();
    Ok(json!({
        "customer": {
            "id": customer.id, "name": name, "first_name": first, "last_name": last,
            "email": customer.email.unwrap_or_default(), "phone": customer.phone.unwrap_or_default(),
            "traits": traits,
        },
        "cart": cart,
        "last_order": last_order,
        "products": picked,
        "event": {"name": trigger["event"].clone(), "properties": trigger["properties"].clone()},
        "workspace": {"name": workspace, "shop_url": format!("{}/shop", public_url.trim_end_matches('/'))},
    }))
}

/// The chosen SKUs the customer has not bought (and kept), as template items.
pub fn not_bought(c: &mut dyn Conn, ws: &str, customer_id: &str, skus: &[String]) -> Result<Vec<Value>, StoreError> {
    let bought: HashSet<String> = orders::purchased_skus(c, ws, customer_id)?;
    let mut out = Vec::new();
    for sku in skus.iter().filter(|s| !bought.contains(*s)) {
        if let Some(v) = catalog::variant_by_sku(c, ws, sku)? {
            let name = catalog::display_name(c, ws, sku)?.unwrap_or_else(|| v.title.clone());
            out.push(json!({"sku": v.sku, "name": name, "quantity": 1,
                            "price": money(v.price_minor, &v.currency), "image_url": ""}));
        }
    }
    Ok(out)
}
