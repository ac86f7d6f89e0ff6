//! `switchboard bench events`: Segment batches (`/v1/batch`, 100 calls each, as
//! analytics-python sends them) from concurrent clients against a release server in a child
//! process. A 200 means the batch is durably stored; the figure is events stored per second,
//! with the batch latency, then how fast the batches were processed into profiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use super::ingest::{RssSampler, demo_server, fail, histogram, rss_mb, until_drained};
use crate::config::{Config, ConfigError};

/// perf-limits.md §2 (c'): SQLite group commit with index keys arriving in order, rows/s.
pub const IN_ORDER_GROUP_COMMIT_CEILING: f64 = 226_000.0;
/// The target on this 2-core machine.
pub const TARGET_EVENTS_PER_SEC: f64 = 100_000.0;

#[derive(Debug, Args)]
pub struct EventsBenchArgs {
    /// Events in all.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Distinct users the events come from.
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct EventsFigures {
    pub events: usize,
    pub batch: usize,
    pub clients: usize,
    pub stored_events_per_sec: f64,
    pub batches_per_sec: f64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub failed_requests: u64,
    pub mb_per_sec: f64,
    pub ratio_to_in_order_group_commit: f64,
    pub ratio_to_target: f64,
    /// From the first request until the queue was empty: events resolved onto profiles per second.
    pub processed_events_per_sec: f64,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// The batches' bodies, made before the clock starts (the generator shares the 2 cores).
fn bodies(args: &EventsBenchArgs, write_key: &str) -> Vec<Vec<u8>> {
    let batches = args.events.div_ceil(args.batch.max(1));
    (0..batches)
        .map(|b| {
            let calls: Vec<serde_json::Value> = (0..args.batch)
                .map(|i| {
                    let n = b * args.batch + i;
                    let user = format!("bench-user-{}", n % args.users.max(1));
                    let message_id = format!("bench-{n:09}");
                    match n % 10 {
                        0 => serde_json::json!({"type": "identify", "userId": user, "messageId": message_id,
                            "timestamp": "2026-11-25T10:00:00.000Z",
                            "traits": {"email": format!("{user}@example.com"), "plan": "member"}}),
                        1..=3 => serde_json::json!({"type": "page", "userId": user, "messageId": message_id,
                            "name": "Trail jacket", "timestamp": "2026-11-25T10:00:00.000Z",
                            "properties": {"path": "/p/trail-jacket", "referrer": "https://example.com/"}}),
                        _ => serde_json::json!({"type": "track", "event": "Product Viewed", "userId": user,
                            "messageId": message_id, "timestamp": "2026-11-25T10:00:00.000Z",
                            "properties": {"sku": "JKT-BLU-M", "price": 89.99, "currency": "EUR"},
                            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}}),
                    }
                })
                .collect();
            serde_json::to_vec(
                &serde_json::json!({"batch": calls, "sentAt": "2026-11-25T10:00:01.000Z", "writeKey": write_key}),
            )
            .expect("a JSON object serialises")
        })
        .collect()
}

pub async fn events(config: &Config, args: &EventsBenchArgs) -> Result<(), ConfigError> {
    let (server, base, dir) = demo_server(config, "events").await?;
    let result = run(&base, &dir, server.0.id(), args).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "bench events: {} events in batches of {} from {} clients: {:.0} events/s durably stored ({:.0} batches/s, {:.1} MB/s of JSON); \
         batch latency p50 {:.2} ms, p99 {:.2} ms; {} failed requests; ratio {:.2} to the in-order group-commit ceiling {:.0} rows/s \
         (perf-limits.md §2), {:.2} to the target {:.0}/s",
        f.events,
        f.batch,
        f.clients,
        f.stored_events_per_sec,
        f.batches_per_sec,
        f.mb_per_sec,
        f.batch_p50_ms,
        f.batch_p99_ms,
        f.failed_requests,
        f.ratio_to_in_order_group_commit,
        IN_ORDER_GROUP_COMMIT_CEILING,
        f.ratio_to_target,
        TARGET_EVENTS_PER_SEC
    );
    println!(
        "bench events: processed onto profiles (de-duplication, identity resolution, traits): {:.0} events/s from the first request to an empty queue",
        f.processed_events_per_sec
    );
    println!(
        "bench events: server memory idle {:.1} MB, peak {:.1} MB",
        f.idle_rss_mb, f.peak_rss_mb
    );
    if args.json {
        println!("{}", serde_json::json!({ "bench": "events", "results": f }));
    }
    Ok(())
}

async fn run(
    base: &str,
    dir: &std::path::Path,
    pid: u32,
    args: &EventsBenchArgs,
) -> Result<EventsFigures, ConfigError> {
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(crate::demo::CREDENTIALS_FILE)).map_err(fail)?)
            .map_err(fail)?;
    let token = creds["api_token"]
        .as_str()
        .ok_or_else(|| fail("no api_token"))?
        .to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(fail)?;
    // A source of its own whose rate limit is far above what the machine can take, so the
    // figure is the server's, not the limiter's.
    let source: serde_json::Value = client
        .post(format!("{base}/api/v1/event-sources"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "bench", "events_per_second": 10_000_000}))
        .send()
        .await
        .map_err(fail)?
        .json()
        .await
        .map_err(fail)?;
    let write_key = source["write_key"]
        .as_str()
        .ok_or_else(|| fail("no write key"))?
        .to_owned();
    let auth = write_key.clone();
    let bodies = Arc::new(bodies(args, &write_key));
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_mb = rss_mb(pid);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let sampler = RssSampler::start(pid, idle_rss_mb);
    let url = format!("{base}/v1/batch");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients.max(1) {
        let (client, bodies, next, failed, url, auth) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            failed.clone(),
            url.clone(),
            auth.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(n) else {
                    return hist;
                };
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .basic_auth(&auth, Some(""))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                // Exactly 200 is success to every Segment library.
                if matches!(&sent, Ok(r) if r.status() == reqwest::StatusCode::OK) {
                    hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut batches = histogram();
    for t in tasks {
        batches.add(t.await.map_err(fail)?).map_err(fail)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = batches.len() as usize * args.batch;
    // Wait (bounded) for the processor to empty the queue.
    let stats = format!("{base}/api/v1/event-batches/stats");
    until_drained(&client, &stats, &token, "queued", Duration::from_secs(600)).await?;
    let processed_seconds = started.elapsed().as_secs_f64();
    let peak_rss_mb = sampler.stop().await;
    let stored_events_per_sec = stored as f64 / seconds;
    Ok(EventsFigures {
        events: stored,
        batch: args.batch,
        clients: args.clients,
        stored_events_per_sec,
        batches_per_sec: batches.len() as f64 / seconds,
        batch_p50_ms: batches.value_at_quantile(0.5) as f64 / 1000.0,
        batch_p99_ms: batches.value_at_quantile(0.99) as f64 / 1000.0,
        failed_requests: failed.load(Ordering::Relaxed),
        mb_per_sec: bytes as f64 / seconds / 1e6,
        ratio_to_in_order_group_commit: stored_events_per_sec / IN_ORDER_GROUP_COMMIT_CEILING,
        ratio_to_target: stored_events_per_sec / TARGET_EVENTS_PER_SEC,
        processed_events_per_sec: stored as f64 / processed_seconds,
        idle_rss_mb,
        peak_rss_mb,
    })
}
