//! Telegram Bot API simulator (channels.md §4 and the Telegram bullet of §10).
//!
//! - Provider API: `GET|POST /bot<token>/<method>` (method names case-insensitive; JSON,
//!   form-encoded and multipart bodies, plus query parameters). A wrong token answers
//!   401 `Unauthorized`. Methods: `getMe`, `setWebhook`, `deleteWebhook`, `getWebhookInfo`,
//!   `getUpdates` (409 while a webhook is set), `sendMessage`, `sendPhoto`, `sendDocument`,
//!   `sendLocation`, `answerCallbackQuery`, `getFile`; files are served at
//!   `GET /file/bot<token>/<file_path>`.
//! - Policy (§4.5–4.7): unknown chat → 400 `chat not found`; a user who never wrote to the
//!   bot → 403 `bot can't initiate conversation with a user`; blocked → 403 `bot was blocked
//!   by the user`; deactivated → 403 `user is deactivated`; more than 1 message per second
//!   to one chat or 30 per second overall (on the SimClock) → 429 with `parameters.retry_after`.
//! - Webhook emitter with the real server's semantics (§4.2): one `Update` per POST,
//!   `X-Telegram-Bot-Api-Secret-Token`, sequential `update_id`, per-chat serialisation
//!   (the next update of a chat only after the previous one got a 2xx or was dropped),
//!   parallel across chats up to `max_connections`, retry with doubling back-off, `Retry-After`
//!   honoured, updates dropped 24 h (SimClock) after their date, `allowed_updates` honoured.
//!   Without a webhook, updates wait for `getUpdates`.
//! - Control API under `/_sim/telegram/...` plus `/_sim/faults`, `/_sim/clock`, `/_sim/retry`;
//!   `GET /` is a small page to play the customer by hand.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::clock::SimClock;
use crate::common::{Server, TINY_PDF, TINY_PNG, ctl_err, lock, parse_body, parse_multipart, parse_urlencoded};
use crate::jobj;
use crate::json::Json;

/// Updates are dropped this long after their date (`Client::add_message_update`).
const UPDATE_TTL_SECS: i64 = 86_400;
/// The first `update_id` handed out.
const FIRST_UPDATE_ID: i64 = 804_112_345;
/// Default webhook `max_connections`.
const DEFAULT_MAX_CONNECTIONS: usize = 40;

/// How the simulator is set up.
#[derive(Clone, Debug)]
pub struct TelegramConfig {
    /// Required in every API path (`/bot<token>/<method>`), else 401.
    pub bot_token: String,
    /// The bot's `username` (without `@`).
    pub bot_username: String,
    /// The bot's user id (`getMe().id`, `from.id` of its messages).
    pub bot_id: i64,
}

impl Default for TelegramConfig {
    /// The demo bot of channels.md's examples.
    fn default() -> Self {
        Self {
            bot_token: "7012345678:AAF-demo-token".into(),
            bot_username: "acme_support_bot".into(),
            bot_id: 7_012_345_678,
        }
    }
}

/// A running Telegram Bot API simulator.
pub struct TelegramSim {
    server: Server,
    tg: Arc<Tg>,
}

impl TelegramSim {
    /// Binds 127.0.0.1 on a free port and starts serving on a tokio task.
    pub async fn start(config: TelegramConfig, clock: SimClock) -> std::io::Result<TelegramSim> {
        let (listener, base_url) = Server::bind().await?;
        let tg = Arc::new(Tg::new(config, clock));
        let router = Router::new()
            .route("/", get(page))
            .merge(control_router(Arc::clone(&tg)))
            .merge(api_router(Arc::clone(&tg)));
        let server = Server::serve(listener, base_url, router);
        Ok(TelegramSim { server, tg })
    }

    /// `http://127.0.0.1:PORT` — the adapter calls `{base_url}/bot<token>/<method>`.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Same base; the control API lives under `/_sim/telegram` (and `/_sim/faults`, `/_sim/clock`).
    pub fn control(&self) -> &str {
        &self.server.base_url
    }

    /// Stops the server and any webhook deliveries still pending.
    pub async fn shutdown(mut self) {
        self.tg.stop();
        self.server.shutdown().await;
    }
}

impl Drop for TelegramSim {
    fn drop(&mut self) {
        self.tg.stop();
    }
}

// ---------------------------------------------------------------------------
// Faults, retry policy, options
// ---------------------------------------------------------------------------

/// One-shot error answered by the next send method (`sendMessage`, `sendPhoto`, …).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TgSendFault {
    /// `error_code` and HTTP status.
    error_code: u16,
    /// Defaults to the Bot API text for the code (429 → `Too Many Requests: retry after N`).
    #[serde(default)]
    description: Option<String>,
    /// `parameters.retry_after` (429).
    #[serde(default)]
    retry_after: Option<i64>,
    /// `parameters.migrate_to_chat_id` (400 after a group became a supergroup).
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
    /// Wait this long before answering.
    #[serde(default)]
    delay_ms: Option<u64>,
}

/// `POST /_sim/faults` replaces the whole set; `{}` clears everything.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TgFaults {
    /// Webhooks carry a wrong `X-Telegram-Bot-Api-Secret-Token` value.
    #[serde(default)]
    wrong_secret: bool,
    /// Webhooks carry no secret header even though one is set.
    #[serde(default)]
    missing_secret: bool,
    /// Every update is delivered twice (same `update_id`, same bytes).
    #[serde(default)]
    duplicate_updates: bool,
    /// One-shot: consumed by the next send method.
    #[serde(default)]
    next_send: Option<TgSendFault>,
}

/// Webhook redelivery schedule (the real server: 1 s doubling to 60–120 s).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TgRetry {
    initial_ms: u64,
    max_ms: u64,
    /// 0 = retry until the update expires (24 h on the SimClock) or the simulator stops.
    max_attempts: u32,
    /// Per-attempt timeout; a timeout counts as a failed attempt.
    timeout_ms: u64,
    /// Length of one `Retry-After` second (1000 = real; lower it to compress tests).
    retry_after_unit_ms: u64,
}

impl Default for TgRetry {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 60_000,
            max_attempts: 0,
            timeout_ms: 5_000,
            retry_after_unit_ms: 1_000,
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
    retry_after_unit_ms: Option<u64>,
}

/// Tunables set with `POST /_sim/telegram/options` (a patch).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TgOptions {
    /// Minimum gap between two messages to one chat (0 = no limit) → 429.
    per_chat_interval_ms: i64,
    /// Messages per second over all chats (0 = no limit) → 429.
    global_per_sec: usize,
    /// `setWebhook` demands HTTPS on ports 443, 80, 88 or 8443 like the real API.
    strict_webhook_url: bool,
    /// How long control calls wait for the first webhook attempt of what they emit.
    wait_ms: u64,
}

impl Default for TgOptions {
    fn default() -> Self {
        Self {
            per_chat_interval_ms: 1_000,
            global_per_sec: 30,
            strict_webhook_url: false,
            wait_ms: 5_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsPatch {
    per_chat_interval_ms: Option<i64>,
    global_per_sec: Option<usize>,
    strict_webhook_url: Option<bool>,
    wait_ms: Option<u64>,
}

/// One webhook POST attempt (`GET /_sim/telegram/deliveries`).
#[derive(Clone, Debug, Serialize)]
struct TgDelivery {
    update_id: i64,
    /// The serialisation queue (the chat id).
    chat_id: i64,
    /// `message`, `edited_message`, `callback_query`, `my_chat_member`.
    kind: &'static str,
    /// 1 for the first attempt of this copy.
    attempt: u32,
    url: String,
    /// Exact bytes sent.
    body: String,
    /// `X-Telegram-Bot-Api-Secret-Token` value sent, if any.
    secret_token: Option<String>,
    /// HTTP status our server answered; `null` on connection error, timeout or drop.
    status: Option<u16>,
    error: Option<String>,
    /// `Retry-After` seconds our server asked for.
    retry_after: Option<u64>,
    at_ms: i64,
    /// The extra copy of the duplicate fault.
    duplicate: bool,
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Webhook {
    url: String,
    secret_token: Option<String>,
    max_connections: usize,
    /// Empty = default set (everything but reactions / chat_member).
    allowed_updates: Vec<String>,
    ip_address: Option<String>,
}

#[derive(Debug)]
struct ChatState {
    id: i64,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
    /// Wrote to the bot (pressed Start) at least once.
    started: bool,
    blocked: bool,
    deactivated: bool,
    next_message_id: i64,
    /// Every message of the chat by id (both directions), without nested replies.
    messages: BTreeMap<i64, Json>,
    last_customer_message: Option<i64>,
    last_bot_message: Option<i64>,
    /// SimClock ms of the last accepted bot message (per-chat rate limit).
    last_send_ms: Option<i64>,
}

#[derive(Clone, Debug)]
struct FileRec {
    file_id: String,
    file_unique_id: String,
    file_path: String,
    mime_type: String,
    bytes: Bytes,
}

/// An update waiting for `getUpdates`.
#[derive(Clone, Debug)]
struct Polled {
    update_id: i64,
    chat: i64,
    kind: &'static str,
    date: i64,
    update: Json,
}

/// An update in a chat's webhook queue.
struct Pending {
    polled: Polled,
    duplicate: bool,
    first: Option<oneshot::Sender<Option<u16>>>,
}

#[derive(Default)]
struct ChatQueue {
    running: bool,
    items: VecDeque<Pending>,
}

struct TgState {
    webhook: Option<Webhook>,
    sem: Arc<Semaphore>,
    last_error_date: Option<i64>,
    last_error_message: Option<String>,
    next_update_id: i64,
    chats: HashMap<i64, ChatState>,
    queues: HashMap<i64, ChatQueue>,
    in_flight: usize,
    polled: VecDeque<Polled>,
    files: HashMap<String, FileRec>,
    next_file: u64,
    /// callback_query id → answered (with the answer's parameters).
    callbacks: HashMap<String, Option<Value>>,
    next_callback: u64,
    /// SimClock ms of recent accepted messages (global rate limit).
    recent_sends: VecDeque<i64>,
    faults: TgFaults,
    retry: TgRetry,
    options: TgOptions,
    deliveries: Vec<TgDelivery>,
    sent: Vec<Value>,
}

struct Tg {
    cfg: TelegramConfig,
    clock: SimClock,
    client: reqwest::Client,
    stop_tx: watch::Sender<bool>,
    state: Mutex<TgState>,
}

/// A successful API answer.
struct Reply {
    result: Json,
    description: Option<&'static str>,
}

impl Reply {
    fn of(result: impl Into<Json>) -> Self {
        Self {
            result: result.into(),
            description: None,
        }
    }
}

/// A Bot API error.
#[derive(Debug)]
struct TgError {
    code: u16,
    description: String,
    parameters: Option<Json>,
}

impl TgError {
    fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            parameters: None,
        }
    }

    fn bad(what: impl std::fmt::Display) -> Self {
        Self::new(400, format!("Bad Request: {what}"))
    }

    fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }

    fn too_many(retry_after: i64) -> Self {
        let mut e = Self::new(429, format!("Too Many Requests: retry after {retry_after}"));
        e.parameters = Some(jobj! { "retry_after": retry_after });
        e
    }

    fn from_fault(f: &TgSendFault) -> Self {
        let description = f.description.clone().unwrap_or_else(|| match f.error_code {
            429 => format!("Too Many Requests: retry after {}", f.retry_after.unwrap_or(1)),
            403 => "Forbidden: bot was blocked by the user".into(),
            401 => "Unauthorized".into(),
            400 => "Bad Request: chat not found".into(),
            409 => "Conflict".into(),
            502 => "Bad Gateway".into(),
            c => format!("Internal Server Error ({c})"),
        });
        let mut params = Json::obj();
        if let Some(r) = f.retry_after.or(if f.error_code == 429 { Some(1) } else { None }) {
            params.set("retry_after", r);
        }
        if let Some(m) = f.migrate_to_chat_id {
            params.set("migrate_to_chat_id", m);
        }
        Self {
            code: f.error_code,
            description,
            parameters: if params == Json::obj() { None } else { Some(params) },
        }
    }

    fn body(&self) -> Json {
        let mut b = jobj! { "ok": false, "error_code": i64::from(self.code), "description": self.description.as_str() };
        if let Some(p) = &self.parameters {
            b.set("parameters", p.clone());
        }
        b
    }
}

type Params = Map<String, Value>;

/// A file part of a multipart request.
struct Upload {
    field: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

impl Tg {
    fn new(cfg: TelegramConfig, clock: SimClock) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(8)
            .build()
            .expect("reqwest client");
        let (stop_tx, _) = watch::channel(false);
        Self {
            cfg,
            clock,
            client,
            stop_tx,
            state: Mutex::new(TgState {
                webhook: None,
                sem: Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS)),
                last_error_date: None,
                last_error_message: None,
                next_update_id: FIRST_UPDATE_ID,
                chats: HashMap::new(),
                queues: HashMap::new(),
                in_flight: 0,
                polled: VecDeque::new(),
                files: HashMap::new(),
                next_file: 1,
                callbacks: HashMap::new(),
                next_callback: 1,
                recent_sends: VecDeque::new(),
                faults: TgFaults::default(),
                retry: TgRetry::default(),
                options: TgOptions::default(),
                deliveries: Vec::new(),
                sent: Vec::new(),
            }),
        }
    }

    fn st(&self) -> MutexGuard<'_, TgState> {
        lock(&self.state)
    }

    fn stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    fn stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Sleeps `ms` unless the simulator stops first (then returns false).
    async fn sleep(&self, ms: u64) -> bool {
        let mut rx = self.stop_tx.subscribe();
        if *rx.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
            _ = rx.wait_for(|s| *s) => false,
        }
    }

    /// "Acme Support" for `acme_support_bot`.
    fn bot_name(&self) -> String {
        let u = self.cfg.bot_username.to_ascii_lowercase();
        let base = u
            .strip_suffix("_bot")
            .or_else(|| u.strip_suffix("bot"))
            .unwrap_or(&u)
            .trim_matches('_');
        let name: Vec<String> = base
            .split('_')
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if name.is_empty() { "Bot".into() } else { name.join(" ") }
    }

    fn bot_user(&self) -> Json {
        jobj! { "id": self.cfg.bot_id, "is_bot": true, "first_name": self.bot_name(), "username": self.cfg.bot_username.as_str() }
    }

    // -- webhook emitter ----------------------------------------------------

    /// Assigns the next `update_id` and hands the update to the webhook (or the
    /// `getUpdates` buffer). Returns the id, the first HTTP status (if `wait`), and
    /// whether `allowed_updates` filtered it out.
    async fn emit(self: &Arc<Self>, chat: i64, kind: &'static str, payload: Json, date: i64, wait: bool) -> Emitted {
        let (update_id, rx, wait_ms, filtered) = {
            let mut st = self.st();
            let update_id = st.next_update_id;
            st.next_update_id += 1;
            let update = Json::obj().with("update_id", update_id).with(kind, payload);
            let polled = Polled {
                update_id,
                chat,
                kind,
                date,
                update,
            };
            let wait_ms = st.options.wait_ms;
            match st.webhook.clone() {
                None => {
                    st.polled.push_back(polled);
                    (update_id, None, wait_ms, false)
                }
                Some(h) if !allowed(&h.allowed_updates, kind) => (update_id, None, wait_ms, true),
                Some(_) => {
                    let (tx, rx) = oneshot::channel();
                    let dup = st.faults.duplicate_updates;
                    let mut items = vec![Pending {
                        polled: polled.clone(),
                        duplicate: false,
                        first: Some(tx),
                    }];
                    if dup {
                        items.push(Pending {
                            polled,
                            duplicate: true,
                            first: None,
                        });
                    }
                    self.enqueue_locked(&mut st, chat, items);
                    (update_id, Some(rx), wait_ms, false)
                }
            }
        };
        let delivered_status = match rx {
            Some(rx) if wait => tokio::time::timeout(Duration::from_millis(wait_ms), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            _ => None,
        };
        Emitted {
            update_id,
            delivered_status,
            filtered,
        }
    }

    fn enqueue_locked(self: &Arc<Self>, st: &mut TgState, chat: i64, items: Vec<Pending>) {
        let q = st.queues.entry(chat).or_default();
        q.items.extend(items);
        if !q.running {
            q.running = true;
            tokio::spawn(Arc::clone(self).chat_worker(chat));
        }
    }

    /// Delivers one chat's updates in order, one at a time.
    async fn chat_worker(self: Arc<Self>, chat: i64) {
        loop {
            let item = {
                let mut st = self.st();
                let Some(q) = st.queues.get_mut(&chat) else { return };
                match q.items.pop_front() {
                    Some(i) => {
                        st.in_flight += 1;
                        i
                    }
                    None => {
                        st.queues.remove(&chat);
                        return;
                    }
                }
            };
            self.deliver(item).await;
            let mut st = self.st();
            st.in_flight = st.in_flight.saturating_sub(1);
            if self.stopped() {
                st.queues.remove(&chat);
                return;
            }
        }
    }

    /// All attempts of one update until a 2xx, a drop, or the webhook goes away.
    async fn deliver(&self, mut item: Pending) {
        let body = wire(&item.polled.update);
        let mut delay = None::<u64>;
        let mut attempt = 0u32;
        loop {
            if self.stopped() {
                return;
            }
            let (hook, faults, policy, sem) = {
                let st = self.st();
                (
                    st.webhook.clone(),
                    st.faults.clone(),
                    st.retry.clone(),
                    Arc::clone(&st.sem),
                )
            };
            let Some(hook) = hook else {
                // Webhook deleted meanwhile: the update waits for getUpdates.
                if !item.duplicate {
                    let mut st = self.st();
                    st.polled.push_back(item.polled.clone());
                    let mut v: Vec<Polled> = st.polled.drain(..).collect();
                    v.sort_by_key(|p| p.update_id);
                    st.polled = v.into();
                }
                if let Some(tx) = item.first.take() {
                    let _ = tx.send(None);
                }
                return;
            };
            let mut rec = TgDelivery {
                update_id: item.polled.update_id,
                chat_id: item.polled.chat,
                kind: item.polled.kind,
                attempt: attempt + 1,
                url: hook.url.clone(),
                body: body.clone(),
                secret_token: None,
                status: None,
                error: None,
                retry_after: None,
                at_ms: self.clock.now_ms(),
                duplicate: item.duplicate,
            };
            if self.clock.now_secs() > item.polled.date + UPDATE_TTL_SECS {
                rec.error = Some("dropped: update expired".into());
                self.st().deliveries.push(rec);
                if let Some(tx) = item.first.take() {
                    let _ = tx.send(None);
                }
                return;
            }
            attempt += 1;
            let secret = if faults.missing_secret {
                None
            } else if faults.wrong_secret {
                Some(match &hook.secret_token {
                    Some(s) => format!("{s}-wrong"),
                    None => "wrong-secret-token".to_string(),
                })
            } else {
                hook.secret_token.clone()
            };
            rec.secret_token = secret.clone();
            let Ok(permit) = sem.acquire_owned().await else { return };
            let mut req = self
                .client
                .post(&hook.url)
                .timeout(Duration::from_millis(policy.timeout_ms.max(1)))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(s) = &secret {
                req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
            }
            let mut stop_rx = self.stop_tx.subscribe();
            let outcome = tokio::select! {
                r = req.send() => r,
                _ = stop_rx.wait_for(|s| *s) => return,
            };
            drop(permit);
            let (status, error, retry_after) = match outcome {
                Ok(resp) => {
                    let s = resp.status();
                    let ra = resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let _ = resp.bytes().await;
                    let err = if s.is_success() {
                        None
                    } else {
                        Some(format!(
                            "Wrong response from the webhook: {} {}",
                            s.as_u16(),
                            s.canonical_reason().unwrap_or("")
                        ))
                    };
                    (Some(s.as_u16()), err, ra)
                }
                Err(e) => {
                    let msg = if e.is_timeout() {
                        "Read timeout expired".to_string()
                    } else if e.is_connect() {
                        "Connection refused".to_string()
                    } else {
                        e.to_string()
                    };
                    (None, Some(msg), None)
                }
            };
            rec.status = status;
            rec.error = error.clone();
            rec.retry_after = retry_after;
            {
                let mut st = self.st();
                st.deliveries.push(rec);
                if let Some(e) = &error {
                    st.last_error_date = Some(self.clock.now_secs());
                    st.last_error_message = Some(e.clone());
                }
            }
            if let Some(tx) = item.first.take() {
                let _ = tx.send(status);
            }
            if status.is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            if policy.max_attempts > 0 && attempt >= policy.max_attempts {
                return;
            }
            let backoff = delay.unwrap_or(policy.initial_ms.max(1));
            delay = Some(backoff.saturating_mul(2).min(policy.max_ms.max(1)));
            let wait = match retry_after {
                Some(s) => s.min(3_600).saturating_mul(policy.retry_after_unit_ms),
                None => backoff,
            };
            if !self.sleep(wait).await {
                return;
            }
        }
    }

    // -- provider API ---------------------------------------------------------

    async fn call(self: &Arc<Self>, method: &str, p: &Params, uploads: &[Upload]) -> Result<Reply, TgError> {
        match method {
            "getMe" => {
                let mut me = self.bot_user();
                me.set("can_join_groups", true);
                me.set("can_read_all_group_messages", false);
                me.set("supports_inline_queries", false);
                Ok(Reply::of(me))
            }
            "setWebhook" => self.set_webhook(p),
            "deleteWebhook" => Ok(self.delete_webhook(p_bool(p, "drop_pending_updates").unwrap_or(false))),
            "getWebhookInfo" => Ok(Reply::of(self.webhook_info())),
            "getUpdates" => self.get_updates(p).await,
            "sendMessage" | "sendPhoto" | "sendDocument" | "sendLocation" => {
                let fault = self.st().faults.next_send.take();
                if let Some(f) = fault {
                    if let Some(ms) = f.delay_ms {
                        self.sleep(ms).await;
                    }
                    return Err(TgError::from_fault(&f));
                }
                self.send(method, p, uploads).map(Reply::of)
            }
            "answerCallbackQuery" => {
                let id = p_str(p, "callback_query_id").ok_or_else(|| TgError::bad("query_id is empty"))?;
                let mut st = self.st();
                match st.callbacks.get_mut(&id) {
                    Some(slot @ None) => {
                        *slot = Some(Value::Object(p.clone()));
                        Ok(Reply::of(true))
                    }
                    Some(Some(_)) | None => Err(TgError::bad(
                        "query is too old and response timeout expired or query ID is invalid",
                    )),
                }
            }
            "getFile" => {
                let id = p_str(p, "file_id").ok_or_else(|| TgError::bad("file_id is empty"))?;
                let st = self.st();
                let f = st.files.get(&id).ok_or_else(|| TgError::bad("invalid file_id"))?;
                Ok(Reply::of(jobj! {
                    "file_id": f.file_id.as_str(),
                    "file_unique_id": f.file_unique_id.as_str(),
                    "file_size": f.bytes.len(),
                    "file_path": f.file_path.as_str(),
                }))
            }
            _ => Err(TgError::new(404, "Not Found")),
        }
    }

    fn set_webhook(self: &Arc<Self>, p: &Params) -> Result<Reply, TgError> {
        let url = p_str(p, "url").unwrap_or_default();
        if url.is_empty() {
            let mut r = self.delete_webhook(p_bool(p, "drop_pending_updates").unwrap_or(false));
            r.description = Some("Webhook was deleted");
            return Ok(r);
        }
        let strict = self.st().options.strict_webhook_url;
        validate_url(&url, strict)?;
        let secret_token = match p.get("secret_token") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let s = p_str(p, "secret_token").unwrap_or_default();
                if s.is_empty() || s.len() > 256 {
                    return Err(TgError::bad("secret token must be 1-256 characters long"));
                }
                if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return Err(TgError::bad("secret token contains unallowed characters"));
                }
                Some(s)
            }
        };
        let max_connections = p_i64(p, "max_connections")
            .unwrap_or(DEFAULT_MAX_CONNECTIONS as i64)
            .clamp(1, 100) as usize;
        let allowed_updates = match p_json(p, "allowed_updates") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
            Some(_) => return Err(TgError::bad("can't parse allowed updates")),
        };
        let drop_pending = p_bool(p, "drop_pending_updates").unwrap_or(false);
        let mut st = self.st();
        let allowed_updates = allowed_updates.unwrap_or_else(|| {
            st.webhook
                .as_ref()
                .map(|h| h.allowed_updates.clone())
                .unwrap_or_default()
        });
        let hook = Webhook {
            url,
            secret_token,
            max_connections,
            allowed_updates,
            ip_address: p_str(p, "ip_address"),
        };
        let same = st.webhook.as_ref().is_some_and(|h| {
            h.url == hook.url
                && h.secret_token == hook.secret_token
                && h.max_connections == hook.max_connections
                && h.allowed_updates == hook.allowed_updates
        });
        if st.webhook.as_ref().map(|h| &h.url) != Some(&hook.url) {
            st.last_error_date = None;
            st.last_error_message = None;
        }
        if st.webhook.as_ref().map(|h| h.max_connections) != Some(max_connections) {
            st.sem = Arc::new(Semaphore::new(max_connections));
        }
        st.webhook = Some(hook.clone());
        if drop_pending {
            st.polled.clear();
            for q in st.queues.values_mut() {
                q.items.clear();
            }
        }
        // Updates buffered for getUpdates now go to the webhook.
        let buffered: Vec<Polled> = st.polled.drain(..).collect();
        for pu in buffered {
            if allowed(&hook.allowed_updates, pu.kind) {
                let chat = pu.chat;
                let item = Pending {
                    polled: pu,
                    duplicate: false,
                    first: None,
                };
                self.enqueue_locked(&mut st, chat, vec![item]);
            }
        }
        Ok(Reply {
            result: Json::Bool(true),
            description: Some(if same {
                "Webhook is already set"
            } else {
                "Webhook was set"
            }),
        })
    }

    fn delete_webhook(&self, drop_pending: bool) -> Reply {
        let mut st = self.st();
        let had = st.webhook.take().is_some();
        if drop_pending {
            st.polled.clear();
            for q in st.queues.values_mut() {
                q.items.clear();
            }
        }
        Reply {
            result: Json::Bool(true),
            description: Some(if had {
                "Webhook was deleted"
            } else {
                "Webhook is already deleted"
            }),
        }
    }

    fn webhook_info(&self) -> Json {
        let st = self.st();
        let queued: usize = st.queues.values().map(|q| q.items.len()).sum();
        let pending = queued + st.in_flight + st.polled.len();
        match &st.webhook {
            None => jobj! { "url": "", "has_custom_certificate": false, "pending_update_count": pending },
            Some(h) => {
                let mut j =
                    jobj! { "url": h.url.as_str(), "has_custom_certificate": false, "pending_update_count": pending };
                if let Some(ip) = &h.ip_address {
                    j.set("ip_address", ip.as_str());
                }
                if let Some(d) = st.last_error_date {
                    j.set("last_error_date", d);
                }
                if let Some(m) = &st.last_error_message {
                    j.set("last_error_message", m.as_str());
                }
                j.set("max_connections", h.max_connections);
                if !h.allowed_updates.is_empty() {
                    j.set(
                        "allowed_updates",
                        Json::Arr(h.allowed_updates.iter().map(Json::from).collect()),
                    );
                }
                j
            }
        }
    }

    async fn get_updates(&self, p: &Params) -> Result<Reply, TgError> {
        let offset = p_i64(p, "offset");
        let limit = p_i64(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
        let timeout_s = p_i64(p, "timeout").unwrap_or(0).clamp(0, 50) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
        loop {
            {
                let mut st = self.st();
                if st.webhook.is_some() {
                    return Err(TgError::new(
                        409,
                        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete \
                         the webhook first",
                    ));
                }
                if let Some(off) = offset {
                    st.polled.retain(|u| u.update_id >= off);
                }
                if !st.polled.is_empty() || tokio::time::Instant::now() >= deadline {
                    let items: Vec<Json> = st.polled.iter().take(limit).map(|u| u.update.clone()).collect();
                    return Ok(Reply::of(Json::Arr(items)));
                }
            }
            if !self.sleep(20).await {
                return Ok(Reply::of(Json::Arr(vec![])));
            }
        }
    }

    /// sendMessage / sendPhoto / sendDocument / sendLocation.
    fn send(&self, method: &str, p: &Params, uploads: &[Upload]) -> Result<Json, TgError> {
        let chat_raw = p_str(p, "chat_id").filter(|s| !s.is_empty());
        let chat_raw = chat_raw.ok_or_else(|| TgError::bad("chat_id is empty"))?;
        let chat_id: i64 = chat_raw.trim().parse().map_err(|_| TgError::bad("chat not found"))?;
        let parse_mode = p_str(p, "parse_mode").filter(|s| !s.is_empty());
        if let Some(m) = &parse_mode
            && !["html", "markdown", "markdownv2"].contains(&m.to_ascii_lowercase().as_str())
        {
            return Err(TgError::bad(format!("unsupported parse_mode \"{m}\"")));
        }
        let render = |s: &str| -> Result<String, TgError> {
            match parse_mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("html") => parse_html(s).map_err(|e| TgError::bad(format!("can't parse entities: {e}"))),
                _ => Ok(s.to_string()),
            }
        };
        let now_ms = self.clock.now_ms();
        let mut st = self.st();
        let opts = st.options.clone();
        {
            let chat = st.chats.get(&chat_id).ok_or_else(|| TgError::bad("chat not found"))?;
            if chat.deactivated {
                return Err(TgError::new(403, "Forbidden: user is deactivated"));
            }
            if chat.blocked {
                return Err(TgError::new(403, "Forbidden: bot was blocked by the user"));
            }
            if !chat.started {
                return Err(TgError::new(
                    403,
                    "Forbidden: bot can't initiate conversation with a user",
                ));
            }
        }
        // Content.
        let mut content: Vec<(&str, Json)> = Vec::new();
        let caption = |content: &mut Vec<(&str, Json)>| -> Result<(), TgError> {
            if let Some(c) = p_str(p, "caption").filter(|c| !c.is_empty()) {
                let c = render(&c)?;
                if c.encode_utf16().count() > 1024 {
                    return Err(TgError::bad("message caption is too long"));
                }
                content.push(("caption", Json::from(c)));
            }
            Ok(())
        };
        match method {
            "sendMessage" => {
                let text = render(&p_str(p, "text").unwrap_or_default())?;
                if text.trim().is_empty() {
                    return Err(TgError::bad("message text is empty"));
                }
                if text.encode_utf16().count() > 4096 {
                    return Err(TgError::bad("message is too long"));
                }
                content.push(("text", Json::from(text)));
            }
            "sendPhoto" => {
                let f = resolve_file(&mut st, p, uploads, "photo", true)?;
                content.push(("photo", photo_sizes(&f)));
                caption(&mut content)?;
            }
            "sendDocument" => {
                let f = resolve_file(&mut st, p, uploads, "document", false)?;
                content.push(("document", document_json(&f)));
                caption(&mut content)?;
            }
            _ => {
                let (Some(lat), Some(lon)) = (p_f64(p, "latitude"), p_f64(p, "longitude")) else {
                    return Err(TgError::bad("wrong latitude or longitude specified"));
                };
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(TgError::bad("wrong latitude or longitude specified"));
                }
                content.push(("location", jobj! { "latitude": lat, "longitude": lon }));
            }
        }
        // Reply target.
        let reply_params = p_json(p, "reply_parameters");
        let reply_id = reply_params
            .as_ref()
            .and_then(|r| r.get("message_id"))
            .and_then(value_i64)
            .or_else(|| p_i64(p, "reply_to_message_id"));
        let allow_without = reply_params
            .as_ref()
            .and_then(|r| r.get("allow_sending_without_reply"))
            .and_then(Value::as_bool)
            .or_else(|| p_bool(p, "allow_sending_without_reply"))
            .unwrap_or(false);
        // Rate limits (SimClock).
        let chat = st.chats.get(&chat_id).expect("checked above");
        if opts.per_chat_interval_ms > 0
            && let Some(last) = chat.last_send_ms
            && now_ms - last < opts.per_chat_interval_ms
        {
            let wait_ms = opts.per_chat_interval_ms - (now_ms - last);
            return Err(TgError::too_many(((wait_ms + 999) / 1000).max(1)));
        }
        while st.recent_sends.front().is_some_and(|t| now_ms - *t >= 1_000) {
            st.recent_sends.pop_front();
        }
        if opts.global_per_sec > 0 && st.recent_sends.len() >= opts.global_per_sec {
            return Err(TgError::too_many(1));
        }
        let bot = self.bot_user();
        let chat = st.chats.get_mut(&chat_id).expect("checked above");
        let reply_to = match reply_id {
            Some(id) => match chat.messages.get(&id) {
                Some(m) => Some(m.clone()),
                None if allow_without => None,
                None => return Err(TgError::bad("message to be replied not found")),
            },
            None => None,
        };
        let message_id = chat.next_message_id;
        chat.next_message_id += 1;
        let mut msg = jobj! {
            "message_id": message_id,
            "from": bot,
            "chat": chat_json(chat),
            "date": now_ms.div_euclid(1000),
        };
        for (k, v) in content {
            msg.set(k, v);
        }
        chat.messages.insert(message_id, msg.clone());
        if let Some(r) = reply_to {
            msg.set("reply_to_message", r);
        }
        chat.last_bot_message = Some(message_id);
        chat.last_send_ms = Some(now_ms);
        st.recent_sends.push_back(now_ms);
        Ok(msg)
    }

    fn new_file(&self, st: &mut TgState, kind: &str, bytes: Bytes, mime: &str) -> FileRec {
        new_file(st, kind, bytes, mime)
    }

    // -- customer side --------------------------------------------------------

    /// Creates or updates the customer's chat from a control request.
    fn upsert_chat(&self, st: &mut TgState, u: &UserFields, started: Option<bool>) -> i64 {
        let chat = st.chats.entry(u.user_id).or_insert_with(|| ChatState {
            id: u.user_id,
            first_name: "Customer".into(),
            last_name: None,
            username: None,
            language_code: None,
            started: false,
            blocked: false,
            deactivated: false,
            next_message_id: 1,
            messages: BTreeMap::new(),
            last_customer_message: None,
            last_bot_message: None,
            last_send_ms: None,
        });
        if let Some(n) = u.first_name.clone().or_else(|| u.name.clone()) {
            chat.first_name = n;
        }
        if u.last_name.is_some() {
            chat.last_name = u.last_name.clone();
        }
        if u.username.is_some() {
            chat.username = u.username.clone();
        }
        if u.language_code.is_some() {
            chat.language_code = u.language_code.clone();
        }
        if let Some(s) = started {
            chat.started = s;
        }
        chat.id
    }

    fn my_chat_member(&self, chat: &ChatState, old: &str, new: &str, date: i64) -> Json {
        let mut new_member = jobj! { "user": self.bot_user(), "status": new };
        if new == "kicked" {
            new_member.set("until_date", 0);
        }
        jobj! {
            "chat": chat_json(chat),
            "from": user_json(chat),
            "date": date,
            "old_chat_member": jobj! { "user": self.bot_user(), "status": old },
            "new_chat_member": new_member,
        }
    }
}

struct Emitted {
    update_id: i64,
    delivered_status: Option<u16>,
    filtered: bool,
}

fn new_file(st: &mut TgState, kind: &str, bytes: Bytes, mime: &str) -> FileRec {
    let n = st.next_file;
    st.next_file += 1;
    let (prefix, dir) = match kind {
        "photo" => ("AgACAgQAAxkBAAIB", "photos"),
        "document" => ("BQACAgQAAxkBAAIB", "documents"),
        _ => ("CQACAgQAAxkBAAIB", "files"),
    };
    let ext = match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    };
    let f = FileRec {
        file_id: format!("{prefix}{n:06}sim"),
        file_unique_id: format!("AQAD{n:06}"),
        file_path: format!("{dir}/file_{n}.{ext}"),
        mime_type: mime.to_string(),
        bytes,
    };
    st.files.insert(f.file_id.clone(), f.clone());
    f
}

/// The `photo`/`document` parameter: a known `file_id`, an HTTP(S) URL (not fetched; a
/// placeholder file stands in), `attach://<part>` or a multipart part of that name.
fn resolve_file(
    st: &mut TgState,
    p: &Params,
    uploads: &[Upload],
    field: &str,
    photo: bool,
) -> Result<(FileRec, Option<String>), TgError> {
    let upload = |name: &str| uploads.iter().find(|u| u.field == name);
    let from_upload = |st: &mut TgState, u: &Upload| {
        let mime = u
            .content_type
            .clone()
            .unwrap_or_else(|| guess_mime(u.filename.as_deref().unwrap_or(""), photo));
        let kind = if photo { "photo" } else { "document" };
        (new_file(st, kind, u.data.clone(), &mime), u.filename.clone())
    };
    if let Some(u) = upload(field) {
        return Ok(from_upload(st, u));
    }
    let v = p_str(p, field).filter(|s| !s.is_empty());
    let v = v.ok_or_else(|| TgError::bad(format!("there is no {field} in the request")))?;
    if let Some(name) = v.strip_prefix("attach://") {
        return upload(name)
            .map(|u| from_upload(st, u))
            .ok_or_else(|| TgError::bad(format!("file \"{name}\" not found in the request")));
    }
    if let Some(f) = st.files.get(&v) {
        return Ok((f.clone(), None));
    }
    if v.starts_with("http://") || v.starts_with("https://") {
        let name = v
            .split(['?', '#'])
            .next()
            .and_then(|s| s.rsplit('/').next())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let mime = guess_mime(name.as_deref().unwrap_or(""), photo);
        let bytes = if mime == "application/pdf" || (!photo && !mime.starts_with("image/")) {
            Bytes::from_static(TINY_PDF)
        } else {
            Bytes::from_static(TINY_PNG)
        };
        let kind = if photo { "photo" } else { "document" };
        return Ok((new_file(st, kind, bytes, &mime), name));
    }
    Err(TgError::bad("wrong file identifier/HTTP URL specified"))
}

fn guess_mime(name: &str, photo: bool) -> String {
    let lower = name.to_ascii_lowercase();
    let m = if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        "image/jpeg"
    } else if lower.ends_with(".pdf") {
        "application/pdf"
    } else if lower.ends_with(".txt") {
        "text/plain"
    } else if photo {
        "image/jpeg"
    } else {
        "application/octet-stream"
    };
    m.to_string()
}

fn photo_sizes(f: &(FileRec, Option<String>)) -> Json {
    let f = &f.0;
    Json::Arr(vec![
        jobj! { "file_id": format!("{}-s", f.file_id), "file_unique_id": format!("{}-s", f.file_unique_id),
        "file_size": f.bytes.len(), "width": 90, "height": 90 },
        jobj! { "file_id": f.file_id.as_str(), "file_unique_id": f.file_unique_id.as_str(),
        "file_size": f.bytes.len(), "width": 800, "height": 800 },
    ])
}

fn document_json(f: &(FileRec, Option<String>)) -> Json {
    let (f, name) = f;
    let name = name.clone().unwrap_or_else(|| {
        let ext = f.file_path.rsplit('.').next().unwrap_or("bin");
        format!("document.{ext}")
    });
    jobj! {
        "file_name": name,
        "mime_type": f.mime_type.as_str(),
        "file_id": f.file_id.as_str(),
        "file_unique_id": f.file_unique_id.as_str(),
        "file_size": f.bytes.len(),
    }
}

/// Registers the small-size alias of a photo so both `file_id`s of `photo[]` resolve.
fn register_photo_alias(st: &mut TgState, f: &FileRec) {
    let mut small = f.clone();
    small.file_id = format!("{}-s", f.file_id);
    small.file_unique_id = format!("{}-s", f.file_unique_id);
    st.files.insert(small.file_id.clone(), small);
}

fn allowed(list: &[String], kind: &str) -> bool {
    if list.is_empty() {
        !matches!(kind, "message_reaction" | "message_reaction_count" | "chat_member")
    } else {
        list.iter().any(|k| k == kind)
    }
}

fn validate_url(url: &str, strict: bool) -> Result<(), TgError> {
    let bad = |m: &str| TgError::bad(format!("bad webhook: {m}"));
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        if strict {
            return Err(bad("An HTTPS URL must be provided for webhook"));
        }
        r
    } else {
        return Err(bad("An HTTPS URL must be provided for webhook"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() {
        return Err(bad("Failed to resolve host: Name or service not known"));
    }
    if strict {
        let port = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, p)| p);
        if let Some(p) = port
            && !["443", "80", "88", "8443"].contains(&p)
        {
            return Err(bad("Webhook can be set up only on ports 80, 88, 443 or 8443"));
        }
    }
    Ok(())
}

/// Checks Telegram-style HTML and returns the plain text (tags removed, entities decoded).
fn parse_html(s: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut out = String::with_capacity(s.len());
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if c == '<' {
            let Some(end) = rest.find('>') else {
                return Err(format!("Unclosed start tag at byte offset {i}"));
            };
            let inner = &rest[1..end];
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim().to_ascii_lowercase();
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => {
                        return Err(format!(
                            "Unmatched end tag at byte offset {i}, expected \"</{open}>\", found \"</{name}>\""
                        ));
                    }
                    None => return Err(format!("Unexpected end tag at byte offset {i}")),
                }
            } else {
                let name = inner
                    .split(|ch: char| ch.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!("Unsupported start tag \"{name}\" at byte offset {i}"));
                }
                stack.push(name);
            }
            i += end + 1;
        } else if c == '&' {
            let entity = rest.find(';').filter(|e| *e <= 10).map(|e| &rest[1..e]);
            let decoded = entity.and_then(|e| match e {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                _ => e
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            });
            match (entity, decoded) {
                (Some(e), Some(ch)) => {
                    out.push(ch);
                    i += e.len() + 2;
                }
                _ => {
                    out.push('&');
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    match stack.pop() {
        Some(open) => Err(format!("Can't find end tag corresponding to start tag \"{open}\"")),
        None => Ok(out),
    }
}

fn user_json(c: &ChatState) -> Json {
    Json::obj()
        .with("id", c.id)
        .with("is_bot", false)
        .with("first_name", c.first_name.as_str())
        .with_opt("last_name", c.last_name.as_deref())
        .with_opt("username", c.username.as_deref())
        .with_opt("language_code", c.language_code.as_deref())
}

fn chat_json(c: &ChatState) -> Json {
    Json::obj()
        .with("id", c.id)
        .with("first_name", c.first_name.as_str())
        .with_opt("last_name", c.last_name.as_deref())
        .with_opt("username", c.username.as_deref())
        .with("type", "private")
}

// ---------------------------------------------------------------------------
// Wire format and parameter helpers
// ---------------------------------------------------------------------------

/// Compact JSON keeping key order, UTF-8 as the Bot API sends it.
fn wire(j: &Json) -> String {
    j.to_utf8_wire()
}

fn api_json(status: u16, body: &Json) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), wire(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn p_str(p: &Params, k: &str) -> Option<String> {
    match p.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn p_i64(p: &Params, k: &str) -> Option<i64> {
    p.get(k).and_then(value_i64)
}

fn p_f64(p: &Params, k: &str) -> Option<f64> {
    match p.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn p_bool(p: &Params, k: &str) -> Option<bool> {
    match p.get(k)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" | "True" | "1" => Some(true),
            "false" | "False" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// An object/array parameter, given as JSON or as a JSON-encoded string (form bodies).
fn p_json(p: &Params, k: &str) -> Option<Value> {
    match p.get(k)? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => serde_json::from_str(s).ok().or(Some(Value::String(s.clone()))),
        v => Some(v.clone()),
    }
}

/// Query string plus the body (JSON, form or multipart) as one parameter map.
fn parse_params(headers: &HeaderMap, query: Option<&str>, body: &Bytes) -> Result<(Params, Vec<Upload>), TgError> {
    let mut p = Params::new();
    if let Some(q) = query {
        for (k, v) in parse_urlencoded(q) {
            p.insert(k, Value::String(v));
        }
    }
    let mut uploads = Vec::new();
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let lower = ctype.to_ascii_lowercase();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((p, uploads));
    }
    if lower.starts_with("multipart/form-data") {
        let parts = parse_multipart(&ctype, body).ok_or_else(|| TgError::bad("can't parse multipart body"))?;
        for part in parts {
            if part.filename.is_some() {
                uploads.push(Upload {
                    field: part.name,
                    filename: part.filename,
                    content_type: part.content_type,
                    data: part.data,
                });
            } else {
                p.insert(
                    part.name,
                    Value::String(String::from_utf8_lossy(&part.data).into_owned()),
                );
            }
        }
    } else if lower.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in parse_urlencoded(&String::from_utf8_lossy(body)) {
            p.insert(k, Value::String(v));
        }
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => p.extend(m),
            _ => return Err(TgError::bad("can't parse JSON object")),
        }
    }
    Ok((p, uploads))
}

/// Canonical spelling of a (case-insensitive) method name.
fn canonical_method(m: &str) -> String {
    const KNOWN: &[&str] = &[
        "getMe",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "getUpdates",
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendLocation",
        "answerCallbackQuery",
        "getFile",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(m))
        .map(|k| (*k).to_string())
        .unwrap_or_else(|| m.to_string())
}

// ---------------------------------------------------------------------------
// Provider API routes
// ---------------------------------------------------------------------------

fn api_router(tg: Arc<Tg>) -> Router {
    Router::new()
        .route("/file/{bot}/{*path}", get(file_get))
        .route("/{bot}/{method}", get(api_call).post(api_call))
        .with_state(tg)
}

async fn api_call(
    State(tg): State<Arc<Tg>>,
    Path((bot, method)): Path<(String, String)>,
    http_method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return api_json(404, &TgError::new(404, "Not Found").body());
    };
    let name = canonical_method(&method);
    let parsed = parse_params(&headers, query.as_deref(), &body);
    let (params, uploads, parse_err) = match parsed {
        Ok((p, u)) => (p, u, None),
        Err(e) => (Params::new(), Vec::new(), Some(e)),
    };
    let idx = {
        let mut st = tg.st();
        let seq = st.sent.len() + 1;
        st.sent.push(json!({
            "seq": seq,
            "method": name,
            "called_as": method,
            "http_method": http_method.as_str(),
            "token_ok": token == tg.cfg.bot_token,
            "chat_id": params.get("chat_id").and_then(value_i64),
            "body": Value::Object(params.clone()),
            "files": uploads.iter().map(|u| json!({
                "field": u.field, "filename": u.filename, "content_type": u.content_type, "size": u.data.len(),
            })).collect::<Vec<_>>(),
            "at_ms": tg.clock.now_ms(),
            "status": null,
            "ok": null,
            "message_id": null,
            "response": null,
        }));
        st.sent.len() - 1
    };
    let result = if token != tg.cfg.bot_token {
        Err(TgError::unauthorized())
    } else if let Some(e) = parse_err {
        Err(e)
    } else {
        tg.call(&name, &params, &uploads).await
    };
    let (status, body) = match result {
        Ok(r) => {
            let mut b = jobj! { "ok": true, "result": r.result };
            if let Some(d) = r.description {
                b.set("description", d);
            }
            (200u16, b)
        }
        Err(e) => (e.code, e.body()),
    };
    {
        let mut st = tg.st();
        // Photos: make the small size's file_id resolvable too.
        if let Some(Json::Arr(sizes)) = body.get("result").and_then(|r| r.get("photo"))
            && let Some(Json::Str(big)) = sizes.last().and_then(|s| s.get("file_id"))
            && let Some(f) = st.files.get(big).cloned()
        {
            register_photo_alias(&mut st, &f);
        }
        let message_id = body.get("result").and_then(|r| r.get("message_id")).map(Json::to_value);
        if let Some(Value::Object(rec)) = st.sent.get_mut(idx) {
            rec.insert("status".into(), json!(status));
            rec.insert("ok".into(), json!(status == 200));
            rec.insert("message_id".into(), message_id.unwrap_or(Value::Null));
            rec.insert("response".into(), body.to_value());
        }
    }
    api_json(status, &body)
}

async fn file_get(State(tg): State<Arc<Tg>>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot.strip_prefix("bot") != Some(tg.cfg.bot_token.as_str()) {
        return api_json(401, &TgError::unauthorized().body());
    }
    let st = tg.st();
    match st.files.values().find(|f| f.file_path == path) {
        Some(f) => {
            let mut resp = (StatusCode::OK, f.bytes.clone()).into_response();
            if let Ok(v) = HeaderValue::from_str(&f.mime_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        None => api_json(404, &TgError::new(404, "Not Found: file not found").body()),
    }
}

// ---------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------

fn control_router(tg: Arc<Tg>) -> Router {
    let mut r: Router<Arc<Tg>> = Router::new()
        .route("/_sim/telegram/customer-message", post(customer_message))
        .route("/_sim/telegram/block", post(block))
        .route("/_sim/telegram/users", get(list_users).post(upsert_user))
        .route("/_sim/telegram/options", get(get_options).post(set_options))
        .route("/_sim/telegram/webhook", get(get_webhook))
        .route("/_sim/telegram/callback-answers", get(callback_answers))
        .route("/_sim/telegram/file", post(put_file));
    for prefix in ["/_sim", "/_sim/telegram"] {
        r = r
            .route(&format!("{prefix}/faults"), get(get_faults).post(set_faults))
            .route(&format!("{prefix}/clock"), get(get_clock).post(set_clock))
            .route(&format!("{prefix}/retry"), get(get_retry).post(set_retry))
            .route(&format!("{prefix}/deliveries"), get(get_deliveries))
            .route(&format!("{prefix}/sent"), get(get_sent))
            .route(&format!("{prefix}/reset-logs"), post(reset_logs));
    }
    r.with_state(tg)
}

#[derive(Clone, Debug, Default, Deserialize)]
struct UserFields {
    user_id: i64,
    #[serde(default)]
    first_name: Option<String>,
    /// Alias of `first_name` (the shared customer page sends `name`).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerReq {
    user_id: i64,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
    /// text | photo | document | location | contact | callback_query | edited
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    /// callback_query `data`.
    #[serde(default)]
    data: Option<String>,
    /// `edited`: the customer message to edit (default: their last); `callback_query`:
    /// the bot message carrying the button (default: the bot's last).
    #[serde(default)]
    message_id: Option<i64>,
    #[serde(default)]
    reply_to_message_id: Option<i64>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    /// Bytes of the photo/document (default: a 1×1 PNG / a one-page PDF).
    #[serde(default)]
    file_base64: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    /// Shared with the photo/document messages of one album.
    #[serde(default)]
    media_group_id: Option<String>,
    /// Wait for the first webhook attempt (default true).
    #[serde(default)]
    wait: Option<bool>,
}

impl CustomerReq {
    fn user(&self) -> UserFields {
        UserFields {
            user_id: self.user_id,
            first_name: self.first_name.clone(),
            name: self.name.clone(),
            last_name: self.last_name.clone(),
            username: self.username.clone(),
            language_code: self.language_code.clone(),
        }
    }
}

async fn customer_message(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    let req: CustomerReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let wait = req.wait.unwrap_or(true);
    let kind = req.kind.clone().unwrap_or_else(|| "text".into());
    let now = tg.clock.now_secs();
    let file_bytes = match &req.file_base64 {
        Some(b) => match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
            Ok(v) => Some(Bytes::from(v)),
            Err(e) => return ctl_err(StatusCode::BAD_REQUEST, format!("file_base64: {e}")),
        },
        None => None,
    };
    // Build under the lock; emit afterwards.
    let mut unblock = None;
    let built: Result<Built, String> = {
        let mut st = tg.st();
        let chat_id = tg.upsert_chat(&mut st, &req.user(), Some(true));
        // A blocked user who writes again has unblocked the bot (Restart).
        let was_blocked = st.chats.get(&chat_id).is_some_and(|c| c.blocked);
        if was_blocked {
            let chat = st.chats.get_mut(&chat_id).expect("upserted");
            chat.blocked = false;
            unblock = Some(tg.my_chat_member(chat, "kicked", "member", now));
        }
        build_customer(&tg, &mut st, chat_id, &req, &kind, now, file_bytes)
    };
    let (update_kind, payload, message_id, callback_id, chat_id) = match built {
        Ok(b) => b,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    if let Some(u) = unblock {
        tg.emit(chat_id, "my_chat_member", u, now, false).await;
    }
    let e = tg.emit(chat_id, update_kind, payload, now, wait).await;
    axum::Json(json!({
        "update_id": e.update_id,
        "message_id": message_id,
        "callback_query_id": callback_id,
        "delivered_status": e.delivered_status,
        "filtered": e.filtered,
    }))
    .into_response()
}

type Built = (&'static str, Json, Option<i64>, Option<String>, i64);

fn build_customer(
    tg: &Tg,
    st: &mut TgState,
    chat_id: i64,
    req: &CustomerReq,
    kind: &str,
    now: i64,
    file_bytes: Option<Bytes>,
) -> Result<Built, String> {
    if kind == "callback_query" {
        let id = format!("{}{:06}", chat_id.unsigned_abs() % 1_000_000_000, st.next_callback);
        st.next_callback += 1;
        st.callbacks.insert(id.clone(), None);
        let chat = st.chats.get(&chat_id).expect("upserted");
        let target = req.message_id.or(chat.last_bot_message);
        let message = match target.and_then(|m| chat.messages.get(&m)) {
            Some(m) => m.clone(),
            None => jobj! {
                "message_id": target.unwrap_or(0),
                "from": tg.bot_user(),
                "chat": chat_json(chat),
                "date": now,
                "text": "",
            },
        };
        let payload = Json::obj()
            .with("id", id.as_str())
            .with("from", user_json(chat))
            .with("message", message)
            .with(
                "chat_instance",
                format!("-{}", 4_000_000_000_000_000_000u64 + chat_id.unsigned_abs()),
            )
            .with_opt("data", req.data.as_deref());
        return Ok(("callback_query", payload, target, Some(id), chat_id));
    }
    if kind == "edited" {
        let chat = st.chats.get_mut(&chat_id).expect("upserted");
        let target = req
            .message_id
            .or(chat.last_customer_message)
            .ok_or("edited: no customer message to edit")?;
        let mut msg = chat
            .messages
            .get(&target)
            .cloned()
            .ok_or_else(|| format!("edited: message {target} not found in chat {chat_id}"))?;
        if msg.get("from").and_then(|f| f.get("id")) != Some(&Json::Int(chat_id)) {
            return Err(format!("edited: message {target} was not sent by the customer"));
        }
        if let Some(t) = &req.text {
            if msg.get("caption").is_some() {
                msg.set("caption", t.as_str());
            } else {
                msg.set("text", t.as_str());
            }
        }
        if let Some(c) = &req.caption {
            msg.set("caption", c.as_str());
        }
        if let (Some(lat), Some(lon)) = (req.latitude, req.longitude) {
            msg.set("location", jobj! { "latitude": lat, "longitude": lon });
        }
        msg.set("edit_date", now);
        chat.messages.insert(target, msg.clone());
        return Ok(("edited_message", msg, Some(target), None, chat_id));
    }
    let content: Vec<(&str, Json)> = match kind {
        "text" => {
            let t = req.text.clone().filter(|t| !t.is_empty()).ok_or("text is required")?;
            vec![("text", Json::from(t))]
        }
        "photo" => {
            let mime = req.mime_type.clone().unwrap_or_else(|| "image/png".into());
            let f = new_file(
                st,
                "photo",
                file_bytes.unwrap_or_else(|| Bytes::from_static(TINY_PNG)),
                &mime,
            );
            register_photo_alias(st, &f);
            let mut v = vec![("photo", photo_sizes(&(f, None)))];
            if let Some(c) = req.caption.clone() {
                v.push(("caption", Json::from(c)));
            }
            v
        }
        "document" => {
            let mime = req.mime_type.clone().unwrap_or_else(|| "application/pdf".into());
            let f = new_file(
                st,
                "document",
                file_bytes.unwrap_or_else(|| Bytes::from_static(TINY_PDF)),
                &mime,
            );
            let name = req.file_name.clone().or_else(|| Some("document.pdf".into()));
            let mut v = vec![("document", document_json(&(f, name)))];
            if let Some(c) = req.caption.clone() {
                v.push(("caption", Json::from(c)));
            }
            v
        }
        "location" => vec![(
            "location",
            jobj! { "latitude": req.latitude.unwrap_or(40.41678), "longitude": req.longitude.unwrap_or(-3.70379) },
        )],
        "contact" => {
            let chat = st.chats.get(&chat_id).expect("upserted");
            let c = Json::obj()
                .with(
                    "phone_number",
                    req.phone_number.clone().unwrap_or_else(|| "34600111222".into()),
                )
                .with("first_name", chat.first_name.as_str())
                .with_opt("last_name", chat.last_name.as_deref())
                .with("user_id", chat_id);
            vec![("contact", c)]
        }
        other => return Err(format!("unknown type {other:?}")),
    };
    let chat = st.chats.get_mut(&chat_id).expect("upserted");
    let reply_to = match req.reply_to_message_id {
        Some(id) => Some(
            chat.messages
                .get(&id)
                .cloned()
                .ok_or_else(|| format!("reply_to_message_id {id} not found in chat {chat_id}"))?,
        ),
        None => None,
    };
    let message_id = chat.next_message_id;
    chat.next_message_id += 1;
    let mut msg = jobj! {
        "message_id": message_id,
        "from": user_json(chat),
        "chat": chat_json(chat),
        "date": now,
    };
    if let Some(g) = &req.media_group_id {
        msg.set("media_group_id", g.as_str());
    }
    for (k, v) in content {
        msg.set(k, v);
    }
    chat.messages.insert(message_id, msg.clone());
    chat.last_customer_message = Some(message_id);
    if let Some(r) = reply_to {
        msg.set("reply_to_message", r);
    }
    Ok(("message", msg, Some(message_id), None, chat_id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockReq {
    user_id: i64,
    blocked: bool,
    #[serde(default)]
    wait: Option<bool>,
}

async fn block(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    let req: BlockReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let now = tg.clock.now_secs();
    let payload = {
        let mut st = tg.st();
        let Some(chat) = st.chats.get_mut(&req.user_id) else {
            return ctl_err(StatusCode::NOT_FOUND, format!("unknown user {}", req.user_id));
        };
        if chat.blocked == req.blocked {
            None
        } else {
            chat.blocked = req.blocked;
            let (old, new) = if req.blocked {
                ("member", "kicked")
            } else {
                ("kicked", "member")
            };
            Some(tg.my_chat_member(chat, old, new, now))
        }
    };
    match payload {
        None => axum::Json(json!({ "changed": false, "update_id": null, "delivered_status": null })).into_response(),
        Some(p) => {
            let e = tg
                .emit(req.user_id, "my_chat_member", p, now, req.wait.unwrap_or(true))
                .await;
            axum::Json(json!({
                "changed": true,
                "update_id": e.update_id,
                "delivered_status": e.delivered_status,
                "filtered": e.filtered,
            }))
            .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct UserReq {
    #[serde(flatten)]
    user: UserFields,
    /// Has written to the bot (default false: sends get 403 "can't initiate conversation").
    #[serde(default)]
    started: Option<bool>,
    #[serde(default)]
    blocked: Option<bool>,
    #[serde(default)]
    deactivated: Option<bool>,
}

fn users_json(st: &TgState) -> Value {
    let mut v: Vec<&ChatState> = st.chats.values().collect();
    v.sort_by_key(|c| c.id);
    Value::Array(
        v.into_iter()
            .map(|c| {
                json!({
                    "user_id": c.id,
                    "first_name": c.first_name,
                    "last_name": c.last_name,
                    "username": c.username,
                    "started": c.started,
                    "blocked": c.blocked,
                    "deactivated": c.deactivated,
                    "next_message_id": c.next_message_id,
                    "messages": c.messages.values().map(Json::to_value).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

async fn upsert_user(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    let req: UserReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let mut st = tg.st();
    let id = tg.upsert_chat(&mut st, &req.user, req.started);
    let chat = st.chats.get_mut(&id).expect("upserted");
    if let Some(b) = req.blocked {
        chat.blocked = b;
    }
    if let Some(d) = req.deactivated {
        chat.deactivated = d;
    }
    axum::Json(users_json(&st)).into_response()
}

async fn list_users(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(users_json(&tg.st())).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReq {
    /// photo | document
    #[serde(default)]
    kind: Option<String>,
    data_base64: String,
    #[serde(default)]
    mime_type: Option<String>,
}

/// Registers a file (e.g. one a test wants to resend by `file_id`); returns its `getFile` shape.
async fn put_file(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    let req: FileReq = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let bytes = match base64::engine::general_purpose::STANDARD.decode(req.data_base64.trim()) {
        Ok(b) => Bytes::from(b),
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, format!("data_base64: {e}")),
    };
    let kind = req.kind.unwrap_or_else(|| "document".into());
    let mime = req.mime_type.unwrap_or_else(|| "application/octet-stream".into());
    let mut st = tg.st();
    let f = tg.new_file(&mut st, &kind, bytes, &mime);
    axum::Json(json!({
        "file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.bytes.len(), "file_path": f.file_path,
    }))
    .into_response()
}

async fn get_options(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(tg.st().options.clone()).into_response()
}

async fn set_options(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    let p: OptionsPatch = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let mut st = tg.st();
    let o = &mut st.options;
    if let Some(v) = p.per_chat_interval_ms {
        o.per_chat_interval_ms = v;
    }
    if let Some(v) = p.global_per_sec {
        o.global_per_sec = v;
    }
    if let Some(v) = p.strict_webhook_url {
        o.strict_webhook_url = v;
    }
    if let Some(v) = p.wait_ms {
        o.wait_ms = v;
    }
    axum::Json(o.clone()).into_response()
}

async fn get_webhook(State(tg): State<Arc<Tg>>) -> Response {
    let st = tg.st();
    let v = match &st.webhook {
        None => json!({ "url": null }),
        Some(h) => json!({
            "url": h.url,
            "secret_token": h.secret_token,
            "max_connections": h.max_connections,
            "allowed_updates": h.allowed_updates,
        }),
    };
    axum::Json(v).into_response()
}

async fn callback_answers(State(tg): State<Arc<Tg>>) -> Response {
    let st = tg.st();
    let m: BTreeMap<&String, &Option<Value>> = st.callbacks.iter().collect();
    axum::Json(json!(m)).into_response()
}

async fn get_faults(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(tg.st().faults.clone()).into_response()
}

async fn set_faults(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    match parse_body::<TgFaults>(&body) {
        Ok(f) => {
            tg.st().faults = f.clone();
            axum::Json(f).into_response()
        }
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_clock(State(tg): State<Arc<Tg>>) -> Response {
    crate::common::clock_now(&tg.clock)
}

async fn set_clock(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    crate::common::clock_move(&tg.clock, &body)
}

async fn get_retry(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(tg.st().retry.clone()).into_response()
}

async fn set_retry(State(tg): State<Arc<Tg>>, body: Bytes) -> Response {
    match parse_body::<RetryPatch>(&body) {
        Ok(p) => {
            let mut st = tg.st();
            let r = &mut st.retry;
            if let Some(v) = p.initial_ms {
                r.initial_ms = v;
            }
            if let Some(v) = p.max_ms {
                r.max_ms = v;
            }
            if let Some(v) = p.max_attempts {
                r.max_attempts = v;
            }
            if let Some(v) = p.timeout_ms {
                r.timeout_ms = v;
            }
            if let Some(v) = p.retry_after_unit_ms {
                r.retry_after_unit_ms = v;
            }
            axum::Json(r.clone()).into_response()
        }
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_deliveries(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(tg.st().deliveries.clone()).into_response()
}

async fn get_sent(State(tg): State<Arc<Tg>>) -> Response {
    axum::Json(tg.st().sent.clone()).into_response()
}

async fn reset_logs(State(tg): State<Arc<Tg>>) -> Response {
    let mut st = tg.st();
    st.sent.clear();
    st.deliveries.clear();
    axum::Json(json!({ "ok": true })).into_response()
}

// ---------------------------------------------------------------------------
// Customer page
// ---------------------------------------------------------------------------

const PAGE: &str = include_str!("telegram.html");

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_parsing() {
        assert_eq!(
            parse_html("Tu pedido <b>1042</b> est&aacute;").unwrap(),
            "Tu pedido 1042 est&aacute;"
        );
        assert_eq!(
            parse_html("a &lt;b&gt; &amp; <a href=\"x\">y</a>").unwrap(),
            "a <b> & y"
        );
        assert!(parse_html("<b>x").unwrap_err().contains("Can't find end tag"));
        assert!(
            parse_html("<div>x</div>")
                .unwrap_err()
                .contains("Unsupported start tag")
        );
        assert!(parse_html("<b>x</i>").is_err());
    }

    #[test]
    fn methods_are_case_insensitive() {
        assert_eq!(canonical_method("SENDMESSAGE"), "sendMessage");
        assert_eq!(canonical_method("getwebhookinfo"), "getWebhookInfo");
        assert_eq!(canonical_method("fooBar"), "fooBar");
    }

    #[test]
    fn bot_name_from_username() {
        let tg = Tg::new(TelegramConfig::default(), SimClock::fixed(0));
        assert_eq!(tg.bot_name(), "Acme Support");
    }

    #[test]
    fn wire_keeps_order_and_utf8() {
        let j = jobj! { "update_id": 1, "message": jobj! { "text": "López \"x\"", "f": 1.5 } };
        assert_eq!(wire(&j), r#"{"update_id":1,"message":{"text":"López \"x\"","f":1.5}}"#);
    }

    #[test]
    fn webhook_urls() {
        assert!(validate_url("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(validate_url("http://127.0.0.1:9000/hook", true).is_err());
        assert!(validate_url("https://hooks.example.test:8443/tg", true).is_ok());
        assert!(validate_url("https://hooks.example.test:9000/tg", true).is_err());
        assert!(validate_url("ftp://x", false).is_err());
    }
}
