//! Orders (commerce.md §8.3): checkout turns a customer's cart into one order — once per
//! cart and per idempotency key — and commits its stock at the locations that fulfil it, in
//! the same transaction. An order has one fulfilment per sending location: a ship order no
//! single location can cover is split across the fewest (commerce.md §8.5), each fulfilment
//! ships on its own and the order is `shipped` when all have. A pickup order at a store short
//! of stock may be sourced by transfers from other locations (`allow_transfer`); it cannot be
//! made ready before they arrive. Pickup orders go `placed → ready_for_pickup → picked_up`
//! (the handover takes the stock out), or are cancelled when the deadline passes (the stock is
//! sellable again, wherever it is). Every step is an event under the e-commerce spec's names
//! on the customer's timeline.

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
    /// A pickup order's stock is still on its way to the store.
    #[error("{0}")]
    AwaitingTransfer(String),
    /// The transfer is not in a state that allows this.
    #[error("{0}")]
    TransferState(String),
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

/// SKUs the customer bought and kept: on any channel, at any store, orders not canceled,
/// less what came back in returns.
pub fn purchased_skus(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
) -> crate::Result<std::collections::HashSet<String>> {
    let rows = c.query(
        &Stmt::new(
            "SELECT sku, CAST(SUM(quantity) AS BIGINT) AS n FROM (
                 SELECT l.sku, l.quantity FROM order_lines l JOIN orders o ON o.id = l.order_id
                  WHERE o.workspace_id = :ws AND o.customer_id = :customer AND o.status <> 'canceled'
                 UNION ALL
                 SELECT rl.sku, -rl.quantity FROM return_lines rl JOIN returns r ON r.id = rl.return_id
                  WHERE r.workspace_id = :ws AND r.customer_id = :customer
             ) bought GROUP BY sku",
        )
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?;
    let mut kept = std::collections::HashSet::new();
    for r in rows {
        if r.get_in::<i64>("order_lines", "n")? > 0 {
            kept.insert(r.get_in::<String>("order_lines", "sku")?);
        }
    }
    Ok(kept)
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
    crate::domain_events::order_changed(c, ws, order, name, &properties, now)?;
    let seen = crate::journeys::Event {
        name,
        properties: &properties,
        at: now,
    };
    crate::journeys::on_event(c, ws, &order.customer_id, seen, now)?;
    Ok(())
}

/// One location's part of an order: what it sends (ship) or hands over (pickup).
#[derive(Debug, Clone, Serialize)]
pub struct Fulfillment {
    pub id: String,
    pub location_id: String,
    pub position: i64,
    /// `placed`, `shipped`, `picked_up` or `canceled`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Fulfillment in "order_fulfillments" { id, location_id, position, status, created_at, updated_at });

const FULFILLMENT_COLUMNS: &str = "id, location_id, position, status, created_at, updated_at";

/// Units of one inventory item in a fulfilment.
#[derive(Debug, Clone, Serialize)]
pub struct FulfillmentLine {
    pub item_id: String,
    pub sku: String,
    pub quantity: i64,
}
from_row!(FulfillmentLine in "order_fulfillment_lines" { item_id, sku, quantity });

/// The order's fulfilments, the primary (its `location_id`) first.
pub fn fulfillments(c: &mut dyn Conn, ws: &str, order_id: &str) -> Result<Vec<Fulfillment>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {FULFILLMENT_COLUMNS} FROM order_fulfillments
             WHERE workspace_id = :ws AND order_id = :order ORDER BY position"
        ))
        .bind("ws", ws)
        .bind("order", order_id),
    )?)
}

pub fn fulfillment_lines(c: &mut dyn Conn, fulfillment_id: &str) -> Result<Vec<FulfillmentLine>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT l.item_id, i.sku, l.quantity FROM order_fulfillment_lines l
             JOIN inventory_items i ON i.id = l.item_id
             WHERE l.fulfillment_id = :id ORDER BY i.sku",
        )
        .bind("id", fulfillment_id),
    )?)
}

/// The order as the API shows it: `{order: {…, fulfillments: [{…, lines}], transfers: [{…,
/// lines}]}, lines}`.
pub fn view(c: &mut dyn Conn, ws: &str, order: &Order) -> Result<serde_json::Value> {
    let mut shown = serde_json::to_value(order).map_err(|e| OrderError::Invalid(e.to_string()))?;
    let mut parts = Vec::new();
    for f in fulfillments(c, ws, &order.id)? {
        let lines = fulfillment_lines(c, &f.id)?;
        parts.push(serde_json::json!({
            "id": f.id, "location_id": f.location_id, "status": f.status, "lines": lines,
        }));
    }
    let mut transfers = Vec::new();
    for t in crate::transfers::for_order(c, ws, &order.id)? {
        let lines = crate::transfers::lines(c, &t.id)?;
        let mut t = serde_json::to_value(&t).map_err(|e| OrderError::Invalid(e.to_string()))?;
        t["lines"] = serde_json::json!(lines);
        transfers.push(t);
    }
    shown["fulfillments"] = serde_json::json!(parts);
    shown["transfers"] = serde_json::json!(transfers);
    Ok(serde_json::json!({ "order": shown, "lines": lines(c, &order.id)? }))
}

/// The (item, location) balances the order's stock sits at or comes from (fulfilments and
/// transfer senders), for availability events.
pub fn touched(c: &mut dyn Conn, ws: &str, order_id: &str) -> Result<Vec<(String, String)>> {
    let mut touched = std::collections::BTreeSet::new();
    for f in fulfillments(c, ws, order_id)? {
        for line in fulfillment_lines(c, &f.id)? {
            touched.insert((line.item_id, f.location_id.clone()));
        }
    }
    for t in crate::transfers::for_order(c, ws, order_id)? {
        for line in crate::transfers::lines(c, &t.id)? {
            touched.insert((line.item_id.clone(), t.from_location_id.clone()));
            touched.insert((line.item_id, t.to_location_id.clone()));
        }
    }
    Ok(touched.into_iter().collect())
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
    /// Pickup: what the store lacks may come from other locations by transfer.
    pub allow_transfer: bool,
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

/// Locations with the units of each item they send.
type Parts = Vec<(catalog::Location, BTreeMap<String, i64>)>;

/// Where an order's units come from.
struct Plan {
    /// One per sending location, the primary first: the units it sends or hands over.
    fulfilments: Parts,
    /// Pickup sourced elsewhere: the sender and the units it sends to the (single)
    /// fulfilment's store.
    transfers: Parts,
}

impl Plan {
    /// The units taken now at each (item, location): what each fulfilment hands over less
    /// what arrives by transfer (committed when it arrives), and what each sender sends.
    fn takes(&self) -> Vec<(String, String, i64)> {
        let mut arriving: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, items) in &self.transfers {
            for (item, q) in items {
                *arriving.entry(item.as_str()).or_default() += q;
            }
        }
        let mut takes = Vec::new();
        for (location, items) in &self.fulfilments {
            for (item, q) in items {
                let q = q - arriving.get(item.as_str()).copied().unwrap_or(0);
                if q > 0 {
                    takes.push((item.clone(), location.id.clone(), q));
                }
            }
        }
        for (location, items) in &self.transfers {
            for (item, q) in items {
                takes.push((item.clone(), location.id.clone(), *q));
            }
        }
        takes
    }
}

fn insufficient(item: &str, location: &str, available: i64) -> OrderError {
    OrderError::Inventory(InventoryError::Insufficient {
        item: item.to_owned(),
        location: location.to_owned(),
        available,
    })
}

/// Candidates to send `demand`, best first: the merchant's routing rank, then nearest to `to`
/// when it is known, then the one with most to spare, then by code; with what each can spare
/// of every item (read, no lock).
fn candidates(
    c: &mut dyn Conn,
    ws: &str,
    locations: Vec<catalog::Location>,
    demand: &BTreeMap<String, i64>,
    to: Option<(f64, f64)>,
) -> Result<Vec<(catalog::Location, sb_core::routing::Candidate)>> {
    let mut ranked = Vec::new();
    for location in locations {
        let mut stock = BTreeMap::new();
        let mut spare = 0;
        for (item, wanted) in demand {
            let available = inventory::balance(c, ws, item, &location.id)?.available().max(0);
            spare += available - wanted;
            stock.insert(item.clone(), available);
        }
        let distance = match (to, location.lat, location.lng) {
            (Some(to), Some(lat), Some(lng)) => sb_core::inventory::distance_km(to, (lat, lng)),
            (Some(_), _, _) => f64::MAX,
            (None, _, _) => 0.0,
        };
        let candidate = sb_core::routing::Candidate {
            id: location.id.clone(),
            stock,
        };
        ranked.push((distance, -spare, location, candidate));
    }
    ranked.sort_by(|a, b| {
        a.2.routing_rank
            .cmp(&b.2.routing_rank)
            .then(a.0.total_cmp(&b.0))
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.code.cmp(&b.2.code))
    });
    Ok(ranked.into_iter().map(|(_, _, l, c)| (l, c)).collect())
}

/// Ship from the fewest locations (commerce.md §8.5): one that can send the whole order when
/// there is one, else a split chosen by greedy set cover; among equals the lower routing rank,
/// then the nearest to the destination when it is known, else the one with most stock to
/// spare, then by code (deterministic). Locations at their daily capacity are passed over.
/// `None` when all of them together cannot.
fn route(
    c: &mut dyn Conn,
    ws: &str,
    demand: &BTreeMap<String, i64>,
    ship_to: Option<(f64, f64)>,
    now: i64,
) -> Result<Option<Parts>> {
    let mut eligible = Vec::new();
    for location in catalog::locations(c, ws)?
        .into_iter()
        .filter(|l| l.active && l.can_ship)
    {
        if !at_capacity(c, ws, &location, now)? {
            eligible.push(location);
        }
    }
    let ranked = candidates(c, ws, eligible, demand, ship_to)?;
    let list: Vec<sb_core::routing::Candidate> = ranked.iter().map(|(_, c)| c.clone()).collect();
    Ok(sb_core::routing::plan(demand, &list).map(|parts| {
        parts
            .into_iter()
            .map(|p| (ranked[p.candidate].0.clone(), p.items))
            .collect()
    }))
}

/// Transfers that bring to `store` what it lacks of `demand`, from the fewest other active
/// locations (nearest to the store first).
fn source_transfers(
    c: &mut dyn Conn,
    ws: &str,
    store: &catalog::Location,
    demand: &BTreeMap<String, i64>,
) -> Result<Parts> {
    let mut short = BTreeMap::new();
    for (item, wanted) in demand {
        let here = inventory::balance(c, ws, item, &store.id)?.available().max(0);
        if here < *wanted {
            short.insert(item.clone(), wanted - here);
        }
    }
    if short.is_empty() {
        return Ok(Vec::new());
    }
    let others: Vec<catalog::Location> = catalog::locations(c, ws)?
        .into_iter()
        .filter(|l| l.active && l.id != store.id)
        .collect();
    let ranked = candidates(c, ws, others, &short, store.lat.zip(store.lng))?;
    let list: Vec<sb_core::routing::Candidate> = ranked.iter().map(|(_, c)| c.clone()).collect();
    let Some(parts) = sb_core::routing::plan(&short, &list) else {
        let (item, missing) = short.iter().next().map(|(i, q)| (i.clone(), *q)).unwrap_or_default();
        let elsewhere: i64 = list.iter().map(|c| c.stock.get(&item).copied().unwrap_or(0)).sum();
        return Err(insufficient(
            &item,
            &store.id,
            demand.get(&item).copied().unwrap_or(0) - missing + elsewhere,
        ));
    };
    Ok(parts
        .into_iter()
        .map(|p| (ranked[p.candidate].0.clone(), p.items))
        .collect())
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

/// Whether the location has taken its daily capacity of fulfilments today (its own calendar
/// day): each shipment or pickup it sends counts once, whatever order it belongs to.
/// A soft limit: on PostgreSQL two concurrent orders may both see the last free slot.
fn at_capacity(c: &mut dyn Conn, ws: &str, location: &catalog::Location, now: i64) -> Result<bool> {
    let Some(capacity) = location.daily_capacity else {
        return Ok(false);
    };
    let taken: i64 = c
        .query_one(
            &Stmt::new(
                "SELECT COUNT(*) AS n FROM order_fulfillments
                 WHERE workspace_id = :ws AND location_id = :location AND created_at >= :since AND status <> 'canceled'",
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

/// Where the order is fulfilled: the pickup store (with transfers when allowed and needed),
/// the chosen shipping location, or the routed ones.
fn choose_plan(
    c: &mut dyn Conn,
    ws: &str,
    req: &Checkout<'_>,
    demand: &BTreeMap<String, i64>,
    now: i64,
) -> Result<Plan> {
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
            let Some(fulfilments) = route(c, ws, demand, req.ship_to, now)? else {
                let (item, wanted) = demand.iter().next().map(|(i, w)| (i.clone(), *w)).unwrap_or_default();
                return Err(insufficient(&item, "any location", wanted - 1));
            };
            return Ok(Plan {
                fulfilments,
                transfers: Vec::new(),
            });
        }
        _ => return Err(OrderError::Invalid("fulfillment must be `ship` or `pickup`".into())),
    };
    // Routing already passed over full locations; one the shopper chose must be asked.
    if at_capacity(c, ws, &chosen, now)? {
        return Err(OrderError::AtCapacity(chosen.name));
    }
    let transfers = if req.fulfillment == "pickup" && req.allow_transfer {
        source_transfers(c, ws, &chosen, demand)?
    } else {
        Vec::new()
    };
    Ok(Plan {
        fulfilments: vec![(chosen, demand.clone())],
        transfers,
    })
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

/// The plan the holds make, when they cover exactly the demand at locations the request
/// allows: a chosen location only there — except that a pickup allowing transfers may hold
/// what the store lacks at other active locations (those become its transfers); routed: at
/// active shipping locations, the one holding most units first.
fn held_plan(
    c: &mut dyn Conn,
    ws: &str,
    held: &[inventory::Reservation],
    demand: &BTreeMap<String, i64>,
    req: &Checkout<'_>,
) -> Result<Option<Plan>> {
    if held.is_empty() {
        return Ok(None);
    }
    let mut by_location: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    let mut by_item: BTreeMap<String, i64> = BTreeMap::new();
    for hold in held {
        *by_location
            .entry(hold.location_id.as_str())
            .or_default()
            .entry(hold.item_id.clone())
            .or_insert(0) += hold.quantity;
        *by_item.entry(hold.item_id.clone()).or_insert(0) += hold.quantity;
    }
    if by_item != *demand {
        return Ok(None);
    }
    let fits = |l: &catalog::Location, pickup: bool| l.active && if pickup { l.can_pickup } else { l.can_ship };
    if let Some(chosen) = req.location_id {
        let pickup = req.fulfillment == "pickup";
        let Some(location) = catalog::location(c, ws, chosen)? else {
            return Ok(None);
        };
        if !fits(&location, pickup) {
            return Ok(None);
        }
        let mut transfers = Vec::new();
        for (id, items) in by_location {
            if id == chosen {
                continue;
            }
            if !(pickup && req.allow_transfer) {
                return Ok(None);
            }
            match catalog::location(c, ws, id)? {
                Some(from) if from.active => transfers.push((from, items)),
                _ => return Ok(None),
            }
        }
        return Ok(Some(Plan {
            fulfilments: vec![(location, demand.clone())],
            transfers,
        }));
    }
    if req.fulfillment != "ship" {
        return Ok(None);
    }
    let mut fulfilments = Vec::new();
    for (id, items) in by_location {
        match catalog::location(c, ws, id)? {
            Some(location) if fits(&location, false) => fulfilments.push((location, items)),
            _ => return Ok(None),
        }
    }
    fulfilments.sort_by(|a, b| {
        let units = |items: &BTreeMap<String, i64>| items.values().sum::<i64>();
        units(&b.1).cmp(&units(&a.1)).then_with(|| a.0.code.cmp(&b.0.code))
    });
    Ok(Some(Plan {
        fulfilments,
        transfers: Vec::new(),
    }))
}

fn release(c: &mut dyn Conn, ws: &str, holds: &[inventory::Reservation], actor: &str, now: i64) -> Result<()> {
    for hold in holds {
        inventory::resolve(c, ws, &hold.id, inventory::Resolution::Released, actor, now)?;
    }
    Ok(())
}

/// Starts the checkout: holds the cart's stock at the locations that will fulfil it (and,
/// for a pickup sourced by transfer, at the senders) until `expires_at` (the sweeper gives
/// it back if no order follows). Starting again while the holds are valid returns them.
pub fn start_checkout(
    c: &mut dyn Conn,
    req: &Checkout<'_>,
    hold_ms: i64,
    now: i64,
) -> Result<Vec<inventory::Reservation>> {
    let ws = req.workspace_id;
    let Orderable { cart, demand, .. } = orderable_cart(c, ws, req.cart_id)?;
    let held = valid_holds(c, ws, &cart.id, req.actor, now)?;
    if held_plan(c, ws, &held, &demand, req)?.is_some() {
        return Ok(held);
    }
    release(c, ws, &held, req.actor, now)?;
    let plan = choose_plan(c, ws, req, &demand, now)?;
    let mut holds = Vec::new();
    for (item, location, quantity) in plan.takes() {
        let key = format!("checkout:{}:{item}:{location}:{now}", cart.id);
        let hold = inventory::NewReservation {
            workspace_id: ws,
            idempotency_key: &key,
            actor: req.actor,
            item_id: &item,
            location_id: &location,
            quantity,
            owner_type: "cart",
            owner_id: Some(&cart.id),
            expires_at: now + hold_ms,
        };
        holds.push(inventory::reserve(c, &hold, now)?);
    }
    // In the order asking again lists them.
    holds.sort_by(|a, b| (&a.item_id, &a.location_id).cmp(&(&b.item_id, &b.location_id)));
    Ok(holds)
}

/// Places the cart's order and commits its stock (every fulfilment's, and sends the
/// transfers that source a pickup); the same key or cart again returns the order placed the
/// first time.
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
    // longer match the cart or the request) the stock is committed directly.
    let held = valid_holds(c, ws, &cart.id, req.actor, now)?;
    let (plan, use_holds) = match held_plan(c, ws, &held, &demand, req)? {
        Some(plan) => (plan, true),
        None => {
            release(c, ws, &held, req.actor, now)?;
            (choose_plan(c, ws, req, &demand, now)?, false)
        }
    };
    let primary = plan
        .fulfilments
        .first()
        .map(|(l, _)| l.clone())
        .ok_or_else(|| OrderError::Invalid("the order has nothing to send".into()))?;
    let id = sb_core::new_id();
    let total = lines
        .iter()
        .try_fold(0i64, |sum, l| {
            l.current_price_minor
                .checked_mul(l.quantity)
                .and_then(|t| sum.checked_add(t))
        })
        .ok_or_else(|| OrderError::Invalid("the order's total is more than one order can hold".into()))?;
    let number = format!("{}", 1000 + count(c, ws)? + 1);
    if use_holds {
        // Holds where the order is fulfilled become its commitment; those at a transfer's
        // sender are let go and taken at once by the transfer below (same transaction).
        for hold in &held {
            let to = if plan.fulfilments.iter().any(|(l, _)| l.id == hold.location_id) {
                inventory::Resolution::Committed
            } else {
                inventory::Resolution::Released
            };
            inventory::resolve(c, ws, &hold.id, to, req.actor, now)?;
        }
    } else {
        // Taken here only: the transfers' units leave their senders below.
        let mut arriving: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, items) in &plan.transfers {
            for (item, q) in items {
                *arriving.entry(item.as_str()).or_default() += q;
            }
        }
        let mut commits = Vec::new();
        for (location, items) in &plan.fulfilments {
            for (item, q) in items {
                let q = q - arriving.get(item.as_str()).copied().unwrap_or(0);
                if q > 0 {
                    commits.push(Line {
                        item_id: item.clone(),
                        location_id: location.id.clone(),
                        movement: Movement::CommitDirect { quantity: q },
                    });
                }
            }
        }
        if !commits.is_empty() {
            let change = Change {
                workspace_id: ws,
                idempotency_key: &format!("order:{}", req.idempotency_key),
                reason: "order",
                actor: req.actor,
                reference_type: "order",
                reference_id: Some(&id),
                lines: commits,
            };
            inventory::apply(c, &change, now)?;
        }
    }
    // The transfers take their units before the order row exists (like the commitments
    // above): a concurrent checkout that took them first makes this one fail on the stock
    // and be planned again, never on the order's number.
    let mut shown_transfers = Vec::new();
    let mut sent = Vec::new();
    for (from, items) in &plan.transfers {
        let (transfer, _) = crate::transfers::create(
            c,
            &crate::transfers::NewTransfer {
                workspace_id: ws,
                idempotency_key: &format!("order:{}:transfer:{}", req.idempotency_key, from.id),
                from_location_id: &from.id,
                to_location_id: &primary.id,
                order_id: None,
                reason: "pickup",
                actor: req.actor,
                items,
            },
            now,
        )?;
        shown_transfers.push(serde_json::json!({ "transfer_id": transfer.id, "from_location_id": from.id }));
        sent.push(transfer.id);
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
            .bind("location", &primary.id)
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
    let mut shown_parts = Vec::new();
    for (position, (location, items)) in plan.fulfilments.iter().enumerate() {
        let fid = sb_core::new_id();
        c.execute(
            &Stmt::new(
                "INSERT INTO order_fulfillments (id, workspace_id, order_id, location_id, position, status, created_at,
                                                 updated_at)
                 VALUES (:id, :ws, :order, :location, :position, 'placed', :now, :now)",
            )
            .bind("id", &fid)
            .bind("ws", ws)
            .bind("order", &order.id)
            .bind("location", &location.id)
            .bind("position", position as i64)
            .bind("now", now),
        )?;
        for (item, q) in items {
            c.execute(
                &Stmt::new(
                    "INSERT INTO order_fulfillment_lines (fulfillment_id, item_id, quantity) VALUES (:id, :item, :q)",
                )
                .bind("id", &fid)
                .bind("item", item)
                .bind("q", *q),
            )?;
        }
        shown_parts.push(serde_json::json!({ "fulfillment_id": fid, "location_id": location.id }));
    }
    for transfer in &sent {
        crate::transfers::attach_to_order(c, ws, transfer, &order.id)?;
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
        "order_id": order.id, "cart_id": cart.id, "number": order.number, "total": total, "currency": order.currency,
        "fulfillment": order.fulfillment, "location_id": primary.id, "products": products,
        "fulfillments": shown_parts, "transfers": shown_transfers,
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

/// Closes a placed fulfilment (`shipped`, `picked_up` or `canceled`) once and moves its stock
/// at its location: out of the building, or sellable again. `not_committed` are units that
/// were never committed there (still on their way by transfer). `false` when it was no
/// longer placed.
fn close_fulfillment(
    c: &mut dyn Conn,
    ws: &str,
    f: &Fulfillment,
    to: &str,
    not_committed: &BTreeMap<String, i64>,
    actor: &str,
    now: i64,
) -> Result<bool> {
    let closed = c.execute(
        &Stmt::new(
            "UPDATE order_fulfillments SET status = :to, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND status = 'placed'",
        )
        .bind("to", to)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", &f.id),
    )?;
    if closed == 0 {
        return Ok(false);
    }
    let mut moves = Vec::new();
    for line in fulfillment_lines(c, &f.id)? {
        let quantity = line.quantity - not_committed.get(&line.item_id).copied().unwrap_or(0);
        if quantity <= 0 {
            continue;
        }
        moves.push(Line {
            item_id: line.item_id,
            location_id: f.location_id.clone(),
            movement: match to {
                "canceled" => Movement::Uncommit { quantity },
                _ => Movement::Fulfil { quantity },
            },
        });
    }
    if !moves.is_empty() {
        let change = Change {
            workspace_id: ws,
            idempotency_key: &format!("fulfillment:{}:{to}", f.id),
            reason: to,
            actor,
            reference_type: "fulfillment",
            reference_id: Some(&f.id),
            lines: moves,
        };
        inventory::apply(c, &change, now)?;
    }
    Ok(true)
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
/// (returns `false` with the order as it is). Refused while a transfer sourcing it is still
/// on its way.
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
    let waiting = crate::transfers::for_order(c, ws, &order.id)?
        .into_iter()
        .filter(|t| t.status == "in_transit")
        .count();
    if waiting > 0 {
        return Err(OrderError::AwaitingTransfer(format!(
            "{waiting} transfer(s) bringing this order's stock to the store have not been received yet"
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
    for f in fulfillments(c, ws, &order.id)? {
        close_fulfillment(c, ws, &f, "picked_up", &BTreeMap::new(), actor, now)?;
    }
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

/// One fulfilment of a ship order leaves its location (ship-from-store when that is a store):
/// an `Order Shipped` event with its location; the order is `shipped` once all of its
/// fulfilments are. Shipping it again changes nothing.
pub fn ship_fulfillment(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    fulfillment_id: &str,
    actor: &str,
    now: i64,
) -> Result<Order> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    let f = fulfillments(c, ws, &order.id)?
        .into_iter()
        .find(|f| f.id == fulfillment_id)
        .ok_or(OrderError::NotFound("fulfillment"))?;
    if f.status == "shipped" {
        return Ok(order);
    }
    if order.fulfillment != "ship" || order.status != "placed" || f.status != "placed" {
        return Err(OrderError::State(format!(
            "a {} {} order cannot be shipped",
            order.status, order.fulfillment
        )));
    }
    if !close_fulfillment(c, ws, &f, "shipped", &BTreeMap::new(), actor, now)? {
        return Err(OrderError::State("the order changed meanwhile".into()));
    }
    let location = catalog::location(c, ws, &f.location_id)?;
    let shipped_lines = fulfillment_lines(c, &f.id)?;
    let properties = serde_json::json!({
        "order_id": order.id, "number": order.number, "fulfillment_id": f.id, "location_id": f.location_id,
        "location": location.map(|l| l.name),
        "products": shipped_lines.iter().map(|l| serde_json::json!({ "sku": l.sku, "quantity": l.quantity })).collect::<Vec<_>>(),
    });
    record_event(c, ws, &order, "Order Shipped", properties, actor, now)?;
    let remaining = fulfillments(c, ws, &order.id)?
        .into_iter()
        .filter(|f| f.status == "placed")
        .count();
    if remaining == 0 {
        return set_status(c, ws, id, &["placed"], "shipped", now)?
            .ok_or_else(|| OrderError::State("the order changed meanwhile".into()));
    }
    get(c, ws, id)?.ok_or(OrderError::NotFound("order"))
}

/// A ship order leaves: every fulfilment not yet shipped ships now.
pub fn ship(c: &mut dyn Conn, ws: &str, id: &str, actor: &str, now: i64) -> Result<Order> {
    let mut order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "shipped" {
        return Ok(order);
    }
    if order.fulfillment != "ship" || order.status != "placed" {
        return Err(OrderError::State(format!(
            "a {} {} order cannot be shipped",
            order.status, order.fulfillment
        )));
    }
    for f in fulfillments(c, ws, id)? {
        if f.status == "placed" {
            order = ship_fulfillment(c, ws, id, &f.id, actor, now)?;
        }
    }
    Ok(order)
}

/// Cancels an order none of which has left: every fulfilment's stock is sellable again at
/// once where it is committed, and transfers still on their way go back to their senders.
pub fn cancel(c: &mut dyn Conn, ws: &str, id: &str, reason: &str, actor: &str, now: i64) -> Result<Order> {
    let order = get(c, ws, id)?.ok_or(OrderError::NotFound("order"))?;
    if order.status == "canceled" {
        return Ok(order);
    }
    let parts = fulfillments(c, ws, id)?;
    if order.status == "placed" && parts.iter().any(|f| f.status == "shipped") {
        return Err(OrderError::State(
            "part of the order has shipped: it cannot be cancelled".into(),
        ));
    }
    let order = set_status(c, ws, id, &["placed", "ready_for_pickup"], "canceled", now)?
        .ok_or_else(|| OrderError::State(format!("a {} order cannot be cancelled", order.status)))?;
    // Units still on their way were never committed at the store: they go back.
    let mut on_the_way: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for t in crate::transfers::for_order(c, ws, id)? {
        if t.status == "in_transit" {
            let returned = crate::transfers::cancel(c, ws, &t.id, actor, now)?;
            let at = on_the_way.entry(t.to_location_id.clone()).or_default();
            for (item, q) in returned {
                *at.entry(item).or_insert(0) += q;
            }
        }
    }
    for f in &parts {
        let not_committed = on_the_way.get(&f.location_id).cloned().unwrap_or_default();
        close_fulfillment(c, ws, f, "canceled", &not_committed, actor, now)?;
    }
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
