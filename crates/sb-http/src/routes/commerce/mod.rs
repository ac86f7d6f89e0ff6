//! Commerce: locations and the catalogue, inventory changes through the ledger, checkout
//! holds and per-location availability, carts, orders (pickup and shipping, split across
//! locations or sourced by transfer), transfers between locations and returns.

mod carts;
mod catalog;
mod inventory;

pub(crate) mod orders;
pub(crate) mod transfers;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

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
