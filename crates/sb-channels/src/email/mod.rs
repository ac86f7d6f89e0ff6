//! E-mail (channels.md §7): SMTP submission out, and in by IMAP, our own SMTP listener or
//! Mailgun's inbound webhook — each ingress ends as RFC 5322 bytes in one parser
//! ([`inbound`]).
//!
//! Out: we make the `Message-ID` (our message id at our domain) and store it as the
//! provider id; a reply carries `In-Reply-To` / `References` of the customer's last mail and
//! `Re:` its subject, so it threads in their client. The envelope sender is a VERP address
//! (`bounce+<our id>@domain`). Marketing mail carries `List-Unsubscribe` with a one-click
//! HTTPS link and `List-Unsubscribe-Post` (RFC 8058).
//!
//! Settings: `address` (our mailbox), `display_name`, `smtp_host`, `smtp_port` (587),
//! `smtp_security` (`starttls` | `tls` | `none`), `smtp_username`, `smtp_ca_pem` (a private
//! relay's CA), `imap_host`, `imap_port`, `imap_security`, `imap_username`, `imap_mailbox`,
//! `imap_ca_pem`, `imap_poll_secs` (when the server has no IDLE; default 60),
//! `require_authenticated_from`. Secrets: `smtp_password`, `imap_password`,
//! `mailgun_signing_key`.

pub mod inbound;
pub mod mailgun;
pub mod reply;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use crate::{Account, Channel, ChannelError, Inbound, OutboundMessage, Policy, RawRequest, SendError, Verified};
use sb_core::inbox::Purpose;

pub const KIND: &str = "email";
/// Larger texts go as attachments, not bodies.
pub const MAX_TEXT: usize = 100_000;

/// One pooled SMTP client per account, rebuilt when its settings or secrets change.
type Transports = std::sync::Mutex<std::collections::HashMap<String, (String, AsyncSmtpTransport<Tokio1Executor>)>>;

pub struct EmailChannel {
    http: reqwest::Client,
    transports: Transports,
}

impl Default for EmailChannel {
    fn default() -> Self {
        EmailChannel {
            http: crate::http_client(Duration::from_secs(30)),
            transports: Default::default(),
        }
    }
}

impl EmailChannel {
    /// The account's SMTP client: connections are pooled across sends instead of a new
    /// connection and TLS handshake for every message.
    fn transport_for(&self, account: &Account) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let fingerprint = format!("{}|{}", account.settings, account.secrets);
        let mut cache = self.transports.lock().expect("smtp transports");
        if let Some((seen, transport)) = cache.get(&account.id)
            && *seen == fingerprint
        {
            return Ok(transport.clone());
        }
        let transport = build_transport(account)?;
        cache.insert(account.id.clone(), (fingerprint, transport.clone()));
        Ok(transport)
    }
}

fn trust(account: &Account) -> inbound::FromTrust {
    if account.settings["require_authenticated_from"].as_bool() == Some(true) {
        inbound::FromTrust::OnlyAuthenticated
    } else {
        inbound::FromTrust::UnlessFailed
    }
}

fn permanent(code: &str, message: impl Into<String>) -> SendError {
    SendError {
        retryable: false,
        code: code.into(),
        message: message.into(),
        retry_after_ms: None,
    }
}

/// Our mailbox and its domain.
fn our_address(account: &Account) -> Result<(Mailbox, String), SendError> {
    let address = account
        .setting("address")
        .ok_or_else(|| permanent("channel_misconfigured", "no `address`"))?;
    let parsed: lettre::Address = address
        .parse()
        .map_err(|e| permanent("channel_misconfigured", format!("`address`: {e}")))?;
    let domain = parsed.domain().to_owned();
    let name = account.setting("display_name").map(str::to_owned);
    Ok((Mailbox::new(name, parsed), domain))
}

fn build_transport(account: &Account) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let host = account
        .setting("smtp_host")
        .ok_or_else(|| permanent("channel_misconfigured", "no `smtp_host`"))?;
    let misconfigured = |e: lettre::transport::smtp::Error| permanent("channel_misconfigured", e.to_string());
    let mut tls = TlsParameters::builder(host.to_owned());
    if let Some(pem) = account.setting("smtp_ca_pem") {
        tls = tls.add_root_certificate(Certificate::from_pem(pem.as_bytes()).map_err(misconfigured)?);
    }
    let security = account.setting("smtp_security").unwrap_or("starttls");
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).timeout(Some(Duration::from_secs(30)));
    let builder = match security {
        "none" => builder.port(account.settings["smtp_port"].as_u64().unwrap_or(25) as u16),
        "tls" => builder
            .port(account.settings["smtp_port"].as_u64().unwrap_or(465) as u16)
            .tls(Tls::Wrapper(tls.build_rustls().map_err(misconfigured)?)),
        _ => builder
            .port(account.settings["smtp_port"].as_u64().unwrap_or(587) as u16)
            .tls(Tls::Required(tls.build_rustls().map_err(misconfigured)?)),
    };
    let builder = match (account.setting("smtp_username"), account.secret("smtp_password")) {
        (Some(user), Some(password)) if !user.is_empty() => {
            builder.credentials(Credentials::new(user.to_owned(), password.to_owned()))
        }
        _ => builder,
    };
    Ok(builder.build())
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// `Re: <their subject>` for a reply, else the account's default.
fn subject_of(message: &OutboundMessage, account: &Account) -> String {
    let theirs = message
        .thread
        .as_ref()
        .and_then(|t| t["subject"].as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match theirs {
        Some(s) if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") => s.to_owned(),
        Some(s) => format!("Re: {s}"),
        None => account
            .setting("default_subject")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("A message from {}", account.setting("display_name").unwrap_or("us"))),
    }
}

/// The message as sent: headers for threading and unsubscribing, text (and the files).
pub fn compose(
    message: &OutboundMessage,
    account: &Account,
    files: Vec<(String, String, Vec<u8>)>,
) -> Result<(lettre::Message, String), SendError> {
    let (from, domain) = our_address(account)?;
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|e| permanent("invalid_address", format!("`{}`: {e}", message.to)))?;
    let message_id = format!("{}@{domain}", message.message_id);
    let bounce: lettre::Address = format!("bounce+{}@{domain}", message.message_id)
        .parse()
        .map_err(|e| permanent("channel_misconfigured", format!("bounce address: {e}")))?;
    let envelope = lettre::address::Envelope::new(Some(bounce), vec![to.email.clone()])
        .map_err(|e| permanent("invalid_address", e.to_string()))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(
            message
                .rich
                .as_ref()
                .and_then(|r| r.subject.clone())
                .unwrap_or_else(|| subject_of(message, account)),
        )
        .message_id(Some(format!("<{message_id}>")))
        .date(SystemTime::UNIX_EPOCH + Duration::from_millis(message.created_at_ms.max(0) as u64))
        .envelope(envelope)
        .raw_header(header("Auto-Submitted", "no".into()));
    if let Some(thread) = &message.thread
        && let Some(parent) = thread["message_id"].as_str()
    {
        let mut references: Vec<String> = thread["references"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str())
                    .map(|id| format!("<{id}>"))
                    .collect()
            })
            .unwrap_or_default();
        references.push(format!("<{parent}>"));
        builder = builder
            .in_reply_to(format!("<{parent}>"))
            .references(references.join(" "));
    }
    if message.purpose == Purpose::Marketing {
        let Some(url) = &message.unsubscribe_url else {
            return Err(permanent(
                "unsubscribe_missing",
                "marketing mail needs a one-click unsubscribe link",
            ));
        };
        builder = builder
            .raw_header(header("List-Unsubscribe", format!("<{url}>")))
            .raw_header(header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()));
    }
    // An automated message: a plain and an HTML part, each with the unsubscribe link in the
    // footer when it is marketing.
    let html = message.rich.as_ref().and_then(|r| r.html.clone());
    let footer = message
        .unsubscribe_url
        .as_ref()
        .filter(|_| message.purpose == Purpose::Marketing);
    let plain = match (&html, footer) {
        (Some(_), Some(url)) => format!("{}\n\n--\nUnsubscribe: {url}", message.text),
        _ => message.text.clone(),
    };
    let html = html.map(|h| match footer {
        Some(url) => {
            let link = format!(
                "<p style=\"font-size:12px;color:#6b7280\"><a href=\"{}\">Unsubscribe</a></p>",
                crate::html_escape(url)
            );
            match h.rfind("</body>") {
                Some(at) => format!("{}{link}{}", &h[..at], &h[at..]),
                None => format!("{h}{link}"),
            }
        }
        None => h,
    });
    let attach = |mut mixed: MultiPart| {
        for (filename, content_type, data) in &files {
            let ct = ContentType::parse(content_type)
                .unwrap_or(ContentType::parse("application/octet-stream").expect("valid"));
            mixed = mixed.singlepart(Attachment::new(filename.clone()).body(data.clone(), ct));
        }
        mixed
    };
    let built = match (html, files.is_empty()) {
        (Some(h), true) => builder.multipart(MultiPart::alternative_plain_html(plain, h)),
        (Some(h), false) => builder.multipart(attach(
            MultiPart::mixed().multipart(MultiPart::alternative_plain_html(plain, h)),
        )),
        (None, true) => builder.singlepart(SinglePart::plain(plain)),
        (None, false) => builder.multipart(attach(MultiPart::mixed().singlepart(SinglePart::plain(plain)))),
    };
    let built = built.map_err(|e| permanent("invalid_message", e.to_string()))?;
    Ok((built, message_id))
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn policy(&self) -> Policy {
        Policy {
            reply_window_ms: None,
            max_text_chars: MAX_TEXT,
            supports_media: true,
            max_files: 10,
            recipient_pace: None,
        }
    }

    fn address_kind(&self) -> &'static str {
        "email"
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn new_secrets(&self) -> Value {
        serde_json::json!({ "smtp_password": "", "imap_password": "", "mailgun_signing_key": "" })
    }

    fn check_account(&self, settings: &Value, _secrets: &Value) -> Result<(), String> {
        let address = settings["address"].as_str().unwrap_or_default();
        if address.parse::<lettre::Address>().is_err() {
            return Err("address (the mailbox customers write to, e.g. support@shop.example) is required".into());
        }
        for key in ["smtp_security", "imap_security"] {
            if settings[key]
                .as_str()
                .is_some_and(|s| !["starttls", "tls", "none"].contains(&s))
            {
                return Err(format!("{key} must be `starttls`, `tls` or `none`"));
            }
        }
        for key in ["smtp_port", "imap_port"] {
            if settings
                .get(key)
                .is_some_and(|p| p.as_u64().is_none_or(|p| p == 0 || p > 65_535))
            {
                return Err(format!("{key} must be a port number"));
            }
        }
        if settings
            .get("imap_poll_secs")
            .is_some_and(|p| p.as_u64().is_none_or(|p| !(1..=1500).contains(&p)))
        {
            return Err("imap_poll_secs must be 1–1500 seconds".into());
        }
        for key in ["smtp_ca_pem", "imap_ca_pem"] {
            if settings[key].as_str().is_some_and(|p| !p.contains("BEGIN CERTIFICATE")) {
                return Err(format!("{key} must be a PEM certificate"));
            }
        }
        Ok(())
    }

    /// Mailgun's inbound route webhook.
    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let key = account
            .secret("mailgun_signing_key")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ChannelError::Misconfigured("no `mailgun_signing_key`".into()))?;
        let (raw, token) = mailgun::verify(request.body, key, now_ms)?;
        let (dedupe_key, events) = inbound::parse(&raw, now_ms, trust(account))?;
        Ok(Verified {
            dedupe_key,
            events,
            store_body: Some(raw),
            // The signature covers only timestamp and token: Mailgun asks receivers to keep
            // each token for the window and refuse it again.
            replay_token: Some((token, 2 * mailgun::MAX_AGE_MS)),
        })
    }

    /// Mail our own listeners took in (SMTP, IMAP): nothing to verify, only to parse.
    fn accept_trusted(&self, body: &[u8], account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let (dedupe_key, events) = inbound::parse(body, now_ms, trust(account))?;
        Ok(Verified {
            dedupe_key,
            events,
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(inbound::parse(body, received_at_ms, trust(account))?.1)
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let mut files = Vec::with_capacity(message.files.len());
        for file in &message.files {
            let (data, _) = crate::download(self.http.get(&file.url)).await?;
            files.push((file.filename.clone(), file.content_type.clone(), data));
        }
        let (email, message_id) = compose(message, account, files)?;
        let transport = self.transport_for(account)?;
        match transport.send(email).await {
            Ok(_) => Ok(message_id),
            Err(e) => {
                let code = e
                    .status()
                    .map_or_else(|| "smtp_error".to_owned(), |c| format!("smtp_{c}"));
                Err(SendError {
                    // 4xx and lost connections pass; 5xx (a refused recipient, a refused
                    // message) does not.
                    retryable: !e.is_permanent(),
                    code,
                    message: e.to_string(),
                    retry_after_ms: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            id: "acc".into(),
            settings: serde_json::json!({"address": "support@acme.example", "display_name": "Acme Support"}),
            secrets: serde_json::json!({}),
        }
    }

    fn outbound(purpose: Purpose, thread: Option<Value>) -> OutboundMessage {
        OutboundMessage {
            message_id: "01JF8Z7Q3V".into(),
            conversation_id: "c".into(),
            to: "ana@example.test".into(),
            text: "Your order is ready.".into(),
            created_at_ms: 1_767_225_600_000,
            template: None,
            last_inbound_at_ms: None,
            files: Vec::new(),
            status_callback_url: None,
            purpose,
            unsubscribe_url: Some("https://acme.example/unsubscribe/acc/x/sig".into()),
            thread,
            rich: None,
        }
    }

    #[test]
    fn an_automated_marketing_mail_has_its_subject_text_html_and_one_click_unsubscribe() {
        let mut message = outbound(Purpose::Marketing, None);
        message.text = "Spring sale\n\nBoots are back.".into();
        message.rich = Some(crate::Rich {
            subject: Some("Spring sale".into()),
            html: Some("<html><body><h1>Spring sale</h1></body></html>".into()),
            ..Default::default()
        });
        let (email, _) = compose(&message, &account(), Vec::new()).expect("composes");
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(raw.contains("Subject: Spring sale"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Content-Type: text/plain"), "{raw}");
        assert!(raw.contains("Content-Type: text/html"), "{raw}");
        assert!(
            raw.contains("List-Unsubscribe: <https://acme.example/unsubscribe/acc/x/sig>"),
            "{raw}"
        );
        assert!(
            raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{raw}"
        );
        // The footers carry the link too, in both parts.
        assert!(
            raw.contains("Unsubscribe: https://acme.example/unsubscribe/acc/x/sig"),
            "{raw}"
        );
        let unfolded = raw.replace("=\r\n", "").replace("=\n", "");
        assert!(
            unfolded.contains("<a href=3D\"https://acme.example/unsubscribe/acc/x/sig\">Unsubscribe</a></p></body>"),
            "{raw}"
        );
    }

    #[test]
    fn a_reply_threads_in_the_customers_client() {
        let thread = serde_json::json!({"subject": "Pickup for order 1042", "message_id": "CAD8-7f21@mail.example.test",
            "references": ["01JF8Z5R2K@acme.example"]});
        let (email, id) =
            compose(&outbound(Purpose::Conversation, Some(thread)), &account(), Vec::new()).expect("composes");
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert_eq!(id, "01JF8Z7Q3V@acme.example");
        assert!(raw.contains("Message-ID: <01JF8Z7Q3V@acme.example>"), "{raw}");
        assert!(raw.contains("In-Reply-To: <CAD8-7f21@mail.example.test>"), "{raw}");
        assert!(
            raw.contains("References: <01JF8Z5R2K@acme.example> <CAD8-7f21@mail.example.test>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: Re: Pickup for order 1042"), "{raw}");
        assert!(!raw.contains("List-Unsubscribe"), "not on a conversation reply");
        assert_eq!(
            email.envelope().from().map(ToString::to_string).as_deref(),
            Some("bounce+01JF8Z7Q3V@acme.example")
        );
        // Our own parser reads back what we wrote.
        let parsed = inbound::parse_message(raw.as_bytes()).unwrap();
        assert_eq!(parsed.message_id(), Some("01JF8Z7Q3V@acme.example"));
    }

    #[test]
    fn marketing_mail_carries_one_click_unsubscribe() {
        let (email, _) = compose(&outbound(Purpose::Marketing, None), &account(), Vec::new()).expect("composes");
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(
            raw.contains("List-Unsubscribe: <https://acme.example/unsubscribe/acc/x/sig>"),
            "{raw}"
        );
        assert!(
            raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{raw}"
        );
        let mut no_link = outbound(Purpose::Marketing, None);
        no_link.unsubscribe_url = None;
        assert!(compose(&no_link, &account(), Vec::new()).is_err());
    }
}
