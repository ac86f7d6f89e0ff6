//! The customer panel beside the thread: identities per channel, consents, orders (a pickup's
//! code and deadline) and the current cart — everything read in the session's workspace.

use std::collections::HashMap;

use sb_store::{StoreError, carts, catalog, consents, customers, orders};

use crate::format::{Stamp, identity_label, money, stamp};

pub struct IdentityRow {
    pub label: String,
    pub value: String,
    pub verified: bool,
}

pub struct ConsentRow {
    pub channel: String,
    pub purpose: String,
    pub granted: bool,
    pub source: String,
    pub at: Stamp,
}

pub struct OrderRow {
    pub id: String,
    pub number: String,
    pub status: String,
    pub fulfillment: String,
    pub location: String,
    pub total: String,
    pub placed: Stamp,
    pub pickup_code: Option<String>,
    pub pickup_deadline: Option<Stamp>,
    pub items: String,
}

pub struct CartRow {
    pub title: String,
    pub sku: String,
    pub quantity: i64,
    pub price: String,
}

pub struct CustomerPanel {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub identities: Vec<IdentityRow>,
    pub consents: Vec<ConsentRow>,
    pub open_orders: Vec<OrderRow>,
    pub past_orders: Vec<OrderRow>,
    pub cart: Vec<CartRow>,
    pub cart_total: Option<String>,
    /// The viewer's role may read orders and carts.
    pub commerce: bool,
}

pub fn display_name(c: &customers::Customer) -> String {
    c.name
        .clone()
        .or_else(|| c.email.clone())
        .or_else(|| c.phone.clone())
        .unwrap_or_else(|| "Visitor".to_owned())
}

pub fn is_open(status: &str) -> bool {
    matches!(status, "placed" | "ready_for_pickup")
}

/// The order rows of a customer (or any orders), with location names and line summaries.
pub fn order_rows(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    list: Vec<orders::Order>,
    now: i64,
) -> Result<Vec<OrderRow>, StoreError> {
    let locations: HashMap<String, String> = catalog::locations(c, ws)?.into_iter().map(|l| (l.id, l.name)).collect();
    let mut rows = Vec::with_capacity(list.len());
    for o in list {
        let lines = orders::lines(c, &o.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let items = lines
            .iter()
            .map(|l| format!("{} × {} ({})", l.quantity, l.title, l.sku))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(OrderRow {
            number: o.number.clone(),
            status: o.status.replace('_', " "),
            fulfillment: o.fulfillment.clone(),
            location: locations.get(&o.location_id).cloned().unwrap_or_default(),
            total: money(o.total_minor, &o.currency),
            placed: stamp(o.placed_at, now),
            pickup_code: o.pickup_code.clone().filter(|_| o.status == "ready_for_pickup"),
            pickup_deadline: o
                .pickup_deadline
                .filter(|_| o.status == "ready_for_pickup")
                .map(|d| stamp(d, now)),
            items,
            id: o.id,
        });
    }
    Ok(rows)
}

/// `None` when the customer is not in this workspace.
pub fn load(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    customer_id: &str,
    commerce: bool,
    now: i64,
) -> Result<Option<CustomerPanel>, StoreError> {
    let Some(customer) = customers::get(c, ws, customer_id)? else {
        return Ok(None);
    };
    let identities = customers::identities(c, ws, customer_id)?
        .into_iter()
        .map(|i| IdentityRow {
            label: identity_label(&i.kind).to_owned(),
            value: i.value,
            verified: i.verified,
        })
        .collect();
    let consents = consents::list(c, ws, customer_id)?
        .into_iter()
        .map(|x| ConsentRow {
            channel: crate::format::channel_mark(&x.channel).0.to_owned(),
            purpose: x.purpose,
            granted: x.granted,
            source: x.source.replace('_', " "),
            at: stamp(x.at, now),
        })
        .collect();
    let (mut open_orders, mut past_orders, mut cart, mut cart_total) = (Vec::new(), Vec::new(), Vec::new(), None);
    if commerce {
        let list = orders::for_customer(c, ws, customer_id).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (open, past): (Vec<_>, Vec<_>) = list.into_iter().partition(|o| is_open(&o.status));
        open_orders = order_rows(c, ws, open, now)?;
        past_orders = order_rows(c, ws, past, now)?;
        if let Some(active) = carts::active_for_customer(c, ws, customer_id)? {
            let lines = carts::lines(c, &active.id)?;
            let total: i64 = lines.iter().map(|l| l.current_price_minor * l.quantity).sum();
            if !lines.is_empty() {
                cart_total = Some(money(total, &active.currency));
            }
            cart = lines
                .into_iter()
                .map(|l| CartRow {
                    price: money(l.current_price_minor * l.quantity, &active.currency),
                    title: l.title,
                    sku: l.sku,
                    quantity: l.quantity,
                })
                .collect();
        }
    }
    Ok(Some(CustomerPanel {
        name: display_name(&customer),
        email: customer.email,
        phone: customer.phone,
        identities,
        consents,
        open_orders,
        past_orders,
        cart,
        cart_total,
        commerce,
    }))
}
