//! The demo's journeys, active from the first start: an abandoned-cart sequence (an hour
//! after the last cart change without checkout, a reminder with the cart on the customer's
//! preferred channel; a day later, if still nothing, a second one by e-mail; the purchase
//! ends it) and a thank-you after every purchase.

use sb_core::journey::Definition;
use sb_sql::Conn;
use sb_store::{StoreError, journeys};
use serde_json::json;

/// The WhatsApp template the cart reminder maps its fields to (customer, items, link).
pub const CART_TEMPLATE: (&str, &str) = (
    "cart_reminder",
    "Hi {{1}}, you left {{2}} in your cart. Finish your order here: {{3}}",
);

pub fn abandoned_cart() -> serde_json::Value {
    json!({
        "trigger": {"event": "Product Added"},
        "correlation_key": "cart_id",
        "exit_rules": [{"event": "Order Completed", "match_key": true}],
        "goal": {"event": "Order Completed", "window_hours": 72},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "steps": [
            {"id": "cart_idle_1h", "type": "wait_for", "restart_on": ["Product Added", "Product Removed"],
             "match_key": true, "timeout_minutes": 60},
            {"id": "cart_not_empty", "type": "branch", "condition": {"type": "cart_has_items"}, "otherwise": "exit"},
            {"id": "reminder", "type": "send", "message": {
                "headline": "{{ customer.first_name | default: 'Hi' }}, your cart is waiting",
                "body": "You left {{ cart.items.size }} item(s) worth {{ cart.total }}. They are kept for you a little longer.",
                "cta_label": "Finish your order",
                "cta_url": "{{ workspace.shop_url }}?cart={{ cart.id }}",
                "products": {"type": "cart"},
                "variants": {
                    "sms": {"text": "{{ customer.first_name }}, your cart ({{ cart.total }}) is waiting: {{ workspace.shop_url }}?cart={{ cart.id }}"},
                    "whatsapp": {"template": CART_TEMPLATE.0, "language": "en_US", "parameters": [
                        "{{ customer.first_name | default: 'there' }}",
                        "{% for item in cart.items %}{{ item.name }}{% if item.quantity > 1 %} × {{ item.quantity }}{% endif %}{% unless forloop.last %}, {% endunless %}{% endfor %}",
                        "{{ workspace.shop_url }}?cart={{ cart.id }}"
                    ]}
                }
            }},
            {"id": "wait_1_day", "type": "delay", "minutes": 1440},
            {"id": "still_not_empty", "type": "branch", "condition": {"type": "cart_has_items"}, "otherwise": "exit"},
            {"id": "email_reminder", "type": "send", "channel": "email", "message": {
                "headline": "Still thinking it over?",
                "body": "{{ customer.first_name | default: 'Hello' }}, the items in your cart are still available: {{ cart.total }} in all.",
                "cta_label": "Back to your cart",
                "cta_url": "{{ workspace.shop_url }}?cart={{ cart.id }}",
                "products": {"type": "cart"}
            }}
        ]
    })
}

pub fn thank_you() -> serde_json::Value {
    json!({
        "trigger": {"event": "Order Completed"},
        "correlation_key": "order_id",
        "steps": [
            {"id": "thank_you", "type": "send", "purpose": "transactional", "message": {
                "headline": "Thank you for your order {{ event.properties.number }}",
                "body": "{{ customer.first_name | default: 'Hello' }}, we have your order ({{ last_order.total }}). We will tell you here when it is on its way or ready to pick up."
            }}
        ]
    })
}

/// Creates both, active, inside the demo's creating transaction.
pub fn seed(c: &mut dyn Conn, ws: &str, now: i64) -> Result<(), StoreError> {
    for (name, definition) in [
        ("Abandoned cart", abandoned_cart()),
        ("Thank you after a purchase", thank_you()),
    ] {
        let def: Definition = serde_json::from_value(definition).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let j = journeys::create(c, ws, name, &def, None, now)?;
        journeys::set_state(c, ws, &j.id, "active", now)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_journeys_pass_the_checks_a_marketer_s_would() {
        for definition in [abandoned_cart(), thank_you()] {
            let def: Definition = serde_json::from_value(definition).expect("parses");
            sb_journeys::check(&def, &sb_journeys::known_properties, &[]).expect("valid");
        }
    }
}
