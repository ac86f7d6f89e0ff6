//! Commerce: the catalogue, inventory through the ledger, carts, orders, transfers, returns.

pub mod carts;
pub mod catalog;
pub mod inventory;
pub mod orders;
pub mod transfers;

use http::StatusCode;
use sb_store::StoreError;
use sb_store::inventory::InventoryError;

use crate::error::AppError;

pub fn inventory_error(e: InventoryError) -> AppError {
    match e {
        InventoryError::Insufficient {
            item,
            location,
            available,
        } => AppError::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!("not enough stock: {available} available at that location"),
        )
        .with_details(serde_json::json!({ "item_id": item, "location_id": location, "available": available })),
        InventoryError::CountOutdated {
            item,
            location,
            on_hand,
        } => AppError::new(
            StatusCode::CONFLICT,
            "count_outdated",
            format!("stock moved since the count began: {on_hand} on hand now; count again"),
        )
        .with_details(serde_json::json!({ "item_id": item, "location_id": location, "on_hand": on_hand })),
        InventoryError::KeyReused => AppError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this idempotency key was used for a different request",
        ),
        InventoryError::Invalid(m) => AppError::unprocessable("invalid_inventory_change", m),
        InventoryError::NotFound(what) => AppError::not_found("not_found", format!("{what} not found")),
        InventoryError::AlreadyResolved(status) => AppError::new(
            StatusCode::CONFLICT,
            "reservation_resolved",
            format!("the reservation is already {status}"),
        ),
        InventoryError::Store(e) => e.into(),
    }
}

/// Who changed stock, as the ledger records it (`user:<id>`, `token:<id>`).
pub fn ledger_actor(actor: &sb_store::audit::Actor) -> String {
    format!("{}:{}", actor.kind, actor.id.as_deref().unwrap_or_default())
}

/// The (item, location) balances an order's or return's lines touch (kits exploded), for
/// the availability events.
pub fn touched_by(
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
