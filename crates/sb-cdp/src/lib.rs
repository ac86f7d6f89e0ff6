//! Customer data: Segment-compatible event ingestion and its processor.
//!
//! A request is checked (write key, gzip, limits, the envelope), stored as one batch in the
//! same durable write that precedes the 200, and processed later into events on customers'
//! timelines with identity resolution (`sb_store::events`).

pub mod processor;
pub mod segment;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sb_store::event_sources::{self, EventSource};
use sb_store::{Store, StoreError};
use tokio::sync::Notify;

pub use segment::{Endpoint, WireError};

/// A write key's source is read again after this long (a disabled key stops within it).
const SOURCE_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no valid write key: send it as the HTTP Basic user or as `writeKey` in the body")]
    Unauthorized,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("over this source's rate of {per_second} events a second")]
    RateLimited { per_second: i64, retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the client is told on success.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub batch_id: String,
    pub events: usize,
}

type Cached = (Instant, Option<EventSource>);
type Limiter = (i64, Arc<DefaultDirectRateLimiter>);

/// Shared by the HTTP routes and the processor: the wake-up, sources by write key, and each
/// source's rate limiter (kept across re-reads of the source, so its bucket is not refilled).
#[derive(Clone, Default)]
pub struct Ingest {
    notify: Arc<Notify>,
    sources: Arc<Mutex<HashMap<String, Cached>>>,
    limiters: Arc<Mutex<HashMap<String, Limiter>>>,
}

impl Ingest {
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    async fn source(&self, store: &Store, write_key: &str) -> Result<Option<EventSource>, StoreError> {
        let digest = sb_core::credentials::secret_digest(write_key);
        if let Some((at, found)) = self.sources.lock().expect("source cache").get(&digest)
            && at.elapsed() < SOURCE_CACHE_TTL
        {
            return Ok(found.clone());
        }
        let key = digest.clone();
        let found = store.db.read(move |c| event_sources::by_key_digest(c, &key)).await?;
        let mut cache = self.sources.lock().expect("source cache");
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < SOURCE_CACHE_TTL);
        }
        cache.insert(digest, (Instant::now(), found.clone()));
        Ok(found)
    }

    fn limiter(&self, source: &EventSource) -> Arc<DefaultDirectRateLimiter> {
        let mut limiters = self.limiters.lock().expect("limiters");
        match limiters.get(&source.id) {
            Some((rate, limiter)) if *rate == source.events_per_second => limiter.clone(),
            _ => {
                let rate = NonZeroU32::new(source.events_per_second.clamp(1, i64::from(u32::MAX)) as u32)
                    .unwrap_or(NonZeroU32::MIN);
                let limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
                limiters.insert(source.id.clone(), (source.events_per_second, limiter.clone()));
                limiter
            }
        }
    }

    /// Checks and durably stores one request's calls. `basic_key` is the HTTP Basic user.
    pub async fn accept(
        &self,
        store: &Store,
        basic_key: Option<&str>,
        body: &[u8],
        gzip: bool,
        endpoint: Endpoint,
    ) -> Result<Receipt, IngestError> {
        let inflated;
        let body = if gzip {
            inflated = segment::gunzip(body)?;
            &inflated[..]
        } else {
            body
        };
        let received_at = store.now();
        let accepted = segment::parse(body, endpoint, received_at)?;
        let key = basic_key
            .filter(|k| !k.is_empty())
            .or(accepted.write_key.as_deref())
            .ok_or(IngestError::Unauthorized)?;
        let source = self.source(store, key).await?.ok_or(IngestError::Unauthorized)?;
        let n = accepted.events.len();
        if let Some(n) = NonZeroU32::new(n as u32) {
            let limited = match self.limiter(&source).check_n(n) {
                Ok(Ok(())) => None,
                Ok(Err(not_until)) => Some(not_until.wait_time_from(DefaultClock::default().now()).as_secs() + 1),
                // More events in one request than a second's allowance: never fits.
                Err(_) => Some(1),
            };
            if let Some(retry_after_secs) = limited {
                metrics::counter!("switchboard_cdp_rate_limited_total").increment(1);
                return Err(IngestError::RateLimited {
                    per_second: source.events_per_second,
                    retry_after_secs,
                });
            }
        }
        let (ws, source_id, events) = (source.workspace_id.clone(), source.id.clone(), accepted.events);
        let batch_id = if n == 0 {
            String::new()
        } else {
            store
                .db
                .write(move |c| sb_store::events::enqueue_batch(c, &ws, &source_id, &events, received_at))
                .await?
        };
        metrics::counter!("switchboard_cdp_events_accepted_total").increment(n as u64);
        self.notify();
        Ok(Receipt { batch_id, events: n })
    }
}
