//! The engine's clock: the wall clock, or a manual one that tests move.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sb_core::{Clock, SystemClock};
use tokio::sync::watch;

#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    changed: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicI64::new(start_ms),
            changed: watch::channel(start_ms).0,
        })
    }

    pub fn advance(&self, ms: i64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.changed.send_replace(now);
    }

    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
        self.changed.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub enum Time {
    System,
    Manual(Arc<ManualClock>),
}

impl Time {
    pub fn now_ms(&self) -> i64 {
        match self {
            Time::System => SystemClock.now_ms(),
            Time::Manual(m) => m.now_ms(),
        }
    }

    /// The same clock as an `Arc<dyn Clock>` for the store.
    pub fn clock(&self) -> Arc<dyn Clock> {
        match self {
            Time::System => Arc::new(SystemClock),
            Time::Manual(m) => m.clone(),
        }
    }

    /// Resolves once the clock reads at least `deadline_ms`.
    pub async fn sleep_until(&self, deadline_ms: i64) {
        match self {
            Time::System => {
                let wait = deadline_ms - self.now_ms();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
            }
            Time::Manual(m) => {
                let mut rx = m.changed.subscribe();
                while m.now_ms() < deadline_ms {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
