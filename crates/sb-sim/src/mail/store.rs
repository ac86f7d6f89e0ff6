//! The sink's mailboxes: every message the SMTP server accepted, byte-exact,
//! and its JSON view for the control API and the page.

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;
use serde_json::{Value, json};

use super::headers;

/// One accepted message (one DATA), delivered to every accepted recipient's mailbox.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedMail {
    /// `m1`, `m2`, … in order of acceptance.
    pub id: String,
    /// SimClock ms when DATA ended.
    pub received_at_ms: i64,
    /// `MAIL FROM` path without brackets; empty for the null sender `<>`.
    pub envelope_from: String,
    /// Accepted `RCPT TO` paths, in order.
    pub recipients: Vec<String>,
    /// The session had done STARTTLS.
    pub tls: bool,
    /// The AUTH identity, when the client authenticated.
    pub auth_user: Option<String>,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The message as received, after dot-unstuffing, without the final `.` line.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl RecordedMail {
    /// Header fields in order, unfolded.
    pub fn headers(&self) -> Vec<(String, String)> {
        headers::fields(&self.raw)
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        headers::get(&self.headers(), name)
    }

    fn delivered_to(&self, address: &str) -> bool {
        self.recipients.iter().any(|r| r.eq_ignore_ascii_case(address))
    }
}

#[derive(Default)]
pub(crate) struct Store {
    messages: Vec<RecordedMail>,
}

impl Store {
    /// Records a message, assigning its id.
    pub fn record(&mut self, mut mail: RecordedMail) -> RecordedMail {
        mail.id = format!("m{}", self.messages.len() + 1);
        self.messages.push(mail.clone());
        mail
    }

    pub fn all(&self) -> &[RecordedMail] {
        &self.messages
    }

    pub fn get(&self, id: &str) -> Option<&RecordedMail> {
        self.messages.iter().find(|m| m.id == id)
    }

    /// Messages in one recipient's mailbox (all when `to` is `None`).
    pub fn mailbox(&self, to: Option<&str>) -> Vec<&RecordedMail> {
        self.messages
            .iter()
            .filter(|m| to.is_none_or(|a| m.delivered_to(a)))
            .collect()
    }

    /// Every recipient address with its message count, first-seen order.
    pub fn mailboxes(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for m in &self.messages {
            for r in &m.recipients {
                match out.iter_mut().find(|(a, _)| a.eq_ignore_ascii_case(r)) {
                    Some((_, n)) => *n += 1,
                    None => out.push((r.to_ascii_lowercase(), 1)),
                }
            }
        }
        out
    }
}

/// The JSON view of a recorded message: envelope, parsed headers, text/HTML parts and the raw bytes.
pub(crate) fn view(mail: &RecordedMail) -> Value {
    let fields = mail.headers();
    let get = |name: &str| headers::get(&fields, name);
    let parsed = MessageParser::default().parse(&mail.raw);
    // Decoded (RFC 2047), so the page shows what a mail client would.
    let subject = parsed
        .as_ref()
        .and_then(|p| p.subject().map(str::to_string))
        .or_else(|| get("Subject"));
    let (text, html, attachments, content_type) = match &parsed {
        Some(p) => (
            p.body_text(0).map(|t| t.into_owned()),
            p.body_html(0)
                .map(|t| t.into_owned())
                .filter(|_| p.html_body_count() > 0),
            p.attachments()
                .map(|a| {
                    json!({
                        "filename": a.attachment_name(),
                        "content_type": a.content_type().map(|c| match c.subtype() {
                            Some(s) => format!("{}/{s}", c.ctype()),
                            None => c.ctype().to_string(),
                        }),
                        "size": a.contents().len(),
                    })
                })
                .collect::<Vec<_>>(),
            p.root_part()
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()).to_ascii_lowercase()),
        ),
        None => (None, None, Vec::new(), None),
    };
    json!({
        "id": mail.id,
        "received_at_ms": mail.received_at_ms,
        "envelope_from": mail.envelope_from,
        "recipients": mail.recipients,
        "tls": mail.tls,
        "auth_user": mail.auth_user,
        "helo": mail.helo,
        "size": mail.raw.len(),
        "headers": fields.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "from": get("From"),
        "to": get("To"),
        "subject": subject,
        "date": get("Date"),
        "message_id": get("Message-ID"),
        "in_reply_to": get("In-Reply-To"),
        "references": get("References"),
        "reply_to": get("Reply-To"),
        "list_unsubscribe": get("List-Unsubscribe"),
        "list_unsubscribe_post": get("List-Unsubscribe-Post"),
        "auto_submitted": get("Auto-Submitted"),
        "content_type": content_type,
        "text": text,
        "html": html,
        "attachments": attachments,
        "raw": String::from_utf8_lossy(&mail.raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(rcpts: &[&str], raw: &[u8]) -> RecordedMail {
        RecordedMail {
            id: String::new(),
            received_at_ms: 0,
            envelope_from: "bounce+t@acme.test".into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            tls: false,
            auth_user: None,
            helo: "client".into(),
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn mailboxes_are_per_recipient_and_case_insensitive() {
        let mut s = Store::default();
        s.record(mail(&["Ana@X.test", "bo@y.test"], b"Subject: a\r\n\r\nx\r\n"));
        let second = s.record(mail(&["ana@x.test"], b"Subject: b\r\n\r\ny\r\n"));
        assert_eq!(second.id, "m2");
        assert_eq!(s.mailbox(Some("ana@x.test")).len(), 2);
        assert_eq!(s.mailbox(Some("bo@y.test")).len(), 1);
        assert_eq!(s.mailbox(None).len(), 2);
        assert_eq!(
            s.mailboxes(),
            vec![("ana@x.test".to_string(), 2), ("bo@y.test".to_string(), 1)]
        );
    }

    #[test]
    fn view_parses_text_and_html() {
        let raw = b"From: Acme <s@acme.test>\r\nSubject: =?utf-8?q?Hi_=C3=A9?=\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n";
        let v = view(&mail(&["a@x.test"], raw));
        assert_eq!(v["subject"], "Hi é");
        assert_eq!(v["text"], "plain");
        assert_eq!(v["html"], "<p>html</p>");
        assert_eq!(v["content_type"], "multipart/alternative");
    }
}
