//! `switchboard bench …`: each prints figures with units and the ratio to the ceilings
//! measured on this machine kind (`shared/notes/perf-limits.md`); `--json` adds one JSON
//! object on the last line.

pub mod events;
pub mod ingest;
pub mod journeys;
mod raw_http;
pub mod stock;
pub mod store;
pub mod webhooks;

pub use events::{EventsBenchArgs, events};
pub use ingest::{IngestBenchArgs, ingest};
pub use journeys::{JourneysBenchArgs, journeys};
pub use stock::{StockBenchArgs, stock};
pub use store::{StoreBenchArgs, store};
pub use webhooks::{WebhooksBenchArgs, webhooks};
