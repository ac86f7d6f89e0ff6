//! Twilio Programmable Messaging simulator — SMS/MMS and WhatsApp via Twilio
//! (channels.md §5, §6 and the Twilio part of §10).
//!
//! Three faces on one 127.0.0.1 port:
//! - the **provider API** our adapter calls: `POST /2010-04-01/Accounts/{AC}/Messages.json`
//!   (HTTP Basic with the Account SID + Auth Token or an API key; form body, repeated
//!   `MediaUrl`) answering 201 with the Message resource or Twilio's error JSON, `GET
//!   …/Messages/{sid}.json`, and inbound media at `…/Messages/{MM}/Media/{ME}` (Basic auth,
//!   307 to a CDN path on the simulator);
//! - a **webhook emitter**: inbound messages form-POSTed to the number's `sms_url` and
//!   status callbacks, both signed with `X-Twilio-Signature`, never retried;
//! - a **control API** for tests under `/_sim/...` (also `/_sim/twilio/...`).
//!
//! Behaviour: segment counting ([`segments`]), a per-sender queue paced in segments per
//! second on the [`SimClock`] with `ValidityPeriod` expiry, the default STOP/START/HELP
//! keyword engine ([`keywords`]), landlines (21614), opt-outs (21610), the WhatsApp 24 h
//! window (63016), media fetches of outbound `MediaUrl`s.

mod api;
mod control;
mod errors;
mod inbound;
pub mod keywords;
mod media;
mod message;
mod queue;
pub mod segments;
pub mod signature;
mod webhooks;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub use signature::{twilio_signature, validate_twilio_signature};

use crate::clock::SimClock;
use crate::common::{Server, lock};
use message::{Message, SidGen};
use webhooks::{Post, WebhookRecord};

/// How the simulator is set up.
#[derive(Clone, Debug)]
pub struct TwilioConfig {
    /// `AC…` (34 chars); the user of HTTP Basic auth and part of every API path.
    pub account_sid: String,
    /// Password of HTTP Basic auth; also the key every webhook is signed with.
    pub auth_token: String,
    /// API keys `(SK… sid, secret)` also accepted for Basic auth (webhooks are still signed with the Auth Token).
    pub api_keys: Vec<(String, String)>,
    /// Our senders (more can be added with `POST /_sim/numbers`).
    pub numbers: Vec<TwilioNumber>,
    /// When set, every number is in this Messaging Service's sender pool: sends may name it
    /// instead of `From`, webhooks carry it, and an opt-out covers the whole service.
    pub messaging_service_sid: Option<String>,
    /// Sign webhooks over the URL with an explicit default port (`:443` / `:80`) added,
    /// as Twilio sometimes does (also `POST /_sim/options`).
    pub sign_with_explicit_port: bool,
    /// Seed of the deterministic SIDs (`SM…`, `MM…`, `ME…`).
    pub id_seed: u64,
}

impl Default for TwilioConfig {
    /// The demo account of channels.md's examples with one US long code.
    fn default() -> Self {
        Self {
            account_sid: "AC0000000000000000000000000000demo".into(),
            auth_token: "demo-auth-token".into(),
            api_keys: Vec::new(),
            numbers: vec![TwilioNumber::new("+15551230000")],
            messaging_service_sid: None,
            sign_with_explicit_port: false,
            id_seed: 1,
        }
    }
}

/// One of our senders.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TwilioNumber {
    /// E.164 (`+15551230000`) or `whatsapp:+E164`.
    pub phone: String,
    /// Inbound webhook, exactly as configured at Twilio (it is the URL that gets signed).
    pub sms_url: Option<String>,
    /// Status callback for sends that carry no `StatusCallback`.
    pub status_callback: Option<String>,
    /// Queue drain rate: a US long code sends 1 segment per second (0 = no queueing).
    pub segments_per_second: f64,
    /// Sign inbound webhooks over this URL instead of `sms_url` (the public URL when our
    /// server sits behind a proxy and the simulator posts to it directly).
    pub signing_url: Option<String>,
    /// The carrier returns delivery receipts (`delivered` callbacks); false = `sent` is the last status.
    pub delivery_receipts: bool,
}

impl TwilioNumber {
    /// A sender with default throughput: 1 segment/s for SMS long codes, 10 messages/s for WhatsApp senders.
    pub fn new(phone: impl Into<String>) -> Self {
        let phone = phone.into();
        let segments_per_second = if is_whatsapp(&phone) { 10.0 } else { 1.0 };
        Self {
            phone,
            sms_url: None,
            status_callback: None,
            segments_per_second,
            signing_url: None,
            delivery_receipts: true,
        }
    }
}

impl Default for TwilioNumber {
    fn default() -> Self {
        TwilioNumber::new("+15551230000")
    }
}

/// A running Twilio Programmable Messaging simulator.
pub struct TwilioSim {
    server: Server,
    tw: Arc<Tw>,
}

impl TwilioSim {
    /// Binds 127.0.0.1 on a free port and starts serving (and pacing queues) on tokio tasks.
    pub async fn start(config: TwilioConfig, clock: SimClock) -> std::io::Result<TwilioSim> {
        let (listener, base_url) = Server::bind().await?;
        let tw = Arc::new(Tw::new(config, clock, base_url.clone()));
        tokio::spawn(Arc::clone(&tw).pacer());
        let router = Router::new()
            .merge(control::router(Arc::clone(&tw)))
            .merge(api::router(Arc::clone(&tw)));
        let server = Server::serve(listener, base_url, router);
        Ok(TwilioSim { server, tw })
    }

    /// `http://127.0.0.1:PORT` — the adapter calls `{base_url}/2010-04-01/Accounts/{AC}/Messages.json`.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Same base; the control API lives under `/_sim/` (and `/_sim/twilio/`).
    pub fn control(&self) -> &str {
        &self.server.base_url
    }

    /// Stops the server, the queue pacer and any callbacks still pending.
    pub async fn shutdown(mut self) {
        self.tw.stop();
        self.server.shutdown().await;
    }
}

impl Drop for TwilioSim {
    fn drop(&mut self) {
        self.tw.stop();
    }
}

// ---------------------------------------------------------------------------
// Tunables and faults
// ---------------------------------------------------------------------------

/// Where a proxy in front of our server maps public URLs: POSTs go to `local_prefix`
/// while the signature stays over the public URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyRewrite {
    pub public_prefix: String,
    pub local_prefix: String,
}

/// Set with `POST /_sim/options` (a patch; the answer is the full set).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TwOptions {
    /// Default STOP/START/HELP handling.
    pub keyword_engine: bool,
    /// Messaging Service Advanced Opt-Out: webhooks of keyword messages carry `OptOutType`.
    pub advanced_opt_out: bool,
    pub sign_with_explicit_port: bool,
    /// `delivered` follows `sent` on its own (else only through `/_sim/deliver/{sid}`).
    pub auto_deliver: bool,
    /// SimClock delay between `sent` and the carrier's `delivered`.
    pub dlr_delay_ms: i64,
    /// A sender whose queue is longer than this refuses sends with 21611 (Twilio: 10 h).
    pub max_queue_secs: i64,
    /// Inbound media URLs need HTTP Basic auth (Twilio account setting).
    pub media_requires_auth: bool,
    /// Answer WhatsApp free-form sends outside the 24 h window with a synchronous 400/63016
    /// instead of accepting them and failing asynchronously (the documented behaviour).
    pub whatsapp_window_sync_error: bool,
    /// Twilio waits at most 15 s for our webhook's answer.
    pub webhook_timeout_ms: u64,
    pub proxy_rewrites: Vec<ProxyRewrite>,
}

impl TwOptions {
    fn new(cfg: &TwilioConfig) -> Self {
        Self {
            keyword_engine: true,
            advanced_opt_out: false,
            sign_with_explicit_port: cfg.sign_with_explicit_port,
            auto_deliver: true,
            dlr_delay_ms: 0,
            max_queue_secs: 36_000,
            media_requires_auth: true,
            whatsapp_window_sync_error: false,
            webhook_timeout_ms: 15_000,
            proxy_rewrites: Vec::new(),
        }
    }
}

/// `POST /_sim/faults` replaces the whole set; `{}` clears everything.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TwFaults {
    /// The next N `Messages.json` creates fail (counts down).
    #[serde(default)]
    pub fail_sends: u32,
    /// 429 → error 20429, 500 → error 20500.
    #[serde(default = "default_fail_status")]
    pub fail_status: u16,
    /// Every webhook (inbound and status) is POSTed twice, identically.
    #[serde(default)]
    pub duplicate_webhooks: bool,
    /// Webhooks are signed with a wrong token.
    #[serde(default)]
    pub bad_signature: bool,
    /// Webhooks carry no `X-Twilio-Signature`.
    #[serde(default)]
    pub missing_signature: bool,
    /// No carrier returns delivery receipts: messages stop at `sent`.
    #[serde(default)]
    pub no_dlr: bool,
}

fn default_fail_status() -> u16 {
    429
}

impl Default for TwFaults {
    fn default() -> Self {
        Self {
            fail_sends: 0,
            fail_status: default_fail_status(),
            duplicate_webhooks: false,
            bad_signature: false,
            missing_signature: false,
            no_dlr: false,
        }
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

pub(crate) struct NumberState {
    pub cfg: TwilioNumber,
    /// SimClock ms at which the sender's queue is empty again.
    pub next_free_ms: i64,
}

/// Something a customer's handset received, in order (`GET /_sim/received`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Received {
    pub seq: usize,
    /// The customer.
    pub to: String,
    /// Our number.
    pub from: String,
    pub body: String,
    pub media: Vec<Value>,
    /// The message resource; `null` for Twilio's keyword auto-replies.
    pub sid: Option<String>,
    /// `message` (sent through the API), `auto_reply` (keyword confirmation) or `twiml_reply`.
    pub kind: &'static str,
    pub at_ms: i64,
}

/// Bytes (or an external URL) behind an inbound `MediaUrl{i}`.
#[derive(Clone, Debug)]
pub(crate) struct StoredMedia {
    pub message_sid: String,
    pub content_type: String,
    pub source: media::MediaSource,
    /// Path segment of the CDN URL the media endpoint redirects to.
    pub cdn_token: String,
    pub created_ms: i64,
}

pub(crate) struct TwState {
    pub numbers: Vec<NumberState>,
    pub messages: Vec<Message>,
    pub index: HashMap<String, usize>,
    /// Outbound messages that may still change on their own.
    pub active: BTreeSet<usize>,
    /// `ME…` → inbound media.
    pub media: HashMap<String, StoredMedia>,
    /// (opt-out scope: our number or Messaging Service, customer number).
    pub optouts: BTreeSet<(String, String)>,
    pub landlines: BTreeSet<String>,
    /// (our WhatsApp sender, customer) → SimClock ms of the customer's last message.
    pub last_inbound: HashMap<(String, String), i64>,
    pub faults: TwFaults,
    pub options: TwOptions,
    /// Every provider API request our adapter made.
    pub outbox: Vec<Value>,
    pub webhooks: Vec<WebhookRecord>,
    pub received: Vec<Received>,
    pub sids: SidGen,
    /// `I-Twilio-Idempotency-Token` values (own counter so webhooks don't shift message SIDs).
    pub tokens: SidGen,
    /// Status callbacks waiting per message (present while its worker runs).
    pub callback_queues: HashMap<String, VecDeque<Post>>,
}

impl TwState {
    pub fn number(&self, phone: &str) -> Option<&NumberState> {
        self.numbers.iter().find(|n| n.cfg.phone == phone)
    }

    pub fn number_mut(&mut self, phone: &str) -> Option<&mut NumberState> {
        self.numbers.iter_mut().find(|n| n.cfg.phone == phone)
    }

    pub fn message(&self, sid: &str) -> Option<&Message> {
        self.index.get(sid).map(|&i| &self.messages[i])
    }

    pub fn push_message(&mut self, m: Message) -> usize {
        let i = self.messages.len();
        self.index.insert(m.sid.clone(), i);
        self.messages.push(m);
        i
    }

    pub fn push_received(&mut self, mut r: Received) {
        r.seq = self.received.len() + 1;
        self.received.push(r);
    }
}

pub(crate) struct Tw {
    pub cfg: TwilioConfig,
    pub clock: SimClock,
    pub base_url: String,
    pub client: reqwest::Client,
    stop_tx: watch::Sender<bool>,
    /// Wakes the pacer early (new message, control call).
    pub wake: Notify,
    state: Mutex<TwState>,
}

impl Tw {
    fn new(cfg: TwilioConfig, clock: SimClock, base_url: String) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("TwilioProxy/1.1")
            .pool_max_idle_per_host(8)
            .build()
            .expect("reqwest client");
        let (stop_tx, _) = watch::channel(false);
        let numbers = cfg
            .numbers
            .iter()
            .map(|n| NumberState {
                cfg: n.clone(),
                next_free_ms: 0,
            })
            .collect();
        let state = TwState {
            numbers,
            messages: Vec::new(),
            index: HashMap::new(),
            active: BTreeSet::new(),
            media: HashMap::new(),
            optouts: BTreeSet::new(),
            landlines: BTreeSet::new(),
            last_inbound: HashMap::new(),
            faults: TwFaults::default(),
            options: TwOptions::new(&cfg),
            outbox: Vec::new(),
            webhooks: Vec::new(),
            received: Vec::new(),
            sids: SidGen::new(cfg.id_seed),
            tokens: SidGen::new(cfg.id_seed),
            callback_queues: HashMap::new(),
        };
        Self {
            cfg,
            clock,
            base_url,
            client,
            stop_tx,
            wake: Notify::new(),
            state: Mutex::new(state),
        }
    }

    pub fn st(&self) -> MutexGuard<'_, TwState> {
        lock(&self.state)
    }

    fn stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    pub fn stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Credentials of an `Authorization: Basic` value: the Account SID + Auth Token or an API key.
    pub fn basic_auth_ok(&self, user: &str, password: &str) -> bool {
        (user == self.cfg.account_sid && password == self.cfg.auth_token)
            || self
                .cfg
                .api_keys
                .iter()
                .any(|(sid, secret)| sid == user && secret == password)
    }

    /// Opt-outs apply per sender, or to the whole Messaging Service when there is one.
    pub fn opt_out_scope(&self, sender: &str) -> String {
        self.cfg
            .messaging_service_sid
            .clone()
            .unwrap_or_else(|| sender.to_string())
    }

    /// Advances queues on the SimClock every few ms (the clock may be moved from outside).
    async fn pacer(self: Arc<Self>) {
        let mut stop = self.stop_tx.subscribe();
        loop {
            self.tick();
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// `whatsapp:+34600111222` → true.
pub(crate) fn is_whatsapp(address: &str) -> bool {
    address.starts_with("whatsapp:")
}

/// The phone part of an address (`whatsapp:` prefix removed).
pub(crate) fn bare(address: &str) -> &str {
    address.strip_prefix("whatsapp:").unwrap_or(address)
}

/// E.164: `+`, a non-zero digit, at most 15 digits in all.
pub(crate) fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config() {
        let c = TwilioConfig::default();
        assert_eq!(c.account_sid.len(), 34);
        assert_eq!(c.numbers[0].phone, "+15551230000");
        assert_eq!(c.numbers[0].segments_per_second, 1.0);
        assert_eq!(TwilioNumber::new("whatsapp:+15550001111").segments_per_second, 10.0);
    }

    #[test]
    fn e164() {
        assert!(is_e164("+15557654321"));
        assert!(is_e164("+34600111222"));
        assert!(!is_e164("+1555"));
        assert!(!is_e164("15557654321"));
        assert!(!is_e164("+1555765432a"));
        assert!(!is_e164("+0123456789"));
        assert!(!is_e164("+1234567890123456"));
        assert_eq!(bare("whatsapp:+34600111222"), "+34600111222");
    }
}
