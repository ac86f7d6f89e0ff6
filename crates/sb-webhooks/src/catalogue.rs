//! The event types an endpoint can subscribe to. Each is written to the workspace's event log
//! in the transaction of the change that causes it; the payload's `data` is the object as the
//! JSON API shows it (a message, a conversation) or the change's facts (a merge, a consent).

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventType {
    /// `object.verb`, the `type` of the payload.
    pub name: &'static str,
    pub group: &'static str,
    pub description: &'static str,
}

const fn t(name: &'static str, group: &'static str, description: &'static str) -> EventType {
    EventType {
        name,
        group,
        description,
    }
}

pub const CATALOGUE: &[EventType] = &[
    t(
        "message.created",
        "messages",
        "A message arrived on any channel, an agent replied, or a private note was added. `data` is the message.",
    ),
    t(
        "message.updated",
        "messages",
        "A message changed: its delivery status (sent, delivered, read, failed with the provider's error code) or content.",
    ),
    t(
        "conversation.updated",
        "conversations",
        "A conversation was opened or changed: status, assignee, team, labels, priority, last activity. `data` is the conversation.",
    ),
    t(
        "customer.created",
        "customers",
        "A customer profile was created (a first message, a form, a Segment identify, a sale).",
    ),
    t(
        "customer.merged",
        "customers",
        "Two profiles were merged: `data.surviving_id` keeps everything, `data.merged_id` is gone.",
    ),
    t(
        "customer.unmerged",
        "customers",
        "A merge was undone: `data.merged_id` is a profile of its own again.",
    ),
    t(
        "consent.changed",
        "consent",
        "A customer granted or revoked consent for a channel and purpose (`data.granted`, `data.source`).",
    ),
    t(
        "order.placed",
        "orders",
        "An order was placed on any sales channel (web, store, conversation).",
    ),
    t(
        "order.ready_for_pickup",
        "orders",
        "A pickup order was packed and waits at the store.",
    ),
    t("order.picked_up", "orders", "The customer collected a pickup order."),
    t(
        "order.shipped",
        "orders",
        "A shipping order (or one fulfilment of it) left.",
    ),
    t(
        "order.cancelled",
        "orders",
        "An order was cancelled; its stock was released.",
    ),
    t("order.refunded", "orders", "A return was taken and refunded."),
    t(
        "inventory.availability_changed",
        "inventory",
        "A SKU's availability at a location changed level (in stock, low, out).",
    ),
    t(
        "webhook.endpoint.disabled",
        "platform",
        "An endpoint of the workspace was disabled after days of failures or a 410 answer.",
    ),
    t(
        "webhook.test",
        "platform",
        "Sent on request from the settings page or the API, to try an endpoint.",
    ),
];

pub fn find(name: &str) -> Option<&'static EventType> {
    CATALOGUE.iter().find(|e| e.name == name)
}

/// The webhook type of an event-log entry, if integrators can subscribe to it.
pub fn type_of_log_kind(kind: &str) -> Option<&'static str> {
    find(kind).map(|e| e.name)
}

/// The catalogue as a Markdown table (the README carries it; a test keeps the two the same).
pub fn markdown() -> String {
    let mut out = String::from("| type | group | when |\n|---|---|---|\n");
    for e in CATALOGUE {
        out.push_str(&format!("| `{}` | {} | {} |\n", e.name, e.group, e.description));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_the_catalogue_as_the_code_has_it() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's webhook event table differs from catalogue.rs; paste this:\n{}",
            markdown()
        );
    }

    #[test]
    fn every_fact_the_store_logs_is_in_the_catalogue() {
        for kind in [
            "message.created",
            "message.updated",
            "conversation.updated",
            "customer.created",
            "customer.merged",
            "customer.unmerged",
            "consent.changed",
            "inventory.availability_changed",
            "webhook.endpoint.disabled",
        ] {
            assert!(find(kind).is_some(), "{kind}");
        }
        for name in [
            "Order Completed",
            "Order Ready For Pickup",
            "Order Picked Up",
            "Order Shipped",
            "Order Cancelled",
            "Order Refunded",
        ] {
            let kind = sb_store::domain_events::order_event_type(name).expect("an order type");
            assert!(find(kind).is_some(), "{kind}");
        }
    }

    #[test]
    fn names_are_unique_and_follow_the_standard() {
        let mut seen = std::collections::HashSet::new();
        for e in CATALOGUE {
            assert!(seen.insert(e.name), "{} twice", e.name);
            assert!(
                e.name
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
                "{} is not dot-separated [a-zA-Z0-9_]",
                e.name
            );
        }
    }
}
