//! Telegram Bot API (channels.md §4).
//!
//! - Connecting an account calls `setWebhook` with our URL and a random `secret_token`;
//!   Telegram then sends it back as `X-Telegram-Bot-Api-Secret-Token` on every update (there
//!   is no body signature). A missing or wrong header is refused.
//! - One `Update` per POST, de-duplicated by `update_id` per bot. Messages are keyed by
//!   `(chat id, message_id)`, as `message_id` is unique per chat only.
//! - Customers are Telegram user ids, scoped to the bot. A contact the user shares as their
//!   own (`contact.user_id == from.id`) is a phone number Telegram vouches for: it links the
//!   customer across channels.
//! - `my_chat_member` going to `kicked` means the user blocked the bot (and back to `member`,
//!   unblocked): recorded as the customer's consent to be messaged there.
//! - Outbound: `sendMessage`, or `sendPhoto` / `sendDocument` with a URL Telegram fetches.
//!   No delivery or read receipts exist for bots.
//!
//! Settings: `api_base_url` (default `https://api.telegram.org`). Secrets: `bot_token`,
//! `secret_token`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    Account, Channel, ChannelError, ConsentChange, IdentityHint, Inbound, InboundMessage, MediaRef, OutboundMessage,
    Policy, RawRequest, SendError, Verified,
};

pub const KIND: &str = "telegram";
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
pub const USER_KIND: &str = "telegram_user";
pub const MAX_TEXT: usize = 4_096;
const DEFAULT_API: &str = "https://api.telegram.org";

pub struct TelegramChannel {
    http: reqwest::Client,
}

impl Default for TelegramChannel {
    fn default() -> Self {
        TelegramChannel {
            http: crate::http_client(Duration::from_secs(15)),
        }
    }
}

fn api(account: &Account) -> Result<(String, String), SendError> {
    let token = account
        .secret("bot_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SendError {
            retryable: false,
            code: "channel_misconfigured".into(),
            message: "no `bot_token` secret".into(),
            retry_after_ms: None,
        })?;
    let base = account
        .setting("api_base_url")
        .unwrap_or(DEFAULT_API)
        .trim_end_matches('/');
    Ok((base.to_owned(), token.to_owned()))
}

/// A Bot API answer: the `result`, or the error classified (flood control and server errors
/// retry; blocked users, unknown chats and bad requests do not).
async fn call(request: reqwest::RequestBuilder) -> Result<Value, SendError> {
    let response = request.send().await.map_err(SendError::network)?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    if body["ok"].as_bool() == Some(true) {
        return Ok(body["result"].clone());
    }
    let code = body["error_code"].as_i64().unwrap_or(i64::from(status));
    let description = body["description"]
        .as_str()
        .unwrap_or("the Bot API refused the request");
    let retry_after = body["parameters"]["retry_after"].as_i64();
    let message = match retry_after {
        Some(after) => format!("{description} (retry after {after} s)"),
        None => description.to_owned(),
    };
    Err(SendError {
        retryable: code == 429 || code >= 500,
        code: code.to_string(),
        message,
        // Flood control names the wait exactly: sooner fails again, later wastes time.
        retry_after_ms: retry_after.map(|s| s * 1000),
    })
}

fn user_hint(user: &Value) -> Option<IdentityHint> {
    let id = user["id"].as_i64()?;
    Some(IdentityHint {
        kind: USER_KIND.into(),
        value: id.to_string(),
        verified: true,
    })
}

fn name_of(user: &Value) -> Option<String> {
    let parts: Vec<&str> = [user["first_name"].as_str(), user["last_name"].as_str()]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn describe(message: &Value) -> String {
    let caption = message["caption"].as_str().filter(|c| !c.is_empty());
    let with_caption = |label: &str| match caption {
        Some(c) => format!("{label}: {c}"),
        None => label.to_owned(),
    };
    if let Some(text) = message["text"].as_str() {
        return text.to_owned();
    }
    if message["photo"].is_array() {
        return with_caption("📷 Photo");
    }
    if let Some(doc) = message.get("document").filter(|d| d.is_object()) {
        let name = doc["file_name"].as_str().unwrap_or("file");
        return with_caption(&format!("📄 {name}"));
    }
    if message["voice"].is_object() {
        return "🎤 Voice message".into();
    }
    if message["video"].is_object() {
        return with_caption("🎬 Video");
    }
    if message["sticker"].is_object() {
        return format!("Sticker {}", message["sticker"]["emoji"].as_str().unwrap_or(""))
            .trim_end()
            .to_owned();
    }
    if let Some(l) = message.get("location").filter(|l| l.is_object()) {
        return format!(
            "📍 Location ({}, {})",
            l["latitude"].as_f64().unwrap_or_default(),
            l["longitude"].as_f64().unwrap_or_default()
        );
    }
    if let Some(c) = message.get("contact").filter(|c| c.is_object()) {
        return format!(
            "👤 Shared contact: {} {}",
            c["first_name"].as_str().unwrap_or(""),
            c["phone_number"].as_str().unwrap_or("")
        );
    }
    "(a message type this inbox cannot show yet)".into()
}

fn media_of(message: &Value) -> Vec<MediaRef> {
    // Photos come in several sizes, smallest first: keep the largest.
    if let Some(largest) = message["photo"].as_array().and_then(|sizes| sizes.last()) {
        return largest["file_id"]
            .as_str()
            .map(|id| MediaRef {
                id: id.to_owned(),
                mime_type: Some("image/jpeg".into()),
                filename: None,
            })
            .into_iter()
            .collect();
    }
    if let Some(doc) = message.get("document").filter(|d| d.is_object()) {
        return doc["file_id"]
            .as_str()
            .map(|id| MediaRef {
                id: id.to_owned(),
                mime_type: doc["mime_type"].as_str().map(str::to_owned),
                filename: doc["file_name"].as_str().map(str::to_owned),
            })
            .into_iter()
            .collect();
    }
    Vec::new()
}

/// Parses one Update; returns its de-duplication key and events.
fn parse_update(body: &[u8], received_at_ms: i64) -> Result<(String, Vec<Inbound>), ChannelError> {
    let update: Value = serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    let update_id = update["update_id"]
        .as_i64()
        .ok_or_else(|| ChannelError::Malformed("`update_id` is missing".into()))?;
    let mut events = Vec::new();
    let edited = update.get("edited_message").filter(|m| m.is_object());
    if let Some(message) = update.get("message").filter(|m| m.is_object()).or(edited) {
        let from = &message["from"];
        let (Some(chat), Some(message_id), Some(hint)) = (
            message["chat"]["id"].as_i64(),
            message["message_id"].as_i64(),
            user_hint(from),
        ) else {
            return Err(ChannelError::Malformed(
                "a message without chat, message_id or sender".into(),
            ));
        };
        // Private chats only: a group's messages are not one customer's.
        if message["chat"]["type"].as_str().is_some_and(|t| t != "private") {
            return Ok((format!("tg:{update_id}"), events));
        }
        let at = message["date"].as_i64().map_or(received_at_ms, |s| s * 1000);
        let mut identities = vec![hint];
        let contact = &message["contact"];
        if contact["user_id"].as_i64().is_some()
            && contact["user_id"] == from["id"]
            && let Some(phone) = contact["phone_number"]
                .as_str()
                .and_then(|p| sb_core::inbox::normalise_phone(&format!("+{}", p.trim_start_matches('+'))))
        {
            identities.push(IdentityHint {
                kind: "phone".into(),
                value: phone,
                verified: true,
            });
        }
        let (id, text, at) = match (edited, message["edit_date"].as_i64()) {
            (Some(_), Some(edit)) => (
                format!("{chat}:{message_id}:edit:{edit}"),
                format!("(edited) {}", describe(message)),
                edit * 1000,
            ),
            _ => (format!("{chat}:{message_id}"), describe(message), at),
        };
        events.push(Inbound::Message(InboundMessage {
            provider_message_id: id,
            identities,
            sender_name: name_of(from),
            text,
            sent_at_ms: at,
            media: media_of(message),
            auto_reply: None,
            files: Vec::new(),
            meta: None,
            automatic: false,
        }));
    } else if let Some(callback) = update.get("callback_query").filter(|c| c.is_object()) {
        let hint =
            user_hint(&callback["from"]).ok_or_else(|| ChannelError::Malformed("a callback without sender".into()))?;
        events.push(Inbound::Message(InboundMessage {
            provider_message_id: format!("cb:{}", callback["id"].as_str().unwrap_or_default()),
            identities: vec![hint],
            sender_name: name_of(&callback["from"]),
            text: callback["data"].as_str().unwrap_or("(button)").to_owned(),
            sent_at_ms: received_at_ms,
            media: Vec::new(),
            auto_reply: None,
            files: Vec::new(),
            meta: None,
            automatic: false,
        }));
    } else if let Some(member) = update.get("my_chat_member").filter(|m| m.is_object())
        && let Some(hint) = user_hint(&member["from"])
    {
        let status = member["new_chat_member"]["status"].as_str().unwrap_or_default();
        events.push(Inbound::Consent(ConsentChange {
            identities: vec![hint],
            purpose: "messaging".into(),
            granted: !matches!(status, "kicked" | "left"),
            source: "telegram_block".into(),
            at_ms: member["date"].as_i64().map_or(received_at_ms, |s| s * 1000),
        }));
    }
    Ok((format!("tg:{update_id}"), events))
}

#[async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn policy(&self) -> Policy {
        Policy {
            reply_window_ms: None,
            max_text_chars: MAX_TEXT,
            supports_media: true,
            max_files: 1,
            // About one message per second to one chat (Bot FAQ).
            recipient_pace: Some((1, 1_000)),
        }
    }

    fn address_kind(&self) -> &'static str {
        USER_KIND
    }

    fn sends_per_second(&self, _account: &Account) -> u32 {
        // Broadcasts above about 30 messages a second per bot meet flood control (Bot FAQ).
        30
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["secret_token"]
    }

    fn new_secrets(&self) -> Value {
        // The secret token may hold only A-Z, a-z, 0-9, `_` and `-`: hex is fine.
        serde_json::json!({ "bot_token": "", "secret_token": sb_core::credentials::random_secret() })
    }

    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let expected = account
            .secret("secret_token")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ChannelError::Misconfigured("no `secret_token`".into()))?;
        let given = request.header(SECRET_HEADER).ok_or(ChannelError::MissingSignature)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes())) {
            return Err(ChannelError::InvalidSignature);
        }
        let (dedupe_key, events) = parse_update(request.body, now_ms)?;
        Ok(Verified {
            dedupe_key,
            events,
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, _account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(parse_update(body, received_at_ms)?.1)
    }

    async fn connect(&self, account: &Account, webhook_url: &str) -> Result<(), SendError> {
        let (base, token) = api(account)?;
        let secret = account.secret("secret_token").unwrap_or_default();
        let body = serde_json::json!({
            "url": webhook_url,
            "secret_token": secret,
            "allowed_updates": ["message", "edited_message", "callback_query", "my_chat_member"],
        });
        call(self.http.post(format!("{base}/bot{token}/setWebhook")).json(&body)).await?;
        Ok(())
    }

    async fn fetch_media(&self, account: &Account, file_id: &str) -> Result<Option<(Vec<u8>, String)>, SendError> {
        let (base, token) = api(account)?;
        let file = call(
            self.http
                .post(format!("{base}/bot{token}/getFile"))
                .json(&serde_json::json!({ "file_id": file_id })),
        )
        .await?;
        let Some(path) = file["file_path"].as_str() else {
            return Ok(None);
        };
        crate::download(self.http.get(format!("{base}/file/bot{token}/{path}")))
            .await
            .map(Some)
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let (base, token) = api(account)?;
        let chat_id: i64 = message.to.parse().map_err(|_| SendError {
            retryable: false,
            code: "invalid_address".into(),
            message: format!("`{}` is not a Telegram user id", message.to),
            retry_after_ms: None,
        })?;
        let (method, body) = match message.files.first() {
            Some(file) if file.content_type.starts_with("image/") => (
                "sendPhoto",
                serde_json::json!({ "chat_id": chat_id, "photo": file.url, "caption": message.text }),
            ),
            Some(file) => (
                "sendDocument",
                serde_json::json!({ "chat_id": chat_id, "document": file.url, "caption": message.text }),
            ),
            None => match &message.rich {
                // An automated message: its HTML parse-mode text, with its image when it has one.
                Some(rich) if rich.telegram_html.is_some() => {
                    let html = rich.telegram_html.clone().unwrap_or_default();
                    match &rich.image_url {
                        Some(url) => (
                            "sendPhoto",
                            serde_json::json!({ "chat_id": chat_id, "photo": url, "caption": html, "parse_mode": "HTML" }),
                        ),
                        None => (
                            "sendMessage",
                            serde_json::json!({ "chat_id": chat_id, "text": html, "parse_mode": "HTML" }),
                        ),
                    }
                }
                _ => (
                    "sendMessage",
                    serde_json::json!({ "chat_id": chat_id, "text": message.text }),
                ),
            },
        };
        let sent = call(self.http.post(format!("{base}/bot{token}/{method}")).json(&body)).await?;
        let id = sent["message_id"].as_i64().ok_or_else(|| SendError {
            retryable: false,
            code: "unexpected_response".into(),
            message: "no message_id in the answer".into(),
            retry_after_ms: None,
        })?;
        Ok(format!("{chat_id}:{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            id: "acc".into(),
            settings: serde_json::json!({}),
            secrets: serde_json::json!({"bot_token": "1:t", "secret_token": "s3cret-token_1"}),
        }
    }

    fn verify(body: &Value, secret: Option<&str>) -> Result<Verified, ChannelError> {
        let headers: Vec<(String, String)> = secret
            .map(|s| vec![(SECRET_HEADER.to_owned(), s.to_owned())])
            .unwrap_or_default();
        let bytes = body.to_string().into_bytes();
        TelegramChannel::default().verify(
            &RawRequest {
                url: "https://hooks.example.test/",
                headers: &headers,
                body: &bytes,
            },
            &account(),
            0,
        )
    }

    #[test]
    fn the_secret_token_header_is_required_and_checked() {
        let update = serde_json::json!({"update_id": 1, "message": {"message_id": 3, "date": 1,
            "from": {"id": 555, "first_name": "Ana"}, "chat": {"id": 555, "type": "private"}, "text": "Hola"}});
        assert_eq!(verify(&update, None).err(), Some(ChannelError::MissingSignature));
        assert_eq!(
            verify(&update, Some("wrong")).err(),
            Some(ChannelError::InvalidSignature)
        );
        let ok = verify(&update, Some("s3cret-token_1")).expect("verifies");
        assert_eq!(ok.dedupe_key, "tg:1");
        let Inbound::Message(m) = &ok.events[0] else { panic!() };
        assert_eq!(
            (
                m.provider_message_id.as_str(),
                m.text.as_str(),
                m.identities[0].value.as_str()
            ),
            ("555:3", "Hola", "555")
        );
        assert_eq!(m.sender_name.as_deref(), Some("Ana"));
    }

    #[test]
    fn updates_of_every_kind_parse() {
        let own_contact = serde_json::json!({"update_id": 2, "message": {"message_id": 4, "date": 2,
            "from": {"id": 555, "first_name": "Ana"}, "chat": {"id": 555, "type": "private"},
            "contact": {"phone_number": "34600111222", "first_name": "Ana", "user_id": 555}}});
        let (_, events) = parse_update(own_contact.to_string().as_bytes(), 0).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!(
            (m.identities[1].kind.as_str(), m.identities[1].value.as_str()),
            ("phone", "+34600111222")
        );
        // Someone else's contact is not the sender's number.
        let other = own_contact.to_string().replace("\"user_id\":555", "\"user_id\":777");
        let (_, events) = parse_update(other.as_bytes(), 0).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!(m.identities.len(), 1);

        let photo = serde_json::json!({"update_id": 3, "message": {"message_id": 5, "date": 3,
            "from": {"id": 555}, "chat": {"id": 555, "type": "private"}, "caption": "este",
            "photo": [{"file_id": "small"}, {"file_id": "large"}]}});
        let (_, events) = parse_update(photo.to_string().as_bytes(), 0).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!((m.text.as_str(), m.media[0].id.as_str()), ("📷 Photo: este", "large"));

        let edited = serde_json::json!({"update_id": 4, "edited_message": {"message_id": 3, "date": 1, "edit_date": 9,
            "from": {"id": 555}, "chat": {"id": 555, "type": "private"}, "text": "Hola!"}});
        let (_, events) = parse_update(edited.to_string().as_bytes(), 0).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!(
            (m.provider_message_id.as_str(), m.text.as_str()),
            ("555:3:edit:9", "(edited) Hola!")
        );

        let blocked = serde_json::json!({"update_id": 5, "my_chat_member": {"chat": {"id": 555, "type": "private"},
            "from": {"id": 555}, "date": 10, "old_chat_member": {"status": "member"},
            "new_chat_member": {"status": "kicked", "until_date": 0}}});
        let (_, events) = parse_update(blocked.to_string().as_bytes(), 0).expect("parses");
        assert!(matches!(&events[0], Inbound::Consent(c) if !c.granted && c.purpose == "messaging"));

        let group = serde_json::json!({"update_id": 6, "message": {"message_id": 1, "date": 1,
            "from": {"id": 555}, "chat": {"id": -100, "type": "group"}, "text": "hi all"}});
        assert!(
            parse_update(group.to_string().as_bytes(), 0)
                .expect("parses")
                .1
                .is_empty()
        );
        assert!(parse_update(b"{\"message\":{}}", 0).is_err());
    }
}
