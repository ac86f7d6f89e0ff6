//! Channels: one [`Channel`] trait that every provider implements. Parsing and signature
//! checks work on the raw request bytes (never on re-serialised JSON) and are pure; sending
//! is the only IO.

pub mod api;
pub mod email;
pub mod meta_messaging;
pub mod signing;
pub mod telegram;
pub mod twilio;
pub mod whatsapp;
pub mod widget;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A request as it arrived: raw body bytes and lower-cased header names.
#[derive(Debug, Clone)]
pub struct RawRequest<'a> {
    /// The public URL the provider posted to, query included (Twilio signs it): rebuilt from
    /// the configured public URL, since behind a proxy the Host we see is not the one signed.
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl RawRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A channel account's configuration: settings the API shows, secrets it never returns.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: String,
    pub settings: serde_json::Value,
    pub secrets: serde_json::Value,
}

impl Account {
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).and_then(|v| v.as_str())
    }
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).and_then(|v| v.as_str())
    }
}

/// An identifier of the sender, as the channel knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityHint {
    /// `email` and `phone` are global; other kinds are scoped to the channel account.
    pub kind: String,
    pub value: String,
    /// Vouched for by the channel (a signed provider request), not typed in by a visitor.
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Inbound {
    Message(InboundMessage),
    Status(StatusReport),
    /// A copy of what the business sent (Meta's echoes): ours are dropped, one sent from the
    /// provider's own app is recorded as an agent message.
    Echo(Echo),
    /// "Everything sent to this customer up to `watermark_ms` is delivered / read".
    Receipt(Receipt),
    /// The customer stops or resumes a kind of message on this channel.
    Consent(ConsentChange),
    /// An address that must get no more marketing here (a hard bounce).
    Suppress(Suppression),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub address: String,
    /// `bounced`, …
    pub reason: String,
    pub detail: String,
}

/// A file that came inside the message itself (e-mail attachments), stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundFile {
    pub filename: String,
    pub content_type: String,
    #[serde(skip)]
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    pub identities: Vec<IdentityHint>,
    /// `marketing`.
    pub purpose: String,
    pub granted: bool,
    /// `whatsapp_preferences`, `keyword`…
    pub source: String,
    pub at_ms: i64,
}

/// Opt-out and opt-in keywords in a message (the carriers' standard words): whether the
/// customer grants or revokes.
pub fn consent_keyword(text: &str) -> Option<bool> {
    match sb_core::sms::keyword(text)? {
        sb_core::sms::Keyword::OptOut => Some(false),
        sb_core::sms::Keyword::OptIn => Some(true),
        sb_core::sms::Keyword::Help => None,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    /// The recipient (the customer) is in `identities`; the id is the provider's.
    pub message: InboundMessage,
    /// Our message id, where we sent it along (`metadata`).
    pub our_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub identities: Vec<IdentityHint>,
    pub status: sb_core::inbox::DeliveryStatus,
    pub watermark_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub provider_message_id: String,
    /// The first identity is the channel's own address for the sender.
    pub identities: Vec<IdentityHint>,
    pub sender_name: Option<String>,
    pub text: String,
    pub sent_at_ms: i64,
    /// Files the provider holds for us (fetched after the message is stored).
    #[serde(default)]
    pub media: Vec<MediaRef>,
    /// A reply the channel asks to send once, when the message is new (an SMS keyword's
    /// confirmation where the provider does not send it).
    #[serde(default)]
    pub auto_reply: Option<String>,
    /// Files carried in the message (e-mail), stored with it.
    #[serde(default)]
    pub files: Vec<InboundFile>,
    /// Channel details kept with the message (e-mail: subject, ids, quoted history).
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    /// Sent by a machine (an auto-reply, a list): never answered automatically.
    #[serde(default)]
    pub automatic: bool,
}

/// A file on the provider's side, by its id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub id: String,
    pub mime_type: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub provider_message_id: String,
    /// Our id for the message, where the provider echoes it (WhatsApp's
    /// `biz_opaque_callback_data`): a status that arrives before we recorded the provider's
    /// id still finds its message.
    pub our_message_id: Option<String>,
    pub status: sb_core::inbox::DeliveryStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// A verified request: the key that identifies it for de-duplication (provider ids, scoped
/// by the account by the caller) and what it carries.
#[derive(Debug, Clone)]
pub struct Verified {
    pub dedupe_key: String,
    pub events: Vec<Inbound>,
    /// What to store instead of the request's bytes (e-mail: the message as RFC 5322, so
    /// every ingress parses alike); `None` stores the request as it came.
    pub store_body: Option<Vec<u8>>,
    /// When the signature covers a token and not the body (Mailgun): the token, and how long
    /// its signature stays valid. The receiver remembers it that long and refuses it again.
    pub replay_token: Option<(String, i64)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("the request has no signature")]
    MissingSignature,
    #[error("the signature does not match")]
    InvalidSignature,
    #[error("the request timestamp is outside the allowed window")]
    Expired,
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the channel account is not configured: {0}")]
    Misconfigured(String),
}

impl ChannelError {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::MissingSignature => "missing_signature",
            ChannelError::InvalidSignature => "invalid_signature",
            ChannelError::Expired => "expired_timestamp",
            ChannelError::Malformed(_) => "malformed_payload",
            ChannelError::Misconfigured(_) => "channel_misconfigured",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboundMessage {
    pub message_id: String,
    pub conversation_id: String,
    /// The recipient's address on this channel (an identity value).
    pub to: String,
    pub text: String,
    pub created_at_ms: i64,
    /// A pre-approved template instead of free text (WhatsApp outside the 24-hour window).
    pub template: Option<TemplateSend>,
    /// When the customer last wrote on this account (channels with tagged late replies).
    pub last_inbound_at_ms: Option<i64>,
    /// Files, each at a URL the provider can fetch (signed, short-lived).
    pub files: Vec<OutboundFile>,
    /// Our webhook for this account, where the provider reports this message's status
    /// (Twilio's `StatusCallback`).
    pub status_callback_url: Option<String>,
    pub purpose: sb_core::inbox::Purpose,
    /// A one-click unsubscribe link for this recipient (marketing).
    pub unsubscribe_url: Option<String>,
    /// Channel details of the customer's last message on this account (e-mail: subject and
    /// ids to reply in their thread).
    pub thread: Option<serde_json::Value>,
    /// The richer parts of an automated message, for channels that can show them; `text`
    /// stays the fallback.
    pub rich: Option<Rich>,
}

/// Text made safe inside HTML (element content and quoted attribute values).
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What an automated message adds to its text where the channel can show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rich {
    /// E-mail: the subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// E-mail: the HTML part (the text is the plain part).
    #[serde(default)]
    pub html: Option<String>,
    /// Instagram, Messenger, WhatsApp, Telegram: an image sent with the text.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Instagram and Messenger: quick-reply buttons.
    #[serde(default)]
    pub quick_replies: Vec<String>,
    /// Telegram: the text in its HTML parse mode.
    #[serde(default)]
    pub telegram_html: Option<String>,
    /// The website widget: a card (title, text, image, button).
    #[serde(default)]
    pub card: Option<Card>,
}

/// A rich card in the website widget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub button_label: Option<String>,
    #[serde(default)]
    pub button_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundFile {
    pub url: String,
    pub filename: String,
    pub content_type: String,
}

/// A message template as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderTemplate {
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSend {
    pub name: String,
    pub language: String,
    /// Positional body parameters, `{{1}}` first.
    pub parameters: Vec<String>,
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SendError {
    pub retryable: bool,
    pub code: String,
    pub message: String,
    /// The provider said when to try again (Telegram's `retry_after`, HTTP `Retry-After`).
    pub retry_after_ms: Option<i64>,
}

impl SendError {
    /// The provider could not be reached or did not answer: worth another try.
    pub fn network(e: reqwest::Error) -> Self {
        SendError {
            retryable: true,
            code: "network_error".into(),
            message: e.to_string(),
            retry_after_ms: None,
        }
    }
}

/// Downloads a file from a provider's link: its bytes and type. A server error may pass; a
/// refused or expired link does not come back.
pub(crate) async fn download(request: reqwest::RequestBuilder) -> Result<(Vec<u8>, String), SendError> {
    let response = request.send().await.map_err(SendError::network)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SendError {
            retryable: status.is_server_error(),
            code: format!("http_{}", status.as_u16()),
            message: format!("the file could not be downloaded: {status}"),
            retry_after_ms: None,
        });
    }
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let bytes = response.bytes().await.map_err(SendError::network)?;
    Ok((bytes.to_vec(), mime))
}

/// A client for provider APIs, with a request timeout. Channels with the same timeout share
/// one client (its connection pool and its copy of the system's root certificates, ~60 KB).
pub(crate) fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    static CLIENTS: std::sync::Mutex<Vec<(std::time::Duration, reqwest::Client)>> = std::sync::Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().expect("client cache");
    if let Some((_, client)) = clients.iter().find(|(t, _)| *t == timeout) {
        return client.clone();
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a client with a timeout builds");
    clients.push((timeout, client.clone()));
    client
}

/// What the channel allows, so the API can say before sending.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Policy {
    /// Free-form replies are allowed only this long after the customer's last message.
    pub reply_window_ms: Option<i64>,
    pub max_text_chars: usize,
    pub supports_media: bool,
    /// Files one message may carry.
    pub max_files: usize,
    /// Sends to one recipient: a burst, then one per this many milliseconds (WhatsApp's pair
    /// rate limit); `None` when only the account's pace applies.
    pub recipient_pace: Option<(u32, u64)>,
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn policy(&self) -> Policy;
    /// The identity kind that addresses a customer on this channel.
    fn address_kind(&self) -> &'static str;
    /// Whether providers deliver to `/hooks/{channel}/{account}`: the widget has no webhook
    /// (visitors write to `/widget/v1`), so a request there finds no account.
    fn takes_webhooks(&self) -> bool {
        true
    }
    /// Whether the signature covers a timestamp. Then the same signed bytes twice are a replay
    /// and refused; without one (Meta), they are the provider's retry and acknowledged.
    fn signs_timestamp(&self) -> bool {
        false
    }
    /// Tells the provider where to deliver (Telegram's `setWebhook`), when the account is
    /// connected; most providers are configured on their side instead.
    async fn connect(&self, _account: &Account, _webhook_url: &str) -> Result<(), SendError> {
        Ok(())
    }
    /// Answers a provider's `GET` verification of the webhook URL (Meta's `hub.challenge`):
    /// `None` when the channel has none.
    fn handshake(&self, _query: &[(String, String)], _account: &Account) -> Option<Result<String, ChannelError>> {
        None
    }
    /// Checks the signature over the raw bytes and parses; nothing is stored on failure.
    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError>;
    /// Accepts a message one of our own listeners took in (SMTP, IMAP): nothing to verify.
    fn accept_trusted(&self, _body: &[u8], _account: &Account, _now_ms: i64) -> Result<Verified, ChannelError> {
        Err(ChannelError::Misconfigured(format!(
            "{} has no listener of its own",
            self.kind()
        )))
    }
    /// Parses a stored body again (processing runs after acknowledgement).
    fn parse(&self, body: &[u8], received_at_ms: i64, account: &Account) -> Result<Vec<Inbound>, ChannelError>;
    /// Checks an account's settings and secrets before it is kept: a message that says what
    /// to fix.
    fn check_account(&self, _settings: &serde_json::Value, _secrets: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    /// The secrets this channel's inbound requests are verified with (the provider's app
    /// secret, auth token, signing key): an account without them cannot take a webhook, so
    /// it is refused when it is set up, not at its first request.
    fn signing_secrets(&self) -> &'static [&'static str] {
        &[]
    }
    /// Secrets generated for a new account when the admin gives none.
    fn new_secrets(&self) -> serde_json::Value {
        serde_json::json!({ "secret": sb_core::credentials::random_secret() })
    }
    /// The account's pre-approved templates as the provider lists them; `None` when the
    /// channel has no templates.
    async fn fetch_templates(&self, _account: &Account) -> Result<Option<Vec<ProviderTemplate>>, SendError> {
        Ok(None)
    }
    /// Downloads a file the provider holds (`MediaRef::id`): its bytes and type. `None` when
    /// the channel has no such files.
    async fn fetch_media(&self, _account: &Account, _media_id: &str) -> Result<Option<(Vec<u8>, String)>, SendError> {
        Ok(None)
    }
    /// Units one account may send per second: the sender's limit (WhatsApp 80 messages,
    /// Telegram 30 per bot, an SMS long code 1 segment).
    fn sends_per_second(&self, _account: &Account) -> u32 {
        80
    }
    /// What a text costs as SMS, for channels that bill by segment.
    fn segments(&self, _text: &str) -> Option<sb_core::sms::Segments> {
        None
    }
    /// What one message costs against that pace (SMS: its segments).
    fn send_cost(&self, _message: &OutboundMessage) -> u32 {
        1
    }
    /// Sends and returns the provider's id for the message.
    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError>;
}

/// Every channel this build knows.
pub fn registry() -> Vec<std::sync::Arc<dyn Channel>> {
    vec![
        std::sync::Arc::new(api::ApiChannel::default()),
        std::sync::Arc::new(whatsapp::WhatsAppChannel::default()),
        std::sync::Arc::new(meta_messaging::MetaMessagingChannel::messenger()),
        std::sync::Arc::new(meta_messaging::MetaMessagingChannel::instagram()),
        std::sync::Arc::new(telegram::TelegramChannel::default()),
        std::sync::Arc::new(twilio::TwilioChannel::default()),
        std::sync::Arc::new(twilio::TwilioChannel::whatsapp()),
        std::sync::Arc::new(email::EmailChannel::default()),
        std::sync::Arc::new(widget::WidgetChannel),
    ]
}
