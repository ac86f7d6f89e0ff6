//! Transfers between locations (commerce.md §8.2, invariant 8): sent units leave the
//! sender's shelf at once (`transfer_out`) and show as `incoming` at the receiver
//! (`expect`); receiving puts them on hand there (`transfer_in`), cancelling sends them back
//! to the sender's shelf. A transfer that sources a pickup order (`order_id`) commits its
//! units to that order as they arrive. Every change is one ledger group with its own
//! idempotency key; status changes are guarded updates, so each happens once.

use std::collections::BTreeMap;

use sb_core::inventory::Movement;
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::catalog;
use crate::inventory::{self, Change, InventoryError, Line, Outcome};
use crate::orders::{OrderError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    pub id: String,
    pub from_location_id: String,
    pub to_location_id: String,
    pub order_id: Option<String>,
    /// `in_transit`, `received` or `canceled`.
    pub status: String,
    pub reason: String,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Transfer in "transfers" {
    id, from_location_id, to_location_id, order_id, status, reason, created_at, updated_at
});

const COLUMNS: &str = "id, from_location_id, to_location_id, order_id, status, reason, created_at, updated_at";

/// Per line `qty_sent = qty_received + qty_lost + qty_returned` once the transfer is closed.
#[derive(Debug, Clone, Serialize)]
pub struct TransferLine {
    pub item_id: String,
    pub sku: String,
    pub qty_sent: i64,
    pub qty_received: i64,
    pub qty_lost: i64,
    pub qty_returned: i64,
}
from_row!(TransferLine in "transfer_lines" { item_id, sku, qty_sent, qty_received, qty_lost, qty_returned });

pub struct NewTransfer<'a> {
    pub workspace_id: &'a str,
    /// Ledger key of the shipment: the same key and request again is the same transfer.
    pub idempotency_key: &'a str,
    pub from_location_id: &'a str,
    pub to_location_id: &'a str,
    pub order_id: Option<&'a str>,
    pub reason: &'a str,
    pub actor: &'a str,
    /// Units per inventory item.
    pub items: &'a BTreeMap<String, i64>,
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Transfer>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM transfers WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn lines(c: &mut dyn Conn, transfer_id: &str) -> Result<Vec<TransferLine>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT l.item_id, i.sku, l.qty_sent, l.qty_received, l.qty_lost, l.qty_returned
             FROM transfer_lines l JOIN inventory_items i ON i.id = l.item_id
             WHERE l.transfer_id = :id ORDER BY i.sku",
        )
        .bind("id", transfer_id),
    )?)
}

/// The transfers sourcing an order, oldest first.
pub fn for_order(c: &mut dyn Conn, ws: &str, order_id: &str) -> Result<Vec<Transfer>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM transfers WHERE workspace_id = :ws AND order_id = :order ORDER BY created_at, id"
        ))
        .bind("ws", ws)
        .bind("order", order_id),
    )?)
}

/// Transfers from or to a location (or all), in a status (or any), newest first; `before` is
/// the last id of the previous page.
pub fn list(
    c: &mut dyn Conn,
    ws: &str,
    location_id: Option<&str>,
    status: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Transfer>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM transfers
             WHERE workspace_id = :ws
               AND (:location = '' OR from_location_id = :location OR to_location_id = :location)
               AND (:status = '' OR status = :status) AND (:before = '' OR id < :before)
             ORDER BY id DESC LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("location", location_id.unwrap_or(""))
        .bind("status", status.unwrap_or(""))
        .bind("before", before.unwrap_or(""))
        .bind("limit", limit),
    )?)
}

/// Sends units: off the sender's shelf, `incoming` at the receiver. The same key and request
/// again returns the first transfer (`false`: nothing new); the same key with another request
/// is refused.
pub fn create(c: &mut dyn Conn, t: &NewTransfer<'_>, now: i64) -> Result<(Transfer, bool)> {
    let ws = t.workspace_id;
    if t.from_location_id == t.to_location_id {
        return Err(OrderError::Invalid("a transfer goes to another location".into()));
    }
    if t.items.is_empty() || t.items.values().any(|q| *q < 1) {
        return Err(OrderError::Invalid(
            "a transfer needs lines of at least one unit".into(),
        ));
    }
    for location in [t.from_location_id, t.to_location_id] {
        if catalog::location(c, ws, location)?.is_none() {
            return Err(OrderError::NotFound("location"));
        }
    }
    let id = sb_core::new_id();
    let mut lines = Vec::with_capacity(t.items.len() * 2);
    for (item, quantity) in t.items {
        lines.push(Line {
            item_id: item.clone(),
            location_id: t.from_location_id.to_owned(),
            movement: Movement::TransferOut { quantity: *quantity },
        });
        lines.push(Line {
            item_id: item.clone(),
            location_id: t.to_location_id.to_owned(),
            movement: Movement::Expect { quantity: *quantity },
        });
    }
    let change = Change {
        workspace_id: ws,
        idempotency_key: t.idempotency_key,
        reason: "transfer",
        actor: t.actor,
        reference_type: "transfer",
        reference_id: Some(&id),
        lines,
    };
    if let Outcome::Replayed { reference_id, .. } = inventory::apply(c, &change, now)? {
        let first = reference_id.ok_or(OrderError::NotFound("transfer"))?;
        let first = get(c, ws, &first)?.ok_or(OrderError::NotFound("transfer"))?;
        return Ok((first, false));
    }
    let transfer: Transfer = c
        .fetch_opt(
            &Stmt::new(format!(
                "INSERT INTO transfers (id, workspace_id, idempotency_key, from_location_id, to_location_id, order_id,
                                        status, reason, created_at, updated_at)
                 VALUES (:id, :ws, :key, :from, :to, :order, 'in_transit', :reason, :now, :now)
                 RETURNING {COLUMNS}"
            ))
            .bind("id", &id)
            .bind("ws", ws)
            .bind("key", t.idempotency_key)
            .bind("from", t.from_location_id)
            .bind("to", t.to_location_id)
            .bind("order", t.order_id)
            .bind("reason", t.reason)
            .bind("now", now),
        )?
        .ok_or(OrderError::NotFound("transfer"))?;
    for (item, quantity) in t.items {
        c.execute(
            &Stmt::new(
                "INSERT INTO transfer_lines (transfer_id, item_id, qty_sent, qty_received, qty_lost, qty_returned)
                 VALUES (:id, :item, :q, 0, 0, 0)",
            )
            .bind("id", &id)
            .bind("item", item)
            .bind("q", *quantity),
        )?;
    }
    Ok((transfer, true))
}

/// Records that a transfer sources an order (sent during its checkout).
pub fn attach_to_order(c: &mut dyn Conn, ws: &str, transfer_id: &str, order_id: &str) -> Result<()> {
    c.execute(
        &Stmt::new("UPDATE transfers SET order_id = :order WHERE workspace_id = :ws AND id = :id")
            .bind("order", order_id)
            .bind("ws", ws)
            .bind("id", transfer_id),
    )?;
    Ok(())
}

/// Moves an in-transit transfer to `to`; `None` when it is no longer in transit.
fn close(c: &mut dyn Conn, ws: &str, id: &str, to: &str, now: i64) -> Result<Option<Transfer>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "UPDATE transfers SET status = :to, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND status = 'in_transit'
             RETURNING {COLUMNS}"
        ))
        .bind("to", to)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// The units arrive: on hand at the receiver, and committed to the order the transfer
/// sources. `lost` (units per item that never arrived, a plain transfer only) are written
/// off: per line `qty_sent = qty_received + qty_lost`. Receiving again changes nothing
/// (`false`).
pub fn receive(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    lost: &BTreeMap<String, i64>,
    actor: &str,
    now: i64,
) -> Result<(Transfer, bool)> {
    let current = get(c, ws, id)?.ok_or(OrderError::NotFound("transfer"))?;
    if current.status == "received" {
        return Ok((current, false));
    }
    let lines = lines(c, id)?;
    if current.order_id.is_some() && lost.values().any(|q| *q != 0) {
        return Err(OrderError::Invalid(
            "a transfer sourcing an order is received whole: cancel the order if units were lost".into(),
        ));
    }
    for (item, q) in lost {
        let sent = lines.iter().find(|l| l.item_id == *item).map(|l| l.qty_sent);
        match sent {
            Some(sent) if (0..=sent).contains(q) => {}
            Some(_) => {
                return Err(OrderError::Invalid(
                    "lost units must be between 0 and the units sent".into(),
                ));
            }
            None => {
                return Err(OrderError::Invalid(
                    "lost units of an item the transfer did not send".into(),
                ));
            }
        }
    }
    let transfer = close(c, ws, id, "received", now)?
        .ok_or_else(|| OrderError::TransferState(format!("the transfer is {}", current.status)))?;
    let mut ledger = Vec::with_capacity(lines.len() * 2);
    for line in &lines {
        let missing = lost.get(&line.item_id).copied().unwrap_or(0);
        ledger.push(Line {
            item_id: line.item_id.clone(),
            location_id: transfer.to_location_id.clone(),
            movement: Movement::TransferIn {
                received: line.qty_sent - missing,
                lost: missing,
            },
        });
        if transfer.order_id.is_some() {
            ledger.push(Line {
                item_id: line.item_id.clone(),
                location_id: transfer.to_location_id.clone(),
                movement: Movement::CommitDirect {
                    quantity: line.qty_sent,
                },
            });
        }
        c.execute(
            &Stmt::new(
                "UPDATE transfer_lines SET qty_received = :received, qty_lost = :lost
                 WHERE transfer_id = :id AND item_id = :item",
            )
            .bind("received", line.qty_sent - missing)
            .bind("lost", missing)
            .bind("id", id)
            .bind("item", &line.item_id),
        )?;
    }
    inventory::apply(
        c,
        &Change {
            workspace_id: ws,
            idempotency_key: &format!("transfer:{id}:received"),
            reason: "transfer_received",
            actor,
            reference_type: "transfer",
            reference_id: Some(id),
            lines: ledger,
        },
        now,
    )?;
    Ok((transfer, true))
}

/// Calls an in-transit transfer back: the units are on the sender's shelf again and no longer
/// expected at the receiver. Returns the units per item that were on the way.
pub fn cancel(c: &mut dyn Conn, ws: &str, id: &str, actor: &str, now: i64) -> Result<BTreeMap<String, i64>> {
    let current = get(c, ws, id)?.ok_or(OrderError::NotFound("transfer"))?;
    if current.status == "canceled" {
        return Ok(BTreeMap::new());
    }
    let transfer = close(c, ws, id, "canceled", now)?
        .ok_or_else(|| OrderError::TransferState(format!("the transfer is {}", current.status)))?;
    let lines = lines(c, id)?;
    let mut ledger = Vec::with_capacity(lines.len() * 2);
    let mut returned = BTreeMap::new();
    for line in &lines {
        ledger.push(Line {
            item_id: line.item_id.clone(),
            location_id: transfer.to_location_id.clone(),
            movement: Movement::Unexpect {
                quantity: line.qty_sent,
            },
        });
        ledger.push(Line {
            item_id: line.item_id.clone(),
            location_id: transfer.from_location_id.clone(),
            movement: Movement::Receive {
                quantity: line.qty_sent,
            },
        });
        returned.insert(line.item_id.clone(), line.qty_sent);
    }
    inventory::apply(
        c,
        &Change {
            workspace_id: ws,
            idempotency_key: &format!("transfer:{id}:canceled"),
            reason: "transfer_canceled",
            actor,
            reference_type: "transfer",
            reference_id: Some(id),
            lines: ledger,
        },
        now,
    )?;
    c.execute(&Stmt::new("UPDATE transfer_lines SET qty_returned = qty_sent WHERE transfer_id = :id").bind("id", id))?;
    Ok(returned)
}

/// Invariant 8 for every closed transfer line: what was sent was received, lost or returned.
pub fn check(c: &mut dyn Conn, ws: &str) -> Result<Vec<String>> {
    let rows = c.query(
        &Stmt::new(
            "SELECT t.id, t.status, l.item_id, l.qty_sent, l.qty_received, l.qty_lost, l.qty_returned
             FROM transfers t JOIN transfer_lines l ON l.transfer_id = t.id
             WHERE t.workspace_id = :ws AND t.status <> 'in_transit'
               AND l.qty_sent <> l.qty_received + l.qty_lost + l.qty_returned",
        )
        .bind("ws", ws),
    )?;
    rows.iter()
        .map(|r| {
            Ok(format!(
                "transfer {} ({}) item {}: {} sent but {} received, {} lost, {} returned",
                r.get::<String>("id")?,
                r.get::<String>("status")?,
                r.get::<String>("item_id")?,
                r.get::<i64>("qty_sent")?,
                r.get::<i64>("qty_received")?,
                r.get::<i64>("qty_lost")?,
                r.get::<i64>("qty_returned")?
            ))
        })
        .collect::<std::result::Result<_, sb_sql::SqlError>>()
        .map_err(|e| OrderError::Inventory(InventoryError::from(e)))
}
