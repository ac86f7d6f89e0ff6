//! WhatsApp Business Platform — Cloud API simulator (channels.md §1, §10).
//!
//! Three faces on one 127.0.0.1 port:
//! - the **provider API** our adapter calls (`POST /{version}/{phone_number_id}/messages`,
//!   media, templates), validated and policed like Meta's;
//! - a **webhook emitter** that POSTs `whatsapp_business_account` envelopes to the
//!   configured URL, ASCII-escaped and signed with `X-Hub-Signature-256`, with retries;
//! - a **control API** for tests under `/_sim/whatsapp/...` (not part of the provider).
//!
//! Policy engine (§1.10, §10): per customer last-inbound time on the [`SimClock`];
//! free-form sends outside the 24 h window are accepted and then fail
//! asynchronously with 131047; numbers marked unknown fail with 131026; marketing
//! templates to users who stopped marketing fail with 131050; per-number (80 mps →
//! 130429) and per-pair (burst 45, 1 per 6 s → 131056) buckets.

mod api;
mod control;
mod payloads;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::clock::SimClock;
use crate::common::{self, Bucket, Core, Server, lock};
use crate::json::Json;

/// How the simulator is set up. All ids are strings as on the wire.
#[derive(Clone, Debug)]
pub struct WhatsAppConfig {
    /// Signs webhooks (`X-Hub-Signature-256`).
    pub app_secret: String,
    /// Sent in the GET verification handshake.
    pub verify_token: String,
    /// Bearer token required on every provider API call (else 401 + Graph error 190).
    pub access_token: String,
    /// Our business number's id, used in the send URL, e.g. `"990000000000001"`.
    pub phone_number_id: String,
    /// Our business number, digits only, e.g. `"15550001111"`.
    pub display_phone_number: String,
    /// WhatsApp Business Account id (`entry[].id`), e.g. `"880000000000001"`.
    pub waba_id: String,
    /// Where webhooks go (can also be set with `POST /_sim/whatsapp/webhook`).
    pub webhook_url: Option<String>,
}

impl Default for WhatsAppConfig {
    /// Demo values (the ids of channels.md's examples).
    fn default() -> Self {
        Self {
            app_secret: "demo-app-secret".into(),
            verify_token: "sw-verify".into(),
            access_token: "sim-access-token".into(),
            phone_number_id: "990000000000001".into(),
            display_phone_number: "15550001111".into(),
            waba_id: "880000000000001".into(),
            webhook_url: None,
        }
    }
}

/// A running WhatsApp Cloud API simulator.
pub struct WhatsAppSim {
    server: Server,
    core: Arc<Core>,
}

impl WhatsAppSim {
    /// Binds 127.0.0.1 on a free port and starts serving on a tokio task.
    pub async fn start(config: WhatsAppConfig, clock: SimClock) -> std::io::Result<WhatsAppSim> {
        let (listener, base_url) = Server::bind().await?;
        let core = Core::new(
            "whatsapp",
            clock,
            config.app_secret.clone(),
            config.verify_token.clone(),
            config.webhook_url.clone(),
        );
        let wa = Arc::new(Wa::new(config, Arc::clone(&core), base_url.clone()));
        let page = crate::page::router(crate::page::PageSpec {
            provider: "WhatsApp",
            control_prefix: "/_sim/whatsapp",
            id_field: "from",
            id_label: "number",
            recipient_field: "to",
            id_record_field: "wamid",
        });
        let router = Router::new()
            .merge(page)
            .merge(common::control_router(Arc::clone(&core)))
            .merge(control::router(Arc::clone(&wa)))
            .merge(api::router(wa));
        let server = Server::serve(listener, base_url, router);
        Ok(WhatsAppSim { server, core })
    }

    /// `http://127.0.0.1:PORT` — the Graph API base the adapter uses (paths carry the version).
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Same base; the control API lives under `/_sim/whatsapp` (and `/_sim/faults`, `/_sim/clock`).
    pub fn control(&self) -> &str {
        &self.server.base_url
    }

    /// Stops the server and any webhook retries still pending.
    pub async fn shutdown(mut self) {
        self.core.stop();
        self.server.shutdown().await;
    }
}

impl Drop for WhatsAppSim {
    fn drop(&mut self) {
        self.core.stop();
    }
}

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Tunables set with `POST /_sim/whatsapp/options`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaOptions {
    /// Messages per second per business number (0 = unlimited) → 130429.
    pub mps: u32,
    /// Pair-rate burst to one customer (0 = unlimited) → 131056.
    pub pair_burst: u32,
    /// One pair-rate token per this many ms.
    pub pair_interval_ms: u64,
    /// Delay before each automatic status webhook.
    pub status_delay_ms: u64,
    /// Emit `sent`/`delivered` (or `failed`) automatically after a send.
    pub auto_statuses: bool,
    /// Lifetime of media download URLs on the SimClock.
    pub media_url_ttl_ms: i64,
}

impl Default for WaOptions {
    fn default() -> Self {
        Self {
            mps: 80,
            pair_burst: 45,
            pair_interval_ms: 6_000,
            status_delay_ms: 20,
            auto_statuses: true,
            media_url_ttl_ms: 5 * 60 * 1000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Template {
    pub id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub body: String,
    pub header_text: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Customer {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub last_inbound_ms: Option<i64>,
    pub marketing_stopped: bool,
}

/// An outbound message we accepted (for status webhooks).
#[derive(Clone, Debug)]
pub(crate) struct OutMsg {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub biz_opaque: Option<String>,
    pub pricing: Option<Json>,
}

#[derive(Clone, Debug)]
pub(crate) struct Media {
    pub bytes: bytes::Bytes,
    pub mime_type: String,
    /// Base64 SHA-256 of the bytes (the form used in webhooks).
    pub sha256: String,
}

pub(crate) struct WaState {
    pub templates: Vec<Template>,
    pub customers: Vec<Customer>,
    pub unknown: BTreeSet<String>,
    pub sent: HashMap<String, OutMsg>,
    pub media: HashMap<String, Media>,
    pub options: WaOptions,
    pub mps: Bucket,
    pub pairs: HashMap<String, Bucket>,
    seq: u64,
    media_seq: u64,
    template_seq: u64,
}

pub(crate) struct Wa {
    pub core: Arc<Core>,
    pub cfg: WhatsAppConfig,
    pub base_url: String,
    /// Distinguishes this number's wamids from another simulator's.
    id_tag: u64,
    st: Mutex<WaState>,
}

impl Wa {
    fn new(cfg: WhatsAppConfig, core: Arc<Core>, base_url: String) -> Self {
        let now = core.clock.now_ms();
        let options = WaOptions::default();
        let id_tag = cfg
            .phone_number_id
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 10_000;
        let mut st = WaState {
            templates: Vec::new(),
            customers: Vec::new(),
            unknown: BTreeSet::new(),
            sent: HashMap::new(),
            media: HashMap::new(),
            mps: Bucket::new(f64::from(options.mps), now),
            pairs: HashMap::new(),
            options,
            seq: 0,
            media_seq: 0,
            template_seq: 0,
        };
        st.upsert_template(
            "order_update",
            "en_US",
            "UTILITY",
            "APPROVED",
            "Hi {{1}}, your order {{2}} is on its way.",
            None,
        );
        st.upsert_template(
            "chat_follow_up",
            "en_US",
            "UTILITY",
            "APPROVED",
            "Hi {{1}}, we are continuing our conversation here. Reply to this message to go on.",
            None,
        );
        Self {
            core,
            cfg,
            base_url,
            id_tag,
            st: Mutex::new(st),
        }
    }

    pub fn st(&self) -> MutexGuard<'_, WaState> {
        lock(&self.st)
    }

    /// A wamid shaped like Meta's: base64 of a small binary record naming the
    /// counterpart and a 20-character per-number counter token.
    pub fn new_wamid(&self, st: &mut WaState, counterpart: &str, outbound: bool) -> String {
        st.seq += 1;
        let token = format!("{:04}{:016X}", self.id_tag, st.seq);
        let who: Vec<u8> = counterpart.bytes().take(200).collect();
        let mut raw = vec![0x1c, 0x18, who.len() as u8];
        raw.extend_from_slice(&who);
        raw.extend_from_slice(&[0x15, 0x02, 0x00, if outbound { 0x11 } else { 0x12 }, 0x18, 0x14]);
        raw.extend_from_slice(token.as_bytes());
        raw.push(0x00);
        use base64::Engine as _;
        format!("wamid.{}", base64::engine::general_purpose::STANDARD.encode(raw))
    }

    /// Registers media bytes and returns the numeric media id.
    pub fn add_media(&self, st: &mut WaState, bytes: bytes::Bytes, mime_type: String) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        st.media_seq += 1;
        let id = (1_870_000_000_000_000u64 + self.id_tag * 100_000 + st.media_seq).to_string();
        let sha256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
        st.media.insert(
            id.clone(),
            Media {
                bytes,
                mime_type,
                sha256,
            },
        );
        id
    }
}

impl WaState {
    pub fn upsert_template(
        &mut self,
        name: &str,
        language: &str,
        category: &str,
        status: &str,
        body: &str,
        header_text: Option<String>,
    ) -> Template {
        let existing = self
            .templates
            .iter()
            .position(|t| t.name == name && t.language == language);
        let id = match existing {
            Some(i) => self.templates[i].id.clone(),
            None => {
                self.template_seq += 1;
                (7_700_000_000_000_000u64 + self.template_seq).to_string()
            }
        };
        let t = Template {
            id,
            name: name.to_string(),
            language: language.to_string(),
            category: category.to_ascii_uppercase(),
            status: status.to_ascii_uppercase(),
            body: body.to_string(),
            header_text,
        };
        match existing {
            Some(i) => self.templates[i] = t.clone(),
            None => self.templates.push(t.clone()),
        }
        t
    }

    /// Index of the customer known by `wa_id` or `user_id`.
    pub fn customer_idx(&self, wa_id: Option<&str>, user_id: Option<&str>) -> Option<usize> {
        self.customers.iter().position(|c| {
            (wa_id.is_some() && c.wa_id.as_deref() == wa_id) || (user_id.is_some() && c.user_id.as_deref() == user_id)
        })
    }

    /// Finds or creates the customer, linking `wa_id` and `user_id` when both are given.
    pub fn upsert_customer(&mut self, wa_id: Option<&str>, user_id: Option<&str>) -> &mut Customer {
        let idx = match self.customer_idx(wa_id, user_id) {
            Some(i) => i,
            None => {
                self.customers.push(Customer::default());
                self.customers.len() - 1
            }
        };
        let c = &mut self.customers[idx];
        if let Some(w) = wa_id {
            c.wa_id = Some(w.to_string());
        }
        if let Some(u) = user_id {
            c.user_id = Some(u.to_string());
        }
        c
    }
}

/// Distinct `{{…}}` placeholders of a template text, in order of first use.
pub(crate) fn placeholders(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Digits of a phone number as WhatsApp's `wa_id` (no `+`, spaces or punctuation).
pub(crate) fn normalise_phone(input: &str) -> Option<String> {
    let mut digits = String::new();
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    (6..=15).contains(&digits.len()).then_some(digits)
}

/// BSUID shape: two-letter country code, a period, optional `ENT.`, alphanumerics.
pub(crate) fn looks_like_bsuid(s: &str) -> bool {
    let Some((cc, rest)) = s.split_once('.') else {
        return false;
    };
    let rest = rest.strip_prefix("ENT.").unwrap_or(rest);
    cc.len() == 2
        && cc.bytes().all(|b| b.is_ascii_uppercase())
        && !rest.is_empty()
        && rest.len() <= 128
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A deterministic BSUID for a phone number (scoped to the WABA, like Meta's portfolio scope).
pub(crate) fn derive_bsuid(waba_id: &str, wa_id: &str) -> String {
    use sha2::Digest as _;
    let cc = [
        ("351", "PT"),
        ("34", "ES"),
        ("44", "GB"),
        ("49", "DE"),
        ("33", "FR"),
        ("39", "IT"),
        ("55", "BR"),
        ("52", "MX"),
        ("91", "IN"),
        ("1", "US"),
    ]
    .iter()
    .find(|(p, _)| wa_id.starts_with(p))
    .map_or("US", |(_, c)| c);
    let h = sha2::Sha256::digest(format!("{waba_id}:{wa_id}").as_bytes());
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % 10_000_000_000_000_000;
    format!("{cc}.{n:016}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_parsing() {
        assert_eq!(
            placeholders("Hi {{1}}, your order {{2}} is on its way."),
            vec!["1", "2"]
        );
        assert_eq!(
            placeholders("{{1}} and {{1}} and {{ first_name }}"),
            vec!["1", "first_name"]
        );
        assert!(placeholders("no vars {{}} {{ unterminated").is_empty());
    }

    #[test]
    fn phones_and_bsuids() {
        assert_eq!(normalise_phone("+34 600-111-222").as_deref(), Some("34600111222"));
        assert_eq!(normalise_phone("abc"), None);
        assert!(looks_like_bsuid("US.13491208655302741918"));
        assert!(looks_like_bsuid("US.ENT.11815799212886844830"));
        assert!(!looks_like_bsuid("34600111222"));
        let b = derive_bsuid("880000000000001", "34600111222");
        assert!(b.starts_with("ES.") && looks_like_bsuid(&b));
        assert_eq!(b, derive_bsuid("880000000000001", "34600111222"));
    }
}
