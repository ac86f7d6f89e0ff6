//! Commerce use cases over the inventory ledger (`sb_store::inventory`): what a variant has
//! available at each location (kits count in sets), nearest first; and the sweeper that
//! expires checkout holds; availability changes as live events.

pub mod availability;
pub mod live;
pub mod sweeper;

pub use availability::{Availability, LocationAvailability, availability};
