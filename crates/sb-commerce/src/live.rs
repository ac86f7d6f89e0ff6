//! Availability changes as live events (`inventory.availability_changed`), written in the
//! same transaction as the stock change so the event log never disagrees with the ledger;
//! staff screens and the storefront follow them on the event stream.

use std::collections::BTreeSet;

use sb_core::inventory::level;
use sb_store::live_events::{self, LiveEvent};
use sb_store::{Conn, Stmt, StoreError, inventory};

pub const AVAILABILITY_CHANGED: &str = "inventory.availability_changed";

/// One event per touched (item, location), with its buckets after the change.
pub fn availability_changed(
    c: &mut dyn Conn,
    ws: &str,
    touched: impl IntoIterator<Item = (String, String)>,
    now: i64,
) -> Result<Vec<LiveEvent>, StoreError> {
    let touched: BTreeSet<(String, String)> = touched.into_iter().collect();
    let mut events = Vec::with_capacity(touched.len());
    for (item, location) in touched {
        let balance = inventory::balance(c, ws, &item, &location).map_err(|e| match e {
            inventory::InventoryError::Store(e) => e,
            other => StoreError::Invalid(other.to_string()),
        })?;
        let sku: Option<String> = match c.query_opt(
            &Stmt::new("SELECT sku FROM inventory_items WHERE workspace_id = :ws AND id = :id")
                .bind("ws", ws)
                .bind("id", &item),
        )? {
            Some(row) => Some(row.get("sku")?),
            None => None,
        };
        let payload = serde_json::json!({
            "item_id": item,
            "sku": sku,
            "location_id": location,
            "available": balance.available(),
            "level": level(balance.available(), crate::availability::LOW_STOCK_AT),
            "balance": balance,
        });
        events.push(live_events::append(c, ws, AVAILABILITY_CHANGED, None, &payload, now)?);
    }
    Ok(events)
}
