//! Machinery shared by the Meta simulators: signing, the webhook emitter with
//! retries and its log, the GET verification handshake, fault switches, the
//! provider-request log, Graph error bodies and the control routes every
//! simulator has (`/_sim/faults`, `/_sim/clock`, `/_sim/retry`, webhook, sent,
//! deliveries).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::SimClock;
use crate::json::Json;

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` header value.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), body))
}

/// Lowercase hex HMAC-SHA256.
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Locks a std mutex, ignoring poisoning (a panicking handler must not wedge the simulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Faults and retry policy
// ---------------------------------------------------------------------------

/// One-shot error returned by the next send call instead of processing it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendFault {
    /// HTTP status of the error response (default 400).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Graph `error.code`.
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    /// `error.error_data.details` (WhatsApp only).
    #[serde(default)]
    pub details: Option<String>,
    /// Wait this long before answering (to exercise client timeouts).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// Fault switches. `POST /_sim/faults` replaces the whole set: omitted fields
/// are reset, so `{}` clears everything.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// One-shot: consumed by the next send call.
    #[serde(default)]
    pub next_send: Option<SendFault>,
    /// Every webhook is delivered twice (identical bytes, separate deliveries).
    #[serde(default)]
    pub duplicate_webhooks: bool,
    /// Webhooks are signed with a wrong secret.
    #[serde(default)]
    pub bad_signature: bool,
    /// Automatic status sequences are emitted in reverse (`delivered` before `sent`).
    #[serde(default)]
    pub out_of_order_statuses: bool,
    /// Every provider API call answers 401 with Graph error 190 (subcode 463).
    #[serde(default)]
    pub expired_token: bool,
    /// Webhooks carry no `X-Hub-Signature-256` header at all.
    #[serde(default)]
    pub missing_signature: bool,
}

/// Webhook redelivery schedule: `initial_ms` doubling, capped at `max_ms`, at most `max_attempts` attempts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
    /// Per-attempt timeout; a timeout counts as a failed attempt.
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 50,
            max_ms: 2_000,
            max_attempts: 8,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryPatch {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
}

/// One webhook POST attempt.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    /// Same for all attempts of one logical webhook.
    pub delivery_id: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub url: String,
    /// Exact bytes sent (ASCII).
    pub body: String,
    /// `X-Hub-Signature-256` value sent (`null` when the missing-signature fault is on).
    pub signature: Option<String>,
    /// HTTP status our server answered; `null` on connection error or timeout.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at_ms: i64,
    /// True for the extra copy sent by the duplicate fault / Instagram dual-login option.
    pub duplicate: bool,
}

// ---------------------------------------------------------------------------
// Core: state every simulator has
// ---------------------------------------------------------------------------

pub(crate) struct Core {
    pub clock: SimClock,
    pub app_secret: String,
    pub verify_token: String,
    /// Lower-case prefix of the simulator's control routes, e.g. "whatsapp".
    pub name: &'static str,
    client: reqwest::Client,
    stopping: AtomicBool,
    pub state: Mutex<CoreState>,
}

pub(crate) struct CoreState {
    pub webhook_url: Option<String>,
    pub retry: RetryPolicy,
    pub faults: Faults,
    pub deliveries: Vec<DeliveryRecord>,
    /// Provider API calls our adapter made, as JSON records (shape chosen by each simulator).
    pub requests: Vec<Value>,
    next_delivery: u64,
    next_trace: u64,
}

impl Core {
    pub fn new(
        name: &'static str,
        clock: SimClock,
        app_secret: String,
        verify_token: String,
        webhook_url: Option<String>,
    ) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4)
            .user_agent("facebookexternalua")
            .build()
            .expect("reqwest client");
        Arc::new(Self {
            clock,
            app_secret,
            verify_token,
            name,
            client,
            stopping: AtomicBool::new(false),
            state: Mutex::new(CoreState {
                webhook_url,
                retry: RetryPolicy::default(),
                faults: Faults::default(),
                deliveries: Vec::new(),
                requests: Vec::new(),
                next_delivery: 1,
                next_trace: 1,
            }),
        })
    }

    pub fn st(&self) -> MutexGuard<'_, CoreState> {
        lock(&self.state)
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Deterministic Graph `fbtrace_id`.
    pub fn fbtrace(&self) -> String {
        let n = {
            let mut st = self.st();
            st.next_trace += 1;
            st.next_trace
        };
        let raw = format!("sbsim-{}-{n:06}", self.name);
        format!(
            "A{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_bytes())
        )
    }

    /// Takes the one-shot `next_send` fault.
    pub fn take_send_fault(&self) -> Option<SendFault> {
        self.st().faults.next_send.take()
    }

    pub fn faults(&self) -> Faults {
        self.st().faults.clone()
    }

    /// Appends a provider-request record (numbering it in `seq`) and returns its index.
    pub fn record_request(&self, mut rec: Value) -> usize {
        let mut st = self.st();
        let idx = st.requests.len();
        if let Value::Object(map) = &mut rec {
            map.insert("seq".into(), Value::from(idx + 1));
        }
        st.requests.push(rec);
        idx
    }

    /// Fills in fields of a request record after the response is known.
    pub fn complete_request(&self, idx: usize, fields: &[(&str, Value)]) {
        let mut st = self.st();
        if let Some(Value::Object(map)) = st.requests.get_mut(idx) {
            for (k, v) in fields {
                map.insert((*k).to_string(), v.clone());
            }
        }
    }

    /// Signs and POSTs `body` to the webhook URL, retrying in the background on
    /// anything but HTTP 200. Returns the HTTP status of the first attempt
    /// (`None` when there is no webhook URL or the connection failed). With the
    /// duplicate fault (or `extra_copy`), a second identical delivery is made and
    /// its first attempt is awaited too, so the caller knows both have arrived.
    pub async fn deliver(self: &Arc<Self>, body: String, extra_copy: bool) -> Option<u16> {
        let (url, faults, policy) = {
            let st = self.st();
            (st.webhook_url.clone(), st.faults.clone(), st.retry.clone())
        };
        let url = url?;
        let signature = if faults.missing_signature {
            None
        } else if faults.bad_signature {
            Some(hub_signature(&format!("{}-wrong", self.app_secret), body.as_bytes()))
        } else {
            Some(hub_signature(&self.app_secret, body.as_bytes()))
        };
        let copies = if faults.duplicate_webhooks || extra_copy { 2 } else { 1 };
        let mut first = None;
        for copy in 0..copies {
            let id = {
                let mut st = self.st();
                st.next_delivery += 1;
                st.next_delivery - 1
            };
            let (tx, rx) = oneshot::channel();
            let job = DeliveryJob {
                id,
                url: url.clone(),
                body: body.clone(),
                signature: signature.clone(),
                policy: policy.clone(),
                duplicate: copy > 0,
            };
            tokio::spawn(Arc::clone(self).run_delivery(job, tx));
            let status = rx.await.ok().flatten();
            if copy == 0 {
                first = status;
            }
        }
        first
    }

    async fn run_delivery(self: Arc<Self>, job: DeliveryJob, first: oneshot::Sender<Option<u16>>) {
        let mut first = Some(first);
        let mut delay = job.policy.initial_ms.max(1);
        for attempt in 1..=job.policy.max_attempts.max(1) {
            if self.stopped() {
                break;
            }
            let at_ms = self.clock.now_ms();
            let mut req = self
                .client
                .post(&job.url)
                .timeout(Duration::from_millis(job.policy.timeout_ms.max(1)))
                .header(header::CONTENT_TYPE, "application/json")
                .body(job.body.clone());
            if let Some(sig) = &job.signature {
                req = req.header("X-Hub-Signature-256", sig);
            }
            let (status, error) = match req.send().await {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    // Drain the body so the connection can be reused.
                    let _ = resp.bytes().await;
                    (Some(s), None)
                }
                Err(e) => (None, Some(e.to_string())),
            };
            self.st().deliveries.push(DeliveryRecord {
                delivery_id: job.id,
                attempt,
                url: job.url.clone(),
                body: job.body.clone(),
                signature: job.signature.clone(),
                status,
                error,
                at_ms,
                duplicate: job.duplicate,
            });
            if let Some(tx) = first.take() {
                let _ = tx.send(status);
            }
            if status == Some(200) {
                return;
            }
            if attempt < job.policy.max_attempts {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                delay = delay.saturating_mul(2).min(job.policy.max_ms.max(1));
            }
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(None);
        }
    }

    /// Performs Meta's GET verification handshake against the webhook URL.
    pub async fn verify_webhook(&self, token: Option<String>, mode: Option<String>) -> Result<Value, String> {
        let url = self.st().webhook_url.clone().ok_or("no webhook_url configured")?;
        let challenge = rand::random_range(1_000_000_000u64..10_000_000_000u64).to_string();
        let token = token.unwrap_or_else(|| self.verify_token.clone());
        let mode = mode.unwrap_or_else(|| "subscribe".to_string());
        let sep = if url.contains('?') { '&' } else { '?' };
        let full = format!(
            "{url}{sep}hub.mode={}&hub.challenge={challenge}&hub.verify_token={}",
            percent_encode(&mode),
            percent_encode(&token)
        );
        let resp = self
            .client
            .get(&full)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok(json!({
            "status": status,
            "echoed": body == challenge,
            "challenge": challenge,
            "body": body,
            "verify_token": token,
        }))
    }
}

struct DeliveryJob {
    id: u64,
    url: String,
    body: String,
    signature: Option<String>,
    policy: RetryPolicy,
    duplicate: bool,
}

// ---------------------------------------------------------------------------
// Graph errors
// ---------------------------------------------------------------------------

/// A Graph API error response.
#[derive(Clone, Debug)]
pub(crate) struct GraphError {
    pub http: u16,
    pub code: i64,
    pub subcode: Option<i64>,
    pub message: String,
    /// WhatsApp puts this in `error_data.details`; Messenger has no `error_data`.
    pub details: Option<String>,
}

impl GraphError {
    pub fn new(http: u16, code: i64, message: impl Into<String>) -> Self {
        Self {
            http,
            code,
            subcode: None,
            message: message.into(),
            details: None,
        }
    }

    pub fn subcode(mut self, sub: i64) -> Self {
        self.subcode = Some(sub);
        self
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = Some(d.into());
        self
    }

    pub fn from_fault(f: &SendFault) -> Self {
        Self {
            http: f.http_status.unwrap_or(400),
            code: f.code,
            subcode: f.error_subcode,
            message: f
                .message
                .clone()
                .unwrap_or_else(|| format!("(#{}) Simulated error", f.code)),
            details: f.details.clone(),
        }
    }

    /// 401 / 190: missing or wrong token.
    pub fn bad_token() -> Self {
        Self::new(401, 190, "Invalid OAuth access token - Cannot parse access token")
    }

    /// 401 / 190 / 463: the expired-token fault.
    pub fn expired_token(now_secs: i64) -> Self {
        Self::new(
            401,
            190,
            format!(
                "Error validating access token: Session has expired at unix time {}.",
                now_secs - 3_600
            ),
        )
        .subcode(463)
    }

    /// Graph's answer for an object id that is not there.
    pub fn no_object(method: &str, id: &str) -> Self {
        Self::new(
            400,
            100,
            format!(
                "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing \
                 permissions, or does not support this operation."
            ),
        )
        .subcode(33)
    }

    pub fn body(&self, whatsapp: bool, fbtrace: String) -> Json {
        let mut e = Json::obj()
            .with("message", self.message.as_str())
            .with("type", "OAuthException");
        e.set("code", self.code);
        if let Some(s) = self.subcode {
            e.set("error_subcode", s);
        }
        if whatsapp {
            let mut data = Json::obj().with("messaging_product", "whatsapp");
            data.set("details", self.details.clone().unwrap_or_else(|| self.message.clone()));
            e.set("error_data", data);
        } else if let Some(d) = &self.details {
            e.set("error_user_msg", d.as_str());
        }
        e.set("fbtrace_id", fbtrace);
        Json::obj().with("error", e)
    }
}

/// A provider-API JSON response serialised like Graph (ASCII-only).
pub(crate) fn graph_json(status: u16, body: &Json) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body.to_wire()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// A control-API error.
pub(crate) fn ctl_err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

// ---------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------

/// Header map as a JSON object of lower-case name → value (repeated headers joined with ", ").
pub(crate) fn headers_json(h: &HeaderMap) -> Value {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match m.get_mut(k.as_str()) {
            Some(e) => {
                e.push_str(", ");
                e.push_str(&v);
            }
            None => {
                m.insert(k.as_str().to_string(), v);
            }
        }
    }
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// Token from `Authorization: Bearer` or the `access_token` query parameter.
pub(crate) fn request_token(h: &HeaderMap, query: &BTreeMap<String, String>) -> Option<String> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim().to_string());
        }
        if let Some(t) = v.strip_prefix("OAuth ") {
            return Some(t.trim().to_string());
        }
    }
    query.get("access_token").cloned()
}

/// Bearer token only (media download requires the header).
pub(crate) fn bearer_token(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
}

/// Graph API versions look like `v21.0`.
pub(crate) fn valid_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else { return false };
    let mut parts = rest.split('.');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=2` (query string or form body).
pub(crate) fn parse_urlencoded(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// One part of a `multipart/form-data` body.
pub(crate) struct Part {
    pub name: String,
    /// `filename` of the Content-Disposition header, when the part is a file.
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// Minimal `multipart/form-data` parser (enough for media uploads).
pub(crate) fn parse_multipart(content_type: &str, body: &Bytes) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?;
    let boundary = boundary.trim_matches('"');
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, d, 0)? + d.len();
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        // Skip CRLF after the delimiter.
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let next = find(body, d, data_start)?;
        let mut data_end = next;
        if data_end >= 2 && &body[data_end - 2..data_end] == b"\r\n" {
            data_end -= 2;
        }
        let mut name = String::new();
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = v.trim_matches('"').to_string();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_string());
                    }
                }
            } else if lower.starts_with("content-type:") {
                ctype = Some(line["content-type:".len()..].trim().to_string());
            }
        }
        parts.push(Part {
            name,
            filename,
            content_type: ctype,
            data: body.slice(data_start..data_end),
        });
        pos = next + d.len();
        if pos >= body.len() {
            break;
        }
    }
    Some(parts)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

// ---------------------------------------------------------------------------
// Rate buckets (on the SimClock)
// ---------------------------------------------------------------------------

/// Token bucket measured on the simulator clock.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last_ms: i64,
}

impl Bucket {
    pub fn new(capacity: f64, now_ms: i64) -> Self {
        Self {
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    /// Takes one token; `capacity` 0 disables the limit.
    pub fn take(&mut self, capacity: f64, refill_per_ms: f64, now_ms: i64) -> bool {
        if capacity <= 0.0 {
            return true;
        }
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * refill_per_ms).min(capacity);
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A 1×1 transparent PNG used when an inbound image carries no bytes.
pub(crate) const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A one-page, valid `%PDF-1.4` document used when an inbound file carries no bytes.
pub(crate) const TINY_PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n\
<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>\n\
endobj\nxref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \n0000000115 00000 n \n\
trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n184\n%%EOF\n";

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A running axum server bound to 127.0.0.1.
pub(crate) struct Server {
    pub base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub async fn bind() -> std::io::Result<(tokio::net::TcpListener, String)> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        Ok((listener, format!("http://{addr}")))
    }

    pub fn serve(listener: tokio::net::TcpListener, base_url: String, router: Router) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = %e, "simulator server stopped with an error");
            }
        });
        Self {
            base_url,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// Shared control routes
// ---------------------------------------------------------------------------

/// Control routes every simulator has, mounted both at `/_sim/...` and `/_sim/<name>/...`.
pub(crate) fn control_router(core: Arc<Core>) -> Router {
    let name = core.name;
    let mut r: Router<Arc<Core>> = Router::new();
    for prefix in ["/_sim".to_string(), format!("/_sim/{name}")] {
        r = r
            .route(&format!("{prefix}/faults"), get(get_faults).post(set_faults))
            .route(&format!("{prefix}/clock"), get(get_clock).post(set_clock))
            .route(&format!("{prefix}/retry"), get(get_retry).post(set_retry))
            .route(&format!("{prefix}/webhook"), get(get_webhook).post(set_webhook))
            .route(&format!("{prefix}/verify-webhook"), post(verify_webhook))
            .route(&format!("{prefix}/deliveries"), get(get_deliveries))
            .route(&format!("{prefix}/sent"), get(get_sent))
            .route(&format!("{prefix}/reset-logs"), post(reset_logs));
    }
    r.with_state(core)
}

/// Parses a control body; an empty body counts as `{}`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(text).map_err(|e| format!("bad request body: {e}"))
}

async fn get_faults(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.faults()).into_response()
}

async fn set_faults(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    match parse_body::<Faults>(&body) {
        Ok(f) => {
            core.st().faults = f.clone();
            axum::Json(f).into_response()
        }
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockReq {
    advance_ms: Option<i64>,
    set_ms: Option<i64>,
}

/// `GET /_sim/clock`: the simulator's time (every simulator answers the same way).
pub(crate) fn clock_now(clock: &SimClock) -> Response {
    axum::Json(json!({ "now_ms": clock.now_ms() })).into_response()
}

/// `POST /_sim/clock` `{"set_ms"}` and/or `{"advance_ms"}`.
pub(crate) fn clock_move(clock: &SimClock, body: &Bytes) -> Response {
    match parse_body::<ClockReq>(body) {
        Ok(req) => {
            if let Some(ms) = req.set_ms {
                clock.set(ms);
            }
            if let Some(ms) = req.advance_ms {
                clock.advance(ms);
            }
            clock_now(clock)
        }
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_clock(State(core): State<Arc<Core>>) -> Response {
    clock_now(&core.clock)
}

async fn set_clock(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    clock_move(&core.clock, &body)
}

async fn get_retry(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.st().retry.clone()).into_response()
}

async fn set_retry(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    match parse_body::<RetryPatch>(&body) {
        Ok(p) => {
            let mut st = core.st();
            if let Some(v) = p.initial_ms {
                st.retry.initial_ms = v;
            }
            if let Some(v) = p.max_ms {
                st.retry.max_ms = v;
            }
            if let Some(v) = p.max_attempts {
                st.retry.max_attempts = v.max(1);
            }
            if let Some(v) = p.timeout_ms {
                st.retry.timeout_ms = v;
            }
            axum::Json(st.retry.clone()).into_response()
        }
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookReq {
    url: Option<String>,
    /// Perform the GET verification handshake right away, as Meta does when the URL is saved.
    #[serde(default)]
    verify: bool,
}

async fn get_webhook(State(core): State<Arc<Core>>) -> Response {
    axum::Json(json!({ "url": core.st().webhook_url })).into_response()
}

async fn set_webhook(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req = match parse_body::<WebhookReq>(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    core.st().webhook_url = req.url.clone();
    let mut out = json!({ "url": req.url });
    if req.verify && req.url.is_some() {
        out["verification"] = match core.verify_webhook(None, None).await {
            Ok(v) => v,
            Err(e) => json!({ "error": e }),
        };
    }
    axum::Json(out).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyReq {
    verify_token: Option<String>,
    mode: Option<String>,
}

async fn verify_webhook(State(core): State<Arc<Core>>, body: Bytes) -> Response {
    let req = match parse_body::<VerifyReq>(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    match core.verify_webhook(req.verify_token, req.mode).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

async fn get_deliveries(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.st().deliveries.clone()).into_response()
}

async fn get_sent(State(core): State<Arc<Core>>) -> Response {
    axum::Json(core.st().requests.clone()).into_response()
}

async fn reset_logs(State(core): State<Arc<Core>>) -> Response {
    let mut st = core.st();
    st.requests.clear();
    st.deliveries.clear();
    axum::Json(json!({ "ok": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(valid_version("v21.0"));
        assert!(valid_version("v9.10"));
        assert!(!valid_version("21.0"));
        assert!(!valid_version("v21"));
        assert!(!valid_version("v21.0.1"));
        assert!(!valid_version("vx.0"));
    }

    #[test]
    fn urlencoding_roundtrip() {
        let m = parse_urlencoded("a=1&b=h%C3%A9llo+world&c=%7B%22x%22%3A1%7D&d");
        assert_eq!(m["b"], "héllo world");
        assert_eq!(m["c"], "{\"x\":1}");
        assert_eq!(m["d"], "");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn multipart() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--XyZ\r\n\
              Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\
              \x89PNG\r\n--XyZ--\r\n",
        );
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "messaging_product");
        assert_eq!(&parts[0].data[..], b"whatsapp");
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(&parts[1].data[..], b"\x89PNG");
    }

    #[test]
    fn tiny_pdf_xref_offsets_are_right() {
        let at = |off: usize, what: &[u8]| TINY_PDF[off..].starts_with(what);
        assert!(at(0, b"%PDF-1.4\n"));
        assert!(at(9, b"1 0 obj") && at(58, b"2 0 obj") && at(115, b"3 0 obj") && at(184, b"xref"));
        assert!(TINY_PDF.ends_with(b"%%EOF\n"));
        assert!(TINY_PNG.starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[test]
    fn bucket() {
        let mut b = Bucket::new(2.0, 0);
        assert!(b.take(2.0, 0.001, 0));
        assert!(b.take(2.0, 0.001, 0));
        assert!(!b.take(2.0, 0.001, 0));
        assert!(b.take(2.0, 0.001, 1_000));
        assert!(b.take(0.0, 0.0, 0));
    }
}
