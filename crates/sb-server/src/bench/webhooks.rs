//! `switchboard bench webhooks`: outgoing webhook deliveries per second to a local receiver
//! (loopback only), through the real path: events in the log → fan-out → batched claims →
//! signed POSTs → batched results. Prints commits per delivery and the ratio to `bench
//! store` measured in the same run on the same disk.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use sb_sql::Db;
use sb_store::Store;
use sb_store::webhooks::NewEndpoint;

use crate::config::{Config, ConfigError};

/// The target on SQLite.
pub const TARGET_DELIVERIES_PER_SEC: f64 = 2_500.0;
/// Most commits a delivery may cost.
pub const MAX_COMMITS_PER_DELIVERY: f64 = 2.0;

#[derive(Debug, Args)]
pub struct WebhooksBenchArgs {
    /// Events to deliver (each to one endpoint).
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct WebhookFigures {
    pub backend: &'static str,
    pub events: u64,
    pub seconds: f64,
    pub deliveries_per_sec: f64,
    pub requests: u64,
    pub distinct_webhook_ids: usize,
    pub dispatch_transactions: u64,
    pub claim_transactions: u64,
    pub result_transactions: u64,
    pub commits_per_delivery: f64,
    pub store_rows_per_sec: f64,
    pub ratio_to_store: f64,
    pub ratio_to_target: f64,
}

fn fail(e: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("the webhooks bench failed: {e}"))
}

async fn open(dir: &std::path::Path, name: &str) -> Result<Db, ConfigError> {
    crate::bench::open_sqlite(dir, name).await.map_err(fail)
}

pub async fn webhooks(config: &Config, args: &WebhooksBenchArgs) -> Result<(), ConfigError> {
    config.prepare_data_dir()?;
    let dir = config.data_dir.join(format!("bench-{}", sb_core::new_id()));
    std::fs::create_dir_all(&dir).map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
    let result = run(&dir, args).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    println!(
        "bench webhooks [{}]: {} events delivered in {:.2} s = {:.0} deliveries/s ({} requests, {} distinct webhook-ids); \
         {:.3} commits per delivery (dispatch {}, claim {}, result {}; limit {MAX_COMMITS_PER_DELIVERY}); \
         bench store (unit of work) in the same run {:.0} rows/s → ratio {:.2}; target {TARGET_DELIVERIES_PER_SEC:.0}/s → ratio {:.2}",
        f.backend,
        f.events,
        f.seconds,
        f.deliveries_per_sec,
        f.requests,
        f.distinct_webhook_ids,
        f.commits_per_delivery,
        f.dispatch_transactions,
        f.claim_transactions,
        f.result_transactions,
        f.store_rows_per_sec,
        f.ratio_to_store,
        f.ratio_to_target,
    );
    if args.json {
        println!("{}", serde_json::json!({ "bench": "webhooks", "results": [f] }));
    }
    Ok(())
}

async fn run(dir: &std::path::Path, args: &WebhooksBenchArgs) -> Result<WebhookFigures, ConfigError> {
    // The baseline on the same disk, minutes apart at most.
    let baseline = crate::bench::store_baseline(dir).await.map_err(fail)?;

    // The receiver: 200 to everything, counting requests and distinct webhook-ids.
    let requests = Arc::new(AtomicU64::new(0));
    let ids: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let (count, seen) = (requests.clone(), ids.clone());
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, _body: axum::body::Bytes| {
            let (count, seen) = (count.clone(), seen.clone());
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    seen.lock().expect("lock").insert(id.to_owned());
                }
                count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(fail)?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(fail)?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });

    // The store with one endpoint and the events in the log, as the product writes them.
    let store = Store::new(open(dir, "webhooks.sqlite").await?, Arc::new(sb_core::SystemClock));
    store.migrate().await.map_err(fail)?;
    let ws = "bench-workspace".to_owned();
    let now = store.now();
    let secret = sb_core::standard_webhooks::generate_secret();
    let (w, u) = (ws.clone(), url.clone());
    store
        .db
        .write(move |c| {
            sb_store::webhooks::create(
                c,
                &NewEndpoint {
                    workspace_id: &w,
                    url: &u,
                    description: "bench",
                    event_types: &["message.created".to_owned()],
                    ordered: false,
                    secret: &secret,
                },
                now,
            )
        })
        .await
        .map_err(fail)?;
    let events = args.events.max(1);
    let mut written = 0;
    while written < events {
        let batch = (events - written).min(1_000);
        let (w, first) = (ws.clone(), written);
        store
            .db
            .write(move |c| {
                let payloads: Vec<serde_json::Value> = (first..first + batch)
                    .map(|n| {
                        serde_json::json!({
                            "id": format!("m-{n}"), "conversation_id": "c-1", "customer_id": "cu-1",
                            "direction": "inbound", "channel": "whatsapp", "body": "Is the blue jacket back in size M?",
                            "status": "received",
                        })
                    })
                    .collect();
                let rows: Vec<(&str, Option<&str>, &serde_json::Value)> =
                    payloads.iter().map(|p| ("message.created", Some("c-1"), p)).collect();
                sb_store::live_events::append_all(c, &w, &rows, now)
            })
            .await
            .map_err(fail)?;
        written += batch;
    }

    // Deliver everything and time it.
    let webhooks = sb_webhooks::Webhooks::new(store.clone(), true);
    let stats = webhooks.stats.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let workers = tokio::spawn(webhooks.run(stopped));
    let deadline = started + Duration::from_secs(args.timeout_secs);
    while stats.succeeded.load(Ordering::Relaxed) < events {
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{} of {events} deliveries recorded after {} s",
                stats.succeeded.load(Ordering::Relaxed),
                args.timeout_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.send_replace(true);
    let _ = workers.await;
    server.abort();
    store.db.close().await;

    let (dispatch, claim, result) = (
        stats.dispatch_transactions.load(Ordering::Relaxed),
        stats.claim_transactions.load(Ordering::Relaxed),
        stats.result_transactions.load(Ordering::Relaxed),
    );
    let deliveries_per_sec = events as f64 / seconds;
    let distinct = ids.lock().expect("lock").len();
    Ok(WebhookFigures {
        backend: "sqlite",
        events,
        seconds,
        deliveries_per_sec,
        requests: requests.load(Ordering::Relaxed),
        distinct_webhook_ids: distinct,
        dispatch_transactions: dispatch,
        claim_transactions: claim,
        result_transactions: result,
        commits_per_delivery: (dispatch + claim + result) as f64 / events as f64,
        store_rows_per_sec: baseline.rows_per_sec,
        ratio_to_store: deliveries_per_sec / baseline.rows_per_sec,
        ratio_to_target: deliveries_per_sec / TARGET_DELIVERIES_PER_SEC,
    })
}
