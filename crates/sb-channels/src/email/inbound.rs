//! Inbound e-mail, whichever way it came (IMAP, our SMTP listener, an ESP webhook): one
//! RFC 5322 parser, so threading, reply stripping and attachments behave the same for all.
//!
//! - The customer is the `From` address. It is vouched for unless the receiving server's
//!   `Authentication-Results` say DMARC failed (or, with `require_authenticated_from`, unless
//!   they say DMARC or DKIM passed).
//! - De-duplication on `Message-ID`, with a hash of sender, date, subject and text when a
//!   client sent none.
//! - Auto-replies and list mail (`Auto-Submitted`, `Precedence`, `List-Id`, `X-Autoreply`)
//!   are kept but flagged, and nothing answers them automatically.
//! - A delivery status notification (RFC 3464) is not a customer message: a permanent
//!   failure marks our message failed and suppresses the address.

use mail_parser::{Message, MessageParser, MimeHeaders};
use serde_json::json;
use sha2::Digest;

use super::reply;
use crate::{ChannelError, IdentityHint, Inbound, InboundFile, InboundMessage, StatusReport, Suppression};
use sb_core::inbox::DeliveryStatus;

/// Largest HTML body kept for display; longer ones keep their text only.
const MAX_HTML: usize = 512 * 1024;
/// Dates further from the arrival than this are the sender's clock, not the truth.
const MAX_CLOCK_SKEW_MS: i64 = 30 * 24 * 3_600_000;
/// Mail dated this much before it arrived was delayed on the way.
const LATE_AFTER_MS: i64 = 120_000;

/// How far to trust `From`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromTrust {
    /// Trusted unless the receiving server says DMARC failed.
    UnlessFailed,
    /// Trusted only when the receiving server says DMARC or DKIM passed.
    OnlyAuthenticated,
}

pub fn parse_message(raw: &[u8]) -> Result<Message<'_>, ChannelError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| ChannelError::Malformed("not an RFC 5322 message".into()))?;
    if message.headers().is_empty() {
        return Err(ChannelError::Malformed("the message has no header fields".into()));
    }
    Ok(message)
}

/// `<id@host>` → `id@host`, the one form ids are stored in.
pub fn bare_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

fn header_text<'a>(message: &'a Message<'_>, name: &'a str) -> Option<&'a str> {
    message.header_raw(name).map(str::trim)
}

fn text_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value {
        mail_parser::HeaderValue::Text(t) => vec![bare_id(t)],
        mail_parser::HeaderValue::TextList(list) => list.iter().map(|t| bare_id(t)).collect(),
        _ => Vec::new(),
    }
}

/// Whether the mail was sent by a machine (RFC 3834 and common practice).
fn is_automatic(message: &Message<'_>) -> bool {
    let auto_submitted = header_text(message, "Auto-Submitted").is_some_and(|v| !v.eq_ignore_ascii_case("no"));
    let precedence = header_text(message, "Precedence")
        .is_some_and(|v| ["bulk", "list", "junk", "auto_reply"].contains(&v.to_ascii_lowercase().as_str()));
    let flagged = ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"]
        .iter()
        .any(|h| header_text(message, h).is_some());
    auto_submitted || precedence || flagged || header_text(message, "List-Id").is_some()
}

fn authentication(message: &Message<'_>) -> (bool, bool) {
    let results: Vec<String> = message
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(_, value)| value.to_ascii_lowercase())
        .collect();
    let passed = results
        .iter()
        .any(|r| r.contains("dmarc=pass") || r.contains("dkim=pass"));
    let failed = results.iter().any(|r| r.contains("dmarc=fail"));
    (passed, failed)
}

fn digest(parts: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

/// Parses a stored message: its de-duplication key and events.
pub fn parse(raw: &[u8], received_at_ms: i64, trust: FromTrust) -> Result<(String, Vec<Inbound>), ChannelError> {
    let message = parse_message(raw)?;
    if let Some(bounce) = delivery_report(&message) {
        return Ok(bounce);
    }
    let from = message
        .from()
        .and_then(|f| f.first())
        .ok_or_else(|| ChannelError::Malformed("the message has no `From` address".into()))?;
    let address = from
        .address()
        .and_then(sb_core::inbox::normalise_email)
        .ok_or_else(|| ChannelError::Malformed("`From` is not an e-mail address".into()))?;
    let subject = message.subject().unwrap_or_default().trim().to_owned();
    // `Date` has whole seconds and the sender's clock: it places mail that arrives late (an
    // IMAP backlog, a slow relay) where it was written, but a live message keeps its arrival
    // time, so it never sorts above the agent's reply it answers.
    let sent_at_ms = message
        .date()
        .map(|d| d.to_timestamp() * 1000)
        .filter(|at| received_at_ms - at > LATE_AFTER_MS && received_at_ms - at <= MAX_CLOCK_SKEW_MS)
        .unwrap_or(received_at_ms);

    let plain = message
        .text_bodies()
        .find(|p| p.is_text() && !p.is_text_html())
        .and_then(|p| p.text_contents())
        .map(str::to_owned);
    let html = message
        .html_bodies()
        .find(|p| p.is_text_html())
        .and_then(|p| p.text_contents());
    let split = match (&plain, html) {
        (Some(text), _) => reply::split_text(text),
        (None, Some(html)) => reply::Split {
            reply: reply::html_reply_text(html),
            quoted: String::new(),
        },
        (None, None) => reply::Split {
            reply: String::new(),
            quoted: String::new(),
        },
    };
    let files: Vec<InboundFile> = message
        .attachments()
        .filter(|part| !part.is_message() || part.attachment_name().is_some())
        .map(|part| InboundFile {
            filename: part.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            data: part.contents().to_vec(),
        })
        .collect();
    let text = match (split.reply.is_empty(), subject.is_empty(), files.len()) {
        (false, _, _) => split.reply.clone(),
        (true, false, _) => format!("({subject})"),
        (true, true, 0) => "(an empty e-mail)".to_owned(),
        (true, true, n) => format!("📎 {n} file(s)"),
    };
    let message_id = message.message_id().map(bare_id).filter(|id| !id.is_empty());
    let date = header_text(&message, "Date").unwrap_or_default();
    let key = match &message_id {
        Some(id) => format!("msgid:{id}"),
        None => format!("hash:{}", digest(&[&address, date, &subject, &text])),
    };
    let provider_message_id = message_id.clone().unwrap_or_else(|| key.clone());
    let (passed, failed) = authentication(&message);
    let verified = match trust {
        FromTrust::UnlessFailed => !failed,
        FromTrust::OnlyAuthenticated => passed && !failed,
    };
    let automatic = is_automatic(&message);
    let meta = json!({
        "subject": subject,
        "message_id": message_id,
        "in_reply_to": text_list(message.in_reply_to()).first(),
        "references": text_list(message.references()),
        "quoted": (!split.quoted.is_empty()).then_some(&split.quoted),
        "html": html.filter(|h| h.len() <= MAX_HTML).map(reply::sanitise_html),
        "automatic": automatic,
        "from_verified": verified,
    });
    Ok((
        key,
        vec![Inbound::Message(InboundMessage {
            provider_message_id,
            identities: vec![IdentityHint {
                kind: "email".into(),
                value: address,
                verified,
            }],
            sender_name: from.name().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned),
            text,
            sent_at_ms,
            media: Vec::new(),
            auto_reply: None,
            files,
            meta: Some(meta),
            automatic,
        })],
    ))
}

/// A delivery status notification: the failed recipients and the message they were about.
fn delivery_report(message: &Message<'_>) -> Option<(String, Vec<Inbound>)> {
    let is_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    if !is_report && header_text(message, "X-Failed-Recipients").is_none() {
        return None;
    }
    let mut recipients: Vec<(String, String, String)> = Vec::new(); // address, status, diagnostic
    let mut original_id = None;
    for part in message.parts.iter() {
        let Some(ct) = part.content_type() else { continue };
        let kind = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        );
        match kind.as_str() {
            "message/delivery-status" => {
                let text = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
                recipients.extend(recipient_blocks(&text));
            }
            "text/rfc822-headers" => {
                let text = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
                original_id = original_id.or_else(|| {
                    text.lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                        .map(|l| bare_id(&l["message-id:".len()..]))
                });
            }
            "message/rfc822" => {
                original_id = original_id.or_else(|| part.message().and_then(|m| m.message_id()).map(bare_id));
            }
            _ => {}
        }
    }
    if recipients.is_empty()
        && let Some(failed) = header_text(message, "X-Failed-Recipients")
    {
        recipients = failed
            .split(',')
            .map(|a| (a.trim().to_owned(), "5.0.0".to_owned(), "delivery failed".to_owned()))
            .collect();
    }
    let key = format!(
        "dsn:{}",
        message
            .message_id()
            .map(bare_id)
            .unwrap_or_else(|| digest(&[original_id.as_deref().unwrap_or_default(), &format!("{recipients:?}")]))
    );
    let mut events = Vec::new();
    for (address, status, diagnostic) in recipients {
        // 4.x.x is a delay: the relay keeps trying, nothing has failed yet.
        if !status.starts_with('5') {
            continue;
        }
        let Some(address) = sb_core::inbox::normalise_email(&address) else {
            continue;
        };
        if let Some(id) = &original_id {
            events.push(Inbound::Status(StatusReport {
                provider_message_id: id.clone(),
                our_message_id: None,
                status: DeliveryStatus::Failed,
                error_code: Some(status.clone()),
                error_message: Some(format!("bounced: {diagnostic}")),
            }));
        }
        events.push(Inbound::Suppress(Suppression {
            address,
            reason: "bounced".into(),
            detail: format!("{status} {diagnostic}").trim().to_owned(),
        }));
    }
    Some((key, events))
}

/// The per-recipient blocks of a `message/delivery-status` body (RFC 3464 §2.3).
fn recipient_blocks(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
                .map(|l| l[name.len() + 1..].trim().to_owned())
        };
        let Some(recipient) = field("final-recipient").or_else(|| field("original-recipient")) else {
            continue;
        };
        // `rfc822; ana@example.test`
        let address = recipient.rsplit(';').next().unwrap_or_default().trim().to_owned();
        let action = field("action").unwrap_or_default().to_ascii_lowercase();
        let status = field("status").unwrap_or_else(|| "5.0.0".into());
        if action != "failed" && !status.starts_with('5') {
            continue;
        }
        let diagnostic = field("diagnostic-code")
            .map(|d| d.rsplit(';').next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default();
        out.push((address, status, diagnostic));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(events: &[Inbound]) -> &InboundMessage {
        match &events[0] {
            Inbound::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    const REPLY: &str = "From: =?UTF-8?Q?Ana_L=C3=B3pez?= <Ana@Example.TEST>\r\n\
To: support@acme.example\r\n\
Subject: Re: Pickup for order 1042\r\n\
Date: Thu, 01 Jan 2026 10:00:00 +0000\r\n\
Message-ID: <CAD8-customer-7f21@mail.example.test>\r\n\
In-Reply-To: <01JF8Z7Q3V@acme.example>\r\n\
References: <01JF8Z5R2K@acme.example> <01JF8Z7Q3V@acme.example>\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Can I come at 3?\r\n\
\r\n\
On Thu, 1 Jan 2026 at 09:00, Acme <support@acme.example> wrote:\r\n\
> Your order is ready.\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"receipt.pdf\"\r\n\
Content-Disposition: attachment; filename=\"receipt.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn a_reply_parses_with_threading_ids_stripped_text_and_files() {
        let (key, events) = parse(REPLY.as_bytes(), 1_767_261_600_000, FromTrust::UnlessFailed).expect("parses");
        assert_eq!(key, "msgid:CAD8-customer-7f21@mail.example.test");
        let m = message_of(&events);
        assert_eq!(m.text, "Can I come at 3?");
        assert_eq!(m.identities[0].value, "ana@example.test");
        assert!(m.identities[0].verified);
        assert_eq!(m.sender_name.as_deref(), Some("Ana López"));
        assert_eq!(m.sent_at_ms, 1_767_261_600_000);
        // Read from a mailbox an hour later: placed when it was written. Live mail a second
        // after its `Date` keeps its arrival time (Date has whole seconds).
        let late = parse(REPLY.as_bytes(), 1_767_265_200_000, FromTrust::UnlessFailed)
            .unwrap()
            .1;
        assert_eq!(message_of(&late).sent_at_ms, 1_767_261_600_000);
        let live = parse(REPLY.as_bytes(), 1_767_261_600_900, FromTrust::UnlessFailed)
            .unwrap()
            .1;
        assert_eq!(message_of(&live).sent_at_ms, 1_767_261_600_900);
        let meta = m.meta.as_ref().unwrap();
        assert_eq!(meta["subject"], "Re: Pickup for order 1042");
        assert_eq!(meta["in_reply_to"], "01JF8Z7Q3V@acme.example");
        assert_eq!(meta["references"][1], "01JF8Z7Q3V@acme.example");
        assert!(meta["quoted"].as_str().unwrap().contains("Your order is ready"));
        assert_eq!(m.files.len(), 1);
        assert_eq!(
            (
                m.files[0].filename.as_str(),
                m.files[0].content_type.as_str(),
                m.files[0].data.as_slice()
            ),
            ("receipt.pdf", "application/pdf", b"%PDF-1.4\n".as_slice())
        );
        assert!(!m.automatic);
    }

    #[test]
    fn without_a_message_id_the_content_hash_dedupes() {
        let raw = "From: a@x.test\r\nSubject: hi\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\r\nhello\r\n";
        let (k1, _) = parse(raw.as_bytes(), 0, FromTrust::UnlessFailed).expect("parses");
        let (k2, _) = parse(raw.as_bytes(), 99, FromTrust::UnlessFailed).expect("parses");
        assert!(k1.starts_with("hash:"));
        assert_eq!(k1, k2);
        let other = raw.replace("hello", "hello again");
        assert_ne!(parse(other.as_bytes(), 0, FromTrust::UnlessFailed).unwrap().0, k1);
    }

    #[test]
    fn auto_replies_are_flagged() {
        for header in [
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "List-Id: <news.x.test>",
            "X-Autoreply: yes",
        ] {
            let raw = format!("From: a@x.test\r\n{header}\r\nMessage-ID: <1@x>\r\n\r\nI am away\r\n");
            let (_, events) = parse(raw.as_bytes(), 0, FromTrust::UnlessFailed).expect("parses");
            assert!(message_of(&events).automatic, "{header}");
        }
        let raw = "From: a@x.test\r\nAuto-Submitted: no\r\n\r\nhi\r\n";
        assert!(!message_of(&parse(raw.as_bytes(), 0, FromTrust::UnlessFailed).unwrap().1).automatic);
    }

    #[test]
    fn from_is_trusted_as_configured() {
        let failed =
            "Authentication-Results: mx.acme.example; dmarc=fail header.from=x.test\r\nFrom: a@x.test\r\n\r\nhi\r\n";
        let passed = "Authentication-Results: mx.acme.example; dkim=pass header.d=x.test; dmarc=pass\r\nFrom: a@x.test\r\n\r\nhi\r\n";
        let none = "From: a@x.test\r\n\r\nhi\r\n";
        let verified =
            |raw: &str, trust| message_of(&parse(raw.as_bytes(), 0, trust).unwrap().1).identities[0].verified;
        assert!(!verified(failed, FromTrust::UnlessFailed));
        assert!(verified(none, FromTrust::UnlessFailed));
        assert!(!verified(none, FromTrust::OnlyAuthenticated));
        assert!(verified(passed, FromTrust::OnlyAuthenticated));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for raw in ["", "just some text without headers", "Subject: no sender\r\n\r\nbody"] {
            assert!(
                matches!(
                    parse(raw.as_bytes(), 0, FromTrust::UnlessFailed),
                    Err(ChannelError::Malformed(_))
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn a_dsn_fails_our_message_and_suppresses_the_address() {
        let dsn = "From: MAILER-DAEMON@relay.example\r\n\
To: bounce+01JF@acme.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn-1@relay.example>\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\
\r\n\
--r\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--r\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; relay.example\r\n\
\r\n\
Final-Recipient: rfc822; Gone@Example.test\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
--r\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: support@acme.example\r\n\
Message-ID: <01JF-ours@acme.example>\r\n\
--r--\r\n";
        let (key, events) = parse(dsn.as_bytes(), 0, FromTrust::UnlessFailed).expect("parses");
        assert_eq!(key, "dsn:dsn-1@relay.example");
        let Inbound::Status(s) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (s.provider_message_id.as_str(), s.status),
            ("01JF-ours@acme.example", DeliveryStatus::Failed)
        );
        assert_eq!(s.error_code.as_deref(), Some("5.1.1"));
        let Inbound::Suppress(sup) = &events[1] else { panic!() };
        assert_eq!(
            (sup.address.as_str(), sup.reason.as_str()),
            ("gone@example.test", "bounced")
        );
        // A delay report changes nothing.
        let delayed = dsn
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        assert!(
            parse(delayed.as_bytes(), 0, FromTrust::UnlessFailed)
                .unwrap()
                .1
                .is_empty()
        );
    }
}
