//! Return anywhere (commerce.md §8.3): a shipped or collected order comes back to any
//! location that accepts returns; each line is disposed of there — restocked (sellable at
//! that location at once), damaged (on hand, not sellable) or not restocked — and the refund
//! is recorded from the prices paid. No line can come back more often than it was bought.

use std::collections::BTreeMap;

use sb_core::inventory::{Bucket, Movement};
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::catalog;
use crate::inventory::{self, Change, Line};
use crate::orders::{self, OrderError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Return {
    pub id: String,
    pub order_id: String,
    pub customer_id: String,
    pub location_id: String,
    pub reason: String,
    pub refund_minor: i64,
    pub currency: String,
    pub created_at: i64,
}
from_row!(Return in "returns" { id, order_id, customer_id, location_id, reason, refund_minor, currency, created_at });

const COLUMNS: &str = "id, order_id, customer_id, location_id, reason, refund_minor, currency, created_at";

#[derive(Debug, Clone, Serialize)]
pub struct ReturnLine {
    pub sku: String,
    pub quantity: i64,
    pub disposition: String,
    pub refund_minor: i64,
}
from_row!(ReturnLine in "return_lines" { sku, quantity, disposition, refund_minor });

pub struct ReturnRequest<'a> {
    pub workspace_id: &'a str,
    pub order_id: &'a str,
    pub location_id: &'a str,
    pub idempotency_key: &'a str,
    pub reason: &'a str,
    pub actor: &'a str,
    /// (sku, quantity, disposition: `restock` | `damaged` | `not_restocked`)
    pub lines: Vec<(String, i64, String)>,
}

pub fn lines(c: &mut dyn Conn, return_id: &str) -> Result<Vec<ReturnLine>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT sku, quantity, disposition, refund_minor FROM return_lines WHERE return_id = :id ORDER BY sku, disposition",
        )
        .bind("id", return_id),
    )?)
}

/// Receives a return; the same key again returns the return recorded the first time.
pub fn receive(c: &mut dyn Conn, req: &ReturnRequest<'_>, now: i64) -> Result<Return> {
    let ws = req.workspace_id;
    let existing: Option<Return> = c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM returns WHERE workspace_id = :ws AND idempotency_key = :key"
        ))
        .bind("ws", ws)
        .bind("key", req.idempotency_key),
    )?;
    if let Some(found) = existing {
        return Ok(found);
    }
    let order = orders::get(c, ws, req.order_id)?.ok_or(OrderError::NotFound("order"))?;
    if !matches!(order.status.as_str(), "shipped" | "picked_up") {
        return Err(OrderError::State(format!(
            "a {} order has nothing to return",
            order.status
        )));
    }
    let location = catalog::location(c, ws, req.location_id)?.ok_or(OrderError::NotFound("location"))?;
    if !location.accepts_returns || !location.active {
        return Err(OrderError::Invalid(format!(
            "{} does not accept returns",
            location.name
        )));
    }
    if req.lines.is_empty() {
        return Err(OrderError::Invalid("a return needs at least one line".into()));
    }
    let bought: BTreeMap<String, orders::OrderLine> = orders::lines(c, &order.id)?
        .into_iter()
        .map(|l| (l.sku.clone(), l))
        .collect();
    let returned_before = c.query(
        &Stmt::new(
            "SELECT l.sku AS sku, CAST(SUM(l.quantity) AS BIGINT) AS n FROM return_lines l JOIN returns r ON r.id = l.return_id
             WHERE r.workspace_id = :ws AND r.order_id = :order GROUP BY l.sku",
        )
        .bind("ws", ws)
        .bind("order", &order.id),
    )?;
    let mut returned: BTreeMap<String, i64> = BTreeMap::new();
    for row in returned_before {
        returned.insert(row.get("sku")?, row.get("n")?);
    }
    let id = sb_core::new_id();
    let mut stock_lines = Vec::new();
    let mut rows = Vec::new();
    let mut refund: i64 = 0;
    for (sku, quantity, disposition) in &req.lines {
        let line = bought
            .get(sku)
            .ok_or_else(|| OrderError::Invalid(format!("{sku} is not in this order")))?;
        if *quantity < 1 {
            return Err(OrderError::Invalid("quantities must be at least 1".into()));
        }
        let total = returned.entry(sku.clone()).or_insert(0);
        *total += quantity;
        if *total > line.quantity {
            return Err(OrderError::Invalid(format!(
                "{sku}: {} bought, {} would have come back",
                line.quantity, total
            )));
        }
        let bucket = match disposition.as_str() {
            "restock" => Some(Bucket::OnHand),
            "damaged" => Some(Bucket::Damaged),
            "not_restocked" => None,
            other => return Err(OrderError::Invalid(format!("unknown disposition {other}"))),
        };
        if let Some(bucket) = bucket {
            for (item, per_unit) in catalog::components(c, &line.variant_id)? {
                stock_lines.push(Line {
                    item_id: item,
                    location_id: location.id.clone(),
                    movement: Movement::ReturnIn {
                        bucket,
                        quantity: per_unit * quantity,
                    },
                });
            }
        }
        let line_refund = line
            .unit_price_minor
            .checked_mul(*quantity)
            .ok_or_else(|| OrderError::Invalid("the refund is more than one return can hold".into()))?;
        refund = refund
            .checked_add(line_refund)
            .ok_or_else(|| OrderError::Invalid("the refund is more than one return can hold".into()))?;
        rows.push((
            line.variant_id.clone(),
            sku.clone(),
            *quantity,
            disposition.clone(),
            line_refund,
        ));
    }
    if !stock_lines.is_empty() {
        let change = Change {
            workspace_id: ws,
            idempotency_key: &format!("return:{}", req.idempotency_key),
            reason: "return",
            actor: req.actor,
            reference_type: "return",
            reference_id: Some(&id),
            lines: stock_lines,
        };
        inventory::apply(c, &change, now)?;
    }
    let created: Return = c
        .fetch_opt(
            &Stmt::new(format!(
                "INSERT INTO returns (id, workspace_id, order_id, customer_id, location_id, idempotency_key, reason,
                                      refund_minor, currency, created_at)
                 VALUES (:id, :ws, :order, :customer, :location, :key, :reason, :refund, :currency, :now)
                 RETURNING {COLUMNS}"
            ))
            .bind("id", &id)
            .bind("ws", ws)
            .bind("order", &order.id)
            .bind("customer", &order.customer_id)
            .bind("location", &location.id)
            .bind("key", req.idempotency_key)
            .bind("reason", req.reason)
            .bind("refund", refund)
            .bind("currency", &order.currency)
            .bind("now", now),
        )?
        .ok_or(OrderError::NotFound("return"))?;
    for (variant, sku, quantity, disposition, line_refund) in &rows {
        c.execute(
            &Stmt::new(
                "INSERT INTO return_lines (return_id, variant_id, sku, quantity, disposition, refund_minor)
                 VALUES (:id, :variant, :sku, :q, :disposition, :refund)
                 ON CONFLICT (return_id, variant_id, disposition) DO UPDATE
                    SET quantity = return_lines.quantity + excluded.quantity,
                        refund_minor = return_lines.refund_minor + excluded.refund_minor",
            )
            .bind("id", &id)
            .bind("variant", variant)
            .bind("sku", sku)
            .bind("q", *quantity)
            .bind("disposition", disposition)
            .bind("refund", *line_refund),
        )?;
    }
    let products: Vec<serde_json::Value> = rows
        .iter()
        .map(|(_, sku, quantity, disposition, line_refund)| {
            serde_json::json!({ "sku": sku, "quantity": quantity, "disposition": disposition, "refund": line_refund })
        })
        .collect();
    let properties = serde_json::json!({
        "order_id": order.id, "number": order.number, "return_id": id, "total": refund, "currency": order.currency,
        "location_id": location.id, "location": location.name, "reason": req.reason, "products": products,
    });
    orders::record_event(c, ws, &order, "Order Refunded", properties, req.actor, now)?;
    Ok(created)
}
