//! Switchboard's domain: types and rules with no IO and no async runtime.
//!
//! Everything here is plain data and pure functions so that it can be tested
//! quickly and reused by the store, the engine and the web layer alike.

pub mod access;
pub mod cdp;
pub mod clock;
pub mod consent;
pub mod credentials;
pub mod identity;
pub mod ids;
pub mod inbox;
pub mod inventory;
pub mod journey;
pub mod routing;
pub mod sms;
pub mod standard_webhooks;

pub use access::{Permission, Role};
pub use clock::{Clock, SystemClock};
pub use ids::new_id;
