//! Time as epoch milliseconds, read through a trait so tests can move time instead of sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now". Every time written to the database comes from a `Clock`, never from SQL.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
