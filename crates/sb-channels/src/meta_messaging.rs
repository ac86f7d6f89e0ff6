//! Facebook Messenger and Instagram messaging (channels.md §2, §3): the same Meta platform,
//! told apart by the webhook's `object` (`page` or `instagram`).
//!
//! - Inbound: `entry[].messaging[]` (or `standby[]`) events signed with `X-Hub-Signature-256`
//!   over the raw bytes (the WhatsApp scheme); the GET handshake as WhatsApp's.
//! - Customers are page-scoped ids (PSID / IGSID), linked only within their account.
//! - Echoes of what the page sent: ours are recognised (by `metadata` = our message id, or by
//!   `mid`) and dropped; one typed in Meta's own inbox is recorded as an agent message.
//! - Receipts: Messenger's `delivery` (mids or a watermark) and `read` watermark, Instagram's
//!   `read.mid`.
//! - Outbound: `POST {api}/{version}/me/messages` with the page token; `RESPONSE` within 24 h of
//!   the customer's last message, `MESSAGE_TAG` + `HUMAN_AGENT` up to 7 days.
//!
//! Settings: `page_id` (Messenger) or `ig_account_id` (Instagram), `api_base_url`,
//! `api_version`. Secrets: `app_secret`, `verify_token`, `page_access_token`.

use std::time::Duration;

use async_trait::async_trait;
use sb_core::inbox::DeliveryStatus;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::whatsapp::{SIGNATURE_HEADER, graph_call, verify_signature};
use crate::{
    Account, Channel, ChannelError, IdentityHint, Inbound, InboundMessage, OutboundMessage, Policy, RawRequest,
    SendError, StatusReport, Verified,
};

pub const MESSENGER: &str = "messenger";
pub const INSTAGRAM: &str = "instagram";
/// The standard window; beyond it (up to [`HUMAN_AGENT_MS`]) only a person may reply, tagged.
pub const STANDARD_WINDOW_MS: i64 = 24 * 3_600_000;
pub const HUMAN_AGENT_MS: i64 = 7 * 24 * 3_600_000;
const DEFAULT_API: &str = "https://graph.facebook.com";
const DEFAULT_VERSION: &str = "v21.0";

pub struct MetaMessagingChannel {
    kind: &'static str,
    http: reqwest::Client,
}

impl MetaMessagingChannel {
    pub fn messenger() -> Self {
        MetaMessagingChannel {
            kind: MESSENGER,
            http: crate::http_client(Duration::from_secs(15)),
        }
    }

    pub fn instagram() -> Self {
        MetaMessagingChannel {
            kind: INSTAGRAM,
            http: crate::http_client(Duration::from_secs(15)),
        }
    }

    fn object(&self) -> &'static str {
        if self.kind == INSTAGRAM { "instagram" } else { "page" }
    }

    /// The scoped identity kind of a customer here (a PSID or an IGSID).
    fn identity_kind(&self) -> &'static str {
        if self.kind == INSTAGRAM {
            "instagram_igsid"
        } else {
            "messenger_psid"
        }
    }
}

/// The files of a message, by their (expiring) CDN links.
fn media_of(message: &Value) -> Vec<crate::MediaRef> {
    message["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| matches!(a["type"].as_str(), Some("image" | "video" | "audio" | "file")))
        .filter_map(|a| a["payload"]["url"].as_str())
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .map(|url| {
            let name = url
                .split('?')
                .next()
                .unwrap_or(url)
                .rsplit('/')
                .next()
                .unwrap_or("file");
            crate::MediaRef {
                id: url.to_owned(),
                mime_type: None,
                filename: Some(name.to_owned()),
            }
        })
        .collect()
}

fn describe(message: &Value) -> String {
    if message["is_deleted"].as_bool() == Some(true) {
        return "(the customer deleted a message)".into();
    }
    if message["is_unsupported"].as_bool() == Some(true) {
        return "(a message type this inbox cannot show yet)".into();
    }
    let mut parts = Vec::new();
    if let Some(text) = message["text"].as_str().filter(|t| !t.is_empty()) {
        parts.push(text.to_owned());
    }
    for attachment in message["attachments"].as_array().into_iter().flatten() {
        let label = match attachment["type"].as_str().unwrap_or_default() {
            "image" => "📷 Image",
            "video" => "🎬 Video",
            "audio" => "🎵 Audio",
            "file" => "📄 File",
            "share" | "post" | "ig_post" => "🔗 Shared post",
            "story_mention" => "Mentioned you in their story",
            "reel" | "ig_reel" => "🎬 Shared reel",
            _ => "Attachment",
        };
        match attachment["payload"]["url"].as_str() {
            Some(url) => parts.push(format!("{label}: {url}")),
            None => parts.push(label.to_owned()),
        }
    }
    if parts.is_empty() {
        "(an empty message)".into()
    } else {
        parts.join("\n")
    }
}

impl MetaMessagingChannel {
    fn parse_envelope(&self, body: &[u8], received_at_ms: i64) -> Result<(Vec<Inbound>, Vec<String>), ChannelError> {
        let envelope: Value = serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))?;
        if envelope["object"] != self.object() {
            return Err(ChannelError::Malformed(format!("`object` must be `{}`", self.object())));
        }
        let entries = envelope["entry"]
            .as_array()
            .ok_or_else(|| ChannelError::Malformed("`entry` must be a list".into()))?;
        let (mut events, mut keys) = (Vec::new(), Vec::new());
        let all = entries.iter().flat_map(|e| {
            let standby = e["standby"].as_array().into_iter().flatten();
            e["messaging"].as_array().into_iter().flatten().chain(standby)
        });
        for event in all {
            let at = event["timestamp"].as_i64().unwrap_or(received_at_ms);
            let sender = event["sender"]["id"].as_str().unwrap_or_default();
            let recipient = event["recipient"]["id"].as_str().unwrap_or_default();
            let customer = |id: &str| {
                vec![IdentityHint {
                    kind: self.identity_kind().into(),
                    value: id.to_owned(),
                    verified: true,
                }]
            };
            if let Some(message) = event.get("message").filter(|m| m.is_object()) {
                let mid = message["mid"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| ChannelError::Malformed("a message without `mid`".into()))?;
                if message["is_echo"].as_bool() == Some(true) {
                    keys.push(format!("echo:{mid}"));
                    events.push(Inbound::Echo(crate::Echo {
                        message: InboundMessage {
                            provider_message_id: mid.to_owned(),
                            identities: customer(recipient),
                            sender_name: None,
                            text: describe(message),
                            sent_at_ms: at,
                            media: Vec::new(),
                            auto_reply: None,
                            files: Vec::new(),
                            meta: None,
                            automatic: false,
                        },
                        our_message_id: message["metadata"].as_str().map(str::to_owned),
                    }));
                    continue;
                }
                // An unsend arrives with the same mid: keep it as its own line in the thread.
                let id = if message["is_deleted"].as_bool() == Some(true) {
                    format!("{mid}:deleted")
                } else {
                    mid.to_owned()
                };
                keys.push(id.clone());
                events.push(Inbound::Message(InboundMessage {
                    provider_message_id: id,
                    identities: customer(sender),
                    sender_name: None,
                    text: describe(message),
                    sent_at_ms: at,
                    media: media_of(message),
                    auto_reply: None,
                    files: Vec::new(),
                    meta: None,
                    automatic: false,
                }));
            } else if let Some(edit) = event.get("message_edit").filter(|m| m.is_object()) {
                let mid = edit["mid"].as_str().unwrap_or_default();
                let id = format!("{mid}:edit:{}", edit["num_edit"].as_i64().unwrap_or(0));
                keys.push(id.clone());
                events.push(Inbound::Message(InboundMessage {
                    provider_message_id: id,
                    identities: customer(sender),
                    sender_name: None,
                    text: format!("(edited) {}", edit["text"].as_str().unwrap_or_default()),
                    sent_at_ms: at,
                    media: Vec::new(),
                    auto_reply: None,
                    files: Vec::new(),
                    meta: None,
                    automatic: false,
                }));
            } else if let Some(reaction) = event.get("reaction").filter(|r| r.is_object()) {
                let mid = reaction["mid"].as_str().unwrap_or_default();
                let action = reaction["action"].as_str().unwrap_or("react");
                let id = format!("{mid}:{action}:{sender}:{at}");
                keys.push(id.clone());
                let emoji = reaction["emoji"]
                    .as_str()
                    .or(reaction["reaction"].as_str())
                    .unwrap_or("");
                let text = if action == "unreact" {
                    "Removed a reaction".to_owned()
                } else {
                    format!("Reacted {emoji} to a message")
                };
                events.push(Inbound::Message(InboundMessage {
                    provider_message_id: id,
                    identities: customer(sender),
                    sender_name: None,
                    text,
                    sent_at_ms: at,
                    media: Vec::new(),
                    auto_reply: None,
                    files: Vec::new(),
                    meta: None,
                    automatic: false,
                }));
            } else if let Some(postback) = event.get("postback").filter(|p| p.is_object()) {
                let id = postback["mid"]
                    .as_str()
                    .map_or_else(|| format!("postback:{sender}:{at}"), str::to_owned);
                keys.push(id.clone());
                events.push(Inbound::Message(InboundMessage {
                    provider_message_id: id,
                    identities: customer(sender),
                    sender_name: None,
                    text: postback["title"].as_str().unwrap_or("(button)").to_owned(),
                    sent_at_ms: at,
                    media: Vec::new(),
                    auto_reply: None,
                    files: Vec::new(),
                    meta: None,
                    automatic: false,
                }));
            } else if let Some(delivery) = event.get("delivery").filter(|d| d.is_object()) {
                let mids: Vec<&str> = delivery["mids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for mid in &mids {
                    keys.push(format!("{mid}:delivered"));
                    events.push(status(mid, DeliveryStatus::Delivered));
                }
                if mids.is_empty()
                    && let Some(watermark) = delivery["watermark"].as_i64()
                {
                    keys.push(format!("delivered:{sender}:{watermark}"));
                    events.push(Inbound::Receipt(crate::Receipt {
                        identities: customer(sender),
                        status: DeliveryStatus::Delivered,
                        watermark_ms: watermark,
                    }));
                }
            } else if let Some(read) = event.get("read").filter(|r| r.is_object()) {
                if let Some(mid) = read["mid"].as_str() {
                    // Instagram: the last message read, so everything up to it.
                    keys.push(format!("{mid}:read"));
                    events.push(status(mid, DeliveryStatus::Read));
                } else if let Some(watermark) = read["watermark"].as_i64() {
                    keys.push(format!("read:{sender}:{watermark}"));
                    events.push(Inbound::Receipt(crate::Receipt {
                        identities: customer(sender),
                        status: DeliveryStatus::Read,
                        watermark_ms: watermark,
                    }));
                }
            }
        }
        Ok((events, keys))
    }
}

fn status(mid: &str, status: DeliveryStatus) -> Inbound {
    Inbound::Status(StatusReport {
        provider_message_id: mid.to_owned(),
        our_message_id: None,
        status,
        error_code: None,
        error_message: None,
    })
}

/// The Send API bodies of a message: its text, then its file (Messenger carries one or the
/// other per call). Inside the standard window a reply; after it a human agent's tagged reply.
pub fn send_bodies(message: &OutboundMessage) -> Vec<Value> {
    let mut bodies = Vec::new();
    // An automated message: its image first, then the text with its quick replies.
    if let Some(url) = message.rich.as_ref().and_then(|r| r.image_url.as_ref()) {
        let mut body = send_body(message);
        body["message"] = serde_json::json!({
            "attachment": { "type": "image", "payload": { "url": url, "is_reusable": true } },
            "metadata": message.message_id,
        });
        bodies.push(body);
    }
    if !message.text.is_empty() || message.files.is_empty() {
        let mut body = send_body(message);
        let replies: Vec<Value> = message
            .rich
            .iter()
            .flat_map(|r| &r.quick_replies)
            .take(13)
            .map(|q| serde_json::json!({"content_type": "text", "title": q.chars().take(20).collect::<String>(), "payload": q}))
            .collect();
        if !replies.is_empty() {
            body["message"]["quick_replies"] = Value::Array(replies);
        }
        bodies.push(body);
    }
    for file in &message.files {
        let kind = if file.content_type.starts_with("image/") {
            "image"
        } else {
            "file"
        };
        let mut body = send_body(message);
        body["message"] = serde_json::json!({
            "attachment": { "type": kind, "payload": { "url": file.url, "is_reusable": true } },
            "metadata": message.message_id,
        });
        bodies.push(body);
    }
    bodies
}

/// The Send API body of the text: a reply inside the standard window, a human agent's tagged
/// reply after.
pub fn send_body(message: &OutboundMessage) -> Value {
    let tagged = message
        .last_inbound_at_ms
        .is_none_or(|last| message.created_at_ms - last > STANDARD_WINDOW_MS);
    let mut body = serde_json::json!({
        "recipient": { "id": message.to },
        "messaging_type": "RESPONSE",
        "message": { "text": message.text, "metadata": message.message_id },
    });
    if tagged {
        body["messaging_type"] = "MESSAGE_TAG".into();
        body["tag"] = "HUMAN_AGENT".into();
    }
    body
}

#[async_trait]
impl Channel for MetaMessagingChannel {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn policy(&self) -> Policy {
        Policy {
            // Agents may answer for 7 days (HUMAN_AGENT); automation only within 24 hours.
            reply_window_ms: Some(HUMAN_AGENT_MS),
            max_text_chars: if self.kind == INSTAGRAM { 1_000 } else { 2_000 },
            supports_media: true,
            max_files: 1,
            recipient_pace: None,
        }
    }

    fn address_kind(&self) -> &'static str {
        self.identity_kind()
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["app_secret"]
    }

    fn new_secrets(&self) -> Value {
        serde_json::json!({
            "app_secret": "",
            "page_access_token": "",
            "verify_token": sb_core::credentials::random_secret(),
        })
    }

    fn handshake(&self, query: &[(String, String)], account: &Account) -> Option<Result<String, ChannelError>> {
        crate::whatsapp::WhatsAppChannel::default().handshake(query, account)
    }

    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let secret = account
            .secret("app_secret")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ChannelError::Misconfigured("no `app_secret`".into()))?;
        verify_signature(secret, request.header(SIGNATURE_HEADER), request.body)?;
        let (events, keys) = self.parse_envelope(request.body, now_ms)?;
        let digest = if keys.is_empty() {
            hex::encode(Sha256::digest(request.body))
        } else {
            hex::encode(Sha256::digest(keys.join("\n").as_bytes()))
        };
        Ok(Verified {
            dedupe_key: format!("{}:{digest}", self.kind),
            events,
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, _account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(self.parse_envelope(body, received_at_ms)?.0)
    }

    /// Meta's attachments are expiring CDN links (the media "id" here is the link).
    async fn fetch_media(&self, _account: &Account, url: &str) -> Result<Option<(Vec<u8>, String)>, SendError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Ok(None);
        }
        crate::download(self.http.get(url)).await.map(Some)
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let permanent = |code: &str, m: String| SendError {
            retryable: false,
            code: code.into(),
            message: m,
            retry_after_ms: None,
        };
        let token = account
            .secret("page_access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| permanent("channel_misconfigured", "no `page_access_token` secret".into()))?;
        let base = account
            .setting("api_base_url")
            .unwrap_or(DEFAULT_API)
            .trim_end_matches('/')
            .to_owned();
        let version = account.setting("api_version").unwrap_or(DEFAULT_VERSION);
        let mut last_id = None;
        for body in send_bodies(message) {
            let request = self
                .http
                .post(format!("{base}/{version}/me/messages"))
                .bearer_auth(token)
                .json(&body);
            let parsed = graph_call(request).await?;
            last_id = parsed["message_id"].as_str().map(str::to_owned);
        }
        last_id.ok_or_else(|| permanent("unexpected_response", "no message_id in the answer".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::classify;

    fn parse(ch: &MetaMessagingChannel, body: Value) -> Vec<Inbound> {
        ch.parse_envelope(body.to_string().as_bytes(), 0).expect("parses").0
    }

    #[test]
    fn messenger_events_become_messages_receipts_and_echoes() {
        let ch = MetaMessagingChannel::messenger();
        let events = parse(
            &ch,
            serde_json::json!({"object": "page", "entry": [{"id": "104", "time": 1, "messaging": [
                {"sender": {"id": "701"}, "recipient": {"id": "104"}, "timestamp": 1000,
                 "message": {"mid": "m_1", "text": "Is the blue one in stock?"}},
                {"sender": {"id": "701"}, "recipient": {"id": "104"}, "timestamp": 1001,
                 "message": {"mid": "m_2", "attachments": [{"type": "image", "payload": {"url": "https://x/a.jpg"}}]}},
                {"sender": {"id": "104"}, "recipient": {"id": "701"}, "timestamp": 1002,
                 "message": {"mid": "m_3", "is_echo": true, "app_id": 1, "metadata": "our-1", "text": "Yes"}},
                {"sender": {"id": "701"}, "recipient": {"id": "104"}, "delivery": {"mids": ["m_3"], "watermark": 1003}},
                {"sender": {"id": "701"}, "recipient": {"id": "104"}, "timestamp": 1004, "read": {"watermark": 1003}}
            ]}]}),
        );
        assert_eq!(events.len(), 5);
        let Inbound::Message(first) = &events[0] else { panic!() };
        assert_eq!(
            (first.identities[0].kind.as_str(), first.identities[0].value.as_str()),
            ("messenger_psid", "701")
        );
        let Inbound::Message(second) = &events[1] else { panic!() };
        assert_eq!(second.text, "📷 Image: https://x/a.jpg");
        let Inbound::Echo(echo) = &events[2] else { panic!() };
        assert_eq!(
            (
                echo.our_message_id.as_deref(),
                echo.message.identities[0].value.as_str()
            ),
            (Some("our-1"), "701")
        );
        assert!(matches!(&events[3], Inbound::Status(s) if s.status == DeliveryStatus::Delivered));
        assert!(
            matches!(&events[4], Inbound::Receipt(r) if r.status == DeliveryStatus::Read && r.watermark_ms == 1003)
        );
        // The other object is refused.
        assert!(ch.parse_envelope(br#"{"object":"instagram","entry":[]}"#, 0).is_err());
    }

    #[test]
    fn instagram_reads_name_the_last_message_and_unsends_are_kept() {
        let ch = MetaMessagingChannel::instagram();
        let events = parse(
            &ch,
            serde_json::json!({"object": "instagram", "entry": [{"id": "178", "time": 1, "messaging": [
                {"sender": {"id": "555"}, "recipient": {"id": "178"}, "timestamp": 1000, "read": {"mid": "aW_77"}},
                {"sender": {"id": "555"}, "recipient": {"id": "178"}, "timestamp": 1001,
                 "message": {"mid": "aW_1", "is_deleted": true}}
            ]}]}),
        );
        assert!(
            matches!(&events[0], Inbound::Status(s) if s.status == DeliveryStatus::Read && s.provider_message_id == "aW_77")
        );
        let Inbound::Message(m) = &events[1] else { panic!() };
        assert_eq!(
            (m.provider_message_id.as_str(), m.text.as_str()),
            ("aW_1:deleted", "(the customer deleted a message)")
        );
    }

    #[test]
    fn an_automated_message_sends_its_image_then_the_text_with_quick_replies() {
        let message = OutboundMessage {
            rich: Some(crate::Rich {
                image_url: Some("https://shop.example/sale.jpg".into()),
                quick_replies: vec!["Show me".into(), "Not now".into()],
                ..Default::default()
            }),
            message_id: "our-2".into(),
            conversation_id: "c".into(),
            to: "701".into(),
            text: "Spring sale".into(),
            created_at_ms: 1_000,
            template: None,
            last_inbound_at_ms: Some(0),
            files: Vec::new(),
            status_callback_url: None,
            purpose: sb_core::inbox::Purpose::Marketing,
            unsubscribe_url: None,
            thread: None,
        };
        let bodies = send_bodies(&message);
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0]["message"]["attachment"]["type"], "image");
        assert_eq!(
            bodies[0]["message"]["attachment"]["payload"]["url"],
            "https://shop.example/sale.jpg"
        );
        assert_eq!(bodies[1]["message"]["text"], "Spring sale");
        assert_eq!(bodies[1]["message"]["quick_replies"][1]["title"], "Not now");
        assert_eq!(bodies[1]["message"]["quick_replies"][0]["content_type"], "text");
    }

    #[test]
    fn replies_are_tagged_human_agent_after_the_standard_window() {
        let mut message = OutboundMessage {
            rich: None,
            message_id: "our-1".into(),
            conversation_id: "c".into(),
            to: "701".into(),
            text: "Hi".into(),
            created_at_ms: 10 * 3_600_000,
            template: None,
            last_inbound_at_ms: Some(0),
            files: Vec::new(),
            status_callback_url: None,
            purpose: Default::default(),
            unsubscribe_url: None,
            thread: None,
        };
        assert_eq!(send_body(&message)["messaging_type"], "RESPONSE");
        message.created_at_ms = 30 * 3_600_000;
        let body = send_body(&message);
        assert_eq!(
            (body["messaging_type"].as_str(), body["tag"].as_str()),
            (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
        );
        assert_eq!(body["message"]["metadata"], "our-1");
    }

    #[test]
    fn send_errors_are_classified() {
        let e = classify(
            400,
            r#"{"error":{"message":"outside window","code":10,"error_subcode":2018278}}"#,
        );
        assert_eq!((e.retryable, e.code.as_str()), (false, "10/2018278"));
        assert!(classify(400, r#"{"error":{"message":"slow down","code":613}}"#).retryable);
        assert!(!classify(400, r#"{"error":{"message":"unavailable","code":551}}"#).retryable);
    }
}
