//! `switchboard bench ingest`: the real server in a child process (so its memory is its own),
//! driven over HTTP on loopback:
//! 1. signed API-channel messages from concurrent clients, as fast as they are acknowledged
//!    (each acknowledgement means durably stored);
//! 2. a paced phase at `--push-rate` messages/s while `--agents` event streams are open,
//!    measuring the time from the message's commit to its arrival on every stream;
//! 3. resident memory of the server idle and under load.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;

use super::raw_http;
use crate::config::{Config, ConfigError};

/// perf-limits.md §2: durable inserts with SQLite group commit (random-key indexes).
pub const DURABLE_INGEST_CEILING: f64 = 27_400.0;
/// perf-limits.md §1: a webhook endpoint that only parses a 1.5 KB body, 2 cores, generator co-located.
pub const TYPED_WEBHOOK_CEILING: f64 = 50_000.0;
/// Issue targets on this 2-core machine.
pub const TARGET_ACKS_PER_SEC: f64 = 20_000.0;
pub const TARGET_PUSH_P99_MS: f64 = 25.0;
pub const TARGET_IDLE_RSS_MB: f64 = 30.0;

#[derive(Debug, Args)]
pub struct IngestBenchArgs {
    /// Messages in the throughput phase (about 3 s of load; a one-second phase is mostly
    /// warm-up).
    #[arg(long, default_value_t = 60_000)]
    pub messages: usize,
    /// Concurrent HTTP clients in the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Agents' event streams open during the push phase.
    #[arg(long, default_value_t = 50)]
    pub agents: usize,
    /// Messages per second in the push phase.
    #[arg(long, default_value_t = 2_000)]
    pub push_rate: u64,
    /// Length of the push phase in seconds.
    #[arg(long, default_value_t = 5)]
    pub push_seconds: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Which webhook the throughput phase drives: `api` (one signed message per request) or
    /// `whatsapp` (Cloud API envelopes with two messages each, signed X-Hub-Signature-256,
    /// to the demo's WhatsApp account).
    #[arg(long, default_value = "api", value_parser = ["api", "whatsapp"])]
    pub channel: String,
}

#[derive(Debug, serde::Serialize)]
pub struct IngestFigures {
    pub channel: String,
    pub messages: usize,
    pub clients: usize,
    pub acked_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub failed_requests: u64,
    pub ratio_to_durable_ceiling: f64,
    pub ratio_to_target: f64,
    pub requests_per_sec: f64,
    /// Requests/s against a webhook endpoint that only parses its body (perf-limits.md §1).
    pub ratio_requests_to_typed_http_ceiling: f64,
    /// Acknowledged and processed into conversations, from the first request to the last processed.
    pub processed_per_sec: f64,
    pub push_messages: u64,
    pub push_rate: u64,
    pub agents: usize,
    pub push_p50_ms: f64,
    pub push_p99_ms: f64,
    pub push_deliveries: u64,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
}

pub(crate) fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn now_ms() -> i64 {
    sb_core::Clock::now_ms(&sb_core::SystemClock)
}

pub(crate) struct ServerProcess(pub(crate) Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Samples a process's resident memory every 100 ms and keeps the peak.
pub(crate) struct RssSampler {
    peak: Arc<Mutex<f64>>,
    sampling: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32, floor: f64) -> Self {
        let peak = Arc::new(Mutex::new(floor));
        let sampling = Arc::new(AtomicBool::new(true));
        let (p, on) = (peak.clone(), sampling.clone());
        let task = tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                let now = rss_mb(pid);
                {
                    let mut max = p.lock().expect("lock");
                    *max = max.max(now);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak, sampling, task }
    }

    /// Stops sampling; the peak in MB.
    pub(crate) async fn stop(self) -> f64 {
        self.sampling.store(false, Ordering::Relaxed);
        let _ = self.task.await;
        *self.peak.lock().expect("lock")
    }
}

/// Polls `GET {url}` (bounded by `limit`) until its JSON `field` is 0: the server's queue is drained.
pub(crate) async fn until_drained(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    field: &str,
    limit: Duration,
) -> Result<(), ConfigError> {
    let deadline = Instant::now() + limit;
    loop {
        let body: serde_json::Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        if body[field].as_i64() == Some(0) || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn fail(message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("bench ingest: {message}"))
}

/// A release server in a child process on a fresh data directory, started once to create
/// the demo workspace and then again, so its memory is measured without the first start's
/// argon2 hashing (~19 MiB each, which the allocator keeps). Returns the server, its base
/// URL and its data directory (removed by the caller).
pub(crate) async fn demo_server(
    config: &Config,
    name: &str,
) -> Result<(ServerProcess, String, std::path::PathBuf), ConfigError> {
    config.prepare_data_dir()?;
    let dir = config.data_dir.join(format!("bench-{name}-{}", sb_core::new_id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(fail)?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let exe = std::env::current_exe().map_err(fail)?;
    let spawn = || {
        Command::new(&exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&dir)
            .env_remove("SWITCHBOARD_DATABASE_URL")
            .env_remove("SWITCHBOARD_NATS_URL")
            .env_remove("SWITCHBOARD_CONFIG")
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(ServerProcess)
            .map_err(fail)
    };
    let seeding = spawn()?;
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await?;
    drop(seeding);
    let server = spawn()?;
    wait_ready(&client, &base).await?;
    Ok((server, base, dir))
}

pub async fn ingest(config: &Config, args: &IngestBenchArgs) -> Result<(), ConfigError> {
    let (server, base, dir) = demo_server(config, "ingest").await?;
    let result = run(&base, &dir, server.0.id(), args).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    print(&figures, args.json);
    Ok(())
}

fn print(f: &IngestFigures, json: bool) {
    println!(
        "bench ingest: {} signed messages from {} clients: {:.0} acknowledged (durably stored) msgs/s; ack latency p50 {:.2} ms, p99 {:.2} ms; {} failed requests; \
         ratio {:.2} to the durable-insert ceiling {:.0}/s (perf-limits.md §2), {:.2} to the target {:.0}/s",
        f.messages,
        f.clients,
        f.acked_per_sec,
        f.ack_p50_ms,
        f.ack_p99_ms,
        f.failed_requests,
        f.ratio_to_durable_ceiling,
        DURABLE_INGEST_CEILING,
        f.ratio_to_target,
        TARGET_ACKS_PER_SEC
    );
    println!(
        "bench ingest: channel {}: {:.0} webhook requests/s ({:.2} of the ~{:.0}/s typed-parse webhook ceiling, perf-limits.md §1)",
        f.channel, f.requests_per_sec, f.ratio_requests_to_typed_http_ceiling, TYPED_WEBHOOK_CEILING
    );
    println!(
        "bench ingest: processed into conversations (customer, conversation, message, live events): {:.0} msgs/s over the same {} messages",
        f.processed_per_sec, f.messages
    );
    println!(
        "bench ingest: push: {} messages at {}/s to {} agent streams ({} deliveries): stored → on the stream p50 {:.2} ms, p99 {:.2} ms (target p99 ≤ {:.0} ms → ratio {:.2})",
        f.push_messages,
        f.push_rate,
        f.agents,
        f.push_deliveries,
        f.push_p50_ms,
        f.push_p99_ms,
        TARGET_PUSH_P99_MS,
        f.push_p99_ms / TARGET_PUSH_P99_MS
    );
    println!(
        "bench ingest: server memory: idle {:.1} MB, peak under load {:.1} MB (target idle ≤ {:.0} MB → ratio {:.2})",
        f.idle_rss_mb,
        f.peak_rss_mb,
        TARGET_IDLE_RSS_MB,
        f.idle_rss_mb / TARGET_IDLE_RSS_MB
    );
    if json {
        println!("{}", serde_json::json!({ "bench": "ingest", "results": f }));
    }
}

struct Target {
    client: reqwest::Client,
    hook: String,
    secret: String,
    whatsapp: Option<(String, String)>,
}

impl Target {
    /// A WhatsApp envelope with messages `2n` and `2n + 1` and its signature, as Meta signs.
    fn whatsapp_request(&self, n: u64) -> Option<(Vec<u8>, String)> {
        use hmac::{KeyInit, Mac};
        let (_, app_secret) = self.whatsapp.as_ref()?;
        let message = |k: u64| {
            serde_json::json!({
                "from": format!("3460{:07}", k % 2_000), "id": format!("wamid.BENCH{k}"),
                "timestamp": (now_ms() / 1000).to_string(), "type": "text",
                "text": {"body": format!("bench message {k}: hola, \u{bf}tienen la talla M?")}
            })
        };
        let contacts: Vec<serde_json::Value> = [2 * n, 2 * n + 1]
            .iter()
            .map(|k| serde_json::json!({"profile": {"name": "Bench"}, "wa_id": format!("3460{:07}", k % 2_000)}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "880000000000001", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "990000000000001"},
                "contacts": contacts,
                "messages": [message(2 * n), message(2 * n + 1)]
            }}]}]
        }))
        .expect("a JSON object serialises");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
        mac.update(&body);
        Some((body, format!("sha256={}", hex::encode(mac.finalize().into_bytes()))))
    }

    /// One API-channel message and its signature.
    fn api_request(&self, n: u64) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "message",
            "id": format!("bench-{n}"),
            "from": {"id": format!("customer-{}", n % 2_000)},
            "text": format!("bench message {n}: hello, is the blue jacket in stock in size M?"),
        }))
        .expect("a JSON object serialises");
        let signature = sb_channels::signing::sign(&self.secret, now_ms() / 1000, &body);
        (body, signature)
    }

    /// Request `n` of the throughput phase as bytes on the wire, signed now (well within the
    /// API channel's five minutes).
    fn prepared(&self, n: u64, whatsapp: bool) -> Vec<u8> {
        let (url, header, (body, signature)) = if whatsapp {
            let (hook, _) = self.whatsapp.as_ref().expect("checked before");
            (
                hook.as_str(),
                "x-hub-signature-256",
                self.whatsapp_request(n).expect("checked before"),
            )
        } else {
            (self.hook.as_str(), sb_channels::signing::HEADER, self.api_request(n))
        };
        let (host, path) = raw_http::split_url(url).expect("an http:// URL");
        raw_http::post_request(host, path, &[(header, &signature)], &body)
    }

    /// Posts one signed message; returns whether it was acknowledged.
    async fn post(&self, n: u64) -> bool {
        let (body, signature) = self.api_request(n);
        let sent = self
            .client
            .post(&self.hook)
            .header("content-type", "application/json")
            .header(sb_channels::signing::HEADER, signature)
            .body(body)
            .send()
            .await;
        matches!(sent, Ok(r) if r.status().is_success())
    }
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) -> Result<(), ConfigError> {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(fail("the server did not become ready"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(
    base: &str,
    dir: &std::path::Path,
    pid: u32,
    args: &IngestBenchArgs,
) -> Result<IngestFigures, ConfigError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(fail)?;
    wait_ready(&client, base).await?;
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(crate::demo::CREDENTIALS_FILE)).map_err(fail)?)
            .map_err(fail)?;
    let token = creds["api_token"]
        .as_str()
        .ok_or_else(|| fail("no api_token"))?
        .to_owned();
    let target = Arc::new(Target {
        client: client.clone(),
        hook: creds["channels"]["api"]["inbound_url"]
            .as_str()
            .ok_or_else(|| fail("no API channel"))?
            .to_owned(),
        secret: creds["channels"]["api"]["secret"]
            .as_str()
            .ok_or_else(|| fail("no API secret"))?
            .to_owned(),
        whatsapp: creds["channels"]["whatsapp"]["webhook_url"]
            .as_str()
            .zip(creds["channels"]["whatsapp"]["app_secret"].as_str())
            .map(|(h, s)| (h.to_owned(), s.to_owned())),
    });
    let whatsapp = args.channel == "whatsapp";
    if whatsapp && target.whatsapp.is_none() {
        return Err(fail("the demo has no WhatsApp account"));
    }
    // Messages per request in the throughput phase.
    let per_request: u64 = if whatsapp { 2 } else { 1 };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_mb = rss_mb(pid);
    let sampler = RssSampler::start(pid, idle_rss_mb);

    // Phase 1: acknowledged throughput, every request prepared before the clock starts.
    let total = args.messages as u64 / per_request;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new((0..total).map(|n| target.prepared(n, whatsapp)).collect());
    let (host, _) = raw_http::split_url(base).ok_or_else(|| fail("the server's URL is not http://"))?;
    let mut connections = Vec::with_capacity(args.clients.max(1));
    for _ in 0..args.clients.max(1) {
        connections.push(raw_http::RawConnection::connect(host).await.map_err(fail)?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut connection in connections {
        let (requests, next, failed) = (requests.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return hist;
                }
                let t = Instant::now();
                match connection.round_trip(&requests[n as usize]).await {
                    Ok(status) if (200..300).contains(&status) => {
                        hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                    }
                    Ok(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        // The connection is gone: count the rest of this client's share as failed.
                        failed.fetch_add(1, Ordering::Relaxed);
                        return hist;
                    }
                }
            }
        }));
    }
    let mut acks = histogram();
    for t in tasks {
        acks.add(t.await.map_err(fail)?).map_err(fail)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Acknowledged messages (a WhatsApp request carries two).
    let acked_per_sec = (acks.len() * per_request) as f64 / seconds;
    let requests_per_sec = acks.len() as f64 / seconds;
    let processing_started = Instant::now();

    // Let processing of phase 1 finish before measuring push latency.
    let stats = format!("{base}/api/v1/inbound-requests/stats");
    until_drained(&client, &stats, &token, "unprocessed", Duration::from_secs(300)).await?;

    let processed_per_sec = (total * per_request) as f64 / (seconds + processing_started.elapsed().as_secs_f64());

    // Phase 2: push latency at a paced rate to many open streams.
    let latencies = Arc::new(Mutex::new(histogram()));
    let deliveries = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..args.agents {
        let response = client
            .get(format!("{base}/api/v1/events"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(fail)?;
        let (latencies, deliveries) = (latencies.clone(), deliveries.clone());
        streams.push(tokio::spawn(read_stream(response, latencies, deliveries)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let push_total = args.push_rate * args.push_seconds;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (args.push_rate / 100).max(1);
    let mut sent = 0;
    let mut inflight = Vec::new();
    while sent < push_total {
        ticker.tick().await;
        for _ in 0..per_tick.min(push_total - sent) {
            let target = target.clone();
            let n = total + sent;
            inflight.push(tokio::spawn(async move { target.post(n).await }));
            sent += 1;
        }
    }
    for t in inflight {
        if !t.await.unwrap_or(false) {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let expected = push_total as usize * args.agents;
    let wait = Instant::now();
    while deliveries.load(Ordering::Relaxed) < expected && wait.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in streams {
        s.abort();
    }
    let peak_rss_mb = sampler.stop().await;
    let push = latencies.lock().expect("lock").clone();
    Ok(IngestFigures {
        channel: args.channel.clone(),
        messages: (total * per_request) as usize,
        clients: args.clients,
        requests_per_sec,
        ratio_requests_to_typed_http_ceiling: requests_per_sec / TYPED_WEBHOOK_CEILING,
        acked_per_sec,
        ack_p50_ms: acks.value_at_quantile(0.5) as f64 / 1000.0,
        ack_p99_ms: acks.value_at_quantile(0.99) as f64 / 1000.0,
        failed_requests: failed.load(Ordering::Relaxed),
        ratio_to_durable_ceiling: acked_per_sec / DURABLE_INGEST_CEILING,
        ratio_to_target: acked_per_sec / TARGET_ACKS_PER_SEC,
        processed_per_sec,
        push_messages: push_total,
        push_rate: args.push_rate,
        agents: args.agents,
        push_p50_ms: push.value_at_quantile(0.5) as f64 / 1000.0,
        push_p99_ms: push.value_at_quantile(0.99) as f64 / 1000.0,
        push_deliveries: push.len(),
        idle_rss_mb,
        peak_rss_mb,
    })
}

/// Reads one agent's event stream and records, for each new message, the time from its
/// commit (`occurred_at_ms`) to its arrival here. The load generator shares the 2 cores with
/// the server it measures, so frames are split on bytes (no UTF-8 copy, no per-frame buffer
/// shift) and only a `message.created` frame's commit time is read.
async fn read_stream(
    mut response: reqwest::Response,
    latencies: Arc<Mutex<Histogram<u64>>>,
    deliveries: Arc<AtomicUsize>,
) {
    let frame_end = memchr::memmem::Finder::new(b"\n\n");
    let stamp = memchr::memmem::Finder::new(b"\"occurred_at_ms\":");
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut local = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let arrived = now_ms();
        buffer.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = frame_end.find(&buffer[start..]) {
            let frame = &buffer[start..start + end];
            start += end + 2;
            if memchr::memmem::find(frame, b"\nevent: message.created").is_none()
                && !frame.starts_with(b"event: message.created")
            {
                continue;
            }
            let at = stamp.find(frame).and_then(|i| {
                let digits = &frame[i + b"\"occurred_at_ms\":".len()..];
                let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
                std::str::from_utf8(&digits[..n]).ok()?.parse::<i64>().ok()
            });
            if let Some(at) = at {
                local.push(((arrived - at).max(0) as u64 * 1000).max(1));
            }
        }
        buffer.drain(..start);
        if !local.is_empty() {
            let mut histogram = latencies.lock().expect("lock");
            for micros in local.drain(..) {
                histogram.record(micros).ok();
                deliveries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
