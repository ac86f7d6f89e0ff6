//! Messenger Platform simulator — Facebook Messenger (channels.md §2) and, with
//! `instagram: true`, Instagram Messaging (§3), which share the Send API and
//! the `entry[].messaging[]` webhook shape.
//!
//! - Provider API: `POST /{version}/me/messages` and `/{version}/{page_id}/messages`
//!   (Instagram also `/{version}/{ig_account_id}/messages`), token as `access_token`
//!   query parameter or Bearer, JSON or form-encoded bodies, optional `appsecret_proof`.
//!   Answers `{"recipient_id","message_id"}` then emits the echo webhook with the same `mid`
//!   (and, on Messenger, a `delivery` receipt). `GET /{version}/{psid}` returns a profile.
//! - Policy (§2.8, §3.6, §10): 24 h standard window per PSID/IGSID (7 days when the
//!   opening message came from an ad referral, Messenger); outside it `10/2018278`;
//!   `MESSAGE_TAG` + `HUMAN_AGENT` accepted up to 7 days; blocked users `551/1545041`;
//!   PSIDs never seen `100/2018001`; Messenger text ≤ 2,000 characters, Instagram
//!   ≤ 1,000 bytes; 300 text / 10 audio-video sends per second → `613`.
//! - Attachment CDN: customer media with no `attachment_url` is served by the simulator at
//!   `GET /cdn/{kind}/{id}?oh=<hash>&oe=<expiry, hex Unix seconds>` — public (no token) but
//!   expiring after 1 h on the SimClock, like Meta's lookaside/scontent links (403 when expired
//!   or when `oh`/`oe` do not match).
//! - Control API under `/_sim/messenger/...` (both platforms), plus `/_sim/faults`, `/_sim/clock`;
//!   `GET /` is a small page to play the customer by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::clock::SimClock;
use crate::common::{
    self, Bucket, Core, GraphError, Server, TINY_PDF, TINY_PNG, ctl_err, graph_json, headers_json, hmac_hex, lock,
    parse_body, parse_urlencoded, request_token, valid_version,
};
use crate::jobj;
use crate::json::Json;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Lifetime of attachment CDN links (Meta's `oe` expiry).
const CDN_TTL_MS: i64 = 60 * 60 * 1000;

/// How the simulator is set up.
#[derive(Clone, Debug)]
pub struct MessengerConfig {
    /// Signs webhooks (`X-Hub-Signature-256`) and checks `appsecret_proof`.
    pub app_secret: String,
    /// Sent in the GET verification handshake.
    pub verify_token: String,
    /// Required on every Send API call (`access_token` query or Bearer), else 401 + 190.
    pub page_access_token: String,
    /// The Facebook Page id (`entry[].id` and the echo sender on Messenger).
    pub page_id: String,
    /// The Instagram professional account id (`entry[].id` and our side of Instagram events).
    pub ig_account_id: Option<String>,
    /// Where webhooks go (can also be set with `POST /_sim/messenger/webhook`).
    pub webhook_url: Option<String>,
    /// Emit `object: "instagram"` shapes (§3) instead of `object: "page"`.
    pub instagram: bool,
}

impl Default for MessengerConfig {
    /// Messenger demo values (the ids of channels.md's examples).
    fn default() -> Self {
        Self {
            app_secret: "demo-app-secret".into(),
            verify_token: "sw-verify".into(),
            page_access_token: "sim-page-token".into(),
            page_id: "104400112233445".into(),
            ig_account_id: None,
            webhook_url: None,
            instagram: false,
        }
    }
}

impl MessengerConfig {
    /// Instagram demo values.
    pub fn instagram_default() -> Self {
        Self {
            ig_account_id: Some("17841400999888777".into()),
            instagram: true,
            ..Self::default()
        }
    }
}

/// A running Messenger or Instagram simulator.
pub struct MessengerSim {
    server: Server,
    core: Arc<Core>,
}

impl MessengerSim {
    /// Binds 127.0.0.1 on a free port and starts serving on a tokio task.
    pub async fn start(config: MessengerConfig, clock: SimClock) -> std::io::Result<MessengerSim> {
        let (listener, base_url) = Server::bind().await?;
        let core = Core::new(
            "messenger",
            clock,
            config.app_secret.clone(),
            config.verify_token.clone(),
            config.webhook_url.clone(),
        );
        let (title, id_label) = if config.instagram {
            ("Instagram", "IGSID")
        } else {
            ("Messenger", "PSID")
        };
        let page = crate::page::router(crate::page::PageSpec {
            provider: title,
            control_prefix: "/_sim/messenger",
            id_field: "psid",
            id_label,
            recipient_field: "recipient",
            id_record_field: "mid",
        });
        let ms = Arc::new(Ms::new(config, Arc::clone(&core), base_url.clone()));
        let router = Router::new()
            .merge(page)
            .merge(common::control_router(Arc::clone(&core)))
            .merge(control_router(Arc::clone(&ms)))
            .merge(api_router(ms));
        let server = Server::serve(listener, base_url, router);
        Ok(MessengerSim { server, core })
    }

    /// `http://127.0.0.1:PORT` — the Graph base the adapter uses (paths carry the version).
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Same base; the control API lives under `/_sim/messenger` (and `/_sim/faults`, `/_sim/clock`).
    pub fn control(&self) -> &str {
        &self.server.base_url
    }

    /// Stops the server and any webhook retries still pending.
    pub async fn shutdown(mut self) {
        self.core.stop();
        self.server.shutdown().await;
    }
}

impl Drop for MessengerSim {
    fn drop(&mut self) {
        self.core.stop();
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// Tunables set with `POST /_sim/messenger/options`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MsOptions {
    /// The Page has the Human Agent feature; without it HUMAN_AGENT sends fail with code 200.
    human_agent_approved: bool,
    /// Reject Send API calls without a valid `appsecret_proof`.
    require_appsecret_proof: bool,
    /// Messenger: emit a `delivery` receipt after each echo.
    auto_delivery: bool,
    /// Emit the echo webhook after each accepted send.
    auto_echo: bool,
    /// Emit every webhook twice (Instagram connected through both login paths).
    emit_twice: bool,
    /// `app_id` in echoes.
    app_id: i64,
    /// Delay before the echo and before the delivery receipt.
    event_delay_ms: u64,
    /// Send API calls per second for text (0 = unlimited) → 613.
    text_per_sec: u32,
    /// Send API calls per second for audio/video (0 = unlimited) → 613.
    media_per_sec: u32,
}

impl Default for MsOptions {
    fn default() -> Self {
        Self {
            human_agent_approved: true,
            require_appsecret_proof: false,
            auto_delivery: true,
            auto_echo: true,
            emit_twice: false,
            app_id: 1_000_000_000_000_001,
            event_delay_ms: 20,
            text_per_sec: 300,
            media_per_sec: 10,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
struct User {
    id: String,
    name: Option<String>,
    last_inbound_ms: Option<i64>,
    /// Length of the standard window opened by the last inbound (24 h, or 7 days after an ad).
    window_ms: i64,
}

/// Bytes served on the simulated attachment CDN.
#[derive(Clone, Debug)]
struct CdnObject {
    bytes: Bytes,
    mime_type: String,
    /// The `oh` query parameter the link must carry.
    oh: String,
    expires_ms: i64,
}

#[derive(Clone, Debug)]
struct SentMsg {
    recipient: String,
    at_ms: i64,
}

struct MsState {
    users: BTreeMap<String, User>,
    blocked: BTreeSet<String>,
    sent: HashMap<String, SentMsg>,
    /// Keyed by `{kind}/{id}`.
    cdn: HashMap<String, CdnObject>,
    cdn_seq: u64,
    options: MsOptions,
    text_bucket: Bucket,
    media_bucket: Bucket,
    seq: u64,
}

struct Ms {
    core: Arc<Core>,
    cfg: MessengerConfig,
    base_url: String,
    st: Mutex<MsState>,
}

impl Ms {
    fn new(cfg: MessengerConfig, core: Arc<Core>, base_url: String) -> Self {
        let now = core.clock.now_ms();
        let options = MsOptions::default();
        let st = MsState {
            users: BTreeMap::new(),
            blocked: BTreeSet::new(),
            sent: HashMap::new(),
            cdn: HashMap::new(),
            cdn_seq: 0,
            text_bucket: Bucket::new(f64::from(options.text_per_sec), now),
            media_bucket: Bucket::new(f64::from(options.media_per_sec), now),
            options,
            seq: 0,
        };
        Self {
            core,
            cfg,
            base_url,
            st: Mutex::new(st),
        }
    }

    fn st(&self) -> MutexGuard<'_, MsState> {
        lock(&self.st)
    }

    /// Our side of every event: the Page, or the Instagram account.
    fn own_id(&self) -> &str {
        if self.cfg.instagram {
            self.cfg.ig_account_id.as_deref().unwrap_or(&self.cfg.page_id)
        } else {
            &self.cfg.page_id
        }
    }

    fn new_mid(&self, st: &mut MsState) -> String {
        st.seq += 1;
        if self.cfg.instagram {
            let raw = format!("ig_message_item:1:IGMessageData:{}:{:020}", self.own_id(), st.seq);
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
        } else {
            let raw = format!("sbsim:{}:{:012}", self.own_id(), st.seq);
            format!("m_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
        }
    }

    /// Registers bytes on the simulated CDN and returns their expiring public link.
    fn cdn_put(&self, st: &mut MsState, kind: &str, bytes: Vec<u8>, mime_type: String) -> String {
        st.cdn_seq += 1;
        let id = format!("{}", 4_780_000_000_000_000u64 + st.cdn_seq);
        let oh = format!("00_{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let expires_ms = self.core.clock.now_ms() + CDN_TTL_MS;
        let url = format!("{}/cdn/{kind}/{id}?oh={oh}&oe={}", self.base_url, oe_hex(expires_ms));
        st.cdn.insert(
            format!("{kind}/{id}"),
            CdnObject {
                bytes: bytes.into(),
                mime_type,
                oh,
                expires_ms,
            },
        );
        url
    }

    fn envelope(&self, entries: Vec<Json>) -> Json {
        jobj! { "object": if self.cfg.instagram { "instagram" } else { "page" }, "entry": entries }
    }

    /// `{"id", "time", "messaging"|"standby": [events]}`
    fn entry(&self, events: Vec<Json>, standby: bool) -> Json {
        let mut e = jobj! { "id": self.own_id(), "time": self.core.clock.now_ms() };
        e.set(if standby { "standby" } else { "messaging" }, events);
        e
    }

    /// Event from the customer to us.
    fn inbound_event(&self, psid: &str, ts: Option<i64>) -> Json {
        let mut e = jobj! { "sender": jobj! { "id": psid }, "recipient": jobj! { "id": self.own_id() } };
        if let Some(ts) = ts {
            e.set("timestamp", ts);
        }
        e
    }

    async fn deliver(&self, body: Json) -> Option<u16> {
        let twice = self.st().options.emit_twice;
        self.core.deliver(body.to_wire(), twice).await
    }
}

// ---------------------------------------------------------------------------
// Provider API
// ---------------------------------------------------------------------------

fn api_router(ms: Arc<Ms>) -> Router {
    Router::new()
        .route("/cdn/{kind}/{id}", get(cdn_get))
        .route("/{version}/{node}/messages", post(send_message))
        .route("/{version}/{node}", get(profile))
        .with_state(ms)
}

fn param_err(m: impl Into<String>) -> GraphError {
    GraphError::new(400, 100, format!("(#100) {}", m.into()))
}

fn str_of<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// A Send API body, from JSON or from a form whose fields hold JSON values.
fn parse_send_body(headers: &HeaderMap, body: &Bytes) -> Option<Map<String, Value>> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let form = parse_urlencoded(&String::from_utf8_lossy(body));
        let map = form
            .into_iter()
            .map(|(k, v)| {
                let parsed = if v.starts_with('{') || v.starts_with('[') {
                    serde_json::from_str(&v).unwrap_or(Value::String(v))
                } else {
                    Value::String(v)
                };
                (k, parsed)
            })
            .collect();
        return Some(map);
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.as_object().cloned())
}

impl Ms {
    fn record_call(
        &self,
        method: &str,
        path: &str,
        query: &Option<String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> usize {
        let raw = String::from_utf8_lossy(body).into_owned();
        let parsed = parse_send_body(headers, body).map(Value::Object);
        let p = parsed.clone().unwrap_or(Value::Null);
        self.core.record_request(json!({
            "seq": null,
            "method": method,
            "path": path,
            "query": query,
            "mid": null,
            "recipient": p.get("recipient").and_then(|r| r.get("id")).cloned(),
            "messaging_type": p.get("messaging_type").cloned(),
            "tag": p.get("tag").cloned(),
            "body": parsed.unwrap_or_else(|| if raw.is_empty() { Value::Null } else { Value::String(raw.clone()) }),
            "raw_body": raw,
            "headers": headers_json(headers),
            "at_ms": self.core.clock.now_ms(),
            "status": null,
            "response": null,
        }))
    }

    fn finish(&self, idx: usize, result: Result<Json, GraphError>, mid: Option<String>) -> Response {
        let (status, body) = match result {
            Ok(b) => (200, b),
            Err(e) => (e.http, e.body(false, self.core.fbtrace())),
        };
        self.core.complete_request(
            idx,
            &[
                ("status", json!(status)),
                ("response", body.to_value()),
                ("mid", json!(mid)),
            ],
        );
        graph_json(status, &body)
    }

    fn check_call(
        &self,
        version: &str,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
    ) -> Result<(), GraphError> {
        if !valid_version(version) {
            return Err(GraphError::new(
                400,
                2500,
                format!("Unknown path components: /{version}"),
            ));
        }
        if self.core.faults().expired_token {
            return Err(GraphError::expired_token(self.core.clock.now_secs()));
        }
        let token = request_token(headers, query);
        if token.as_deref() != Some(self.cfg.page_access_token.as_str()) {
            return Err(GraphError::bad_token());
        }
        let proof = query.get("appsecret_proof");
        let expected = hmac_hex(self.cfg.app_secret.as_bytes(), self.cfg.page_access_token.as_bytes());
        match proof {
            Some(p) if *p != expected => Err(GraphError::new(
                400,
                100,
                "Invalid appsecret_proof provided in the API argument",
            )),
            None if self.st().options.require_appsecret_proof => Err(GraphError::new(
                400,
                100,
                "API calls from the server require an appsecret_proof argument",
            )),
            _ => Ok(()),
        }
    }

    async fn send(
        self: &Arc<Self>,
        version: &str,
        node: &str,
        query: &BTreeMap<String, String>,
        headers: &HeaderMap,
        body: Option<Map<String, Value>>,
    ) -> Result<(Json, Option<String>), GraphError> {
        let mut query = query.clone();
        // A form body may carry the token and proof too.
        if let Some(b) = &body {
            for k in ["access_token", "appsecret_proof"] {
                if let Some(v) = str_of(b, k) {
                    query.entry(k.to_string()).or_insert_with(|| v.to_string());
                }
            }
        }
        self.check_call(version, headers, &query)?;
        let ours = node == "me"
            || node == self.cfg.page_id
            || (self.cfg.instagram && self.cfg.ig_account_id.as_deref() == Some(node));
        if !ours {
            return Err(GraphError::no_object("post", node));
        }
        if let Some(f) = self.core.take_send_fault() {
            if let Some(ms) = f.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            return Err(GraphError::from_fault(&f));
        }
        let b = body.ok_or_else(|| param_err("Invalid parameter"))?;
        let recipient = b
            .get("recipient")
            .and_then(Value::as_object)
            .ok_or_else(|| param_err("The parameter recipient is required"))?;
        let (rid, by_ref) = match (str_of(recipient, "id"), str_of(recipient, "user_ref")) {
            (Some(id), _) => (id.to_string(), false),
            (None, Some(r)) => (r.to_string(), true),
            _ => return Err(param_err("The parameter recipient is required")),
        };

        // Sender actions (typing_on / typing_off / mark_seen).
        if let Some(action) = str_of(&b, "sender_action") {
            if b.contains_key("message") {
                return Err(param_err("sender_action cannot be sent with message"));
            }
            if !matches!(action, "typing_on" | "typing_off" | "mark_seen" | "react" | "unreact") {
                return Err(param_err(format!(
                    "Param sender_action must be one of {{typing_on, typing_off, mark_seen}} - got \"{action}\""
                )));
            }
            self.policy(&rid, by_ref, "RESPONSE", None)?;
            return Ok((jobj! { "recipient_id": rid.as_str() }, None));
        }

        let message = b
            .get("message")
            .and_then(Value::as_object)
            .ok_or_else(|| param_err("The parameter message is required"))?;
        let kind = validate_message(message, self.cfg.instagram)?;
        let mtype = match str_of(&b, "messaging_type") {
            Some(t @ ("RESPONSE" | "UPDATE" | "MESSAGE_TAG")) => t.to_string(),
            Some(other) => {
                return Err(param_err(format!(
                    "Param messaging_type must be one of {{RESPONSE, UPDATE, MESSAGE_TAG}} - got \"{other}\""
                )));
            }
            None if self.cfg.instagram => "RESPONSE".to_string(),
            None => return Err(param_err("The parameter messaging_type is required")),
        };
        let tag = str_of(&b, "tag");
        match (mtype.as_str(), tag) {
            ("MESSAGE_TAG", None) => {
                return Err(param_err(
                    "The parameter tag is required when messaging_type is MESSAGE_TAG",
                ));
            }
            ("MESSAGE_TAG", Some("HUMAN_AGENT")) => {}
            ("MESSAGE_TAG", Some(other)) => {
                return Err(param_err(format!(
                    "Param tag must be one of {{HUMAN_AGENT}} - got \"{other}\""
                )));
            }
            (_, Some(_)) => return Err(param_err("Param tag can only be used with messaging_type MESSAGE_TAG")),
            _ => {}
        }
        self.policy(&rid, by_ref, &mtype, tag)?;

        let now = self.core.clock.now_ms();
        let (mid, opts) = {
            let mut st = self.st();
            let opts = st.options.clone();
            let ok = if kind == MsgKind::AudioVideo {
                st.media_bucket.take(
                    f64::from(opts.media_per_sec),
                    f64::from(opts.media_per_sec) / 1000.0,
                    now,
                )
            } else {
                st.text_bucket
                    .take(f64::from(opts.text_per_sec), f64::from(opts.text_per_sec) / 1000.0, now)
            };
            if !ok {
                return Err(GraphError::new(
                    400,
                    613,
                    "(#613) Calls to this API have exceeded the rate limit.",
                ));
            }
            let mid = self.new_mid(&mut st);
            st.sent.insert(
                mid.clone(),
                SentMsg {
                    recipient: rid.clone(),
                    at_ms: now,
                },
            );
            (mid, opts)
        };
        let mut resp = Json::obj();
        if !by_ref {
            resp.set("recipient_id", rid.as_str());
        }
        resp.set("message_id", mid.as_str());
        let reusable = message
            .get("attachment")
            .and_then(|a| a.get("payload"))
            .and_then(|p| p.get("is_reusable"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if reusable {
            resp.set("attachment_id", (9_100_000_000_000_000u64 + self.st().seq).to_string());
        }
        if !by_ref && opts.auto_echo {
            self.spawn_echo(mid.clone(), rid, message.clone(), opts);
        }
        Ok((resp, Some(mid)))
    }

    /// Window, tag, block and unknown-user rules.
    fn policy(&self, rid: &str, by_ref: bool, mtype: &str, tag: Option<&str>) -> Result<(), GraphError> {
        if by_ref {
            return Ok(());
        }
        let st = self.st();
        if st.blocked.contains(rid) {
            return Err(GraphError::new(400, 551, "(#551) This person isn't available right now.").subcode(1545041));
        }
        let user = st
            .users
            .get(rid)
            .ok_or_else(|| param_err("No matching user found").subcode(2018001))?;
        let now = self.core.clock.now_ms();
        let last = user.last_inbound_ms.unwrap_or(i64::MIN / 2);
        if now < last + user.window_ms.max(DAY_MS) && mtype != "MESSAGE_TAG" {
            return Ok(());
        }
        if mtype == "MESSAGE_TAG" && tag == Some("HUMAN_AGENT") && now < last + WEEK_MS {
            if !st.options.human_agent_approved {
                return Err(GraphError::new(
                    400,
                    200,
                    "(#200) The HUMAN_AGENT tag requires the Human Agent feature (pages_messaging_human_agent)",
                ));
            }
            return Ok(());
        }
        Err(GraphError::new(400, 10, "(#10) This message is sent outside of allowed window.").subcode(2018278))
    }

    /// Echo with the same `mid` (and, on Messenger, a delivery receipt).
    fn spawn_echo(self: &Arc<Self>, mid: String, psid: String, message: Map<String, Value>, opts: MsOptions) {
        let ms = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(opts.event_delay_ms)).await;
            let now = ms.core.clock.now_ms();
            let mut m = jobj! { "is_echo": true };
            if !ms.cfg.instagram {
                m.set("app_id", opts.app_id);
            }
            if let Some(md) = message.get("metadata").and_then(Value::as_str) {
                m.set("metadata", md);
            }
            m.set("mid", mid.as_str());
            if let Some(t) = message.get("text").and_then(Value::as_str) {
                m.set("text", t);
            }
            if let Some(a) = message.get("attachment") {
                let atype = a.get("type").cloned().unwrap_or(Value::Null);
                let url = a.get("payload").and_then(|p| p.get("url")).cloned();
                let mut payload = Json::obj();
                if let Some(u) = url {
                    payload.set("url", Json::from(u));
                }
                m.set(
                    "attachments",
                    vec![jobj! { "type": Json::from(atype), "payload": payload }],
                );
            }
            if let Some(q) = message.get("quick_replies") {
                m.set("quick_replies", Json::from(q));
            }
            let event = jobj! {
                "sender": jobj! { "id": ms.own_id() },
                "recipient": jobj! { "id": psid.as_str() },
                "timestamp": now,
                "message": m,
            };
            ms.deliver(ms.envelope(vec![ms.entry(vec![event], false)])).await;
            if !ms.cfg.instagram && opts.auto_delivery {
                tokio::time::sleep(Duration::from_millis(opts.event_delay_ms)).await;
                let watermark = ms.core.clock.now_ms();
                let event = ms.inbound_event(&psid, None).with(
                    "delivery",
                    jobj! { "mids": vec![Json::from(mid.as_str())], "watermark": watermark },
                );
                ms.deliver(ms.envelope(vec![ms.entry(vec![event], false)])).await;
            }
        });
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum MsgKind {
    Text,
    AudioVideo,
    Other,
}

fn validate_message(m: &Map<String, Value>, instagram: bool) -> Result<MsgKind, GraphError> {
    let text = m.get("text");
    let attachment = m.get("attachment");
    let kind = match (text, attachment) {
        (Some(_), Some(_)) => {
            return Err(param_err(
                "Only one of message[text] and message[attachment] may be set",
            ));
        }
        (None, None) => return Err(param_err("Must send either message[text] or message[attachment]")),
        (Some(t), None) => {
            let t = t
                .as_str()
                .ok_or_else(|| param_err("Param message[text] must be a string"))?;
            if t.is_empty() {
                return Err(param_err("Param message[text] must be non-empty"));
            }
            if instagram && t.len() > 1000 {
                return Err(param_err(
                    "Length of param message[text] must be less than or equal to 1000 bytes",
                ));
            }
            if !instagram && t.chars().count() > 2000 {
                return Err(param_err(
                    "Length of param message[text] must be less than or equal to 2000",
                ));
            }
            MsgKind::Text
        }
        (None, Some(a)) => {
            let atype = a
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| param_err("Param message[attachment][type] is required"))?;
            let payload = a
                .get("payload")
                .and_then(Value::as_object)
                .ok_or_else(|| param_err("Param message[attachment][payload] is required"))?;
            match atype {
                "image" | "audio" | "video" | "file" => {
                    if !payload.contains_key("url") && !payload.contains_key("attachment_id") {
                        return Err(param_err(
                            "Param message[attachment][payload] must contain url or attachment_id",
                        ));
                    }
                }
                "template" => {
                    if !payload.contains_key("template_type") {
                        return Err(param_err(
                            "Param message[attachment][payload][template_type] is required",
                        ));
                    }
                }
                "like_heart" if instagram => {}
                other => {
                    return Err(param_err(format!(
                        "Param message[attachment][type] must be one of {{image, audio, video, file, template}} - \
                         got \"{other}\""
                    )));
                }
            }
            if matches!(atype, "audio" | "video") {
                MsgKind::AudioVideo
            } else {
                MsgKind::Other
            }
        }
    };
    if let Some(q) = m.get("quick_replies") {
        let n = q.as_array().map_or(usize::MAX, Vec::len);
        if n == 0 || n > 13 {
            return Err(param_err(
                "Param message[quick_replies] must be an array of 1 to 13 items",
            ));
        }
    }
    if let Some(md) = m.get("metadata")
        && md.as_str().is_none_or(|s| s.len() > 1000)
    {
        return Err(param_err(
            "Param message[metadata] must be a string of at most 1000 characters",
        ));
    }
    Ok(kind)
}

async fn send_message(
    State(ms): State<Arc<Ms>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let idx = ms.record_call("POST", &format!("/{version}/{node}/messages"), &q, &headers, &body);
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    match ms
        .send(&version, &node, &query, &headers, parse_send_body(&headers, &body))
        .await
    {
        Ok((resp, mid)) => ms.finish(idx, Ok(resp), mid),
        Err(e) => ms.finish(idx, Err(e), None),
    }
}

/// `oe`: expiry as upper-case hex Unix seconds, as on Meta's CDN links.
fn oe_hex(expires_ms: i64) -> String {
    format!("{:08X}", expires_ms.div_euclid(1000))
}

/// Default bytes and MIME type of a customer attachment of `kind`.
fn default_attachment(kind: &str, mid: &str) -> (Vec<u8>, &'static str) {
    match kind {
        "image" | "share" | "story_mention" | "story" => (TINY_PNG.to_vec(), "image/png"),
        "file" => (TINY_PDF.to_vec(), "application/pdf"),
        "video" | "reel" | "ig_reel" => (format!("sb-sim {kind} bytes for {mid}").into_bytes(), "video/mp4"),
        "audio" => (format!("sb-sim {kind} bytes for {mid}").into_bytes(), "audio/mpeg"),
        _ => (
            format!("sb-sim {kind} bytes for {mid}").into_bytes(),
            "application/octet-stream",
        ),
    }
}

/// `GET /cdn/{kind}/{id}?oh=..&oe=..` — public, expiring attachment link.
async fn cdn_get(
    State(ms): State<Arc<Ms>>,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = ms.record_call("GET", &format!("/cdn/{kind}/{id}"), &q, &headers, &Bytes::new());
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let obj = ms.st().cdn.get(&format!("{kind}/{id}")).cloned();
    let (status, text) = match &obj {
        None => (StatusCode::NOT_FOUND, "Not Found"),
        Some(o) if query.get("oh") != Some(&o.oh) || query.get("oe") != Some(&oe_hex(o.expires_ms)) => {
            (StatusCode::FORBIDDEN, "Bad URL hash")
        }
        Some(o) if ms.core.clock.now_ms() >= o.expires_ms => (StatusCode::FORBIDDEN, "URL signature expired"),
        Some(_) => (StatusCode::OK, ""),
    };
    ms.core.complete_request(idx, &[("status", json!(status.as_u16()))]);
    match obj {
        Some(o) if status == StatusCode::OK => {
            let mut resp = (StatusCode::OK, o.bytes).into_response();
            if let Ok(v) = HeaderValue::from_str(&o.mime_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        _ => (status, text).into_response(),
    }
}

/// `GET /{version}/{PSID or IGSID}?fields=...`
async fn profile(
    State(ms): State<Arc<Ms>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = ms.record_call("GET", &format!("/{version}/{node}"), &q, &headers, &Bytes::new());
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let result = (|| {
        ms.check_call(&version, &headers, &query)?;
        let st = ms.st();
        let u = st.users.get(&node).ok_or_else(|| GraphError::no_object("get", &node))?;
        let name = u
            .name
            .clone()
            .unwrap_or_else(|| format!("User {}", &node[node.len().saturating_sub(4)..]));
        let pic = format!("https://profile.example.test/{node}.jpg");
        Ok(if ms.cfg.instagram {
            let username = name.to_lowercase().replace(' ', ".");
            jobj! { "name": name, "username": username, "profile_pic": pic, "id": node.as_str() }
        } else {
            let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
            jobj! { "first_name": first, "last_name": last, "profile_pic": pic, "id": node.as_str() }
        })
    })();
    ms.finish(idx, result, None)
}

// ---------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------

fn control_router(ms: Arc<Ms>) -> Router {
    Router::new()
        .route("/_sim/messenger/customer-message", post(customer_message))
        .route("/_sim/messenger/batch", post(batch))
        .route("/_sim/messenger/status", post(status))
        .route("/_sim/messenger/blocked", post(blocked))
        .route("/_sim/messenger/options", get(get_options).post(set_options))
        .route("/_sim/messenger/users", get(users))
        .with_state(ms)
}

/// "The customer does X" — body of `POST /_sim/messenger/customer-message`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerEvent {
    /// PSID / IGSID of the customer.
    #[serde(alias = "from")]
    psid: String,
    name: Option<String>,
    /// text (default) | image | video | audio | file | share | story_mention | reel | ig_reel | fallback |
    /// reaction | edit | postback | deleted | unsupported
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    quick_reply_payload: Option<String>,
    /// External attachment link used as-is; without it the bytes go on the simulated CDN.
    attachment_url: Option<String>,
    /// Attachment bytes to serve on the simulated CDN (when no `attachment_url`).
    data_base64: Option<String>,
    /// Content-Type of those bytes (default per type: image/png, application/pdf, video/mp4, audio/mpeg).
    mime_type: Option<String>,
    /// `reply_to.mid`
    reply_to_mid: Option<String>,
    /// Instagram story reply: `reply_to.story.{id,url}`
    reply_to_story_id: Option<String>,
    reply_to_story_url: Option<String>,
    /// Target of reaction / edit / deleted.
    target_mid: Option<String>,
    emoji: Option<String>,
    reaction: Option<String>,
    /// react (default) | unreact
    action: Option<String>,
    num_edit: Option<i64>,
    payload: Option<String>,
    title: Option<String>,
    /// Ad referral passed through at event level; on Messenger it opens a 7-day window.
    referral: Option<Value>,
    /// Deliver under `standby` instead of `messaging` (handover protocol).
    #[serde(default)]
    standby: bool,
    /// Override the generated mid.
    mid: Option<String>,
    /// Override the event timestamp (ms).
    timestamp: Option<i64>,
    /// Extra fields merged into the `message` object.
    extra: Option<Value>,
}

impl Ms {
    /// Builds one `messaging[]` event and updates the user registry.
    fn build_event(&self, req: &CustomerEvent) -> Result<(Json, Option<String>), String> {
        let kind = req.kind.clone().unwrap_or_else(|| "text".to_string());
        let ig = self.cfg.instagram;
        let mut st = self.st();
        let now = self.core.clock.now_ms();
        let ts = req.timestamp.unwrap_or(now);
        let mut mid = None;
        let mut new_mid = |st: &mut MsState| -> String {
            let m = req.mid.clone().unwrap_or_else(|| self.new_mid(st));
            mid = Some(m.clone());
            m
        };
        let mut event = self.inbound_event(&req.psid, Some(ts));
        let opens_window = !matches!(kind.as_str(), "deleted");
        match kind.as_str() {
            "text" | "image" | "video" | "audio" | "file" | "share" | "story_mention" | "reel" | "ig_reel"
            | "fallback" | "unsupported" => {
                let id = new_mid(&mut st);
                let mut m = jobj! { "mid": id.as_str() };
                if kind == "text" {
                    let text = req.text.clone().ok_or("`text` is required for type text")?;
                    m.set("text", text);
                    if let Some(p) = &req.quick_reply_payload {
                        m.set("quick_reply", jobj! { "payload": p.as_str() });
                    }
                } else if kind == "unsupported" {
                    m.set("is_unsupported", true);
                } else {
                    let url = match &req.attachment_url {
                        Some(u) => u.clone(),
                        None => {
                            let (default_bytes, default_mime) = default_attachment(&kind, &id);
                            let bytes = match &req.data_base64 {
                                Some(b) => base64::engine::general_purpose::STANDARD
                                    .decode(b.trim())
                                    .map_err(|e| format!("`data_base64` is not base64: {e}"))?,
                                None => default_bytes,
                            };
                            let mime = req.mime_type.clone().unwrap_or_else(|| default_mime.to_string());
                            self.cdn_put(&mut st, &kind, bytes, mime)
                        }
                    };
                    if let Some(t) = &req.text {
                        m.set("text", t.as_str());
                    }
                    m.set(
                        "attachments",
                        vec![jobj! { "type": kind.as_str(), "payload": jobj! { "url": url } }],
                    );
                }
                if let Some(r) = &req.reply_to_mid {
                    let mut rt = jobj! { "mid": r.as_str() };
                    if !ig {
                        rt.set("is_self_reply", false);
                    }
                    m.set("reply_to", rt);
                } else if let Some(story) = &req.reply_to_story_id {
                    let url = match &req.reply_to_story_url {
                        Some(u) => u.clone(),
                        None => {
                            let (bytes, mime) = default_attachment("story", story);
                            self.cdn_put(&mut st, "story", bytes, mime.to_string())
                        }
                    };
                    m.set(
                        "reply_to",
                        jobj! { "story": jobj! { "id": story.as_str(), "url": url } },
                    );
                }
                if let Some(Value::Object(extra)) = &req.extra {
                    for (k, v) in extra {
                        m.set(k, Json::from(v));
                    }
                }
                event.set("message", m);
            }
            "deleted" => {
                let target = req
                    .target_mid
                    .clone()
                    .ok_or("`target_mid` is required for type deleted")?;
                mid = Some(target.clone());
                event.set("message", jobj! { "mid": target, "is_deleted": true });
            }
            "reaction" => {
                let target = req
                    .target_mid
                    .clone()
                    .ok_or("`target_mid` is required for type reaction")?;
                let action = req.action.clone().unwrap_or_else(|| "react".to_string());
                let mut r = jobj! { "mid": target, "action": action.as_str() };
                if action == "react" {
                    r.set("reaction", req.reaction.clone().unwrap_or_else(|| "love".to_string()));
                    r.set(
                        "emoji",
                        req.emoji.clone().unwrap_or_else(|| "\u{2764}\u{fe0f}".to_string()),
                    );
                }
                event.set("reaction", r);
            }
            "edit" => {
                let target = req.target_mid.clone().ok_or("`target_mid` is required for type edit")?;
                let text = req.text.clone().ok_or("`text` is required for type edit")?;
                mid = Some(target.clone());
                event.set(
                    "message_edit",
                    jobj! { "mid": target, "text": text, "num_edit": req.num_edit.unwrap_or(1) },
                );
            }
            "postback" => {
                let id = new_mid(&mut st);
                let payload = req.payload.clone().ok_or("`payload` is required for type postback")?;
                let title = req.title.clone().unwrap_or_else(|| payload.clone());
                event.set("postback", jobj! { "title": title, "payload": payload, "mid": id });
            }
            other => return Err(format!("unsupported customer event type {other}")),
        }
        if let Some(r) = &req.referral {
            event.set("referral", Json::from(r));
        }
        let user = st.users.entry(req.psid.clone()).or_insert_with(|| User {
            id: req.psid.clone(),
            ..User::default()
        });
        if let Some(n) = &req.name {
            user.name = Some(n.clone());
        }
        if opens_window {
            user.last_inbound_ms = Some(now);
            user.window_ms = if req.referral.is_some() && !ig { WEEK_MS } else { DAY_MS };
        }
        Ok((event, mid))
    }
}

async fn customer_message(State(ms): State<Arc<Ms>>, body: Bytes) -> Response {
    let req: CustomerEvent = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let (event, mid) = match ms.build_event(&req) {
        Ok(x) => x,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let delivered = ms.deliver(ms.envelope(vec![ms.entry(vec![event], req.standby)])).await;
    axum::Json(json!({ "mid": mid, "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchReq {
    events: Vec<CustomerEvent>,
    /// Put all events in one entry's `messaging[]` instead of one entry each.
    #[serde(default)]
    same_entry: bool,
}

async fn batch(State(ms): State<Arc<Ms>>, body: Bytes) -> Response {
    let req: BatchReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let mut events = Vec::new();
    let mut mids = Vec::new();
    for e in &req.events {
        match ms.build_event(e) {
            Ok((ev, mid)) => {
                events.push(ev);
                mids.push(mid);
            }
            Err(err) => return ctl_err(StatusCode::BAD_REQUEST, err),
        }
    }
    let entries = if req.same_entry {
        vec![ms.entry(events, false)]
    } else {
        events.into_iter().map(|e| ms.entry(vec![e], false)).collect()
    };
    let delivered = ms.deliver(ms.envelope(entries)).await;
    axum::Json(json!({ "mids": mids, "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusReq {
    /// A mid we sent (identifies the thread); optional with `psid` + `watermark`.
    message_id: Option<String>,
    /// delivery | delivered | read
    status: String,
    psid: Option<String>,
    /// Defaults to the send time of `message_id` (delivery) / now (read).
    watermark: Option<i64>,
    /// Messenger delivery without `mids` (they may be missing).
    #[serde(default)]
    omit_mids: bool,
}

async fn status(State(ms): State<Arc<Ms>>, body: Bytes) -> Response {
    let req: StatusReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let now = ms.core.clock.now_ms();
    let sent = req.message_id.as_ref().and_then(|m| ms.st().sent.get(m).cloned());
    let Some(psid) = req.psid.clone().or_else(|| sent.as_ref().map(|s| s.recipient.clone())) else {
        return ctl_err(StatusCode::BAD_REQUEST, "unknown message_id; pass psid");
    };
    let event = match req.status.as_str() {
        "delivery" | "delivered" => {
            if ms.cfg.instagram {
                return ctl_err(StatusCode::BAD_REQUEST, "Instagram has no delivery receipts (§3.3)");
            }
            let watermark = req.watermark.or(sent.as_ref().map(|s| s.at_ms)).unwrap_or(now);
            let mut d = Json::obj();
            if !req.omit_mids
                && let Some(m) = &req.message_id
            {
                d.set("mids", vec![Json::from(m.as_str())]);
            }
            d.set("watermark", watermark);
            ms.inbound_event(&psid, None).with("delivery", d)
        }
        "read" => {
            let read = if ms.cfg.instagram {
                let Some(m) = &req.message_id else {
                    return ctl_err(StatusCode::BAD_REQUEST, "Instagram read receipts name a mid");
                };
                jobj! { "mid": m.as_str() }
            } else {
                jobj! { "watermark": req.watermark.unwrap_or(now) }
            };
            ms.inbound_event(&psid, Some(now)).with("read", read)
        }
        other => {
            return ctl_err(
                StatusCode::BAD_REQUEST,
                format!("status must be delivery|read, got {other}"),
            );
        }
    };
    let delivered = ms.deliver(ms.envelope(vec![ms.entry(vec![event], false)])).await;
    axum::Json(json!({ "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockReq {
    psid: String,
    #[serde(default)]
    remove: bool,
}

/// The user blocked the Page / disabled messages: sends fail with 551.
async fn blocked(State(ms): State<Arc<Ms>>, body: Bytes) -> Response {
    let req: BlockReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let mut st = ms.st();
    if req.remove {
        st.blocked.remove(&req.psid);
    } else {
        st.blocked.insert(req.psid);
    }
    axum::Json(json!({ "blocked": st.blocked })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsPatch {
    human_agent_approved: Option<bool>,
    require_appsecret_proof: Option<bool>,
    auto_delivery: Option<bool>,
    auto_echo: Option<bool>,
    emit_twice: Option<bool>,
    app_id: Option<i64>,
    event_delay_ms: Option<u64>,
    text_per_sec: Option<u32>,
    media_per_sec: Option<u32>,
}

async fn get_options(State(ms): State<Arc<Ms>>) -> Response {
    axum::Json(ms.st().options.clone()).into_response()
}

async fn set_options(State(ms): State<Arc<Ms>>, body: Bytes) -> Response {
    let p: OptionsPatch = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let now = ms.core.clock.now_ms();
    let mut st = ms.st();
    let o = &mut st.options;
    macro_rules! apply {
        ($($f:ident),*) => { $( if let Some(v) = p.$f { o.$f = v; } )* };
    }
    apply!(
        human_agent_approved,
        require_appsecret_proof,
        auto_delivery,
        auto_echo,
        emit_twice,
        app_id,
        event_delay_ms,
        text_per_sec,
        media_per_sec
    );
    let opts = o.clone();
    st.text_bucket = Bucket::new(f64::from(opts.text_per_sec), now);
    st.media_bucket = Bucket::new(f64::from(opts.media_per_sec), now);
    axum::Json(opts).into_response()
}

async fn users(State(ms): State<Arc<Ms>>) -> Response {
    let st = ms.st();
    axum::Json(st.users.values().cloned().collect::<Vec<_>>()).into_response()
}
