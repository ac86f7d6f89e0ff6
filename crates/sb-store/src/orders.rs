//! Orders (commerce.md §8.3): checkout turns a customer's cart into one order — once per
//! cart and per idempotency key — and commits its stock at the location that fulfils it, in
//! the same transaction. Pickup orders go `placed → ready_for_pickup → picked_up` (the
//! handover takes the stock out), or are cancelled when the deadline passes (the stock is
//! sellable again); ship orders go `placed → shipped`. Every step is an event under the
//! e-commerce spec's names on the customer's timeline.

use std::collections::BTreeMap;

use sb_core::inventory::Movement;
use sb_sql::{Conn, SqlError, Stmt, from_row};
use serde::Serialize;

use crate::inventory::{self, Change, InventoryError, Line};
use crate::{StoreError, carts, catalog};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    /// The order is not in a state that allows this.
    #[error("{0}")]
    State(String),
    /// The location has taken as many orders today (in its time zone) as it can handle.
    #[error("{0} has taken all the orders it can handle today")]
    AtCapacity(String),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

impl From<StoreError> for OrderError {
    fn from(e: StoreError) -> Self {
        OrderError::Inventory(InventoryError::Store(e))
    }
}

impl From<SqlError> for OrderError {
    fn from(e: SqlError) -> Self {
        OrderError::Inventory(e.into())
    }
}

pub type Result<T, E = OrderError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: String,
    pub number: String,
    pub customer_id: String,
    pub channel: String,
    pub cart_id: Option<String>,
    pub fulfillment: String,
    pub location_id: String,
    pub status: String,
    pub pickup_code: Option<String>,
    pub ready_at: Option<i64>,
    pub pickup_deadline: Option<i64>,
    pub total_minor: i64,
    pub currency: String,
    pub placed_at: i64,
    pub updated_at: i64,
}
from_row!(Order in "orders" {
    id, number, customer_id, channel, cart_id, fulfillment, location_id, status, pickup_code, ready_at,
    pickup_deadline, total_minor, currency, placed_at, updated_at
});

const COLUMNS: &str = "id, number, customer_id, channel, cart_id, fulfillment, location_id, status, pickup_code, \
    ready_at, pickup_deadline, total_minor, currency, placed_at, updated_at";

#[derive(Debug, Clone, Serialize)]
pub struct OrderLine {
    pub variant_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}
from_row!(OrderLine in "order_lines" { variant_id, sku, title, quantity, unit_price_minor });

#[derive(Debug, Clone, Serialize)]
pub struct OrderEvent {
    pub order_id: String,
    /// `Order Completed`, `Order Ready For Pickup`, `Order Picked Up`, `Order Shipped`,
    /// `Order Cancelled`.
    pub name: String,
    pub properties_json: String,
    pub actor: String,
    pub at: i64,
}
from_row!(OrderEvent in "order_events" { order_id, name, properties_json, actor, at });

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Order>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM orders WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn lines(c: &mut dyn Conn, order_id: &str) -> Result<Vec<OrderLine>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT variant_id, sku, title, quantity, unit_price_minor FROM order_lines
             WHERE order_id = :order ORDER BY sku",
        )
        .bind("order", order_id),
    )?)
}

pub fn for_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Order>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM orders WHERE workspace_id = :ws AND customer_id = :customer ORDER BY placed_at DESC"
        ))
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

pub fn events_for_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<OrderEvent>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT order_id, name, properties_json, actor, at FROM order_events
             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY at, id",
        )
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

/// Pickup orders still to hand over (placed or ready), at one location or all, oldest first:
/// the store staff's queue.
pub fn pickup_queue(c: &mut dyn Conn, ws: &str, location_id: Option<&str>, limit: i64) -> Result<Vec<Order>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM orders
             WHERE status IN ('placed', 'ready_for_pickup') AND workspace_id = :ws AND fulfillment = 'pickup'
               AND (:location = '' OR location_id = :location)
             ORDER BY placed_at, id LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("location", location_id.unwrap_or(""))
        .bind("limit", limit),
    )?)
}

/// An order by its number (what a customer reads out at the counter).
pub fn by_number(c: &mut dyn Conn, ws: &str, number: &str) -> Result<Option<Order>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM orders WHERE workspace_id = :ws AND number = :number"
        ))
        .bind("ws", ws)
        .bind("number", number),
    )?)
}

/// Adds a step to the order's timeline.
pub fn record_event(
    c: &mut dyn Conn,
    ws: &str,
    order: &Order,
    name: &str,
    properties: serde_json::Value,
    actor: &str,
    now: i64,
) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO order_events (id, workspace_id, order_id, customer_id, name, properties_json, actor, at)
             VALUES (:id, :ws, :order, :customer, :name, :properties, :actor, :now)",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", ws)
        .bind("order", &order.id)
        .bind("customer", &order.customer_id)
        .bind("name", name)
        .bind("properties", properties.to_string())
        .bind("actor", actor)
        .bind("now", now),
    )?;
    Ok(())
}

pub struct Checkout<'a> {
    pub workspace_id: &'a str,
    pub cart_id: &'a str,
    pub idempotency_key: &'a str,
    /// `ship` or `pickup`.
    pub fulfillment: &'a str,
    /// The pickup store; for `ship`, `None` lets routing choose.
    pub location_id: Option<&'a str>,
    /// Where a shipment goes (lat, lng): routing prefers the nearest location.
    pub ship_to: Option<(f64, f64)>,
    pub actor: &'a str,
}

/// Units of each inventory item an order's lines take (kits exploded), per item.
fn demand(c: &mut dyn Conn, lines: &[carts::CartLine]) -> Result<BTreeMap<String, i64>> {
    let mut demand = BTreeMap::new();
    for line in lines {
        for (item, per_unit) in catalog::components(c, &line.variant_id)? {
            *demand.entry(item).or_insert(0) += per_unit * line.quantity;
        }
    }
    Ok(demand)
}

/// Ship from a location that can send the whole order (fewest shipments); among those the
/// nearest to the destination when it is known, else the one with most stock to spare; then
/// by code (deterministic). `None` when no single location can.
fn route(
    c: &mut dyn Conn,
    ws: &str,
    demand: &BTreeMap<String, i64>,
    ship_to: Option<(f64, f64)>,
    now: i64,
) -> Result<Option<String>> {
    let mut candidates = Vec::new();
    for location in catalog::locations(c, ws)?
        .into_iter()
        .filter(|l| l.active && l.can_ship)
    {
        if at_capacity(c, ws, &location, now)? {
            continue;
        }
        let mut spare = 0;
        let mut covers = true;
        for (item, wanted) in demand {
            let available = inventory::balance(c, ws, item, &location.id)?.available();
            covers &= available >= *wanted;
            spare += available - wanted;
        }
        if covers {
            let distance = match (ship_to, location.lat, location.lng) {
                (Some(to), Some(lat), Some(lng)) => sb_core::inventory::distance_km(to, (lat, lng)),
                (Some(_), _, _) => f64::MAX,
                (None, _, _) => 0.0,
            };
            candidates.push((distance, -spare, location.code, location.id));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| a.2.cmp(&b.2)));
    Ok(candidates.into_iter().next().map(|(_, _, _, id)| id))
}

/// Midnight of `now`'s day in the location's time zone (UTC when the zone is unknown).
fn local_day_start(timezone: &str, now: i64) -> i64 {
    let utc_midnight = now - now.rem_euclid(86_400_000);
    let Ok(ts) = jiff::Timestamp::from_millisecond(now) else {
        return utc_midnight;
    };
    let zone = jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(zone)
        .start_of_day()
        .map_or(utc_midnight, |z| z.timestamp().as_millisecond())
}

/// Whether the location has taken its daily capacity of orders today (its own calendar day).
/// A soft limit: on PostgreSQL two concurrent orders may both see the last free slot.
fn at_capacity(c: &mut dyn Conn, ws: &str, location: &catalog::Location, now: i64) -> Result<bool> {
    let Some(capacity) = location.daily_capacity else {
        return Ok(false);
    };
    let taken: i64 = c
        .query_one(
            &Stmt::new(
                "SELECT COUNT(*) AS n FROM orders
                 WHERE workspace_id = :ws AND location_id = :location AND placed_at >= :since AND status <> 'canceled'",
            )
            .bind("ws", ws)
            .bind("location", &location.id)
            .bind("since", local_day_start(&location.timezone, now)),
        )?
        .get("n")?;
    Ok(taken >= capacity)
}

/// A cart that can be ordered: its customer, lines and the units of each item they take.
struct Orderable {
    cart: carts::Cart,
    customer: String,
    lines: Vec<carts::CartLine>,
    demand: BTreeMap<String, i64>,
}

fn orderable_cart(c: &mut dyn Conn, ws: &str, cart_id: &str) -> Result<Orderable> {
    let cart = carts::get(c, ws, cart_id)?.ok_or(OrderError::NotFound("cart"))?;
    if cart.status != "active" {
        return Err(OrderError::State(format!("the cart is {}", cart.status)));
    }
    let customer = cart
        .customer_id
        .clone()
        .ok_or_else(|| OrderError::Invalid("a guest cart cannot be ordered: assign it to the customer first".into()))?;
    let lines = carts::lines(c, &cart.id)?;
    if lines.is_empty() {
        return Err(OrderError::Invalid("the cart is empty".into()));
    }
    let demand = demand(c, &lines)?;
    Ok(Orderable {
        cart,
        customer,
        lines,
        demand,
    })
}

/// Where the order is fulfilled: the pickup store, the chosen shipping location, or the
/// routed one.
fn choose_location(
    c: &mut dyn Conn,
    ws: &str,
    req: &Checkout<'_>,
    demand: &BTreeMap<String, i64>,
    now: i64,
) -> Result<catalog::Location> {
    let chosen = match (req.fulfillment, req.location_id) {
        ("pickup", Some(id)) => {
            let l = catalog::location(c, ws, id)?.ok_or(OrderError::NotFound("location"))?;
            if !l.can_pickup || !l.active {
                return Err(OrderError::Invalid(format!("{} does not offer pickup", l.name)));
            }
            l
        }
        ("pickup", None) => return Err(OrderError::Invalid("a pickup order needs a location_id".into())),
        ("ship", Some(id)) => {
            let l = catalog::location(c, ws, id)?.ok_or(OrderError::NotFound("location"))?;
            if !l.can_ship || !l.active {
                return Err(OrderError::Invalid(format!("{} does not ship", l.name)));
            }
            l
        }
        ("ship", None) => {
            let Some(id) = route(c, ws, demand, req.ship_to, now)? else {
                let (item, wanted) = demand.iter().next().map(|(i, w)| (i.clone(), *w)).unwrap_or_default();
                return Err(OrderError::Inventory(InventoryError::Insufficient {
                    item,
                    location: "any single location".into(),
                    available: wanted - 1,
                }));
            };
            catalog::location(c, ws, &id)?.ok_or(OrderError::NotFound("location"))?
        }
        _ => return Err(OrderError::Invalid("fulfillment must be `ship` or `pickup`".into())),
    };
    // Routing already passed over full locations; one the shopper chose must be asked.
    if req.location_id.is_some() && at_capacity(c, ws, &chosen, now)? {
        return Err(OrderError::AtCapacity(chosen.name));
    }
    Ok(chosen)
}

/// The cart's active checkout holds; ones past their time are expired here (their stock is
/// sellable again) rather than left for the sweeper.
fn valid_holds(
    c: &mut dyn Conn,
    ws: &str,
    cart_id: &str,
    actor: &str,
    now: i64,
) -> Result<Vec<inventory::Reservation>> {
    let mut valid = Vec::new();
    for hold in inventory::active_holds(c, ws, "cart", cart_id)? {
        if hold.expires_at <= now {
            inventory::resolve(c, ws, &hold.id, inventory::Resolution::Expired, actor, now)?;
        } else {
            valid.push(hold);
        }
    }
    Ok(valid)
}

/// The location of holds that cover exactly the demand at one location the request allows.
fn held_location(
    held: &[inventory::Reservation],
    demand: &BTreeMap<String, i64>,
    req: &Checkout<'_>,
) -> Option<String> {
    let location = held.first()?.location_id.clone();
    let mut by_item: BTreeMap<String, i64> = BTreeMap::new();
    for hold in held {
        if hold.location_id != location {
            return None;
        }
        *by_item.entry(hold.item_id.clone()).or_insert(0) += hold.quantity;
    }
    let allowed = req.location_id.is_none_or(|l| l == location);
    (by_item == *demand && allowed).then_some(location)
}

fn release(c: &mut dyn Conn, ws: &str, holds: &[inventory::Reservation], actor: &str, now: i64) -> Result<()> {
    for hold in holds {
        inventory::resolve(c, ws, &hold.id, inventory::Resolution::Released, actor, now)?;
    }
    Ok(())
}

/// Starts the checkout: holds the cart's stock at the fulfilling location until
/// `expires_at` (the sweeper gives it back if no order follows). Starting again while the
/// holds are valid returns them.
pub fn start_checkout(
    c: &mut dyn Conn,
    req: &Checkout<'_>,
    hold_ms: i64,
    now: i64,
) -> Result<Vec<inventory::Reservation>> {
    let ws = req.workspace_id;
    let Orderable { cart, demand, .. } = orderable_cart(c, ws, req.cart_id)?;
    let held = valid_holds(c, ws, &cart.id, req.actor, now)?;
    if held_location(&held, &demand, req).is_some() {
        return Ok(held);
    }
    release(c, ws, &held, req.actor, now)?;
    let location = choose_location(c, ws, req, &demand, now)?;
    let mut holds = Vec::with_capacity(demand.len());
    for (item, quantity) in &demand {
        let key = format!("checkout:{}:{item}:{now}", cart.id);
        let hold = inventory::NewReservation {
            workspace_id: ws,
            idempotency_key: &key,
            actor: req.actor,
            item_id: item,
            location_id: &location.id,
            quantity: *quantity,
            owner_type: "cart",
            owner_id: Some(&cart.id),
            expires_at: now + hold_ms,
        };
        holds.push(inventory::reserve(c, &hold, now)?);
    }
    Ok(holds)
}

/// Places the cart's order and commits its stock; the same key or cart again returns the
/// order placed the first time.
pub fn checkout(c: &mut dyn Conn, req: &Checkout<'_>, now: i64) -> Result<Order> {
    let ws = req.workspace_id;
    let existing: Option<Order> = c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM orders WHERE workspace_id = :ws AND (idempotency_key = :key OR cart_id = :cart)"
        ))
        .bind("ws", ws)
        .bind("key", req.idempotency_key)
        .bind("cart", req.cart_id),
    )?;
    if let Some(order) = existing {
        return Ok(order);
    }
    let Orderable {
        cart,
        customer,
        lines,
        demand,
    } = orderable_cart(c, ws, req.cart_id)?;
    // Holds taken when the checkout started are committed; without them (or when they no
    // longer match the cart or the chosen location) the stock is committed directly.
    let held = valid_holds(c, ws, &cart.id, req.actor, now)?;
    let held_at = match held_location(&held, &demand, req) {
        Some(id) => catalog::location(c, ws, &id)?.filter(|l| match req.fulfillment {
            "pickup" => l.can_pickup,
            _ => l.can_ship,
        }),
        None => None,
    };
    let (location, use_holds) = match held_at {
        Some(location) => (location, true),
        None => {
            release(c, ws, &held, req.actor, now)?;
            (choose_location(c, ws, req, &demand, now)?, false)
        }
    };
    let id = sb_core::new_id();
    let total: i64 = lines.iter().map(|l| l.current_price_minor * l.quantity).sum();
    let number = format!("{}", 1000 + count(c, ws)? + 1);
    let change = Change {
        workspace_id: ws,
        idempotency_key: &format!("order:{}", req.idempotency_key),
        reason: "order",
        actor: req.actor,
        reference_type: "order",
        reference_id: Some(&id),
        lines: demand
            .iter()
            .map(|(item, quantity)| Line {
                item_id: item.clone(),
                location_id: location.id.clone(),
                movement: Movement::CommitDirect { quantity: *quantity },
            })
            .collect(),
    };
    if use_holds {
        for hold in &held {
            inventory::resolve(c, ws, &hold.id, inventory::Resolution::Committed, req.actor, now)?;
        }
    } else {
        inventory::apply(c, &change, now)?;
    }
    let order: Order = c
        .fetch_opt(
            &Stmt::new(format!(
                "INSERT INTO orders (id, workspace_id, number, customer_id, channel, cart_id, idempotency_key, fulfillment,
                                     location_id, status, pickup_code, ready_at, pickup_deadline, total_minor, currency,
                                     placed_at, updated_at)
                 VALUES (:id, :ws, :number, :customer, :channel, :cart, :key, :fulfillment, :location, 'placed', NULL, NULL,
                         NULL, :total, :currency, :now, :now)
                 RETURNING {COLUMNS}"
            ))
            .bind("id", &id)
            .bind("ws", ws)
            .bind("number", &number)
            .bind("customer", &customer)
            .bind("channel", &cart.channel)
            .bind("cart", &cart.id)
            .bind("key", req.idempotency_key)
            .bind("fulfillment", req.fulfillment)
            .bind("location", &location.id)
            .bind("total", total)
            .bind("currency", &cart.currency)
            .bind("now", now),
        )?
        .ok_or(OrderError::NotFound("order"))?;
    for line in &lines {
        c.execute(
            &Stmt::new(
                "INSERT INTO order_lines (order_id, variant_id, sku, title, quantity, unit_price_minor)
                 VALUES (:order, :variant, :sku, :title, :q, :price)",
            )
            .bind("order", &order.id)
            .bind("variant", &line.variant_id)
            .bind("sku", &line.sku)
            .bind("title", &line.title)
            .bind("q", line.quantity)
            .bind("price", line.current_price_minor),
        )?;
    }
    c.execute(
        &Stmt::new("UPDATE carts SET status = 'converted', updated_at = :now WHERE id = :id")
            .bind("now", now)
            .bind("id", &cart.id),
    )?;
    let products: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::json!({ "sku": l.sku, "name": l.title, "quantity": l.quantity, "price": l.current_price_minor }))
        .collect();
    let properties = serde_json::json!({
        "order_id": order.id, "number": order.number, "total": total, "currency": order.currency,
        "fulfillment": order.fulfillment, "location_id": location.id, "products": products,
    });
    record_event(c, ws, &order, "Order Completed", properties, req.actor, now)?;
    Ok(order)
}

fn count(c: &mut dyn Conn, ws: &str) -> Result<i64> {
    Ok(
        c.query_one(&Stmt::new("SELECT COUNT(*) AS n FROM orders WHERE workspace_id = :ws").bind("ws", ws))?
            .get("n")?,
    )
}

/// Moves the order's stock at its location (the handover, a shipment, a cancellation).
fn move_stock(c: &mut dyn Conn, ws: &str, order: &Order, step: &str, actor: &str, now: i64) -> Result<()> {
    let order_lines = lines(c, &order.id)?;
    let as_cart_lines: Vec<carts::CartLine> = order_lines
        .iter()
        .map(|l| carts::CartLine {
            variant_id: l.variant_id.clone(),
            sku: l.sku.clone(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            current_price_minor: l.unit_price_minor,
        })
        .collect();
    let demand = demand(c, &as_cart_lines)?;
    let movement = |quantity: i64| match step {
        "canceled" => Movement::Uncommit { quantity },
        _ => Movement::Fulfil { quantity },
    };
    let change = Change {
        workspace_id: ws,
        idempotency_key: &format!("order:{}:{step}", order.id),
        reason: step,
        actor,
        reference_type: "order",
        reference_id: Some(&order.id),
        lines: demand
            .iter()
            .map(|(item, quantity)| Line {
                item_id: item.clone(),
                location_id: order.location_id.clone(),
                movement: movement(*quantity),
            })
            .collect(),
    };
    inventory::apply(c, &change, now)?;
    Ok(())
}

fn set_status(c: &mut dyn Conn, ws: &str, id: &str, from: &[&str], to: &str, now: i64) -> Result<Option<Order>> {
    let allowed = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "UPDATE orders SET status = :to, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND status IN ({allowed})
             RETURNING {COLUMNS}"
        ))
        .bind("to", to)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// Staff prepared a pickup order: a code and a deadline. Saying so again changes nothing
/// (returns `false` with the order as it is).
pub fn ready_for_pickup(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    code: &str,
    actor: &str,
    now: i64,
) -> Result<(Order, bool)> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "ready_for_pickup" {
        return Ok((order, false));
    }
    if order.fulfillment != "pickup" || order.status != "placed" {
        return Err(OrderError::State(format!(
            "a {} {} order cannot be made ready for pickup",
            order.status, order.fulfillment
        )));
    }
    let location = catalog::location(c, ws, &order.location_id)?.ok_or(OrderError::NotFound("location"))?;
    let deadline = now + location.pickup_hold_days * 86_400_000;
    let order: Order = c
        .fetch_opt(
            &Stmt::new(format!(
                "UPDATE orders SET status = 'ready_for_pickup', pickup_code = :code, ready_at = :now,
                        pickup_deadline = :deadline, updated_at = :now
                 WHERE workspace_id = :ws AND id = :id AND status = 'placed'
                 RETURNING {COLUMNS}"
            ))
            .bind("code", code)
            .bind("now", now)
            .bind("deadline", deadline)
            .bind("ws", ws)
            .bind("id", id),
        )?
        .ok_or_else(|| OrderError::State("the order changed meanwhile".into()))?;
    let properties = serde_json::json!({
        "order_id": order.id, "number": order.number, "location_id": location.id, "location": location.name,
        "pickup_deadline": deadline,
    });
    record_event(c, ws, &order, "Order Ready For Pickup", properties, actor, now)?;
    Ok((order, true))
}

/// The customer collects with the code: the stock leaves the store. Again: unchanged.
pub fn pick_up(c: &mut dyn Conn, ws: &str, id: &str, code: &str, actor: &str, now: i64) -> Result<Order> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "picked_up" {
        return Ok(order);
    }
    if order.status != "ready_for_pickup" {
        return Err(OrderError::State(format!(
            "the order is {}, not ready for pickup",
            order.status
        )));
    }
    if order.pickup_code.as_deref() != Some(code) {
        return Err(OrderError::Invalid("the pickup code does not match".into()));
    }
    let order = set_status(c, ws, id, &["ready_for_pickup"], "picked_up", now)?
        .ok_or_else(|| OrderError::State("the order changed meanwhile".into()))?;
    move_stock(c, ws, &order, "picked_up", actor, now)?;
    record_event(
        c,
        ws,
        &order,
        "Order Picked Up",
        serde_json::json!({ "order_id": order.id, "number": order.number }),
        actor,
        now,
    )?;
    Ok(order)
}

/// A ship order leaves its location (ship-from-store when that is a store).
pub fn ship(c: &mut dyn Conn, ws: &str, id: &str, actor: &str, now: i64) -> Result<Order> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "shipped" {
        return Ok(order);
    }
    if order.fulfillment != "ship" || order.status != "placed" {
        return Err(OrderError::State(format!(
            "a {} {} order cannot be shipped",
            order.status, order.fulfillment
        )));
    }
    let order = set_status(c, ws, id, &["placed"], "shipped", now)?
        .ok_or_else(|| OrderError::State("the order changed meanwhile".into()))?;
    move_stock(c, ws, &order, "shipped", actor, now)?;
    let properties =
        serde_json::json!({ "order_id": order.id, "number": order.number, "location_id": order.location_id });
    record_event(c, ws, &order, "Order Shipped", properties, actor, now)?;
    Ok(order)
}

/// Cancels an order not yet handed over: its stock is sellable again at once.
pub fn cancel(c: &mut dyn Conn, ws: &str, id: &str, reason: &str, actor: &str, now: i64) -> Result<Order> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "canceled" {
        return Ok(order);
    }
    let order = set_status(c, ws, id, &["placed", "ready_for_pickup"], "canceled", now)?
        .ok_or_else(|| OrderError::State(format!("a {} order cannot be cancelled", order.status)))?;
    move_stock(c, ws, &order, "canceled", actor, now)?;
    let properties = serde_json::json!({ "order_id": order.id, "number": order.number, "reason": reason });
    record_event(c, ws, &order, "Order Cancelled", properties, actor, now)?;
    Ok(order)
}

/// Cancels pickup orders whose deadline passed (not collected); returns them.
pub fn cancel_uncollected(c: &mut dyn Conn, now: i64, limit: i64) -> Result<Vec<(String, Order)>> {
    let due = c.query(
        &Stmt::new(
            "SELECT workspace_id, id FROM orders WHERE status = 'ready_for_pickup' AND pickup_deadline <= :now
             ORDER BY pickup_deadline LIMIT :limit",
        )
        .bind("now", now)
        .bind("limit", limit),
    )?;
    let mut canceled = Vec::new();
    for row in due {
        let (ws, id): (String, String) = (row.get("workspace_id")?, row.get("id")?);
        let order = cancel(c, &ws, &id, "not_collected", "system:sweeper", now)?;
        canceled.push((ws, order));
    }
    Ok(canceled)
}
