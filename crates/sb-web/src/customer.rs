//! The customer panel beside the thread: identities per channel, consents, orders (a pickup's
//! code and deadline), the current cart, recent events, loyalty membership, and merges (with
//! undo, and a preview of what a merge would move) — everything read in the session's workspace.

use std::collections::HashMap;

use sb_store::Stmt;
use sb_store::{StoreError, carts, catalog, consents, customers, events, merges, orders, profiles};

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

pub struct EventRow {
    pub name: String,
    /// `commerce` for the e-commerce spec's events, else the call's type.
    pub kind: String,
    pub at: Stamp,
}

pub struct LoyaltyRow {
    pub loyalty_id: String,
    pub incentive: String,
    pub joined: Stamp,
}

pub struct MergeRow {
    pub id: String,
    /// The other customer's name, and whether this one absorbed it (else it absorbed this one).
    pub other: String,
    pub absorbed: bool,
    /// `manual`, or the identity rule that merged automatically.
    pub rule: String,
    pub at: Stamp,
    pub undone: bool,
}

/// A customer that could be merged into the one shown, and what would move.
pub struct MergeCandidate {
    pub id: String,
    pub name: String,
    pub identities: Vec<String>,
    pub messages: i64,
    pub events: i64,
    pub orders: i64,
    /// Why they cannot be merged (two user ids), if so.
    pub conflict: Option<String>,
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
    pub events: Vec<EventRow>,
    pub loyalty: Option<LoyaltyRow>,
    pub merges: Vec<MergeRow>,
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
    let events = events::timeline(c, ws, customer_id, None, 40)?
        .into_iter()
        .filter(|e| e.source == "event")
        .take(6)
        .map(|e| EventRow {
            name: e.name.unwrap_or_else(|| e.kind.clone()),
            kind: e.kind,
            at: stamp(e.at, now),
        })
        .collect();
    let loyalty = profiles::loyalty(c, ws, customer_id)?.map(|m| LoyaltyRow {
        loyalty_id: m.loyalty_id,
        incentive: m.incentive,
        joined: stamp(m.joined_at, now),
    });
    let mut merge_rows = Vec::new();
    for m in merges::list_for(c, ws, customer_id)?.into_iter().take(5) {
        let absorbed = m.target_customer_id == customer_id;
        let other_id = if absorbed {
            &m.source_customer_id
        } else {
            &m.target_customer_id
        };
        let other = customers::get(c, ws, other_id)?.map_or_else(|| "a customer".to_owned(), |o| display_name(&o));
        merge_rows.push(MergeRow {
            id: m.id,
            other,
            absorbed,
            rule: m.rule.replace('_', " "),
            at: stamp(m.merged_at, now),
            undone: m.undone_at.is_some(),
        });
    }
    Ok(Some(CustomerPanel {
        events,
        loyalty,
        merges: merge_rows,
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

fn count(c: &mut dyn sb_store::Conn, table: &str, ws: &str, customer: &str) -> Result<i64, StoreError> {
    Ok(c.query_one(
        &Stmt::new(format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE workspace_id = :ws AND customer_id = :customer"
        ))
        .bind("ws", ws)
        .bind("customer", customer),
    )?
    .get("n")?)
}

/// Customers matching `query` (name, e-mail, phone or any identifier) that could be merged into
/// `target`, each with what would move and whether the merge would be refused.
pub fn merge_candidates(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    target: &str,
    query: &str,
) -> Result<Vec<MergeCandidate>, StoreError> {
    let mine: Vec<sb_core::identity::Identifier> = customers::identities(c, ws, target)?
        .into_iter()
        .map(|i| sb_core::identity::Identifier::new(&i.kind, &i.scope, &i.value))
        .collect();
    let mut out = Vec::new();
    for other in customers::search(c, ws, query, None, 6)? {
        if other.id == target || other.erased_at.is_some() {
            continue;
        }
        let theirs = customers::identities(c, ws, &other.id)?;
        let ids: Vec<sb_core::identity::Identifier> = theirs
            .iter()
            .map(|i| sb_core::identity::Identifier::new(&i.kind, &i.scope, &i.value))
            .collect();
        let conflict = sb_core::identity::conflicting_kind(&mine, &ids).map(|kind| {
            format!(
                "both hold a different {}; they cannot be merged",
                kind.replace('_', " ")
            )
        });
        out.push(MergeCandidate {
            name: display_name(&other),
            identities: theirs
                .iter()
                .map(|i| format!("{} {}", identity_label(&i.kind), i.value))
                .collect(),
            messages: count(c, "messages", ws, &other.id)?,
            events: count(c, "events", ws, &other.id)?,
            orders: count(c, "orders", ws, &other.id)?,
            conflict,
            id: other.id,
        });
    }
    Ok(out)
}
