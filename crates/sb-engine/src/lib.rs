//! Durable jobs and timers on the store.
//!
//! Jobs are rows (see `sb_store::jobs`); workers claim them with a lease, run the handler
//! registered for their kind, and delete them on success or schedule a retry with
//! exponential back-off and jitter, until a job is dead after its last attempt. A crashed
//! process's leases expire and its jobs run again, so handlers are idempotent.
//!
//! Timers are rows too (`sb_store::timers`); the engine keeps an in-memory index of due
//! times, rebuilt from the database at start and refreshed periodically, and fires a due
//! timer by turning it into a job in one transaction.
//!
//! Time comes from [`Time`], so tests move a manual clock instead of sleeping.

mod engine;
mod time;

pub use engine::{Engine, EngineConfig, JobContext, JobError, JobHandler, QueueConfig};
pub use time::{ManualClock, Time};
