//! Twilio Programmable Messaging simulator, driven as our adapter and tests would:
//! REST calls with reqwest, webhooks into a tiny axum receiver that checks
//! `X-Twilio-Signature` the way Twilio's validators do.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use sb_sim::{SimClock, TwilioConfig, TwilioNumber, TwilioSim, twilio_signature, validate_twilio_signature};
use serde_json::{Value, json};

const AC: &str = "AC0000000000000000000000000000demo";
const TOKEN: &str = "demo-auth-token";
const OURS: &str = "+15551230000";
const ANA: &str = "+15557654321";
const WA_OURS: &str = "whatsapp:+15550001111";
const WA_ANA: &str = "whatsapp:+34600111222";
const T0: i64 = 1_767_225_600_000;
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

// ---------------------------------------------------------------------------
// A receiver standing in for our server
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Hit {
    /// Path and query as requested.
    uri: String,
    headers: HeaderMap,
    params: Vec<(String, String)>,
    body: String,
}

impl Hit {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn signature(&self) -> Option<&str> {
        self.headers.get("x-twilio-signature").map(|v| v.to_str().unwrap())
    }

    /// Validates the signature as our adapter must: over the URL Twilio was configured with.
    fn signed_for(&self, url: &str) -> bool {
        self.signature()
            .is_some_and(|s| validate_twilio_signature(TOKEN, url, &self.params, s))
    }
}

#[derive(Default)]
struct Inner {
    hits: Vec<Hit>,
    /// Scripted (status, body) answers; then 200 with empty TwiML.
    script: VecDeque<(u16, String)>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/media/ok.png", get(png))
            .route("/media/untyped", get(untyped))
            .route("/{*path}", post(on_post))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            base: format!("http://{addr}"),
            inner,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn script(&self, status: u16, body: &str) {
        self.inner.lock().unwrap().script.push_back((status, body.to_string()));
    }

    fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    /// POSTs whose path starts with `prefix`.
    fn hits_at(&self, prefix: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.uri.starts_with(prefix)).collect()
    }

    async fn wait_at(&self, prefix: &str, n: usize) -> Vec<Hit> {
        for _ in 0..600 {
            let hits = self.hits_at(prefix);
            if hits.len() >= n {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} POSTs to {prefix}, got {:#?}", self.hits_at(prefix));
    }
}

async fn on_post(
    State(inner): State<Arc<Mutex<Inner>>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8(body.to_vec()).unwrap();
    let params = form_decode(&body);
    let mut g = inner.lock().unwrap();
    let (status, answer) = g.script.pop_front().unwrap_or((200, EMPTY_TWIML.to_string()));
    g.hits.push(Hit {
        uri: uri.to_string(),
        headers,
        params,
        body,
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "text/xml")],
        answer,
    )
        .into_response()
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really";

async fn png() -> Response {
    ([(header::CONTENT_TYPE, "image/png")], PNG).into_response()
}

async fn untyped() -> Response {
    let mut r = (StatusCode::OK, "bytes").into_response();
    r.headers_mut().remove(header::CONTENT_TYPE);
    r
}

// ---------------------------------------------------------------------------
// Form helpers (what an adapter writes and a server parses)
// ---------------------------------------------------------------------------

fn form_encode(params: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_decode(s: &str) -> Vec<(String, String)> {
    let dec = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

struct Env {
    sim: TwilioSim,
    rx: Receiver,
    clock: SimClock,
    http: reqwest::Client,
}

impl Env {
    async fn new() -> Env {
        Env::with(|_| {}).await
    }

    /// The default account plus a WhatsApp sender; both numbers post to the receiver.
    async fn with(tweak: impl FnOnce(&mut TwilioConfig)) -> Env {
        let rx = Receiver::start().await;
        let clock = SimClock::fixed(T0);
        let mut cfg = TwilioConfig::default();
        cfg.api_keys
            .push(("SK0000000000000000000000000000key1".into(), "key-secret".into()));
        cfg.numbers[0].sms_url = Some(rx.url("/twilio/sms?inbox=7"));
        cfg.numbers[0].status_callback = Some(rx.url("/twilio/status"));
        let mut wa = TwilioNumber::new(WA_OURS);
        wa.sms_url = Some(rx.url("/twilio/wa"));
        wa.status_callback = Some(rx.url("/twilio/status"));
        cfg.numbers.push(wa);
        tweak(&mut cfg);
        let sim = TwilioSim::start(cfg, clock.clone()).await.unwrap();
        Env {
            sim,
            rx,
            clock,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn api(&self, tail: &str) -> String {
        format!("{}/2010-04-01/Accounts/{AC}/{tail}", self.sim.base_url())
    }

    /// `POST …/Messages.json` with Account SID + Auth Token.
    async fn send(&self, params: &[(&str, &str)]) -> (u16, Value) {
        self.send_as(AC, TOKEN, params).await
    }

    async fn send_as(&self, user: &str, password: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(self.api("Messages.json"))
            .basic_auth(user, Some(password))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_encode(params))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A plain SMS from our long code to Ana; returns its SID.
    async fn sms(&self, body: &str) -> String {
        let (s, v) = self.send(&[("To", ANA), ("From", OURS), ("Body", body)]).await;
        assert_eq!(s, 201, "{v}");
        v["sid"].as_str().unwrap().to_string()
    }

    async fn fetch(&self, sid: &str) -> Value {
        let resp = self
            .http
            .get(self.api(&format!("Messages/{sid}.json")))
            .basic_auth(AC, Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits (≤ 3 s real time) until the pacer has moved `sid` to `status`.
    async fn wait_status(&self, sid: &str, status: &str) -> Value {
        for _ in 0..600 {
            let m = self.fetch(sid).await;
            if m["status"] == status {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{sid} never became {status}: {}", self.fetch(sid).await);
    }

    fn ctl(&self, path: &str) -> String {
        format!("{}/_sim/{path}", self.sim.control())
    }

    async fn ctl_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.http.post(self.ctl(path)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn ctl_get(&self, path: &str) -> Value {
        self.http
            .get(self.ctl(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn inbound(&self, body: Value) -> Value {
        let (s, v) = self.ctl_post("inbound", body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn texts(&self, from: &str, text: &str) -> Value {
        self.inbound(json!({ "from": from, "to": OURS, "body": text })).await
    }

    /// What Ana's phone received, as (kind, body).
    async fn received(&self, to: &str) -> Vec<(String, String)> {
        let v = self.ctl_get(&format!("received?to={}", to.replace('+', "%2B"))).await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap().to_string(),
                    r["body"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn status_callbacks(&self, sid: &str, n: usize) -> Vec<Hit> {
        for _ in 0..600 {
            let hits: Vec<Hit> = self
                .rx
                .hits()
                .into_iter()
                .filter(|h| h.param("MessageSid") == Some(sid) && h.param("MessageStatus").is_some())
                .collect();
            if hits.len() >= n {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} status callbacks for {sid}");
    }
}

fn statuses(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.param("MessageStatus").unwrap()).collect()
}

// ---------------------------------------------------------------------------
// Provider API
// ---------------------------------------------------------------------------

#[tokio::test]
async fn send_answers_201_with_the_message_resource_then_signed_callbacks_in_order() {
    let env = Env::new().await;
    let (s, v) = env
        .send(&[
            ("To", ANA),
            ("From", OURS),
            ("Body", "Your order 1042 is ready for pickup."),
        ])
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["sid"].as_str().unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    assert_eq!(v["account_sid"], AC);
    assert_eq!(v["messaging_service_sid"], Value::Null);
    assert_eq!(v["from"], OURS);
    assert_eq!(v["to"], ANA);
    assert_eq!(v["status"], "queued");
    assert_eq!(v["direction"], "outbound-api");
    assert_eq!(v["num_segments"], "1", "string-typed");
    assert_eq!(v["num_media"], "0", "string-typed");
    assert_eq!(v["price"], Value::Null);
    assert_eq!(v["error_code"], Value::Null);
    assert_eq!(v["date_created"], "Thu, 01 Jan 2026 00:00:00 +0000");
    assert_eq!(v["date_sent"], Value::Null);
    assert_eq!(v["api_version"], "2010-04-01");
    assert_eq!(v["uri"], format!("/2010-04-01/Accounts/{AC}/Messages/{sid}.json"));
    assert_eq!(
        v["subresource_uris"]["media"],
        format!("/2010-04-01/Accounts/{AC}/Messages/{sid}/Media.json")
    );

    // No callback for `queued`; `sent` then `delivered`, each signed over the configured URL.
    let hits = env.status_callbacks(sid, 2).await;
    assert_eq!(statuses(&hits), ["sent", "delivered"]);
    let url = env.rx.url("/twilio/status");
    for h in &hits {
        assert!(h.signed_for(&url), "signature over {url}");
        assert_eq!(h.param("SmsSid"), Some(sid));
        assert_eq!(h.param("SmsStatus"), h.param("MessageStatus"));
        assert_eq!(h.param("AccountSid"), Some(AC));
        assert_eq!(h.param("From"), Some(OURS));
        assert_eq!(h.param("To"), Some(ANA));
        assert_eq!(h.param("ApiVersion"), Some("2010-04-01"));
        assert_eq!(h.param("ErrorCode"), None);
        assert_eq!(
            h.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/x-www-form-urlencoded"
        );
    }
    assert_eq!(hits[1].param("RawDlrDoneDate"), Some("2601010000"));

    let m = env.fetch(sid).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["date_sent"], "Thu, 01 Jan 2026 00:00:00 +0000");
    assert_eq!(
        env.received(ANA).await,
        [(
            "message".to_string(),
            "Your order 1042 is ready for pickup.".to_string()
        )]
    );

    // Every callback attempt is recorded with our answer.
    let w = env.ctl_get("webhooks").await;
    let w = w.as_array().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["kind"], "status");
    assert_eq!(w[0]["status"], 200);
    assert_eq!(w[0]["form"]["MessageStatus"], "sent");

    // The outbox has the exact request, Authorization included.
    let out = env.ctl_get("outbox").await;
    let rec = &out[0];
    assert_eq!(rec["method"], "POST");
    assert_eq!(rec["path"], format!("/2010-04-01/Accounts/{AC}/Messages.json"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{AC}:{TOKEN}"));
    assert_eq!(rec["authorization"], format!("Basic {basic}"));
    assert_eq!(rec["status"], 201);
    assert_eq!(rec["sid"], sid);
    assert!(rec["body"].as_str().unwrap().contains("To=%2B15557654321"));
    assert_eq!(
        rec["params"][2],
        json!(["Body", "Your order 1042 is ready for pickup."])
    );
}

#[tokio::test]
async fn per_message_status_callback_wins_and_its_query_is_signed() {
    let env = Env::new().await;
    let url = env.rx.url("/hooks/status?o=01JF8Z5R2K");
    let (s, v) = env
        .send(&[("To", ANA), ("From", OURS), ("Body", "hi"), ("StatusCallback", &url)])
        .await;
    assert_eq!(s, 201, "{v}");
    let hits = env.rx.wait_at("/hooks/status", 2).await;
    assert_eq!(statuses(&hits), ["sent", "delivered"]);
    assert!(hits.iter().all(|h| h.signed_for(&url)));
    assert!(
        !hits[0].signed_for(&env.rx.url("/hooks/status")),
        "the query is part of the signed URL"
    );
    assert!(env.rx.hits_at("/twilio/status").is_empty());
}

#[tokio::test]
async fn basic_auth_with_account_or_api_key_else_20003() {
    let env = Env::new().await;
    let (s, v) = env
        .send_as(AC, "wrong", &[("To", ANA), ("From", OURS), ("Body", "x")])
        .await;
    assert_eq!(s, 401);
    assert_eq!(
        v,
        json!({ "code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401 })
    );
    let resp = env.http.get(env.api("Messages/SMx.json")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no credentials");
    assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_some());

    let (s, v) = env
        .send_as(
            "SK0000000000000000000000000000key1",
            "key-secret",
            &[("To", ANA), ("From", OURS), ("Body", "x")],
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let out = env.ctl_get("outbox").await;
    assert_eq!(out[2]["auth_user"], "SK0000000000000000000000000000key1");

    // The account in the path must be ours.
    let resp = env
        .http
        .get(format!(
            "{}/2010-04-01/Accounts/AC0000000000000000000000000000othr/Messages.json",
            env.sim.base_url()
        ))
        .basic_auth(AC, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn synchronous_errors_have_twilio_codes_and_statuses() {
    let env = Env::new().await;
    let err = |v: &Value| v["code"].as_i64().unwrap();

    let (s, v) = env.send(&[("To", "+1555"), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (400, 21211));
    assert_eq!(v["message"], "Invalid 'To' Phone Number: +1555");
    assert_eq!(v["more_info"], "https://www.twilio.com/docs/errors/21211");
    assert_eq!(v["status"], 400);

    let (s, v) = env.ctl_post("landline", json!({ "number": "+15550009999" })).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env.send(&[("To", "+15550009999"), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (400, 21614));

    let long = "a".repeat(1601);
    let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", &long)]).await;
    assert_eq!((s, err(&v)), (400, 21617));

    let (s, v) = env.send(&[("To", ANA), ("From", "+15559990000"), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (400, 21606));
    let (s, v) = env.send(&[("To", ANA), ("From", OURS)]).await;
    assert_eq!((s, err(&v)), (400, 21602));
    let (s, v) = env.send(&[("To", WA_ANA), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (400, 21910));

    // Fault injection: the next two sends are refused, then sends work again.
    let (s, _) = env.ctl_post("faults", json!({ "fail_sends": 1 })).await;
    assert_eq!(s, 200);
    let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (429, 20429));
    env.ctl_post("faults", json!({ "fail_sends": 1, "fail_status": 500 }))
        .await;
    let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, err(&v)), (500, 20500));
    env.sms("x").await;
    // Refused sends created no message.
    assert_eq!(env.ctl_get("messages").await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn num_segments_follows_the_encoding() {
    let env = Env::new().await;
    let cases = [
        ("A".repeat(160), "1"),
        ("A".repeat(161), "2"),
        ("{".repeat(81), "2"),
        ("Total: 25€ – pay at pickup".to_string(), "1"),
        ("Ж".repeat(71), "2"),
    ];
    for (body, want) in cases {
        let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", &body)]).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["num_segments"], want, "{body}");
    }
    let (_, v) = env.ctl_post("segments", json!({ "text": "It’s ready" })).await;
    assert_eq!(v, json!({ "encoding": "UCS2", "units": 10, "segments": 1 }));
}

// ---------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_queue_is_paced_by_segments_on_the_sim_clock() {
    let env = Env::new().await;
    let three = env.sms(&"B".repeat(307)).await;
    let one = env.sms("short").await;
    env.wait_status(&three, "delivered").await;
    // The long code needs 3 s for the first message's 3 segments.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.fetch(&one).await["status"], "queued");
    env.clock.advance(2_999);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.fetch(&one).await["status"], "queued");
    env.clock.advance(1);
    let m = env.wait_status(&one, "delivered").await;
    assert_eq!(m["date_sent"], "Thu, 01 Jan 2026 00:00:03 +0000");
    let hits = env.status_callbacks(&one, 2).await;
    assert_eq!(statuses(&hits), ["sent", "delivered"]);

    // A faster sender drains sooner.
    let (s, _) = env
        .ctl_post("numbers", json!({ "phone": OURS, "segments_per_second": 3.0 }))
        .await;
    assert_eq!(s, 200);
    // "short" keeps the sender busy until 4 s.
    env.clock.advance(1_000);
    let a = env.sms(&"B".repeat(307)).await;
    let b = env.sms("next").await;
    env.wait_status(&a, "delivered").await;
    env.clock.advance(999);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.fetch(&b).await["status"], "queued");
    env.clock.advance(1);
    env.wait_status(&b, "delivered").await;
}

#[tokio::test]
async fn validity_period_expiry_and_queue_overflow() {
    let env = Env::new().await;
    let vp = [("To", ANA), ("From", OURS), ("Body", "x"), ("ValidityPeriod", "1")];
    let mut sids = Vec::new();
    for _ in 0..3 {
        let (s, v) = env.send(&vp).await;
        assert_eq!(s, 201, "{v}");
        sids.push(v["sid"].as_str().unwrap().to_string());
    }
    env.wait_status(&sids[0], "delivered").await;
    env.clock.advance(1_000);
    env.wait_status(&sids[1], "delivered").await;
    let m = env.wait_status(&sids[2], "failed").await;
    assert_eq!(m["error_code"], 30036);
    let hits = env.status_callbacks(&sids[2], 1).await;
    assert_eq!(statuses(&hits), ["failed"]);
    assert_eq!(hits[0].param("ErrorCode"), Some("30036"));
    assert_eq!(hits[0].param("ErrorMessage"), Some("Validity Period Expired"));

    // A sender more than max_queue_secs behind refuses new sends with 21611.
    env.ctl_post("options", json!({ "max_queue_secs": 2 })).await;
    env.clock.advance(10_000);
    for _ in 0..3 {
        env.sms("x").await;
    }
    let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", "x")]).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(21611)));
}

#[tokio::test]
async fn carriers_without_dlr_and_control_deliver_and_fail() {
    let env = Env::new().await;
    env.ctl_post("faults", json!({ "no_dlr": true })).await;
    let sid = env.sms("no receipt").await;
    env.wait_status(&sid, "sent").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.fetch(&sid).await["status"], "sent", "no delivered without a DLR");
    let (s, v) = env.ctl_post(&format!("deliver/{sid}"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "delivered");
    assert_eq!(statuses(&env.status_callbacks(&sid, 2).await), ["sent", "delivered"]);

    // A sent message the carrier then reports undelivered.
    env.clock.advance(1_000);
    let sid = env.sms("to a dead phone").await;
    env.wait_status(&sid, "sent").await;
    let (s, v) = env.ctl_post(&format!("fail/{sid}?code=30003"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "undelivered");
    assert_eq!(v["error_code"], 30003);
    assert_eq!(v["error_message"], "Unreachable destination handset");
    let hits = env.status_callbacks(&sid, 2).await;
    assert_eq!(statuses(&hits), ["sent", "undelivered"]);
    assert_eq!(hits[1].param("ErrorCode"), Some("30003"));
    assert!(!env.received(ANA).await.iter().any(|(_, b)| b == "to a dead phone"));

    // Per-number switch: this sender's carrier gives no receipts.
    env.ctl_post("faults", json!({})).await;
    env.ctl_post("numbers", json!({ "phone": OURS, "delivery_receipts": false }))
        .await;
    env.clock.advance(1_000);
    let sid = env.sms("again").await;
    env.wait_status(&sid, "sent").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.fetch(&sid).await["status"], "sent");
}

// ---------------------------------------------------------------------------
// Inbound webhooks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn inbound_sms_carries_the_full_parameter_set_signed_over_the_configured_url() {
    let env = Env::new().await;
    let v = env
        .inbound(
            json!({ "from": ANA, "to": OURS, "body": "Is my order ready?", "from_city": "SEATTLE",
                         "from_state": "WA", "from_zip": "98101", "extra": { "NewParam": "surprise" } }),
        )
        .await;
    assert_eq!(v["delivered_status"], 200);
    let sid = v["sid"].as_str().unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34);
    let hit = &env.rx.wait_at("/twilio/sms", 1).await[0];
    assert_eq!(hit.uri, "/twilio/sms?inbox=7");
    assert!(hit.signed_for(&env.rx.url("/twilio/sms?inbox=7")));
    assert!(!hit.signed_for(&env.rx.url("/twilio/sms")));
    let names: Vec<&str> = hit.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "MessageSid",
            "SmsSid",
            "SmsMessageSid",
            "AccountSid",
            "From",
            "To",
            "Body",
            "NumMedia",
            "NumSegments",
            "SmsStatus",
            "ApiVersion",
            "FromCity",
            "FromState",
            "FromZip",
            "FromCountry",
            "ToCity",
            "ToState",
            "ToZip",
            "ToCountry",
            "NewParam"
        ]
    );
    for (k, want) in [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("SmsMessageSid", sid),
        ("AccountSid", AC),
        ("From", ANA),
        ("To", OURS),
        ("Body", "Is my order ready?"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
        ("FromCity", "SEATTLE"),
        ("FromCountry", "US"),
        ("ToCity", ""),
        ("ToCountry", "US"),
    ] {
        assert_eq!(hit.param(k), Some(want), "{k}");
    }
    assert!(hit.body.contains("Body=Is+my+order+ready%3F"), "{}", hit.body);
    assert!(hit.headers.get("i-twilio-idempotency-token").is_some());

    // Our answer is recorded; the inbound message is a resource too.
    let w = &env.ctl_get("webhooks").await[0];
    assert_eq!(w["kind"], "inbound");
    assert_eq!(w["status"], 200);
    assert_eq!(w["response_body"], EMPTY_TWIML);
    assert_eq!(w["response_content_type"], "text/xml");
    let m = env.fetch(sid).await;
    assert_eq!(m["direction"], "inbound");
    assert_eq!(m["status"], "received");
}

#[tokio::test]
async fn signing_url_explicit_port_and_proxy_rewrite() {
    const PUBLIC: &str = "https://inbox.example.test/twilio/sms?inbox=7";
    const PUBLIC_443: &str = "https://inbox.example.test:443/twilio/sms?inbox=7";
    let env = Env::new().await;

    // 1. We sit behind a proxy: the sim posts to us directly but signs the public URL.
    env.ctl_post("numbers", json!({ "phone": OURS, "signing_url": PUBLIC }))
        .await;
    env.texts(ANA, "one").await;
    let hit = env.rx.wait_at("/twilio/sms", 1).await[0].clone();
    assert_eq!(hit.signature().unwrap(), twilio_signature(TOKEN, PUBLIC, &hit.params));
    assert!(hit.signed_for(PUBLIC));
    assert!(
        !hit.signed_for(&env.rx.url("/twilio/sms?inbox=7")),
        "the local URL is not what was signed"
    );

    // 2. Twilio adds the default port: the header differs, validators still accept it.
    env.ctl_post("options", json!({ "sign_with_explicit_port": true }))
        .await;
    env.texts(ANA, "two").await;
    let hit = env.rx.wait_at("/twilio/sms", 2).await[1].clone();
    assert_eq!(
        hit.signature().unwrap(),
        twilio_signature(TOKEN, PUBLIC_443, &hit.params)
    );
    assert_ne!(hit.signature().unwrap(), twilio_signature(TOKEN, PUBLIC, &hit.params));
    assert!(hit.signed_for(PUBLIC));

    // 3. The number is configured with the public URL and a proxy forwards it to us.
    env.ctl_post(
        "options",
        json!({ "sign_with_explicit_port": false,
                "proxy_rewrites": [{ "public_prefix": "https://inbox.example.test", "local_prefix": env.rx.base }] }),
    )
    .await;
    env.ctl_post(
        "numbers",
        json!({ "phone": OURS, "sms_url": PUBLIC, "signing_url": "" }),
    )
    .await;
    env.texts(ANA, "three").await;
    let hit = env.rx.wait_at("/twilio/sms", 3).await[2].clone();
    assert_eq!(hit.uri, "/twilio/sms?inbox=7");
    assert!(hit.signed_for(PUBLIC));
    let w = env.ctl_get("webhooks").await;
    assert_eq!(w[2]["signed_url"], PUBLIC);
    assert_eq!(w[2]["url"], env.rx.url("/twilio/sms?inbox=7"));
}

#[tokio::test]
async fn inbound_mms_media_needs_basic_auth_and_redirects_to_the_cdn() {
    let env = Env::new().await;
    let jpeg = b"\xff\xd8\xff\xe0 fake jpeg".to_vec();
    let v = env
        .inbound(json!({ "from": ANA, "to": OURS, "body": "",
                         "media": [{ "content_type": "image/jpeg",
                                     "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&jpeg) }] }))
        .await;
    let sid = v["sid"].as_str().unwrap();
    assert!(sid.starts_with("MM"), "{sid}");
    let hit = env.rx.wait_at("/twilio/sms", 1).await[0].clone();
    assert_eq!(hit.param("NumMedia"), Some("1"));
    assert_eq!(hit.param("MediaContentType0"), Some("image/jpeg"));
    let media_url = hit.param("MediaUrl0").unwrap().to_string();
    assert!(
        media_url.starts_with(&format!(
            "{}/2010-04-01/Accounts/{AC}/Messages/{sid}/Media/ME",
            env.sim.base_url()
        )),
        "{media_url}"
    );
    assert!(hit.signed_for(&env.rx.url("/twilio/sms?inbox=7")));

    let resp = env.http.get(&media_url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = env
        .http
        .get(&media_url)
        .basic_auth(AC, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    let cdn = resp.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(cdn.starts_with(&format!("{}/cdn/", env.sim.base_url())), "{cdn}");
    let resp = env.http.get(&cdn).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), jpeg);
    // The Media resource JSON.
    let resp = env
        .http
        .get(format!("{media_url}.json"))
        .basic_auth(AC, Some(TOKEN))
        .send()
        .await
        .unwrap();
    let meta: Value = resp.json().await.unwrap();
    assert_eq!(meta["parent_sid"], sid);
    assert_eq!(meta["content_type"], "image/jpeg");
}

#[tokio::test]
async fn outbound_media_is_fetched_and_a_failed_fetch_fails_the_message() {
    let env = Env::new().await;
    let ok = env.rx.url("/media/ok.png");
    let (s, v) = env
        .send(&[
            ("To", ANA),
            ("From", OURS),
            ("Body", "your receipt"),
            ("MediaUrl", &ok),
            ("MediaUrl", &ok),
        ])
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("MM"));
    assert_eq!(v["num_media"], "2");
    env.wait_status(&sid, "delivered").await;
    let m = &env.ctl_get(&format!("messages?sid={sid}")).await[0];
    assert_eq!(m["media_fetches"][0]["status"], 200);
    assert_eq!(m["media_fetches"][0]["content_type"], "image/png");
    assert_eq!(m["media_fetches"][1]["size"], PNG.len());

    for (url, code) in [
        (env.rx.url("/media/missing.png"), 11200),
        (env.rx.url("/media/untyped"), 12300),
    ] {
        env.clock.advance(2_000);
        let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("MediaUrl", &url)]).await;
        assert_eq!(s, 201, "{v}");
        let sid = v["sid"].as_str().unwrap();
        let m = env.wait_status(sid, "failed").await;
        assert_eq!(m["error_code"], code, "{url}");
        let hits = env.status_callbacks(sid, 1).await;
        assert_eq!(hits[0].param("ErrorCode"), Some(code.to_string().as_str()));
    }
}

// ---------------------------------------------------------------------------
// Keywords
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stop_opts_out_with_a_confirmation_then_21610_until_start() {
    let env = Env::new().await;
    let v = env.texts(ANA, " stop ").await;
    assert_eq!(v["keyword"], "opt_out");
    // The STOP still reaches our webhook.
    let hit = env.rx.wait_at("/twilio/sms", 1).await[0].clone();
    assert_eq!(hit.param("Body"), Some(" stop "));
    assert_eq!(hit.param("OptOutType"), None, "only with Advanced Opt-Out");

    let (s, v) = env.send(&[("To", ANA), ("From", OURS), ("Body", "promo")]).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(21610)));
    // Only for this sender's customer.
    env.sms_to_other().await;

    let got = env.received(ANA).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "auto_reply");
    assert!(got[0].1.starts_with("You have successfully been unsubscribed"));

    // HELP while opted out gets no answer; START opts back in.
    assert_eq!(env.texts(ANA, "HELP").await["auto_reply"], Value::Null);
    let v = env.texts(ANA, "Start").await;
    assert_eq!(v["keyword"], "opt_in");
    env.sms("welcome back").await;
    let v = env.texts(ANA, "info").await;
    assert_eq!(v["keyword"], "help");
    let kinds: Vec<String> = env.received(ANA).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        ["auto_reply", "auto_reply", "auto_reply"],
        "confirmation, re-subscribed, help"
    );
}

impl Env {
    async fn sms_to_other(&self) {
        let (s, v) = self
            .send(&[("To", "+15550102030"), ("From", OURS), ("Body", "x")])
            .await;
        assert_eq!(s, 201, "{v}");
    }
}

#[tokio::test]
async fn keyword_variants_advanced_opt_out_and_switching_the_engine_off() {
    let env = Env::new().await;
    assert_eq!(env.texts(ANA, "STOP please").await["keyword"], Value::Null);
    env.sms("still allowed").await;

    env.ctl_post("options", json!({ "advanced_opt_out": true })).await;
    env.texts(ANA, "UNSUBSCRIBE").await;
    let hits = env.rx.wait_at("/twilio/sms", 2).await;
    assert_eq!(hits[1].param("OptOutType"), Some("STOP"));
    assert!(hits[1].signed_for(&env.rx.url("/twilio/sms?inbox=7")));
    env.texts(ANA, "yes").await;
    assert_eq!(
        env.rx.wait_at("/twilio/sms", 3).await[2].param("OptOutType"),
        Some("START")
    );

    env.ctl_post("options", json!({ "keyword_engine": false })).await;
    assert_eq!(env.texts(ANA, "STOP").await["keyword"], Value::Null);
    env.sms("not blocked").await;
    let optouts = env.ctl_get("optouts").await;
    assert_eq!(optouts, json!([]));
}

#[tokio::test]
async fn twiml_message_in_our_answer_reaches_the_customer() {
    let env = Env::new().await;
    env.rx.script(
        200,
        "<?xml version=\"1.0\"?><Response><Message>Thanks, we got it.</Message></Response>",
    );
    env.texts(ANA, "hello").await;
    assert_eq!(
        env.received(ANA).await,
        [("twiml_reply".to_string(), "Thanks, we got it.".to_string())]
    );
    // A non-2xx answer is recorded with Twilio's 11200 and not retried.
    env.rx.script(500, "boom");
    let v = env.texts(ANA, "again").await;
    assert_eq!(v["delivered_status"], 500);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let w = env.ctl_get("webhooks").await;
    assert_eq!(w.as_array().unwrap().len(), 2);
    assert_eq!(w[1]["error_code"], 11200);
}

// ---------------------------------------------------------------------------
// Faults on webhooks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_bad_and_missing_signature_faults() {
    let env = Env::new().await;
    let url = env.rx.url("/twilio/sms?inbox=7");
    env.ctl_post("faults", json!({ "duplicate_webhooks": true })).await;
    env.texts(ANA, "twice").await;
    let hits = env.rx.wait_at("/twilio/sms", 2).await;
    assert_eq!(hits[0].body, hits[1].body);
    assert_eq!(hits[0].signature(), hits[1].signature());
    assert_eq!(
        hits[0].headers["i-twilio-idempotency-token"],
        hits[1].headers["i-twilio-idempotency-token"]
    );
    assert!(hits[1].signed_for(&url));
    let w = env.ctl_get("webhooks").await;
    assert_eq!(w[1]["duplicate"], true);

    env.ctl_post("faults", json!({ "bad_signature": true })).await;
    env.texts(ANA, "forged").await;
    let hit = env.rx.wait_at("/twilio/sms", 3).await[2].clone();
    assert!(hit.signature().is_some());
    assert!(!hit.signed_for(&url));

    env.ctl_post("faults", json!({ "missing_signature": true })).await;
    env.texts(ANA, "unsigned").await;
    let hit = env.rx.wait_at("/twilio/sms", 4).await[3].clone();
    assert_eq!(hit.signature(), None);
}

// ---------------------------------------------------------------------------
// WhatsApp through Twilio
// ---------------------------------------------------------------------------

#[tokio::test]
async fn whatsapp_free_form_outside_the_24h_window_fails_63016_unless_a_template() {
    let env = Env::new().await;
    // Nobody wrote to us: free text is accepted, then fails asynchronously.
    let (s, v) = env
        .send(&[("To", WA_ANA), ("From", WA_OURS), ("Body", "Hola Ana")])
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["sid"].as_str().unwrap().to_string();
    let m = env.wait_status(&sid, "failed").await;
    assert_eq!(m["error_code"], 63016);
    let hits = env.status_callbacks(&sid, 1).await;
    assert_eq!(hits[0].param("ErrorCode"), Some("63016"));
    assert_eq!(hits[0].param("From"), Some(WA_OURS));
    assert_eq!(hits[0].param("To"), Some(WA_ANA));

    // A Content Template is allowed outside the window (once the sender is free again).
    env.clock.advance(1_000);
    let (s, v) = env
        .send(&[
            ("To", WA_ANA),
            ("From", WA_OURS),
            ("ContentSid", "HX00000000000000000000000000000001"),
            ("ContentVariables", r#"{"1":"Ana","2":"1042"}"#),
        ])
        .await;
    assert_eq!(s, 201, "{v}");
    env.wait_status(v["sid"].as_str().unwrap(), "delivered").await;

    // The customer writes: free text works for 24 h.
    let v = env
        .inbound(json!({ "from": WA_ANA, "to": WA_OURS, "body": "Hola", "profile_name": "Ana López" }))
        .await;
    let hit = env.rx.wait_at("/twilio/wa", 1).await[0].clone();
    assert_eq!(hit.param("ProfileName"), Some("Ana López"));
    assert_eq!(hit.param("WaId"), Some("34600111222"));
    assert_eq!(hit.param("MessageType"), Some("text"));
    assert_eq!(hit.param("FromCity"), None);
    assert_eq!(hit.param("MessageSid"), v["sid"].as_str());
    assert!(hit.signed_for(&env.rx.url("/twilio/wa")));
    env.clock.advance(1_000);
    let (_, v) = env
        .send(&[("To", WA_ANA), ("From", WA_OURS), ("Body", "¿Talla M?")])
        .await;
    let sid = v["sid"].as_str().unwrap().to_string();
    env.wait_status(&sid, "delivered").await;
    let (s, v) = env.ctl_post(&format!("read/{sid}"), json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("read")));
    assert_eq!(
        statuses(&env.status_callbacks(&sid, 3).await),
        ["sent", "delivered", "read"]
    );

    // A day later the window has closed again; optionally the refusal is synchronous.
    env.clock.advance(24 * 3_600_000);
    let (_, v) = env.send(&[("To", WA_ANA), ("From", WA_OURS), ("Body", "late")]).await;
    env.wait_status(v["sid"].as_str().unwrap(), "failed").await;
    env.ctl_post("options", json!({ "whatsapp_window_sync_error": true }))
        .await;
    let (s, v) = env.send(&[("To", WA_ANA), ("From", WA_OURS), ("Body", "late")]).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(63016)));
}

// ---------------------------------------------------------------------------
// Messaging Service
// ---------------------------------------------------------------------------

#[tokio::test]
async fn messaging_service_sends_start_accepted_and_pick_a_sender() {
    const MG: &str = "MG0000000000000000000000000000demo";
    let env = Env::with(|c| c.messaging_service_sid = Some(MG.into())).await;
    let (s, v) = env
        .send(&[
            ("To", ANA),
            ("MessagingServiceSid", MG),
            ("Body", "Your order is ready"),
        ])
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["from"], Value::Null);
    assert_eq!(v["num_segments"], "0");
    assert_eq!(v["messaging_service_sid"], MG);
    let sid = v["sid"].as_str().unwrap().to_string();
    let m = env.wait_status(&sid, "delivered").await;
    assert_eq!(m["from"], OURS);
    assert_eq!(m["num_segments"], "1");
    let hits = env.status_callbacks(&sid, 3).await;
    assert_eq!(statuses(&hits), ["queued", "sent", "delivered"]);
    assert_eq!(hits[0].param("MessagingServiceSid"), Some(MG));

    let (s, v) = env
        .send(&[
            ("To", ANA),
            ("MessagingServiceSid", "MG0000000000000000000000000000othr"),
            ("Body", "x"),
        ])
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(21701)));

    // Inbound carries the service; STOP to one number blocks the whole service.
    env.texts(ANA, "STOP").await;
    let hit = env.rx.wait_at("/twilio/sms", 1).await[0].clone();
    assert_eq!(hit.param("MessagingServiceSid"), Some(MG));
    let (s, v) = env
        .send(&[("To", ANA), ("MessagingServiceSid", MG), ("Body", "x")])
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(21610)));
}

// ---------------------------------------------------------------------------
// Control API and page
// ---------------------------------------------------------------------------

#[tokio::test]
async fn numbers_learn_their_webhook_at_runtime_and_the_page_is_served() {
    let env = Env::with(|c| {
        c.numbers[0].sms_url = None;
        c.numbers[0].status_callback = None;
    })
    .await;
    // Without a webhook the STOP still blocks (Twilio does it even with no request URL).
    let v = env.texts(ANA, "STOP").await;
    assert_eq!(v["delivered_status"], Value::Null);
    let (s, _) = env.send(&[("To", ANA), ("From", OURS), ("Body", "x")]).await;
    assert_eq!(s, 400);

    let url = env.rx.url("/late/sms");
    let (s, v) = env.ctl_post("numbers", json!({ "phone": OURS, "sms_url": url })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sms_url"], url);
    env.texts(ANA, "START").await;
    let hit = env.rx.wait_at("/late/sms", 1).await[0].clone();
    assert!(hit.signed_for(&url));
    let numbers = env.ctl_get("twilio/numbers").await;
    assert_eq!(numbers[0]["phone"], OURS);
    assert_eq!(numbers[1]["phone"], WA_OURS);

    let page = env.http.get(env.sim.base_url()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("play the customer's phone"));
    let clock = env.ctl_get("clock").await;
    assert_eq!(clock["now_ms"], T0);
    env.sim.shutdown().await;
}
