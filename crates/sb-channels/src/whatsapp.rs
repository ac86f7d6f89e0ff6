//! WhatsApp Business Platform, Cloud API (channels.md §1).
//!
//! - Inbound: `POST` envelopes `object/entry[]/changes[]/value` signed with
//!   `X-Hub-Signature-256: sha256=hex(HMAC-SHA256(app secret, raw body))`. The MAC is taken over
//!   the bytes as sent (Meta escapes non-ASCII as `\uXXXX`), never over re-serialised JSON.
//!   One POST may carry several entries, changes, messages and statuses; all are handled.
//! - The `GET` handshake (`hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`) answers
//!   the bare challenge when the token matches.
//! - Outbound: `POST {api}/{version}/{phone_number_id}/messages` with a bearer token; our
//!   message id travels as `biz_opaque_callback_data` and comes back in status callbacks, so
//!   a status that overtakes our own bookkeeping still finds its message.
//! - Policy: free-form replies only within 24 h of the customer's last message; outside,
//!   only an approved template (validated before sending).
//!
//! Account settings: `phone_number_id`, `waba_id`, `api_base_url` (default
//! `https://graph.facebook.com`), `api_version` (default `v21.0`). Secrets: `app_secret`,
//! `verify_token`, `access_token`.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sb_core::inbox::{DeliveryStatus, normalise_phone};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    Account, Channel, ChannelError, IdentityHint, Inbound, InboundMessage, OutboundMessage, Policy, ProviderTemplate,
    RawRequest, SendError, StatusReport, Verified,
};

pub const KIND: &str = "whatsapp";
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const MAX_TEXT: usize = 4_096;
pub const WINDOW_MS: i64 = 24 * 3_600_000;
const DEFAULT_API: &str = "https://graph.facebook.com";
const DEFAULT_VERSION: &str = "v21.0";
/// The scoped identity kind of a business-scoped user id (BSUID), for users without a phone.
pub const BSUID_KIND: &str = "whatsapp_bsuid";

type HmacSha256 = Hmac<Sha256>;

pub struct WhatsAppChannel {
    http: reqwest::Client,
}

impl Default for WhatsAppChannel {
    fn default() -> Self {
        WhatsAppChannel {
            http: crate::http_client(Duration::from_secs(15)),
        }
    }
}

/// Checks `X-Hub-Signature-256` against the raw body, in constant time.
pub fn verify_signature(app_secret: &str, header: Option<&str>, body: &[u8]) -> Result<(), ChannelError> {
    let header = header.ok_or(ChannelError::MissingSignature)?;
    let hex_tag = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(ChannelError::InvalidSignature)?;
    let tag = hex::decode(hex_tag).map_err(|_| ChannelError::InvalidSignature)?;
    let mut mac = HmacSha256::new_from_slice(app_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| ChannelError::InvalidSignature)
}

/// What a message of a given type says, as text for the thread (media is described; its
/// caption kept).
fn describe(message: &Value) -> String {
    let kind = message["type"].as_str().unwrap_or("unknown");
    let object = &message[kind];
    let caption = object["caption"].as_str().filter(|c| !c.is_empty());
    match kind {
        "text" => object["body"].as_str().unwrap_or_default().to_owned(),
        "image" | "video" | "audio" | "sticker" | "document" => {
            let label = match kind {
                "image" => "📷 Image",
                "video" => "🎬 Video",
                "audio" if object["voice"].as_bool() == Some(true) => "🎤 Voice message",
                "audio" => "🎵 Audio",
                "sticker" => "Sticker",
                _ => "📄 Document",
            };
            let name = object["filename"].as_str().map(|f| format!(" {f}")).unwrap_or_default();
            match caption {
                Some(c) => format!("{label}{name}: {c}"),
                None => format!("{label}{name}"),
            }
        }
        "location" => {
            let place = [object["name"].as_str(), object["address"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            let at = format!(
                "{}, {}",
                object["latitude"].as_f64().unwrap_or_default(),
                object["longitude"].as_f64().unwrap_or_default()
            );
            if place.is_empty() {
                format!("📍 Location ({at})")
            } else {
                format!("📍 {place} ({at})")
            }
        }
        "reaction" => match object["emoji"].as_str().filter(|e| !e.is_empty()) {
            Some(emoji) => format!("Reacted {emoji} to a message"),
            None => "Removed a reaction".to_owned(),
        },
        "button" => object["text"].as_str().unwrap_or_default().to_owned(),
        "interactive" => {
            let reply = &object[object["type"].as_str().unwrap_or_default()];
            reply["title"].as_str().unwrap_or_default().to_owned()
        }
        "contacts" => {
            let names: Vec<&str> = object
                .as_array()
                .or_else(|| message["contacts"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"]["formatted_name"].as_str())
                .collect();
            format!("👤 Shared contact: {}", names.join(", "))
        }
        "edit" => format!(
            "(edited) {}",
            describe(&object["message"]).trim_start_matches("(edited) ")
        ),
        "revoke" => "(the customer deleted a message)".to_owned(),
        "system" => object["body"].as_str().unwrap_or("(system message)").to_owned(),
        "order" => "🛒 Sent an order".to_owned(),
        _ => "(a message type this inbox cannot show yet)".to_owned(),
    }
}

/// The file a media message refers to (fetched later through the media API).
fn media_of(message: &Value) -> Vec<crate::MediaRef> {
    let kind = message["type"].as_str().unwrap_or_default();
    if !matches!(kind, "image" | "video" | "audio" | "sticker" | "document") {
        return Vec::new();
    }
    let object = &message[kind];
    object["id"]
        .as_str()
        .map(|id| crate::MediaRef {
            id: id.to_owned(),
            mime_type: object["mime_type"].as_str().map(str::to_owned),
            filename: object["filename"].as_str().map(str::to_owned),
        })
        .into_iter()
        .collect()
}

/// The customer's identities from a change's `contacts` entry for `from`.
fn identities(value: &Value, from: Option<&str>) -> (Vec<IdentityHint>, Option<String>) {
    let contact = value["contacts"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|c| from.is_some() && (c["wa_id"].as_str() == from || c["user_id"].as_str() == from))
                .or_else(|| list.first())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let mut hints = Vec::new();
    let phone = contact["wa_id"]
        .as_str()
        .or(from.filter(|f| f.bytes().all(|b| b.is_ascii_digit())));
    if let Some(phone) = phone.and_then(|p| normalise_phone(&format!("+{p}"))) {
        // The provider vouches for the sender's number.
        hints.push(IdentityHint {
            kind: "phone".into(),
            value: phone,
            verified: true,
        });
    }
    if let Some(bsuid) = contact["user_id"].as_str().filter(|u| !u.is_empty()) {
        hints.push(IdentityHint {
            kind: BSUID_KIND.into(),
            value: bsuid.to_owned(),
            verified: true,
        });
    }
    let name = contact["profile"]["name"].as_str().map(str::to_owned);
    (hints, name)
}

fn parse_envelope(body: &[u8], received_at_ms: i64) -> Result<(Vec<Inbound>, Vec<String>), ChannelError> {
    let envelope: Value = serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    if envelope["object"] != "whatsapp_business_account" {
        return Err(ChannelError::Malformed(
            "`object` must be `whatsapp_business_account`".into(),
        ));
    }
    let entries = envelope["entry"]
        .as_array()
        .ok_or_else(|| ChannelError::Malformed("`entry` must be a list".into()))?;
    let (mut events, mut keys) = (Vec::new(), Vec::new());
    for change in entries.iter().filter_map(|e| e["changes"].as_array()).flatten() {
        let value = &change["value"];
        // A marketing stop or resume from WhatsApp's own controls.
        if change["field"] == "user_preferences" {
            for pref in value["user_preferences"].as_array().into_iter().flatten() {
                let (Some(wa_id), Some(state)) = (pref["wa_id"].as_str(), pref["value"].as_str()) else {
                    continue;
                };
                let Some(phone) = normalise_phone(&format!("+{wa_id}")) else {
                    continue;
                };
                let at = pref["timestamp"].as_i64().map_or(received_at_ms, |s| s * 1000);
                keys.push(format!("prefs:{wa_id}:{state}:{at}"));
                events.push(Inbound::Consent(crate::ConsentChange {
                    identities: vec![IdentityHint {
                        kind: "phone".into(),
                        value: phone,
                        verified: true,
                    }],
                    purpose: "marketing".into(),
                    granted: state != "stop",
                    source: "whatsapp_preferences".into(),
                    at_ms: at,
                }));
            }
            continue;
        }
        // Other fields (account updates, template reviews…) are acknowledged and not shown.
        if change["field"] != "messages" {
            continue;
        }
        for message in value["messages"].as_array().into_iter().flatten() {
            let Some(id) = message["id"].as_str().filter(|id| !id.is_empty()) else {
                return Err(ChannelError::Malformed("a message without `id`".into()));
            };
            let from = message["from"].as_str().or(message["from_user_id"].as_str());
            let (mut hints, name) = identities(value, from);
            // The customer's new number: linked to the same customer, and the address from now on.
            if message["type"] == "system"
                && message["system"]["type"] == "user_changed_number"
                && let Some(new) = message["system"]["wa_id"]
                    .as_str()
                    .and_then(|n| normalise_phone(&format!("+{n}")))
            {
                hints.push(IdentityHint {
                    kind: "phone".into(),
                    value: new,
                    verified: true,
                });
            }
            if hints.is_empty() {
                return Err(ChannelError::Malformed(format!("message {id} names no sender")));
            }
            // Meta's timestamps have whole seconds: within the second of receipt, the receipt
            // time orders the thread better (a reply must not sort before what it answers).
            let sent_at_ms = message["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .map_or(received_at_ms, |s| {
                    let at = s * 1000;
                    if (0..1000).contains(&(received_at_ms - at)) {
                        received_at_ms
                    } else {
                        at
                    }
                });
            keys.push(id.to_owned());
            if let Some(granted) = message["text"]["body"].as_str().and_then(crate::consent_keyword) {
                events.push(Inbound::Consent(crate::ConsentChange {
                    identities: hints.clone(),
                    purpose: "marketing".into(),
                    granted,
                    source: "keyword".into(),
                    at_ms: sent_at_ms,
                }));
            }
            events.push(Inbound::Message(InboundMessage {
                provider_message_id: id.to_owned(),
                identities: hints,
                sender_name: name,
                text: describe(message),
                sent_at_ms,
                media: media_of(message),
                auto_reply: None,
                files: Vec::new(),
                meta: None,
                automatic: false,
            }));
        }
        for status in value["statuses"].as_array().into_iter().flatten() {
            let (Some(id), Some(state)) = (status["id"].as_str(), status["status"].as_str()) else {
                return Err(ChannelError::Malformed("a status without `id` or `status`".into()));
            };
            let reported = match state {
                "sent" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "read" | "played" => DeliveryStatus::Read,
                "failed" => DeliveryStatus::Failed,
                _ => continue,
            };
            let error = &status["errors"][0];
            keys.push(format!("{id}:{state}"));
            events.push(Inbound::Status(StatusReport {
                provider_message_id: id.to_owned(),
                our_message_id: status["biz_opaque_callback_data"].as_str().map(str::to_owned),
                status: reported,
                error_code: error["code"].as_i64().map(|c| c.to_string()),
                error_message: error["error_data"]["details"]
                    .as_str()
                    .or(error["message"].as_str())
                    .or(error["title"].as_str())
                    .map(str::to_owned),
            }));
        }
    }
    Ok((events, keys))
}

/// The Graph API error, classified: rate limits and transient failures are retried; policy
/// and request errors are permanent and shown to the agent with Meta's code.
pub(crate) fn classify(http_status: u16, body: &str) -> SendError {
    let parsed: Value = serde_json::from_str(body).unwrap_or_default();
    let error = &parsed["error"];
    let code = error["code"].as_i64();
    let subcode = error["error_subcode"].as_i64();
    let details = error["error_data"]["details"]
        .as_str()
        .or(error["message"].as_str())
        .unwrap_or(body)
        .chars()
        .take(500)
        .collect::<String>();
    let retryable = match code {
        // Throughput, pair rate, app/account/page call limits, temporary errors.
        Some(130429 | 131056 | 4 | 80007 | 613 | 1 | 2 | 131000) => true,
        Some(_) => error["is_transient"].as_bool().unwrap_or(false),
        None => http_status >= 500 || http_status == 429 || http_status == 408,
    };
    SendError {
        retryable,
        code: match (code, subcode) {
            (Some(c), Some(s)) => format!("{c}/{s}"),
            (Some(c), None) => c.to_string(),
            (None, _) => format!("http_{http_status}"),
        },
        message: details,
        retry_after_ms: None,
    }
}

/// Makes a Graph API call: the JSON answer, or the error classified by Meta's code.
pub(crate) async fn graph_call(request: reqwest::RequestBuilder) -> Result<Value, SendError> {
    let response = request.send().await.map_err(SendError::network)?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(classify(status, &text));
    }
    Ok(serde_json::from_str(&text).unwrap_or_default())
}

/// The request body of a send: a template when one is given, else text.
pub fn send_body(message: &OutboundMessage) -> Value {
    let to = message.to.trim_start_matches('+');
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "biz_opaque_callback_data": message.message_id,
    });
    match &message.template {
        Some(t) => {
            let parameters: Vec<Value> = t
                .parameters
                .iter()
                .map(|p| serde_json::json!({ "type": "text", "text": p }))
                .collect();
            body["type"] = "template".into();
            body["template"] = serde_json::json!({
                "name": t.name,
                "language": { "code": t.language },
                "components": [{ "type": "body", "parameters": parameters }],
            });
        }
        None => match message.files.first() {
            // A file goes by link, the text as its caption.
            Some(file) => {
                let kind = if file.content_type.starts_with("image/") {
                    "image"
                } else {
                    "document"
                };
                let mut object = serde_json::json!({ "link": file.url });
                if !message.text.is_empty() {
                    object["caption"] = message.text.clone().into();
                }
                if kind == "document" {
                    object["filename"] = file.filename.clone().into();
                }
                body["type"] = kind.into();
                body[kind] = object;
            }
            None => {
                body["type"] = "text".into();
                body["text"] = serde_json::json!({ "body": message.text, "preview_url": false });
            }
        },
    }
    body
}

fn api_base(account: &Account) -> (String, String) {
    (
        account
            .setting("api_base_url")
            .unwrap_or(DEFAULT_API)
            .trim_end_matches('/')
            .to_owned(),
        account.setting("api_version").unwrap_or(DEFAULT_VERSION).to_owned(),
    )
}

impl WhatsAppChannel {
    /// The WABA's message templates (`GET /{waba_id}/message_templates`), every page.
    async fn list_templates(&self, account: &Account) -> Result<Vec<ProviderTemplate>, SendError> {
        let permanent = |m: &str| SendError {
            retryable: false,
            code: "channel_misconfigured".into(),
            message: m.into(),
            retry_after_ms: None,
        };
        let waba = account
            .setting("waba_id")
            .ok_or_else(|| permanent("no `waba_id` setting"))?;
        let token = account
            .secret("access_token")
            .ok_or_else(|| permanent("no `access_token` secret"))?;
        let (base, version) = api_base(account);
        let mut url = format!("{base}/{version}/{waba}/message_templates?limit=100");
        let mut out = Vec::new();
        for _ in 0..50 {
            let page = graph_call(self.http.get(&url).bearer_auth(token)).await?;
            for t in page["data"].as_array().into_iter().flatten() {
                let body = t["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"].as_str().is_some_and(|k| k.eq_ignore_ascii_case("body")))
                    .and_then(|c| c["text"].as_str())
                    .unwrap_or_default();
                out.push(ProviderTemplate {
                    name: t["name"].as_str().unwrap_or_default().to_owned(),
                    language: t["language"].as_str().unwrap_or_default().to_owned(),
                    category: t["category"].as_str().unwrap_or_default().to_owned(),
                    status: t["status"].as_str().unwrap_or_default().to_owned(),
                    body: body.to_owned(),
                });
            }
            match page["paging"]["next"].as_str() {
                Some(next) if !next.is_empty() => url = next.to_owned(),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// How many positional parameters (`{{1}}`, `{{2}}`…) a template body takes.
pub fn template_parameter_count(body: &str) -> usize {
    let mut highest = 0;
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        if let Ok(n) = rest[..end].trim().parse::<usize>() {
            highest = highest.max(n);
        }
        rest = &rest[end + 2..];
    }
    highest
}

/// The template's body with its parameters filled in (what the thread shows).
pub fn render_template(body: &str, parameters: &[String]) -> String {
    let mut out = body.to_owned();
    for (i, p) in parameters.iter().enumerate() {
        out = out.replace(&format!("{{{{{}}}}}", i + 1), p);
    }
    out
}

#[async_trait]
impl Channel for WhatsAppChannel {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn policy(&self) -> Policy {
        Policy {
            reply_window_ms: Some(WINDOW_MS),
            max_text_chars: MAX_TEXT,
            supports_media: true,
            max_files: 1,
            recipient_pace: Some((45, 6_000)),
        }
    }

    fn address_kind(&self) -> &'static str {
        "phone"
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["app_secret"]
    }

    fn new_secrets(&self) -> Value {
        serde_json::json!({
            "app_secret": "",
            "access_token": "",
            "verify_token": sb_core::credentials::random_secret(),
        })
    }

    fn handshake(&self, query: &[(String, String)], account: &Account) -> Option<Result<String, ChannelError>> {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let expected = account.secret("verify_token");
        Some(match (get("hub.mode"), get("hub.verify_token"), get("hub.challenge")) {
            (Some("subscribe"), Some(token), Some(challenge))
                if expected.is_some_and(|e| subtle::ConstantTimeEq::ct_eq(e.as_bytes(), token.as_bytes()).into()) =>
            {
                Ok(challenge.to_owned())
            }
            (Some(_), Some(_), Some(_)) => Err(ChannelError::InvalidSignature),
            _ => Err(ChannelError::Malformed(
                "expected hub.mode, hub.verify_token and hub.challenge".into(),
            )),
        })
    }

    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let secret = account
            .secret("app_secret")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ChannelError::Misconfigured("no `app_secret`".into()))?;
        verify_signature(secret, request.header(SIGNATURE_HEADER), request.body)?;
        let (events, keys) = parse_envelope(request.body, now_ms)?;
        // A redelivered envelope has the same messages and statuses: the same key. Envelopes
        // with nothing we keep are keyed by their bytes.
        let digest = if keys.is_empty() {
            hex::encode(Sha256::digest(request.body))
        } else {
            hex::encode(Sha256::digest(keys.join("\n").as_bytes()))
        };
        Ok(Verified {
            dedupe_key: format!("wa:{digest}"),
            events,
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, _account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(parse_envelope(body, received_at_ms)?.0)
    }

    /// Two steps, both with the bearer token: the media object (a short-lived URL), then the bytes.
    async fn fetch_media(&self, account: &Account, media_id: &str) -> Result<Option<(Vec<u8>, String)>, SendError> {
        let token = account.secret("access_token").unwrap_or_default();
        let (base, version) = api_base(account);
        let meta = graph_call(self.http.get(format!("{base}/{version}/{media_id}")).bearer_auth(token)).await?;
        let url = meta["url"].as_str().ok_or_else(|| SendError {
            retryable: false,
            code: "unexpected_response".into(),
            message: format!("no url for media {media_id}"),
            retry_after_ms: None,
        })?;
        let (bytes, served_as) = crate::download(self.http.get(url).bearer_auth(token)).await?;
        // The media object's type is the one the customer's phone declared.
        let mime = meta["mime_type"].as_str().map_or(served_as, str::to_owned);
        Ok(Some((bytes, mime)))
    }

    async fn fetch_templates(&self, account: &Account) -> Result<Option<Vec<ProviderTemplate>>, SendError> {
        self.list_templates(account).await.map(Some)
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let permanent = |code: &str, m: String| SendError {
            retryable: false,
            code: code.into(),
            message: m,
            retry_after_ms: None,
        };
        let phone_id = account
            .setting("phone_number_id")
            .ok_or_else(|| permanent("channel_misconfigured", "no `phone_number_id` setting".into()))?;
        let token = account
            .secret("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| permanent("channel_misconfigured", "no `access_token` secret".into()))?;
        let (base, version) = api_base(account);
        let request = self
            .http
            .post(format!("{base}/{version}/{phone_id}/messages"))
            .bearer_auth(token)
            .json(&send_body(message));
        let parsed = graph_call(request).await?;
        parsed["messages"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| permanent("unexpected_response", format!("no message id in {parsed}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// channels.md Appendix A.1, byte for byte.
    const A1_BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"880000000000001","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"990000000000001"},"contacts":[{"profile":{"name":"Ana L\u00f3pez"},"wa_id":"34600111222"}],"messages":[{"from":"34600111222","id":"wamid.DEMO1","timestamp":"1767225600","type":"text","text":{"body":"Hola, \u00bftienen talla M?"}}]},"field":"messages"}]}]}"#;
    const A1_SIGNATURE: &str = "sha256=4394a2e65f74d9495c09706cde5fc0fcc0cdc0a8846adbe5ab6104dba57f28a6";
    const A1_RESERIALISED: &str = "sha256=aee4116cc04ac9f5e47ec4a93a504a6ddd470a591f143258ab813d2e574273e9";

    fn account() -> Account {
        Account {
            id: "acc".into(),
            settings: serde_json::json!({"phone_number_id": "990000000000001"}),
            secrets: serde_json::json!({"app_secret": "demo-app-secret", "verify_token": "vt", "access_token": "t"}),
        }
    }

    fn verify(body: &[u8], signature: Option<&str>) -> Result<Verified, ChannelError> {
        let headers: Vec<(String, String)> = signature
            .map(|s| vec![(SIGNATURE_HEADER.to_owned(), s.to_owned())])
            .unwrap_or_default();
        WhatsAppChannel::default().verify(
            &RawRequest {
                url: "https://hooks.example.test/",
                headers: &headers,
                body,
            },
            &account(),
            1_767_225_600_000,
        )
    }

    #[test]
    fn appendix_a1_signed_bytes_verify_and_the_reserialised_signature_does_not() {
        assert_eq!(A1_BODY.len(), 446);
        let verified = verify(A1_BODY, Some(A1_SIGNATURE)).expect("the vector verifies");
        let Inbound::Message(m) = &verified.events[0] else {
            panic!("a message")
        };
        assert_eq!(m.text, "Hola, ¿tienen talla M?");
        assert_eq!(m.sender_name.as_deref(), Some("Ana López"));
        assert_eq!(m.identities[0].value, "+34600111222");
        assert_eq!(m.sent_at_ms, 1_767_225_600_000);
        assert_eq!(
            verify(A1_BODY, Some(A1_RESERIALISED)).err(),
            Some(ChannelError::InvalidSignature)
        );
        assert_eq!(verify(A1_BODY, None).err(), Some(ChannelError::MissingSignature));
        assert_eq!(
            verify(A1_BODY, Some("sha1=abc")).err(),
            Some(ChannelError::InvalidSignature)
        );
    }

    #[test]
    fn a_batched_envelope_yields_every_message_and_status() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "880", "changes": [{"field": "messages", "value": {
                    "metadata": {"phone_number_id": "990"},
                    "contacts": [{"profile": {"name": "Ana"}, "wa_id": "34600111222", "user_id": "ES.77"}],
                    "messages": [
                        {"from": "34600111222", "id": "wamid.1", "timestamp": "1767225600", "type": "image",
                         "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "este"}},
                        {"from": "34600111222", "id": "wamid.2", "timestamp": "1767225601", "type": "location",
                         "location": {"latitude": 40.4, "longitude": -3.7, "name": "Tienda"}},
                        {"from": "34600111222", "id": "wamid.3", "timestamp": "1767225602", "type": "interactive",
                         "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}},
                        {"from": "34600111222", "id": "wamid.4", "timestamp": "1767225603", "type": "reaction",
                         "reaction": {"message_id": "wamid.0", "emoji": "👍"}},
                        {"from": "34600111222", "id": "wamid.5", "timestamp": "1767225604", "type": "unsupported",
                         "errors": [{"code": 131051}]}
                    ]}}]},
                {"id": "880", "changes": [{"field": "messages", "value": {
                    "metadata": {"phone_number_id": "990"},
                    "statuses": [{"id": "wamid.OUT", "status": "failed", "timestamp": "1767225605",
                                  "recipient_id": "34600111222", "biz_opaque_callback_data": "our-1",
                                  "errors": [{"code": 131047, "title": "Re-engagement message",
                                              "error_data": {"details": "More than 24 hours have passed"}}]}]}},
                    {"field": "account_update", "value": {}}]}
            ]
        })
        .to_string();
        let (events, keys) = parse_envelope(body.as_bytes(), 0).expect("parses");
        assert_eq!(keys.len(), 6);
        let texts: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Inbound::Message(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                "📷 Image: este",
                "📍 Tienda (40.4, -3.7)",
                "Yes",
                "Reacted 👍 to a message",
                "(a message type this inbox cannot show yet)"
            ]
        );
        let Inbound::Message(first) = &events[0] else { panic!() };
        assert_eq!(first.identities[1].kind, BSUID_KIND);
        let Inbound::Status(status) = &events[5] else { panic!() };
        assert_eq!(
            (
                status.status,
                status.error_code.as_deref(),
                status.our_message_id.as_deref()
            ),
            (DeliveryStatus::Failed, Some("131047"), Some("our-1"))
        );
        assert_eq!(status.error_message.as_deref(), Some("More than 24 hours have passed"));
    }

    /// Every inbound type of channels.md §1.4, in its documented shape, and what the thread shows.
    #[test]
    fn every_inbound_type_is_shown() {
        let cases = [
            (serde_json::json!({"type": "text", "text": {"body": "Hola"}}), "Hola"),
            (
                serde_json::json!({"type": "video", "video": {"id": "1", "mime_type": "video/mp4"}}),
                "🎬 Video",
            ),
            (
                serde_json::json!({"type": "audio", "audio": {"id": "1", "voice": true}}),
                "🎤 Voice message",
            ),
            (serde_json::json!({"type": "audio", "audio": {"id": "1"}}), "🎵 Audio"),
            (
                serde_json::json!({"type": "sticker", "sticker": {"id": "1", "animated": false}}),
                "Sticker",
            ),
            (
                serde_json::json!({"type": "document", "document": {"id": "1", "filename": "factura.pdf", "caption": "mi factura"}}),
                "📄 Document factura.pdf: mi factura",
            ),
            (
                serde_json::json!({"type": "location", "location": {"latitude": 1.5, "longitude": 2.0}}),
                "📍 Location (1.5, 2)",
            ),
            (
                serde_json::json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Bea Ruiz"}}]}),
                "👤 Shared contact: Bea Ruiz",
            ),
            (
                serde_json::json!({"type": "reaction", "reaction": {"message_id": "w", "emoji": ""}}),
                "Removed a reaction",
            ),
            (
                serde_json::json!({"type": "button", "button": {"payload": "P", "text": "Stop promotions"}}),
                "Stop promotions",
            ),
            (
                serde_json::json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r", "title": "Size M"}}}),
                "Size M",
            ),
            (
                serde_json::json!({"type": "edit", "edit": {"original_message_id": "w", "message": {"type": "text", "text": {"body": "en azul"}}}}),
                "(edited) en azul",
            ),
            (
                serde_json::json!({"type": "revoke", "revoke": {"original_message_id": "w"}}),
                "(the customer deleted a message)",
            ),
            (
                serde_json::json!({"type": "system", "system": {"body": "User A changed from 1 to 2", "type": "user_changed_number"}}),
                "User A changed from 1 to 2",
            ),
            (serde_json::json!({"type": "order", "order": {}}), "🛒 Sent an order"),
            (
                serde_json::json!({"type": "unknown_future_type"}),
                "(a message type this inbox cannot show yet)",
            ),
        ];
        for (message, shown) in cases {
            assert_eq!(describe(&message), shown, "{message}");
        }
        let image = serde_json::json!({"type": "image", "image": {"id": "77", "mime_type": "image/jpeg"}});
        assert_eq!(media_of(&image)[0].id, "77");
    }

    #[test]
    fn the_handshake_echoes_the_challenge_only_for_the_right_token() {
        let q = |token: &str| {
            vec![
                ("hub.mode".to_owned(), "subscribe".to_owned()),
                ("hub.verify_token".to_owned(), token.to_owned()),
                ("hub.challenge".to_owned(), "1158201444".to_owned()),
            ]
        };
        let ch = WhatsAppChannel::default();
        assert_eq!(ch.handshake(&q("vt"), &account()), Some(Ok("1158201444".into())));
        assert_eq!(
            ch.handshake(&q("nope"), &account()),
            Some(Err(ChannelError::InvalidSignature))
        );
    }

    #[test]
    fn graph_errors_are_classified_by_code() {
        let body = |code: i64| format!(r#"{{"error":{{"message":"m","code":{code},"error_data":{{"details":"d"}}}}}}"#);
        assert!(classify(400, &body(130429)).retryable);
        assert!(classify(400, &body(131056)).retryable);
        let e = classify(400, &body(131047));
        assert!(!e.retryable);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("131047", "d"));
        assert!(!classify(401, &body(190)).retryable);
        assert!(classify(503, "oops").retryable);
    }

    #[test]
    fn templates_count_and_fill_positional_parameters() {
        let body = "Hi {{1}}, your order {{2}} is on its way.";
        assert_eq!(template_parameter_count(body), 2);
        assert_eq!(template_parameter_count("no params"), 0);
        assert_eq!(
            render_template(body, &["Ana".into(), "1042".into()]),
            "Hi Ana, your order 1042 is on its way."
        );
    }
}
