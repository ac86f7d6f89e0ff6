//! Journeys at work: the runner that executes steps and timers (`runner`), the one delivery
//! path every automated message takes (`runner::dispatch`), the preferred channel
//! (`choose`), and one message rendered per channel with strict Liquid (`render`,
//! `context`). Definitions and their pure rules are `sb_core::journey`; storage is
//! `sb_store::journeys` and `sb_store::deliveries`.

pub mod choose;
pub mod context;
pub mod render;
pub mod runner;

pub use runner::{Journeys, Settings};

use sb_core::journey::{Action, Definition, Invalid};

/// Everything checked when a definition is saved: its shape (`Definition::validate`) and
/// every template of every send, rendered against a context of the full shape.
pub fn check(
    def: &Definition,
    properties_of: &dyn Fn(&str) -> Option<Vec<String>>,
    traits: &[String],
) -> Result<(), Invalid> {
    def.validate(properties_of)?;
    let event_properties = properties_of(&def.trigger.event).unwrap_or_default();
    let sample = render::sample_context(traits, &def.trigger.event, &event_properties);
    for step in &def.steps {
        if let Action::Send(send) = &step.action {
            render::check(&send.message, &sample, Some(&step.id))?;
        }
    }
    for rule in &def.exit_rules {
        if let Some(send) = &rule.then {
            render::check(&send.message, &sample, None)?;
        }
    }
    Ok(())
}

/// Properties of the events Switchboard itself records (e-commerce spec names), so a filter
/// on a property they never carry is refused at save.
pub fn known_properties(event: &str) -> Option<Vec<String>> {
    let names: &[&str] = match event {
        "Product Added" | "Product Removed" => &["cart_id", "sku", "quantity", "price", "currency"],
        "Checkout Started" => &["cart_id", "value", "currency", "fulfillment"],
        "Order Completed" => &[
            "order_id",
            "cart_id",
            "number",
            "total",
            "currency",
            "fulfillment",
            "location_id",
            "products",
            "fulfillments",
            "transfers",
        ],
        _ => return None,
    };
    Some(names.iter().map(|s| (*s).to_owned()).collect())
}
