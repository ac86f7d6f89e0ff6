//! Outgoing webhooks for integrators, following Standard Webhooks: the event catalogue, the
//! fan-out from the workspace's event log, signed delivery with retries, and the SSRF guard.
//!
//! Arrows: `sb-core` (signing) and `sb-store` (tables) → here → `sb-app` (endpoint use cases)
//! and `sb-server` (runs [`Webhooks::run`]).

pub mod catalogue;
pub mod deliver;
pub mod dispatch;
pub mod guard;

pub use deliver::{Stats, Webhooks};
