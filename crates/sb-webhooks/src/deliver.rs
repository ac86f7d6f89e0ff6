//! Delivery: workers claim due deliveries in batches (one transaction), make the signed
//! requests concurrently, and record the attempts and their consequences in batches (one
//! transaction), so a delivery costs well under two commits. At least once: a delivery is
//! `pending` until its result is recorded, and a worker that dies leaves a lease that runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use sb_core::standard_webhooks::{self, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use sb_store::webhooks::{self, Claimed, Next, Outcome};
use sb_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::{dispatch, guard};

/// After the first attempt (immediately): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — Svix's
/// schedule, eight attempts over about 27.5 hours.
pub const RETRY_SCHEDULE_MS: [i64; 7] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
/// An endpoint that has only failed for this long is disabled.
pub const DISABLE_AFTER_MS: i64 = 5 * 86_400_000;
/// Longer than the request timeout, so a lease outlives its request.
const LEASE_MS: i64 = 60_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 256;
/// What is kept of a response body in the log.
const EXCERPT_BYTES: usize = 1_024;
/// What is read of a response body at most.
const READ_LIMIT: usize = 64 * 1024;
/// How long results are gathered before they are written together.
const GATHER: Duration = Duration::from_millis(3);
/// How often the log is looked at when nothing woke the workers.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Counters for the benchmark and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub dispatch_transactions: AtomicU64,
    pub claim_transactions: AtomicU64,
    pub result_transactions: AtomicU64,
    pub attempts: AtomicU64,
    pub succeeded: AtomicU64,
}

/// The running webhook machinery of a process: dispatcher and delivery workers share it with
/// the use cases that queue messages (tests, resends, replays) and wake the workers.
#[derive(Clone)]
pub struct Webhooks {
    pub store: Store,
    pub allow_private: bool,
    pub wake: Arc<Notify>,
    pub stats: Arc<Stats>,
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(store: Store, allow_private: bool) -> Webhooks {
        Webhooks {
            store,
            allow_private,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(Stats::default()),
            client: guard::client(allow_private),
        }
    }

    /// Runs the dispatcher and the delivery workers until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.store.db.backend() == sb_store::Backend::Sqlite {
            match self.store.db.write(webhooks::release_leases).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    deliveries = n,
                    "webhook deliveries in flight at the last stop are sent again"
                ),
                Err(e) => tracing::warn!(error = %e, "could not release webhook leases; they run out by themselves"),
            }
        }
        let dispatcher = {
            let this = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let queued = match dispatch::round(&this.store).await {
                        Ok(round) => {
                            this.stats
                                .dispatch_transactions
                                .fetch_add(round.transactions as u64, Ordering::Relaxed);
                            round.queued
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook dispatch failed; retrying");
                            0
                        }
                    };
                    if queued > 0 {
                        this.wake.notify_one();
                    }
                    let pause = if queued > 0 {
                        Duration::from_millis(5)
                    } else {
                        Duration::from_millis(50)
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            })
        };
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut may_claim = true;
        loop {
            if *stop.borrow() {
                break;
            }
            if may_claim && in_flight.len() < IN_FLIGHT {
                match self.claim(IN_FLIGHT - in_flight.len()).await {
                    Ok(batch) => {
                        may_claim = !batch.is_empty();
                        for claimed in batch {
                            let this = self.clone();
                            in_flight.spawn(async move { this.attempt(claimed).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                        may_claim = false;
                    }
                }
            }
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(outcome) = done {
                        outcomes.push(outcome);
                    }
                    // Results that finish together are written together.
                    let deadline = tokio::time::Instant::now() + GATHER;
                    while outcomes.len() < IN_FLIGHT {
                        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
                            Ok(Some(Ok(outcome))) => outcomes.push(outcome),
                            Ok(Some(Err(_))) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                    self.record(&mut outcomes).await;
                    may_claim = true;
                }
                _ = self.wake.notified() => may_claim = true,
                _ = tokio::time::sleep(IDLE_POLL) => may_claim = true,
                _ = stop.changed() => {}
            }
        }
        // Requests in flight finish and are recorded; what is not leased runs out its lease.
        while let Some(done) = in_flight.join_next().await {
            if let Ok(outcome) = done {
                outcomes.push(outcome);
            }
        }
        self.record(&mut outcomes).await;
        let _ = dispatcher.await;
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let now = self.store.now();
        if !self.store.db.read(move |c| webhooks::any_due(c, now)).await? {
            return Ok(Vec::new());
        }
        let batch = self
            .store
            .db
            .write(move |c| webhooks::claim(c, now, LEASE_MS, limit as i64))
            .await?;
        if !batch.is_empty() {
            self.stats.claim_transactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(batch)
    }

    async fn record(&self, outcomes: &mut Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let batch = std::mem::take(outcomes);
        let n = batch.len() as u64;
        let succeeded = batch.iter().filter(|o| o.next == Next::Succeeded).count() as u64;
        // A failed write is retried: the results are what the receivers already saw.
        for _ in 0..5 {
            let rows = batch.clone();
            match self
                .store
                .db
                .write(move |c| {
                    let disabled = webhooks::record(c, &rows, DISABLE_AFTER_MS)?;
                    for (ws, endpoint_id) in &disabled {
                        announce_disabled(c, ws, endpoint_id, rows.first().map_or(0, |o| o.at))?;
                    }
                    Ok::<_, StoreError>(disabled)
                })
                .await
            {
                Ok(disabled) => {
                    for (ws, endpoint_id) in disabled {
                        tracing::warn!(workspace = %ws, endpoint = %endpoint_id, "webhook endpoint disabled");
                    }
                    self.stats.result_transactions.fetch_add(1, Ordering::Relaxed);
                    self.stats.attempts.fetch_add(n, Ordering::Relaxed);
                    self.stats.succeeded.fetch_add(succeeded, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording webhook attempts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // Left pending with a lease: they are sent again when it runs out (at least once).
        tracing::error!(
            attempts = n,
            "webhook attempts could not be recorded; they will be retried"
        );
    }

    /// One signed request and what it means for the delivery.
    async fn attempt(&self, claimed: Claimed) -> Outcome {
        let at_start = self.store.now();
        let signed_at = at_start.div_euclid(1000);
        let started = Instant::now();
        let result = self.send(&claimed, signed_at).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let at = self.store.now();
        let attempt_number = claimed.attempts + 1;
        let (response_status, response_excerpt, error, next) = match result {
            Ok(reply) => {
                let next = classify(reply.status, reply.retry_after_secs, reply.abort, attempt_number, at);
                (Some(i64::from(reply.status)), Some(reply.excerpt), None, next)
            }
            Err(e) => {
                let next = retry_or_fail(attempt_number, at, e.slow_down);
                (None, None, Some(e.message), next)
            }
        };
        Outcome {
            claimed,
            signed_at,
            response_status,
            response_excerpt,
            error,
            latency_ms,
            at,
            next,
        }
    }

    async fn send(&self, claimed: &Claimed, signed_at: i64) -> Result<Reply, SendFailure> {
        let url = guard::parse(&claimed.url, self.allow_private).map_err(|e| SendFailure {
            message: e.to_string(),
            slow_down: false,
        })?;
        let signature = standard_webhooks::sign(
            &claimed.secrets,
            &claimed.message_id,
            signed_at,
            claimed.body.as_bytes(),
        )
        .map_err(|e| SendFailure {
            message: format!("cannot sign: {e}"),
            slow_down: false,
        })?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(ID_HEADER, &claimed.message_id)
            .header(TIMESTAMP_HEADER, signed_at.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(claimed.body.clone())
            .send()
            .await
            .map_err(|e| SendFailure {
                slow_down: e.is_timeout(),
                message: describe(&e),
            })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after_secs = header("retry-after").and_then(|v| v.trim().parse::<i64>().ok());
        let abort = header("webhook-delivery").is_some_and(|v| v.eq_ignore_ascii_case("abort-message"));
        let mut body = Vec::new();
        let mut response = response;
        while body.len() < READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        Ok(Reply {
            status,
            retry_after_secs,
            abort,
            excerpt: excerpt(&body),
        })
    }
}

struct Reply {
    status: u16,
    retry_after_secs: Option<i64>,
    abort: bool,
    excerpt: String,
}

struct SendFailure {
    message: String,
    /// A timeout: the receiver is overloaded, so the next try waits at least a minute.
    slow_down: bool,
}

/// A transport error as a sentence, with its causes (the guard's refusal is one).
fn describe(e: &reqwest::Error) -> String {
    let mut message = if e.is_timeout() {
        "no answer within 15 s".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message.chars().take(500).collect()
}

fn excerpt(body: &[u8]) -> String {
    let mut end = body.len().min(EXCERPT_BYTES);
    while end > 0 && std::str::from_utf8(&body[..end]).is_err() {
        end -= 1;
    }
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// What a response means: 2xx succeeded; 410 disables the endpoint; `webhook-delivery:
/// abort-message` stops retries; anything else (3xx included) is retried on the schedule,
/// 429/502/503/504 at least a minute later, honouring `Retry-After` up to twice the step.
pub fn classify(status: u16, retry_after_secs: Option<i64>, abort: bool, attempt: i64, now: i64) -> Next {
    if (200..300).contains(&status) {
        return Next::Succeeded;
    }
    if status == 410 {
        return Next::Gone;
    }
    if abort {
        return Next::Failed;
    }
    match retry_or_fail(attempt, now, matches!(status, 429 | 502 | 503 | 504)) {
        Next::RetryAt(at) => {
            let step = at - now;
            let wanted = retry_after_secs.map_or(step, |s| (s.max(0) * 1000).clamp(step, 2 * step));
            Next::RetryAt(now + wanted)
        }
        other => other,
    }
}

/// The next try on the schedule (±20 %), or failed when the schedule is used up.
pub fn retry_or_fail(attempt: i64, now: i64, slow_down: bool) -> Next {
    let Some(step) = usize::try_from(attempt - 1).ok().and_then(|i| RETRY_SCHEDULE_MS.get(i)) else {
        return Next::Failed;
    };
    let jitter = rand::rng().random_range(0.8..1.2);
    let mut delay = (*step as f64 * jitter) as i64;
    if slow_down {
        delay = delay.max(60_000);
    }
    Next::RetryAt(now + delay)
}

/// Tells the workspace's admins an endpoint was disabled: an audit entry and a
/// `webhook.endpoint.disabled` event that the workspace's other endpoints may subscribe to.
fn announce_disabled(c: &mut dyn sb_store::Conn, ws: &str, endpoint_id: &str, now: i64) -> Result<(), StoreError> {
    let Some(endpoint) = webhooks::get(c, ws, endpoint_id)? else {
        return Ok(());
    };
    let after = serde_json::json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "status": endpoint.status,
        "reason": endpoint.disabled_reason,
    });
    sb_store::audit::record(
        c,
        ws,
        &sb_store::audit::Actor::system(),
        &sb_store::audit::Change {
            action: "webhook_endpoint.disabled",
            object_kind: "webhook_endpoint",
            object_id: Some(endpoint_id),
            before: None,
            after: Some(after.clone()),
        },
        now,
    )?;
    sb_store::live_events::append(c, ws, "webhook.endpoint.disabled", None, &after, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_followed_within_twenty_percent_then_gives_up() {
        for (i, step) in RETRY_SCHEDULE_MS.iter().enumerate() {
            for _ in 0..50 {
                let Next::RetryAt(at) = retry_or_fail(i as i64 + 1, 0, false) else {
                    panic!("attempt {} must be retried", i + 1);
                };
                assert!(at >= step * 8 / 10 && at <= step * 12 / 10, "{at} vs {step}");
            }
        }
        assert_eq!(retry_or_fail(8, 0, false), Next::Failed);
    }

    #[test]
    fn responses_are_classified_as_the_standard_says() {
        assert_eq!(classify(200, None, false, 1, 0), Next::Succeeded);
        assert_eq!(classify(204, None, false, 1, 0), Next::Succeeded);
        assert_eq!(classify(410, None, false, 1, 0), Next::Gone);
        assert_eq!(classify(500, None, true, 1, 0), Next::Failed);
        assert!(matches!(classify(301, None, false, 1, 0), Next::RetryAt(_)));
        // Throttled: at least a minute, and Retry-After up to twice the step.
        let Next::RetryAt(at) = classify(429, None, false, 1, 0) else {
            panic!()
        };
        assert!(at >= 60_000);
        let Next::RetryAt(at) = classify(503, Some(100_000), false, 1, 0) else {
            panic!()
        };
        assert!((60_000..=144_000).contains(&at), "{at}");
        assert_eq!(classify(500, None, false, 8, 0), Next::Failed);
    }

    #[test]
    fn excerpts_end_on_a_character() {
        let body = "é".repeat(1000);
        let e = excerpt(body.as_bytes());
        assert!(e.len() <= EXCERPT_BYTES && e.chars().all(|c| c == 'é'));
    }
}
