//! Commerce: locations and the catalogue, inventory changes through the ledger, checkout
//! holds and per-location availability, carts, orders (pickup and shipping, split across
//! locations or sourced by transfer), transfers between locations and returns.

mod carts;
mod catalog;
mod inventory;

pub(crate) use inventory::AvailabilityQuery;
pub(crate) mod orders;
pub(crate) mod transfers;

use axum::http::StatusCode;
use sb_store::StoreError;
use sb_store::inventory::InventoryError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalog::list_locations, catalog::create_location))
        .routes(routes!(catalog::list_products, catalog::create_product))
        .routes(routes!(inventory::change_inventory))
        .routes(routes!(inventory::create_reservation))
        .routes(routes!(inventory::resolve_reservation))
        .routes(routes!(inventory::get_availability))
        .routes(routes!(inventory::check_inventory))
        .routes(routes!(carts::open_cart))
        .routes(routes!(carts::get_cart))
        .routes(routes!(carts::set_cart_line))
        .routes(routes!(carts::assign_cart))
        .routes(routes!(carts::start_checkout))
        .routes(routes!(carts::customer_cart))
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::order_action))
        .routes(routes!(orders::customer_orders))
        .routes(routes!(orders::receive_return))
        .routes(routes!(orders::ship_fulfillment))
        .routes(routes!(transfers::create_transfer, transfers::list_transfers))
        .routes(routes!(transfers::get_transfer))
        .routes(routes!(transfers::transfer_action))
}

pub(super) fn inventory_error(e: InventoryError) -> ApiError {
    match e {
        InventoryError::Insufficient {
            item,
            location,
            available,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!("not enough stock: {available} available at that location"),
        )
        .with_details(serde_json::json!({ "item_id": item, "location_id": location, "available": available })),
        InventoryError::CountOutdated {
            item,
            location,
            on_hand,
        } => ApiError::new(
            StatusCode::CONFLICT,
            "count_outdated",
            format!("stock moved since the count began: {on_hand} on hand now; count again"),
        )
        .with_details(serde_json::json!({ "item_id": item, "location_id": location, "on_hand": on_hand })),
        InventoryError::KeyReused => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency key was used for a different request",
        ),
        InventoryError::Invalid(m) => ApiError::unprocessable("invalid_inventory_change", m),
        InventoryError::NotFound(what) => ApiError::not_found("not_found", format!("{what} not found")),
        InventoryError::AlreadyResolved(status) => ApiError::new(
            StatusCode::CONFLICT,
            "reservation_resolved",
            format!("the reservation is already {status}"),
        ),
        InventoryError::Store(e) => e.into(),
    }
}

/// Who changed stock, as the ledger records it (`user:<id>`, `token:<id>`).
fn ledger_actor(actor: &sb_store::audit::Actor) -> String {
    format!("{}:{}", actor.kind, actor.id.as_deref().unwrap_or_default())
}

/// The (item, location) balances an order's or return's lines touch (kits exploded), for
/// the availability events.
fn touched_by(
    c: &mut dyn sb_store::Conn,
    variant_ids: impl IntoIterator<Item = String>,
    location_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut touched = Vec::new();
    for variant in variant_ids {
        for (item, _) in sb_store::catalog::components(c, &variant)? {
            touched.push((item, location_id.to_owned()));
        }
    }
    Ok(touched)
}
