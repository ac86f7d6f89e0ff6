//! Outgoing webhooks as an integrator receives them: a receiver in Python verifies every
//! request with the official Standard Webhooks library from PyPI (`standardwebhooks`), not
//! with our code; retries follow the schedule on a manual clock; the SSRF guard refuses
//! loopback unless the instance allows it; kill -9 during deliveries loses none.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, code};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/support/webhook_receiver.py");

/// The Python receiver: one JSON line per request it got.
struct PyReceiver {
    child: Child,
    base: String,
    records: Arc<Mutex<Vec<Value>>>,
}

impl PyReceiver {
    /// `None` (and the test skips, saying why) when Python's `standardwebhooks` is missing
    /// outside CI; in CI (`.ci/run` installs it) a missing library fails the test.
    fn start() -> Option<PyReceiver> {
        let available = Command::new("python3")
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(
                std::env::var_os("CI").is_none(),
                "python3 with standardwebhooks is required in CI"
            );
            println!("skipped: python3 -m pip install standardwebhooks");
            return None;
        }
        let mut child = Command::new("python3")
            .arg(RECEIVER)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("a first line").expect("read");
        let port = ready.strip_prefix("READY ").expect("READY <port>").to_owned();
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("lock").push(v);
                }
            }
        });
        Some(PyReceiver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            records,
        })
    }

    async fn secrets(&self, secrets: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/secrets", self.base))
            .json(&secrets)
            .send()
            .await
            .expect("set secrets");
        assert!(r.status().is_success());
    }

    fn records(&self) -> Vec<Value> {
        self.records.lock().expect("lock").clone()
    }

    /// Waits (bounded) until `n` records match `keep`; returns them.
    async fn until(&self, n: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let found: Vec<Value> = self.records().into_iter().filter(|r| keep(r)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the receiver got {} of {n} expected requests; all: {:?}",
                found.len(),
                self.records()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_endpoint(s: &TestServer, url: &str, types: &[&str]) -> (String, String) {
    let (status, body) = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_token,
            json!({"url": url, "description": "integration", "event_types": types}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().expect("id").to_owned(), secret)
}

async fn send_test(s: &TestServer, endpoint: &str) -> String {
    let (status, body) = s
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint}/test"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["message_id"].as_str().expect("message id").to_owned()
}

/// Events of the domain arrive signed; the official library verifies them and rejects a
/// tampered byte and a forged timestamp; rotation keeps both secrets valid for the overlap
/// and then only the new one; the API channel signs its messages the same way on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_verify_with_the_standard_library_of_another_language() {
    let Some(rcv) = PyReceiver::start() else { return };
    let s = TestServer::start_with(|c| c.webhooks_allow_private_networks = true).await;
    let (endpoint, secret) = create_endpoint(
        &s,
        &format!("{}/ok", rcv.base),
        &["message.created", "customer.created", "webhook.test"],
    )
    .await;
    rcv.secrets(json!({ "current": secret })).await;

    // A test event: verified, and its id is the body's id.
    let test_id = send_test(&s, &endpoint).await;
    let got = rcv.until(1, |r| r["id"] == test_id.as_str()).await;
    let r = &got[0];
    assert_eq!(r["verified_with"], json!(["current"]), "{r}");
    assert_eq!(r["tampered_rejected"], true);
    assert_eq!(r["forged_timestamp_rejected"], true);
    assert_eq!(r["body"]["type"], "webhook.test");
    assert_eq!(r["body"]["id"], test_id.as_str());

    // A message from a new customer: customer.created, then message.created with the text;
    // conversation.updated is not subscribed and does not come.
    let shop = s.api_account("shop app", "http://127.0.0.1:9/unused").await;
    let inbound = json!({"type": "message", "id": "w-1", "from": {"id": "u-77", "email": "lea@example.com"}, "text": "Is the blue jacket back?"});
    assert_eq!(s.deliver(&shop, &inbound).await.0, StatusCode::OK);
    let created = rcv.until(1, |r| r["body"]["type"] == "message.created").await;
    let m = &created[0];
    assert_eq!(m["verified_with"], json!(["current"]));
    assert_eq!(m["body"]["data"]["body"], "Is the blue jacket back?");
    assert_eq!(m["id"], m["body"]["id"], "webhook-id is the body's id");
    let customer = m["body"]["data"]["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();
    let born = rcv.until(1, |r| r["body"]["type"] == "customer.created").await;
    assert_eq!(born[0]["body"]["data"]["id"], customer.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rcv.records()
            .iter()
            .all(|r| r["body"]["type"] != "conversation.updated"),
        "only subscribed types are sent"
    );
    assert!(
        rcv.records().iter().all(|r| r["status"] == 200),
        "each event once, no retries"
    );

    // Rotation: during the overlap both secrets verify; with no overlap only the new one.
    let (status, rotated) = s
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            &s.admin_token,
            json!({"keep_previous_secs": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(second, secret);
    rcv.secrets(json!({ "old": secret, "new": second })).await;
    let during = send_test(&s, &endpoint).await;
    let got = rcv.until(1, |r| r["id"] == during.as_str()).await;
    let mut both: Vec<&str> = got[0]["verified_with"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    both.sort_unstable();
    assert_eq!(both, ["new", "old"], "{}", got[0]);
    let (_, rotated) = s
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            &s.admin_token,
            json!({"keep_previous_secs": 0}),
        )
        .await;
    let third = rotated["secret"].as_str().expect("newest secret").to_owned();
    rcv.secrets(json!({ "rotated_out": second, "newest": third })).await;
    let after = send_test(&s, &endpoint).await;
    let got = rcv.until(1, |r| r["id"] == after.as_str()).await;
    assert_eq!(got[0]["verified_with"], json!(["newest"]), "{}", got[0]);
    assert!(
        got[0]["errors"]["rotated_out"].is_string(),
        "a rotated-out secret fails"
    );

    // The log: every attempt with its answer and latency; deliveries by message.
    let (_, log) = s
        .get(
            &format!("/api/v1/webhook-endpoints/{endpoint}/attempts?message_id={test_id}"),
            &s.admin_token,
        )
        .await;
    let attempt = &log["items"][0];
    assert_eq!(attempt["response_status"], 200, "{log}");
    assert_eq!(attempt["response_excerpt"], "received");
    assert_eq!(attempt["url"], format!("{}/ok", rcv.base));
    assert!(attempt["latency_ms"].as_i64().is_some());
    let (status, message) = s
        .get(
            &format!("/api/v1/webhook-endpoints/{endpoint}/messages/{test_id}"),
            &s.admin_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["body"], r["body"], "the body as it was received");
    let raw: Value = serde_json::from_str(message["raw_body"].as_str().expect("raw body")).expect("json");
    assert_eq!(raw, r["body"]);
    assert_eq!(message["attempts"][0]["response_status"], 200);
    // The last answers may still be on their way into the log: wait for all five.
    s.until(
        &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries?status=succeeded"),
        |d| d["items"].as_array().is_some_and(|a| a.len() >= 5),
    )
    .await;

    // The API channel's outbound messages, signed as Standard Webhooks on request.
    let (status, account) = s
        .post(
            "/api/v1/channel-accounts",
            &s.admin_token,
            json!({"channel": "api", "name": "signed app",
                   "settings": {"webhook_url": format!("{}/ok", rcv.base), "signature_scheme": "standard_webhooks"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let api_secret = account["secrets"]["secret"].as_str().expect("secret").to_owned();
    rcv.secrets(json!({ "api": api_secret })).await;
    let app = crate::harness::ApiAccount {
        id: account["id"].as_str().expect("id").to_owned(),
        secret: api_secret.clone(),
        hook: account["webhook_url"].as_str().expect("hook").to_owned(),
    };
    let inbound = json!({"type": "message", "id": "w-2", "from": {"id": "u-78"}, "text": "hello"});
    assert_eq!(s.deliver(&app, &inbound).await.0, StatusCode::OK);
    let conversation = s
        .until("/api/v1/conversations", |b| {
            b["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["last_inbound_account_id"] == app.id.as_str()))
        })
        .await["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["last_inbound_account_id"] == app.id.as_str())
        .expect("conversation")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, reply) = s
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &s.admin_token,
            json!({"text": "Hi! Yes, it is."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let sent = rcv.until(1, |r| r["body"]["text"] == "Hi! Yes, it is.").await;
    assert_eq!(sent[0]["verified_with"], json!(["api"]), "{}", sent[0]);
    assert_eq!(
        sent[0]["id"], sent[0]["body"]["message_id"],
        "webhook-id is the message id"
    );
}

/// A receiver that fails three times then answers 200 gets the event once per attempt, on
/// the schedule (5 s, 5 min, 30 min, ±20 %), and the log shows each attempt. A timestamp 10
/// minutes old is refused by the library though the signature is genuine. 410 disables an
/// endpoint; five days of failures disable one, audited; a replay sends what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_schedule_and_failing_endpoints_are_disabled() {
    let Some(rcv) = PyReceiver::start() else { return };
    let real_now = sb_core::Clock::now_ms(&sb_core::SystemClock);
    let clock = sb_engine::ManualClock::new(real_now - 600_000);
    let s = TestServer::start_at(sb_engine::Time::Manual(clock.clone()), |c| {
        c.webhooks_allow_private_networks = true
    })
    .await;
    let (endpoint, secret) = create_endpoint(&s, &format!("{}/fail/3", rcv.base), &["webhook.test"]).await;
    rcv.secrets(json!({ "current": secret })).await;
    let id = send_test(&s, &endpoint).await;
    let mine = |r: &Value| r["id"] == id.as_str();

    let first = rcv.until(1, mine).await;
    assert_eq!(first[0]["status"], 500);
    assert_eq!(first[0]["signature_matches"], json!(["current"]), "a genuine signature");
    assert_eq!(first[0]["verified_with"], json!([]), "but 10 minutes old");
    let why = first[0]["errors"]["current"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(why.contains("too old"), "{why}");

    // Each retry waits for its step of the schedule, and not less.
    for (advance_ms, attempt) in [(7_000, 2), (366_000, 3), (2_166_000, 4)] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rcv.until(0, mine).await.len(), attempt - 1, "no retry before its time");
        clock.advance(advance_ms);
        let got = rcv.until(attempt, mine).await;
        assert_eq!(got[attempt - 1]["status"], if attempt == 4 { 200 } else { 500 });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rcv.until(0, mine).await.len(), 4, "delivered: no more attempts");
    let (_, log) = s
        .get(
            &format!("/api/v1/webhook-endpoints/{endpoint}/attempts?message_id={id}"),
            &s.admin_token,
        )
        .await;
    let statuses: Vec<i64> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .rev()
        .map(|a| a["response_status"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200], "{log}");
    let (_, deliveries) = s
        .get(
            &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries"),
            &s.admin_token,
        )
        .await;
    assert_eq!(deliveries["items"][0]["status"], "succeeded");
    assert_eq!(deliveries["items"][0]["attempts"], 4);

    // 410 Gone disables the endpoint at once.
    let (gone, _) = create_endpoint(&s, &format!("{}/gone", rcv.base), &["webhook.test"]).await;
    send_test(&s, &gone).await;
    let disabled = s
        .until(&format!("/api/v1/webhook-endpoints/{gone}"), |b| {
            b["status"] == "failing"
        })
        .await;
    assert!(disabled["disabled_reason"].as_str().unwrap_or_default().contains("410"));

    // Five days of nothing but failures disable an endpoint, with a notice in the audit log.
    let (failing, _) = create_endpoint(&s, &format!("{}/fail/1000", rcv.base), &["webhook.test"]).await;
    let first_failure = send_test(&s, &failing).await;
    rcv.until(1, |r| r["id"] == first_failure.as_str()).await;
    s.until(&format!("/api/v1/webhook-endpoints/{failing}"), |b| {
        b["failing_since"].is_string()
    })
    .await;
    clock.advance(5 * 86_400_000 + 60_000);
    // The first event's retry, due now, fails and disables the endpoint (the test event sent
    // now may not even be tried before).
    let later = send_test(&s, &failing).await;
    let disabled = s
        .until(&format!("/api/v1/webhook-endpoints/{failing}"), |b| {
            b["status"] == "failing"
        })
        .await;
    assert!(disabled["failing_since"].is_string());
    let audit = s
        .until("/api/v1/audit", |b| {
            b["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["action"] == "webhook_endpoint.disabled"))
        })
        .await;
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| { e["action"] == "webhook_endpoint.disabled" && e["object_id"] == failing.as_str() })
    );

    // Fixed, enabled again and replayed: what failed arrives, with the same webhook-ids.
    let (status, _) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/webhook-endpoints/{failing}"),
            Some(&s.admin_token),
            Some(json!({"url": format!("{}/ok", rcv.base), "enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let since = sb_core::clock::rfc3339(real_now - 3_600_000);
    let (status, replayed) = s
        .post(
            &format!("/api/v1/webhook-endpoints/{failing}/replay"),
            &s.admin_token,
            json!({ "since": since }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["queued"], 2, "{replayed}");
    for missed in [&first_failure, &later] {
        let got = rcv.until(1, |r| r["id"] == missed.as_str() && r["path"] == "/ok").await;
        assert_eq!(got[0]["status"], 200);
    }
    // A manual resend sends one message again, with the same id.
    let (status, _) = s
        .post(
            &format!("/api/v1/webhook-endpoints/{failing}/messages/{later}/resend"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    rcv.until(2, |r| r["id"] == later.as_str() && r["path"] == "/ok").await;
}

/// The SSRF guard: loopback, private, link-local and metadata addresses are refused unless
/// the instance allows private networks for development; bad input is refused with a code.
#[tokio::test]
async fn endpoints_on_private_addresses_are_refused_unless_allowed() {
    let s = TestServer::start().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost:9000/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let (status, body) = s
            .post(
                "/api/v1/webhook-endpoints",
                &s.admin_token,
                json!({"url": url, "event_types": ["message.created"]}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "webhook_address_not_allowed"),
            "{url}: {body}"
        );
    }
    for (body, expected) in [
        (
            json!({"url": "ftp://example.com/x", "event_types": ["message.created"]}),
            "invalid_webhook_endpoint",
        ),
        (
            json!({"url": "https://example.com/x", "event_types": []}),
            "invalid_webhook_endpoint",
        ),
        (
            json!({"url": "https://example.com/x", "event_types": ["message.exploded"]}),
            "unknown_event_type",
        ),
    ] {
        let (status, answer) = s.post("/api/v1/webhook-endpoints", &s.admin_token, body).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, expected),
            "{answer}"
        );
    }
    let (_, list) = s.get("/api/v1/webhook-endpoints", &s.admin_token).await;
    assert_eq!(list["items"], json!([]), "nothing was created");

    let allowed = TestServer::start_with(|c| c.webhooks_allow_private_networks = true).await;
    let (status, body) = allowed
        .post(
            "/api/v1/webhook-endpoints",
            &allowed.admin_token,
            json!({"url": "http://127.0.0.1:9000/hook", "event_types": ["message.created"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// kill -9 while deliveries are in flight: after a restart every event reaches the receiver
/// (at least once; de-duplicated on `webhook-id`, each exactly one event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_deliveries_loses_none() {
    const EVENTS: usize = 600;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let text = v["data"]["body"].as_str().unwrap_or("").to_owned();
                // A slow receiver keeps deliveries in flight when the server dies.
                tokio::time::sleep(Duration::from_millis(5)).await;
                sink.lock().expect("lock").push((id, text));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let spawn = || crate::nothing_lost::spawn_with(&data, port, &["--webhooks-allow-private-networks"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ready =
        |client: reqwest::Client, base: String| async move { crate::nothing_lost::wait_ready(&client, &base).await };
    let mut server = spawn();
    ready(client.clone(), base.clone()).await;
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-credentials.json")).expect("credentials"))
            .expect("json");
    let token = creds["api_token"].as_str().expect("token").to_owned();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let endpoint: Value = post(
        "/api/v1/webhook-endpoints",
        json!({"url": hook, "event_types": ["message.created"]}),
    )
    .await
    .expect("create endpoint")
    .json()
    .await
    .expect("json");
    assert!(endpoint["id"].is_string(), "{endpoint}");
    let account: Value = post(
        "/api/v1/channel-accounts",
        json!({"channel": "api", "name": "load", "settings": {"webhook_url": "http://127.0.0.1:9/unused"}}),
    )
    .await
    .expect("create account")
    .json()
    .await
    .expect("json");
    let inbound_hook = account["webhook_url"].as_str().expect("hook").to_owned();
    let secret = account["secrets"]["secret"].as_str().expect("secret").to_owned();
    let send = |n: usize| {
        let body = serde_json::to_vec(&json!({
            "type": "message", "id": format!("k-{n}"), "from": {"id": format!("c-{}", n % 50)}, "text": format!("event {n}")
        }))
        .expect("json");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        client
            .post(&inbound_hook)
            .header("content-type", "application/json")
            .header(
                sb_channels::signing::HEADER,
                sb_channels::signing::sign(&secret, now, &body),
            )
            .body(body)
            .send()
    };
    for n in 0..EVENTS {
        let r = send(n).await.expect("inbound");
        assert!(r.status().is_success());
    }
    // Kill while deliveries run, then start again on the same data.
    let start = Instant::now();
    while seen.lock().expect("lock").len() < EVENTS / 4 {
        assert!(start.elapsed() < Duration::from_secs(60), "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let delivered_before = seen.lock().expect("lock").len();
    let mut second = spawn();
    ready(client.clone(), base.clone()).await;
    let start = Instant::now();
    loop {
        let distinct: HashSet<String> = seen.lock().expect("lock").iter().map(|(id, _)| id.clone()).collect();
        if distinct.len() >= EVENTS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {EVENTS} events arrived after the restart",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = seen.lock().expect("lock").clone();
    let texts: HashSet<String> = got.iter().map(|(_, t)| t.clone()).collect();
    let expected: HashSet<String> = (0..EVENTS).map(|n| format!("event {n}")).collect();
    assert_eq!(texts, expected, "every event, none invented");
    let ids: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), EVENTS, "one webhook-id per event");
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    let _ = second.wait();
    println!(
        "kill -9 during deliveries: {delivered_before} delivered before the kill, {} requests for {EVENTS} events in all",
        got.len()
    );
}

/// A receiver in this process that records every request and answers 500 to the first
/// request of each `webhook-id` on `/flaky`, 200 otherwise.
type Request = (axum::http::HeaderMap, Value, String);

struct RustReceiver {
    base: String,
    got: Arc<Mutex<Vec<(String, Request)>>>,
}

impl RustReceiver {
    async fn start() -> RustReceiver {
        let got: Arc<Mutex<Vec<(String, Request)>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/{path}",
            axum::routing::post(
                move |axum::extract::Path(path): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: String| {
                    let sink = sink.clone();
                    async move {
                        let json: Value = serde_json::from_str(&body).unwrap_or_default();
                        let mut got = sink.lock().expect("lock");
                        let id = headers.get("webhook-id").cloned();
                        let first = !got
                            .iter()
                            .any(|(p, (h, _, _))| *p == path && h.get("webhook-id") == id.as_ref());
                        got.push((path.clone(), (headers, json, body)));
                        if path == "flaky" && first {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            axum::http::StatusCode::OK
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RustReceiver { base, got }
    }

    fn on(&self, path: &str) -> Vec<Request> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    async fn until(&self, path: &str, n: usize) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let got = self.on(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{path}: {} of {n} requests; got {:?}",
                got.len(),
                got.iter().map(|(_, v, _)| v["type"].clone()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An ordered endpoint gets events in the order they happened, and nothing after a failing
/// event until it succeeds (head-of-line), while retries wait for their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_endpoint_receives_in_event_order_and_waits_for_a_failing_event() {
    let clock = sb_engine::ManualClock::new(sb_core::Clock::now_ms(&sb_core::SystemClock));
    let s = TestServer::start_at(sb_engine::Time::Manual(clock.clone()), |c| {
        c.webhooks_allow_private_networks = true
    })
    .await;
    let r = RustReceiver::start().await;
    let (status, body) = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_token,
            json!({"url": format!("{}/flaky", r.base), "event_types": ["message.created"], "ordered": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let shop = s.api_account("shop app", "http://127.0.0.1:9/unused").await;
    for n in 1..=3 {
        let inbound =
            json!({"type": "message", "id": format!("o-{n}"), "from": {"id": "u-1"}, "text": format!("number {n}")});
        assert_eq!(s.deliver(&shop, &inbound).await.0, StatusCode::OK);
    }
    let texts = |got: &[Request]| -> Vec<String> {
        got.iter()
            .map(|(_, v, _)| v["data"]["body"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // Each event fails once; the next waits until it has succeeded.
    let mut expected: Vec<String> = Vec::new();
    for n in 1..=3 {
        expected.push(format!("number {n}"));
        r.until("flaky", expected.len()).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(texts(&r.on("flaky")), expected, "nothing after a failing event");
        clock.advance(7_000);
        expected.push(format!("number {n}"));
        r.until("flaky", expected.len()).await;
    }
    assert_eq!(
        texts(&r.on("flaky")),
        ["number 1", "number 1", "number 2", "number 2", "number 3", "number 3"]
    );
    let sequences: Vec<i64> = r
        .on("flaky")
        .iter()
        .map(|(_, v, _)| v["sequence"].as_i64().expect("sequence"))
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] <= w[1]), "{sequences:?}");
}

/// The same on PostgreSQL: facts about customers and consent reach the endpoint, signed,
/// with the message id as `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_run_on_postgres() {
    let Some((admin, schema, schema_url)) = crate::harness::pg_schema().await else {
        println!("PostgreSQL half skipped: SWITCHBOARD_TEST_PG_URL is not set");
        return;
    };
    let s = TestServer::start_with(|c| {
        c.database = sb_server::config::DatabaseConfig::Postgres(schema_url);
        c.webhooks_allow_private_networks = true;
    })
    .await;
    check_domain_events(&s).await;
    s.server.shutdown().await;
    crate::harness::drop_pg_schema(&admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_and_consent_facts_are_sent() {
    let s = TestServer::start_with(|c| c.webhooks_allow_private_networks = true).await;
    check_domain_events(&s).await;
}

async fn check_domain_events(s: &TestServer) {
    let r = RustReceiver::start().await;
    let types = [
        "customer.created",
        "customer.merged",
        "customer.unmerged",
        "consent.changed",
        "message.created",
    ];
    let (status, body) = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_token,
            json!({"url": format!("{}/facts", r.base), "event_types": types}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let shop = s.api_account("shop app", "http://127.0.0.1:9/unused").await;
    let mut customers = Vec::new();
    for (n, email) in ["ines@example.com", "ines.work@example.com"].iter().enumerate() {
        let inbound = json!({"type": "message", "id": format!("f-{n}"), "from": {"id": format!("u-{n}"), "email": email}, "text": "hi"});
        assert_eq!(s.deliver(&shop, &inbound).await.0, StatusCode::OK);
        let got = r.until("facts", 2 * (n + 1)).await;
        let created = got
            .iter()
            .rfind(|(_, v, _)| v["type"] == "customer.created")
            .expect("customer.created")
            .1["data"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        customers.push(created);
    }
    let (status, consent) = s
        .post(
            &format!("/api/v1/customers/{}/consents", customers[0]),
            &s.admin_token,
            json!({"channel": "email", "purpose": "marketing", "granted": true, "source": "signup_form",
                   "text_shown": "Send me offers", "ip": "203.0.113.9"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    let (status, merged) = s
        .post(
            &format!("/api/v1/customers/{}/merge", customers[0]),
            &s.admin_token,
            json!({"source_customer_id": customers[1]}),
        )
        .await;
    assert!(status.is_success(), "{merged}");
    let got = r.until("facts", 6).await;
    let of = |t: &str| got.iter().find(|(_, v, _)| v["type"] == t).cloned().expect(t);
    let (_, consent, _) = of("consent.changed");
    assert_eq!(consent["data"]["customer_id"], customers[0].as_str());
    assert_eq!(consent["data"]["granted"], true);
    assert_eq!(consent["data"]["channel"], "email");
    let (headers, merge, raw) = of("customer.merged");
    assert_eq!(merge["data"]["surviving_id"], customers[0].as_str());
    assert_eq!(merge["data"]["merged_id"], customers[1].as_str());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("webhook-id"), merge["id"].as_str().unwrap_or("-"));
    let timestamp: i64 = header("webhook-timestamp").parse().expect("timestamp");
    let now = sb_core::Clock::now_ms(&sb_core::SystemClock) / 1000;
    assert!(sb_core::standard_webhooks::verify(
        &secret,
        &header("webhook-id"),
        timestamp,
        &header("webhook-signature"),
        raw.as_bytes(),
        now
    ));
    // Every request is one of the chosen types, and each event came once.
    let ids: HashSet<String> = got
        .iter()
        .map(|(h, _, _)| {
            h.get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), got.len(), "no event twice");
    assert!(
        got.iter()
            .all(|(_, v, _)| types.contains(&v["type"].as_str().unwrap_or("")))
    );
}
