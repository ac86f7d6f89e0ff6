//! A controllable wall clock shared by a simulator and the test that drives it.
//!
//! Every time-based rule of the simulators (24 h service windows, 7-day
//! HUMAN_AGENT tags, rate buckets, media URL expiry, webhook timestamps) reads
//! this clock, so a test can jump a day ahead in a millisecond. The clock keeps
//! ticking with real time between jumps unless it was made with
//! [`SimClock::fixed`].

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall clock in milliseconds since the Unix epoch; cheap to clone (clones share the same time).
#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Clock reading at `anchor`.
    base_ms: i64,
    anchor: Instant,
    ticking: bool,
}

impl SimClock {
    /// A clock that starts at the real current time and ticks with real time.
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self::build(now, true)
    }

    /// A clock frozen at `ms`: it only moves through [`advance`](Self::advance) and [`set`](Self::set).
    pub fn fixed(ms: i64) -> Self {
        Self::build(ms, false)
    }

    fn build(base_ms: i64, ticking: bool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                base_ms,
                anchor: Instant::now(),
                ticking,
            })),
        }
    }

    /// Current reading in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.read()
    }

    /// Current reading in whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock by `ms` (negative moves it back).
    pub fn advance(&self, ms: i64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = s.read();
        s.base_ms = now.saturating_add(ms);
        s.anchor = Instant::now();
    }

    /// Sets the clock to `ms` since the Unix epoch.
    pub fn set(&self, ms: i64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.base_ms = ms;
        s.anchor = Instant::now();
    }
}

impl State {
    fn read(&self) -> i64 {
        if self.ticking {
            self.base_ms.saturating_add(self.anchor.elapsed().as_millis() as i64)
        } else {
            self.base_ms
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_near_real_time_and_moves() {
        let c = SimClock::new();
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((c.now_ms() - real).abs() < 1_000);
        let before = c.now_ms();
        c.advance(86_400_000);
        assert!(c.now_ms() >= before + 86_400_000);
        c.set(1_767_225_600_000);
        let n = c.now_ms();
        assert!((1_767_225_600_000..1_767_225_601_000).contains(&n));
        let shared = c.clone();
        shared.advance(1_000);
        assert!(c.now_ms() >= n + 1_000);
    }

    #[test]
    fn fixed_clock_does_not_tick() {
        let c = SimClock::fixed(42);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.now_ms(), 42);
        c.advance(8);
        assert_eq!(c.now_ms(), 50);
        assert_eq!(SimClock::fixed(1_999).now_secs(), 1);
    }
}
