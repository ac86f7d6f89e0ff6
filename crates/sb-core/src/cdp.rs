//! Customer-data events as we keep them: one Segment-spec call (track, identify, page,
//! screen, group, alias) with its times already corrected, and the identifiers it carries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One accepted call, as stored in the batch queue and then on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// `alias`: the id the user had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The event (track) or page/screen name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub traits: Map<String, Value>,
    #[serde(default)]
    pub context: Map<String, Value>,
    #[serde(default)]
    pub integrations: Map<String, Value>,
    /// Skew-corrected: `received_at − (sent_at − original_ts)` (Segment's rule), in ms.
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
    pub received_at: i64,
}

/// The e-commerce spec v2 event names: these are commerce events on the customer's timeline.
pub const COMMERCE_EVENTS: &[&str] = &[
    "Products Searched",
    "Product List Viewed",
    "Product List Filtered",
    "Promotion Viewed",
    "Promotion Clicked",
    "Product Clicked",
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Checkout Step Viewed",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Order Updated",
    "Order Completed",
    "Order Refunded",
    "Order Cancelled",
    "Coupon Entered",
    "Coupon Applied",
    "Coupon Denied",
    "Coupon Removed",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Wishlist Product Added to Cart",
    "Product Shared",
    "Cart Shared",
    "Product Reviewed",
];

impl TrackedEvent {
    /// `commerce` for the e-commerce spec's events, else the call's type.
    pub fn category(&self) -> &str {
        match (&*self.kind, &self.name) {
            ("track", Some(name)) if COMMERCE_EVENTS.contains(&name.as_str()) => "commerce",
            _ => &self.kind,
        }
    }

    /// Traits from `traits` and `context.traits` (clients put them in either; the call's own win).
    pub fn all_traits(&self) -> Map<String, Value> {
        let mut all = match self.context.get("traits") {
            Some(Value::Object(t)) => t.clone(),
            _ => Map::new(),
        };
        for (k, v) in &self.traits {
            all.insert(k.clone(), v.clone());
        }
        all
    }

    /// The identifiers the call carries, raw, as (kind, value): user and anonymous ids, the
    /// e-mail and phone traits, the device id, a loyalty id trait and `context.externalIds`.
    pub fn identifiers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |kind: &str, v: Option<&Value>| {
            let text = match v {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(t) = text {
                out.push((kind.to_owned(), t));
            }
        };
        push(
            "user_id",
            self.user_id.as_ref().map(|s| Value::String(s.clone())).as_ref(),
        );
        push(
            "anonymous_id",
            self.anonymous_id.as_ref().map(|s| Value::String(s.clone())).as_ref(),
        );
        if self.kind == "alias" {
            // `previousId` is whichever id the user had before: an anonymous id or an older user id.
            push(
                "anonymous_id",
                self.previous_id.as_ref().map(|s| Value::String(s.clone())).as_ref(),
            );
        }
        let traits = self.all_traits();
        push("email", traits.get("email"));
        push("phone", traits.get("phone"));
        push("loyalty_id", traits.get("loyalty_id"));
        if let Some(Value::Object(device)) = self.context.get("device") {
            push("device_id", device.get("id"));
        }
        if let Some(Value::Array(external)) = self.context.get("externalIds") {
            for e in external {
                if let (Some(Value::String(kind)), Some(id)) = (e.get("type"), e.get("id")) {
                    push(&kind.to_lowercase(), Some(id));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: Value) -> TrackedEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn commerce_events_are_recognised_by_their_spec_names() {
        let e = event(json!({"type": "track", "message_id": "m", "name": "Product Added", "ts": 1, "received_at": 1}));
        assert_eq!(e.category(), "commerce");
        let e = event(json!({"type": "track", "message_id": "m", "name": "Signed Up", "ts": 1, "received_at": 1}));
        assert_eq!(e.category(), "track");
        let e = event(json!({"type": "page", "message_id": "m", "name": "Product Added", "ts": 1, "received_at": 1}));
        assert_eq!(e.category(), "page");
    }

    #[test]
    fn identifiers_come_from_ids_traits_context_and_external_ids() {
        let e = event(json!({
            "type": "identify", "message_id": "m", "user_id": "u1", "anonymous_id": "a1", "ts": 1, "received_at": 1,
            "traits": {"email": "Ana@x.io"},
            "context": {"traits": {"phone": "+34600111222", "email": "old@x.io"}, "device": {"id": "dev-9"},
                        "externalIds": [{"id": "L-77", "type": "loyalty_id", "collection": "users", "encoding": "none"}]}
        }));
        let ids = e.identifiers();
        for want in [
            ("user_id", "u1"),
            ("anonymous_id", "a1"),
            ("email", "Ana@x.io"),
            ("phone", "+34600111222"),
            ("device_id", "dev-9"),
            ("loyalty_id", "L-77"),
        ] {
            assert!(
                ids.contains(&(want.0.to_owned(), want.1.to_owned())),
                "{want:?} in {ids:?}"
            );
        }
        assert!(!ids.iter().any(|(_, v)| v == "old@x.io"), "the call's own traits win");
    }
}
