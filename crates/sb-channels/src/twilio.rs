//! SMS and MMS through Twilio's Programmable Messaging API, or any provider that speaks it
//! (channels.md §5, §6).
//!
//! - Inbound messages and status callbacks arrive as form posts to the same webhook, signed
//!   with `X-Twilio-Signature`: base64 HMAC-SHA1, keyed by the Auth Token, over the public URL
//!   followed by every form parameter (sorted by name) as name then value. The URL is the one
//!   the provider was given; it verifies with and without an explicit default port, as
//!   Twilio's own validator allows.
//! - Messages are keyed by `MessageSid`; a status callback by the sid and the status, so a
//!   repeated callback is dropped and statuses apply monotonically.
//! - The customer is their E.164 number: a global identity, linking SMS to every other
//!   channel where the same number is known.
//! - STOP / START / HELP (the whole message) are the carriers' keywords: recorded as a
//!   marketing consent change on SMS; the standard confirmation is sent by the provider (its
//!   default opt-out handling) or, with `keyword_replies = "switchboard"`, by us, once.
//! - Outbound: `POST /2010-04-01/Accounts/{sid}/Messages.json` with Basic auth, `MediaUrl`s for
//!   MMS, and our webhook as `StatusCallback`. Sends are paced in segments per second per
//!   sender (a US long code sends one).
//!
//! Settings: `account_sid`, `from` (E.164) or `messaging_service_sid`, `api_base_url`
//! (default `https://api.twilio.com`), `webhook_url` (the URL the provider signs, when a
//! proxy rewrites ours), `segments_per_second` (default 1), `keyword_replies`
//! (`provider` | `switchboard`), `business_name`. Secrets: `auth_token`; optionally
//! `api_key_sid` + `api_key_secret` for the REST API.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::{
    Account, Channel, ChannelError, ConsentChange, IdentityHint, Inbound, InboundMessage, MediaRef, OutboundMessage,
    Policy, RawRequest, SendError, StatusReport, Verified,
};
use sb_core::inbox::DeliveryStatus;
use sb_core::sms::Keyword;

pub const KIND: &str = "twilio_sms";
/// WhatsApp through the same API: `whatsapp:`-prefixed addresses, the 24-hour window, no
/// carrier keywords or segments.
pub const WHATSAPP_KIND: &str = "twilio_whatsapp";
const WHATSAPP_PREFIX: &str = "whatsapp:";
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Twilio refuses longer bodies (21617).
pub const MAX_TEXT: usize = 1_600;
const DEFAULT_API: &str = "https://api.twilio.com";

pub struct TwilioChannel {
    http: reqwest::Client,
    whatsapp: bool,
}

impl Default for TwilioChannel {
    /// SMS and MMS.
    fn default() -> Self {
        TwilioChannel {
            http: crate::http_client(Duration::from_secs(15)),
            whatsapp: false,
        }
    }
}

impl TwilioChannel {
    /// WhatsApp senders on the same API.
    pub fn whatsapp() -> Self {
        TwilioChannel {
            whatsapp: true,
            ..TwilioChannel::default()
        }
    }
}

/// `X-Twilio-Signature` of a form post to `url` (channels.md §5.2).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL as given, with the scheme's default port added, and with it removed: Twilio signs
/// one of these depending on how the URL was configured.
fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let (scheme, port) = if url.starts_with("https://") {
        ("https://", "443")
    } else if url.starts_with("http://") {
        ("http://", "80")
    } else {
        return variants;
    };
    let rest = &url[scheme.len()..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let explicit = format!(":{port}");
    if let Some(bare) = host.strip_suffix(&explicit) {
        variants.push(format!("{scheme}{userinfo}{bare}{tail}"));
    } else if !host.rsplit(']').next().unwrap_or(host).contains(':') {
        variants.push(format!("{scheme}{userinfo}{host}{explicit}{tail}"));
    }
    variants
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ChannelError> {
    field(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ChannelError::Malformed(format!("the form has no `{name}`")))
}

/// What a Twilio error code means for the agent (channels.md §5.7 table).
pub fn error_text(code: &str) -> &'static str {
    match code {
        "20003" => "Authentication failed: check the Account SID and Auth Token",
        "20429" => "Too many requests to the provider at once",
        "21211" => "The number is not a valid phone number",
        "21408" => "Sending to this region is not enabled on the account",
        "21610" => "The recipient replied STOP: they are unsubscribed from this sender",
        "21611" => "The sender's queue is full: sends are arriving faster than it can send",
        "21612" | "21614" => "The number cannot receive SMS (a landline or unroutable)",
        "21617" => "The message is longer than 1,600 characters",
        "30001" => "The message waited too long in the queue and expired",
        "30003" => "The handset is unreachable (off or out of coverage)",
        "30004" => "The message was blocked by the recipient or their carrier",
        "30005" => "The number is unknown or no longer in service",
        "30006" => "The number is a landline or its carrier is unreachable",
        "30007" => "The carrier filtered the message as spam",
        "30008" => "The carrier reported an unknown error",
        "63016" => "Outside the 24-hour window: only a template may be sent",
        _ => "The provider refused the message",
    }
}

fn status_of(value: &str) -> Option<DeliveryStatus> {
    Some(match value {
        "accepted" | "scheduled" | "queued" | "sending" => DeliveryStatus::Queued,
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "undelivered" | "failed" | "canceled" => DeliveryStatus::Failed,
        _ => return None,
    })
}

fn phone_hint(raw: &str) -> Result<IdentityHint, ChannelError> {
    // WhatsApp senders arrive as `whatsapp:+E164`: the number is the same person's phone.
    sb_core::inbox::normalise_phone(raw.strip_prefix(WHATSAPP_PREFIX).unwrap_or(raw))
        .map(|value| IdentityHint {
            kind: "phone".into(),
            value,
            verified: true,
        })
        .ok_or_else(|| ChannelError::Malformed(format!("`From` is not an E.164 number: {raw}")))
}

/// Parses a verified form: its de-duplication key and events. `keyword_reply` is the
/// confirmation we send for a keyword, when we (not the provider) answer them.
fn parse_form(
    params: &[(String, String)],
    received_at_ms: i64,
    keyword_reply: &dyn Fn(Keyword) -> Option<String>,
) -> Result<(String, Vec<Inbound>), ChannelError> {
    let sid = required(params, "MessageSid")?;
    if let Some(status) = field(params, "MessageStatus") {
        let status =
            status_of(status).ok_or_else(|| ChannelError::Malformed(format!("unknown `MessageStatus` {status}")))?;
        let error_code = field(params, "ErrorCode").filter(|c| !c.is_empty() && *c != "0");
        let report = StatusReport {
            provider_message_id: sid.to_owned(),
            our_message_id: None,
            status,
            error_code: error_code.map(str::to_owned),
            error_message: error_code.map(|code| {
                field(params, "ErrorMessage")
                    .filter(|m| !m.is_empty())
                    .map_or_else(|| error_text(code).to_owned(), str::to_owned)
            }),
        };
        let key = format!("{sid}:{}", field(params, "MessageStatus").unwrap_or_default());
        return Ok((key, vec![Inbound::Status(report)]));
    }
    let from = phone_hint(required(params, "From")?)?;
    let body = field(params, "Body").unwrap_or_default();
    let media_count: usize = field(params, "NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
    let media: Vec<MediaRef> = (0..media_count.min(10))
        .filter_map(|i| {
            let url = field(params, &format!("MediaUrl{i}"))?;
            Some(MediaRef {
                id: url.to_owned(),
                mime_type: field(params, &format!("MediaContentType{i}")).map(str::to_owned),
                filename: None,
            })
        })
        .collect();
    if body.is_empty() && media.is_empty() {
        return Err(ChannelError::Malformed("the message has no `Body` and no media".into()));
    }
    let text = match (body.is_empty(), media.len()) {
        (false, _) => body.to_owned(),
        (true, 1) => "📎 1 file".to_owned(),
        (true, n) => format!("📎 {n} files"),
    };
    // Carrier keywords are SMS's; WhatsApp users stop marketing in WhatsApp itself.
    let whatsapp = field(params, "From").is_some_and(|f| f.starts_with(WHATSAPP_PREFIX));
    let keyword = sb_core::sms::keyword(body).filter(|_| !whatsapp);
    let mut events = vec![Inbound::Message(InboundMessage {
        provider_message_id: sid.to_owned(),
        identities: vec![from.clone()],
        sender_name: field(params, "ProfileName")
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned),
        text,
        sent_at_ms: received_at_ms,
        media,
        auto_reply: keyword.and_then(keyword_reply),
        files: Vec::new(),
        meta: None,
        automatic: false,
    })];
    if let Some(granted) = match keyword {
        Some(Keyword::OptOut) => Some(false),
        Some(Keyword::OptIn) => Some(true),
        _ => None,
    } {
        events.push(Inbound::Consent(ConsentChange {
            identities: vec![from],
            purpose: "marketing".into(),
            granted,
            source: "sms_keyword".into(),
            at_ms: received_at_ms,
        }));
    }
    Ok((sid.to_owned(), events))
}

/// The REST API's base, account and credentials (an API key when configured).
struct Rest {
    base: String,
    account_sid: String,
    user: String,
    password: String,
}

fn rest(account: &Account) -> Result<Rest, SendError> {
    let misconfigured = |what: &str| SendError {
        retryable: false,
        code: "channel_misconfigured".into(),
        message: format!("no `{what}`"),
        retry_after_ms: None,
    };
    let account_sid = account
        .setting("account_sid")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| misconfigured("account_sid"))?;
    let (user, password) = match (account.secret("api_key_sid"), account.secret("api_key_secret")) {
        (Some(key), Some(secret)) if !key.is_empty() => (key, secret),
        _ => (
            account_sid,
            account
                .secret("auth_token")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| misconfigured("auth_token"))?,
        ),
    };
    Ok(Rest {
        base: account
            .setting("api_base_url")
            .unwrap_or(DEFAULT_API)
            .trim_end_matches('/')
            .to_owned(),
        account_sid: account_sid.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// A refused send, classified: the provider's code, its meaning, and whether to retry.
fn classify(http_status: u16, body: &Value, retry_after: Option<i64>) -> SendError {
    let code = body["code"]
        .as_i64()
        .map_or_else(|| format!("http_{http_status}"), |c| c.to_string());
    let message = body["message"]
        .as_str()
        .map_or_else(|| error_text(&code).to_owned(), str::to_owned);
    let retryable = http_status == 429 || http_status >= 500 || matches!(code.as_str(), "20429" | "21611" | "63018");
    SendError {
        retryable,
        code,
        message,
        retry_after_ms: retry_after.map(|s| s * 1000),
    }
}

/// Settings an admin may give, checked before the account is kept.
fn check_settings(settings: &Value, whatsapp: bool) -> Result<(), String> {
    let text = |k: &str| settings.get(k).and_then(Value::as_str);
    let sid = text("account_sid").unwrap_or_default();
    if !(sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err("account_sid (AC followed by 32 characters, from the provider's console) is required".into());
    }
    let prefix = if whatsapp { WHATSAPP_PREFIX } else { "" };
    let is_number = |from: &str| {
        from.strip_prefix(prefix)
            .is_some_and(|n| sb_core::inbox::normalise_phone(n).as_deref() == Some(n))
    };
    match (text("from"), text("messaging_service_sid")) {
        (Some(from), _) if is_number(from) => {}
        (Some(_), _) => return Err(format!("from must be a number like {prefix}+15551230000")),
        (None, Some(ms)) if ms.starts_with("MG") => {}
        _ => return Err("one of from (E.164) or messaging_service_sid (MG…) is required".into()),
    }
    if settings
        .get("segments_per_second")
        .is_some_and(|v| v.as_f64().is_none_or(|n| !(1.0..=1_000.0).contains(&n)))
    {
        return Err("segments_per_second must be a number from 1 to 1000".into());
    }
    if text("keyword_replies").is_some_and(|k| k != "provider" && k != "switchboard") {
        return Err("keyword_replies must be `provider` or `switchboard`".into());
    }
    if text("webhook_url").is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
        return Err("webhook_url must be the http(s) URL the provider posts to".into());
    }
    Ok(())
}

#[async_trait]
impl Channel for TwilioChannel {
    fn kind(&self) -> &'static str {
        if self.whatsapp { WHATSAPP_KIND } else { KIND }
    }

    fn policy(&self) -> Policy {
        Policy {
            // WhatsApp's customer service window: free text only within 24 h of the
            // customer's last message (Twilio answers 63016 otherwise).
            reply_window_ms: self.whatsapp.then_some(24 * 3_600_000),
            max_text_chars: MAX_TEXT,
            supports_media: true,
            max_files: if self.whatsapp { 1 } else { 10 },
            recipient_pace: None,
        }
    }

    fn address_kind(&self) -> &'static str {
        "phone"
    }

    fn check_account(&self, settings: &Value, secrets: &Value) -> Result<(), String> {
        check_settings(settings, self.whatsapp)?;
        if secrets["auth_token"].as_str().is_none_or(str::is_empty) {
            return Err("secrets.auth_token (the provider's Auth Token, which signs its webhooks) is required".into());
        }
        Ok(())
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["auth_token"]
    }

    fn new_secrets(&self) -> Value {
        // The Auth Token is the provider's; there is nothing to generate.
        serde_json::json!({ "auth_token": "" })
    }

    fn sends_per_second(&self, account: &Account) -> u32 {
        if self.whatsapp {
            // Twilio's default WhatsApp sender throughput.
            return 10;
        }
        account
            .settings
            .get("segments_per_second")
            .and_then(Value::as_f64)
            .map_or(1, |n| n.clamp(1.0, 1_000.0) as u32)
    }

    fn segments(&self, text: &str) -> Option<sb_core::sms::Segments> {
        (!self.whatsapp).then(|| sb_core::sms::segments(text))
    }

    fn send_cost(&self, message: &OutboundMessage) -> u32 {
        if self.whatsapp {
            1
        } else {
            sb_core::sms::segments(&message.text).segments as u32
        }
    }

    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let token = account
            .secret("auth_token")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ChannelError::Misconfigured("no `auth_token`".into()))?;
        let given = request.header(SIGNATURE_HEADER).ok_or(ChannelError::MissingSignature)?;
        let params = form(request.body);
        let url = account.setting("webhook_url").unwrap_or(request.url);
        let matches = port_variants(url).iter().any(|candidate| {
            let expected = signature(token, candidate, &params);
            bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()))
        });
        if !matches {
            return Err(ChannelError::InvalidSignature);
        }
        if let Some(sid) = field(&params, "AccountSid")
            && account.setting("account_sid").is_some_and(|ours| ours != sid)
        {
            return Err(ChannelError::Malformed("`AccountSid` is not this account's".into()));
        }
        let replies = keyword_replies(account);
        let (dedupe_key, events) = parse_form(&params, now_ms, &*replies)?;
        Ok(Verified {
            dedupe_key,
            events,
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        let replies = keyword_replies(account);
        Ok(parse_form(&form(body), received_at_ms, &*replies)?.1)
    }

    async fn fetch_media(&self, account: &Account, media_url: &str) -> Result<Option<(Vec<u8>, String)>, SendError> {
        let rest = rest(account)?;
        // Only the provider's own links get our credentials (never a URL from elsewhere).
        if !media_url.starts_with(&format!("{}/", rest.base)) {
            return Err(SendError {
                retryable: false,
                code: "untrusted_media_url".into(),
                message: format!("the media URL is not on {}", rest.base),
                retry_after_ms: None,
            });
        }
        crate::download(self.http.get(media_url).basic_auth(&rest.user, Some(&rest.password)))
            .await
            .map(Some)
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let rest = rest(account)?;
        let to = if self.whatsapp {
            format!("{WHATSAPP_PREFIX}{}", message.to)
        } else {
            message.to.clone()
        };
        let mut form: Vec<(&str, &str)> = vec![("To", &to)];
        match (account.setting("from"), account.setting("messaging_service_sid")) {
            (Some(from), _) => form.push(("From", from)),
            (None, Some(service)) => form.push(("MessagingServiceSid", service)),
            (None, None) => {
                return Err(SendError {
                    retryable: false,
                    code: "channel_misconfigured".into(),
                    message: "no `from` number and no `messaging_service_sid`".into(),
                    retry_after_ms: None,
                });
            }
        }
        if !message.text.is_empty() {
            form.push(("Body", &message.text));
        }
        for file in &message.files {
            form.push(("MediaUrl", &file.url));
        }
        if let Some(callback) = &message.status_callback_url {
            form.push(("StatusCallback", callback));
        }
        let response = self
            .http
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                rest.base, rest.account_sid
            ))
            .basic_auth(&rest.user, Some(&rest.password))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode_form(&form))
            .send()
            .await
            .map_err(SendError::network)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let body: Value = response.json().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(classify(status, &body, retry_after));
        }
        body["sid"].as_str().map(str::to_owned).ok_or_else(|| SendError {
            retryable: false,
            code: "unexpected_response".into(),
            message: "no `sid` in the provider's answer".into(),
            retry_after_ms: None,
        })
    }
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Which keywords we confirm ourselves: none when the provider does (its default).
fn keyword_replies(account: &Account) -> Box<dyn Fn(Keyword) -> Option<String>> {
    if account.setting("keyword_replies") != Some("switchboard") {
        return Box::new(|_| None);
    }
    let business = account.setting("business_name").unwrap_or("us").to_owned();
    Box::new(move |k| Some(sb_core::sms::keyword_reply(k, &business)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn a2_params() -> Vec<(String, String)> {
        params(&[
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("Body", "STOP"),
            ("From", "+15557654321"),
            ("MessageSid", "SM00000000000000000000000000000001"),
            ("NumMedia", "0"),
            ("To", "+15551230000"),
        ])
    }

    fn account(settings: Value) -> Account {
        Account {
            id: "acc".into(),
            settings,
            secrets: serde_json::json!({"auth_token": "demo-auth-token"}),
        }
    }

    fn verify(url: &str, signature: Option<&str>, body: &[u8], account: &Account) -> Result<Verified, ChannelError> {
        let headers: Vec<(String, String)> = signature
            .map(|s| vec![(SIGNATURE_HEADER.to_owned(), s.to_owned())])
            .unwrap_or_default();
        TwilioChannel::default().verify(
            &RawRequest {
                url,
                headers: &headers,
                body,
            },
            account,
            1_000,
        )
    }

    fn encode(params: &[(String, String)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes()
    }

    /// channels.md Appendix A.2.
    #[test]
    fn appendix_a2_signature_vector() {
        assert_eq!(
            signature(
                "demo-auth-token",
                "https://hooks.example.test/twilio/sms?inbox=7",
                &a2_params()
            ),
            "aqkXrMQMC2c1UPcXLj/rhL9mpvg="
        );
    }

    /// Appendix A.2: the same request verifies whether the URL we know has the default port
    /// or not, and whichever of the two the provider signed.
    #[test]
    fn appendix_a2_verifies_with_and_without_the_port() {
        let body = encode(&a2_params());
        let acct = account(serde_json::json!({}));
        let sig = "aqkXrMQMC2c1UPcXLj/rhL9mpvg=";
        for url in [
            "https://hooks.example.test/twilio/sms?inbox=7",
            "https://hooks.example.test:443/twilio/sms?inbox=7",
        ] {
            let ok = verify(url, Some(sig), &body, &acct).expect("verifies");
            assert_eq!(ok.dedupe_key, "SM00000000000000000000000000000001");
        }
        let with_port = signature(
            "demo-auth-token",
            "https://hooks.example.test:443/twilio/sms?inbox=7",
            &a2_params(),
        );
        verify(
            "https://hooks.example.test/twilio/sms?inbox=7",
            Some(&with_port),
            &body,
            &acct,
        )
        .expect("a signature over the URL with the port verifies too");
        assert_eq!(
            port_variants("http://h.test:80/a?b"),
            vec!["http://h.test:80/a?b", "http://h.test/a?b"]
        );
        assert_eq!(port_variants("http://127.0.0.1:8080/a").len(), 1);
    }

    #[test]
    fn a_missing_wrong_or_misplaced_signature_is_refused() {
        let body = encode(&a2_params());
        let acct = account(serde_json::json!({}));
        let url = "https://hooks.example.test/twilio/sms?inbox=7";
        assert_eq!(
            verify(url, None, &body, &acct).err(),
            Some(ChannelError::MissingSignature)
        );
        assert_eq!(
            verify(url, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="), &body, &acct).err(),
            Some(ChannelError::InvalidSignature)
        );
        // Another path, another query, or one changed parameter: no longer the signed request.
        let sig = "aqkXrMQMC2c1UPcXLj/rhL9mpvg=";
        for other in [
            "https://hooks.example.test/twilio/sms?inbox=8",
            "https://other.example.test/twilio/sms?inbox=7",
        ] {
            assert_eq!(
                verify(other, Some(sig), &body, &acct).err(),
                Some(ChannelError::InvalidSignature)
            );
        }
        let tampered = String::from_utf8(body.clone()).unwrap().replace("STOP", "START");
        assert_eq!(
            verify(url, Some(sig), tampered.as_bytes(), &acct).err(),
            Some(ChannelError::InvalidSignature)
        );
        // Behind a proxy the configured public URL is the one that counts.
        let proxied = account(serde_json::json!({"webhook_url": url}));
        assert!(verify("http://10.0.0.5:8080/hooks/twilio_sms/acc", Some(sig), &body, &proxied).is_ok());
    }

    #[test]
    fn a_signed_form_with_missing_fields_is_malformed() {
        let acct = account(serde_json::json!({}));
        let url = "https://hooks.example.test/t";
        for form in [
            params(&[("From", "+15557654321"), ("Body", "hi")]),
            params(&[("MessageSid", "SM1"), ("Body", "hi")]),
            params(&[("MessageSid", "SM1"), ("From", "not-a-number"), ("Body", "hi")]),
            params(&[("MessageSid", "SM1"), ("From", "+15557654321"), ("NumMedia", "0")]),
            params(&[("MessageSid", "SM1"), ("MessageStatus", "exploded")]),
        ] {
            let sig = signature("demo-auth-token", url, &form);
            assert!(
                matches!(
                    verify(url, Some(&sig), &encode(&form), &acct),
                    Err(ChannelError::Malformed(_))
                ),
                "{form:?}"
            );
        }
    }

    #[test]
    fn inbound_mms_status_callbacks_and_keywords_parse() {
        let mms = params(&[
            ("MessageSid", "MM1"),
            ("From", "+15557654321"),
            ("To", "+15551230000"),
            ("Body", ""),
            ("NumMedia", "2"),
            (
                "MediaUrl0",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            ),
            ("MediaContentType0", "image/jpeg"),
            (
                "MediaUrl1",
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
            ),
            ("MediaContentType1", "application/pdf"),
        ]);
        let (key, events) = parse_form(&mms, 5, &|_| None).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!(key, "MM1");
        assert_eq!((m.text.as_str(), m.media.len()), ("📎 2 files", 2));
        assert_eq!(m.media[1].mime_type.as_deref(), Some("application/pdf"));
        assert_eq!(
            (m.identities[0].kind.as_str(), m.identities[0].value.as_str()),
            ("phone", "+15557654321")
        );

        let undelivered = params(&[
            ("MessageSid", "SM9"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]);
        let (key, events) = parse_form(&undelivered, 5, &|_| None).expect("parses");
        assert_eq!(key, "SM9:undelivered");
        let Inbound::Status(s) = &events[0] else { panic!() };
        assert_eq!(s.status, DeliveryStatus::Failed);
        assert_eq!(s.error_code.as_deref(), Some("30003"));
        assert!(s.error_message.as_deref().unwrap().contains("unreachable"));

        let stop = params(&[("MessageSid", "SM2"), ("From", "+15557654321"), ("Body", " Stop ")]);
        let (_, events) = parse_form(&stop, 5, &|k| Some(format!("{k:?}"))).expect("parses");
        let Inbound::Message(m) = &events[0] else { panic!() };
        assert_eq!(m.auto_reply.as_deref(), Some("OptOut"));
        assert!(matches!(&events[1], Inbound::Consent(c) if !c.granted && c.purpose == "marketing"));
        let help = params(&[("MessageSid", "SM3"), ("From", "+15557654321"), ("Body", "HELP")]);
        let (_, events) = parse_form(&help, 5, &|_| None).expect("parses");
        assert_eq!(events.len(), 1, "HELP changes no consent");
    }

    #[test]
    fn settings_are_checked() {
        let good = serde_json::json!({"account_sid": "AC0000000000000000000000000000demo", "from": "+15551230000"});
        assert!(check_settings(&good, false).is_ok());
        let whatsapp =
            serde_json::json!({"account_sid": "AC0000000000000000000000000000demo", "from": "whatsapp:+15551230000"});
        assert!(check_settings(&whatsapp, true).is_ok());
        assert!(check_settings(&whatsapp, false).is_err());
        assert!(check_settings(&good, true).is_err());
        for bad in [
            serde_json::json!({"from": "+15551230000"}),
            serde_json::json!({"account_sid": "AC0000000000000000000000000000demo"}),
            serde_json::json!({"account_sid": "AC0000000000000000000000000000demo", "from": "555-1230"}),
            serde_json::json!({"account_sid": "AC0000000000000000000000000000demo", "from": "+15551230000", "segments_per_second": 0}),
            serde_json::json!({"account_sid": "AC0000000000000000000000000000demo", "from": "+15551230000", "keyword_replies": "both"}),
        ] {
            assert!(check_settings(&bad, false).is_err(), "{bad}");
        }
    }
}
