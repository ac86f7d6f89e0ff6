//! Facts about customers, consent and orders, appended to the workspace's event log in the
//! transaction of the change (outgoing webhooks read them from there). Messages, conversations
//! and availability have their own builders next to the agents' live stream.

use sb_sql::Conn;

use crate::Result;
use crate::live_events;

pub fn customer_created(c: &mut dyn Conn, ws: &str, customer_id: &str, now: i64) -> Result<()> {
    let payload = serde_json::json!({ "id": customer_id, "created_at": sb_core::clock::rfc3339(now) });
    live_events::append(c, ws, "customer.created", None, &payload, now)?;
    Ok(())
}

pub fn customer_merged(c: &mut dyn Conn, merge: &crate::merges::Merge, undone: bool, now: i64) -> Result<()> {
    let payload = serde_json::json!({
        "merge_id": merge.id,
        "surviving_id": merge.target_customer_id,
        "merged_id": merge.source_customer_id,
        "rule": merge.rule,
    });
    let kind = if undone { "customer.unmerged" } else { "customer.merged" };
    live_events::append(c, &merge.workspace_id, kind, None, &payload, now)?;
    Ok(())
}

pub fn consent_changed(c: &mut dyn Conn, change: &crate::consents::Change<'_>) -> Result<()> {
    let payload = serde_json::json!({
        "customer_id": change.customer_id,
        "channel": change.channel,
        "purpose": change.purpose,
        "granted": change.granted,
        "source": change.source,
        "at": sb_core::clock::rfc3339(change.at),
    });
    live_events::append(c, change.workspace_id, "consent.changed", None, &payload, change.at)?;
    Ok(())
}

/// The webhook type of an order timeline step, by its (Segment-style) name.
pub fn order_event_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "Order Completed" => "order.placed",
        "Order Ready For Pickup" => "order.ready_for_pickup",
        "Order Picked Up" => "order.picked_up",
        "Order Shipped" => "order.shipped",
        "Order Cancelled" => "order.cancelled",
        "Order Refunded" => "order.refunded",
        _ => return None,
    })
}

pub fn order_changed(
    c: &mut dyn Conn,
    ws: &str,
    order: &crate::orders::Order,
    name: &str,
    properties: &serde_json::Value,
    now: i64,
) -> Result<()> {
    let Some(kind) = order_event_type(name) else {
        return Ok(());
    };
    let payload = serde_json::json!({
        "id": order.id,
        "number": order.number,
        "customer_id": order.customer_id,
        "channel": order.channel,
        "fulfillment": order.fulfillment,
        "location_id": order.location_id,
        "status": order.status,
        "total_minor": order.total_minor,
        "currency": order.currency,
        "placed_at": sb_core::clock::rfc3339(order.placed_at),
        "properties": properties,
    });
    live_events::append(c, ws, kind, None, &payload, now)?;
    Ok(())
}
