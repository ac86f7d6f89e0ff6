//! Customer mail: a real RFC 5322 / MIME message built with lettre's builder,
//! threaded onto a recorded message per RFC 5322 §3.6.4 when it is a reply.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mail_parser::MessageParser;
use serde::Deserialize;

use super::delivery::Via;
use super::headers;
use super::store::RecordedMail;

/// One address or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `true` means `auto-replied` (an out-of-office); a string is used as the header value.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum AutoSubmitted {
    Flag(bool),
    Value(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentReq {
    pub filename: String,
    #[serde(default)]
    pub content_type: Option<String>,
    pub base64: String,
}

/// `POST /_sim/send`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComposeReq {
    /// The customer, `Ana <ana@customer.example.test>` or a bare address.
    pub from: String,
    /// Defaults, for a reply, to the recorded message's `Reply-To` (else its `From`).
    #[serde(default)]
    pub to: Option<OneOrMany>,
    #[serde(default)]
    pub cc: Option<OneOrMany>,
    /// Defaults, for a reply, to `Re: <original subject>`.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
    /// Id (`m3`) of a recorded message this one replies to.
    #[serde(default)]
    pub in_reply_to_id: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentReq>,
    #[serde(default)]
    pub auto_submitted: Option<AutoSubmitted>,
    /// Extra header fields, e.g. `{"X-Autoreply": "yes"}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub via: Option<Via>,
}

/// What a reply needs from the message it answers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Parent {
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub in_reply_to: Vec<String>,
    /// Decoded subject.
    pub subject: Option<String>,
    /// Where a reply goes: the `Reply-To` mailbox, else the `From` mailbox.
    pub reply_address: Option<String>,
}

impl Parent {
    pub fn of(mail: &RecordedMail) -> Parent {
        let fields = mail.headers();
        let get = |n: &str| headers::get(&fields, n);
        let subject = MessageParser::default()
            .parse(&mail.raw)
            .and_then(|p| p.subject().map(str::to_string))
            .or_else(|| get("Subject"));
        Parent {
            message_id: get("Message-ID").and_then(|v| headers::angle_tokens(&v).into_iter().next()),
            references: get("References").map(|v| headers::angle_tokens(&v)).unwrap_or_default(),
            in_reply_to: get("In-Reply-To")
                .map(|v| headers::angle_tokens(&v))
                .unwrap_or_default(),
            subject,
            reply_address: get("Reply-To").or_else(|| get("From")),
        }
    }

    /// `(In-Reply-To, References)` of a reply (RFC 5322 §3.6.4): the parent's id, and the
    /// parent's References (else its In-Reply-To) followed by the parent's id.
    pub fn thread(&self) -> Option<(String, String)> {
        let id = self.message_id.clone()?;
        let mut refs = if self.references.is_empty() {
            self.in_reply_to.clone()
        } else {
            self.references.clone()
        };
        refs.push(id.clone());
        Some((id, refs.join(" ")))
    }

    pub fn reply_subject(&self) -> String {
        let s = self.subject.clone().unwrap_or_default();
        if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
            s
        } else {
            format!("Re: {s}")
        }
    }
}

/// A message ready to deliver.
#[derive(Clone, Debug)]
pub(crate) struct Composed {
    pub raw: Vec<u8>,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub message_id: String,
}

fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("bad address {s:?}: {e}"))
}

fn custom_header(name: &str, value: &str) -> Result<HeaderValue, String> {
    let name = HeaderName::new_from_ascii(name.to_string()).map_err(|e| format!("bad header name {name:?}: {e}"))?;
    Ok(HeaderValue::new(name, value.to_string()))
}

/// Builds the message; `unique` makes the Message-ID's left part, `now_ms` is the `Date`.
pub(crate) fn compose(
    req: &ComposeReq,
    parent: Option<&Parent>,
    now_ms: i64,
    unique: &str,
) -> Result<Composed, String> {
    let from = mailbox(&req.from)?;
    let to: Vec<String> = match (&req.to, parent) {
        (Some(t), _) => t.clone().into_vec(),
        (None, Some(p)) => p.reply_address.clone().into_iter().collect(),
        (None, None) => Vec::new(),
    };
    if to.is_empty() {
        return Err("`to` is required (or `in_reply_to_id` of a message with From/Reply-To)".into());
    }
    let message_id = format!("<{unique}@{}>", from.email.domain());
    let subject = match (&req.subject, parent) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => p.reply_subject(),
        (None, None) => String::new(),
    };
    let date = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64);
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .date(date)
        .message_id(Some(message_id.clone()));
    for t in &to {
        b = b.to(mailbox(t)?);
    }
    for c in req.cc.clone().map(OneOrMany::into_vec).unwrap_or_default() {
        b = b.cc(mailbox(&c)?);
    }
    if let Some((irt, refs)) = parent.and_then(Parent::thread) {
        b = b.in_reply_to(irt).references(refs);
    }
    match &req.auto_submitted {
        Some(AutoSubmitted::Flag(true)) => b = b.raw_header(custom_header("Auto-Submitted", "auto-replied")?),
        Some(AutoSubmitted::Value(v)) => b = b.raw_header(custom_header("Auto-Submitted", v)?),
        _ => {}
    }
    for (n, v) in &req.headers {
        b = b.raw_header(custom_header(n, v)?);
    }
    let text = SinglePart::plain(req.text.clone());
    let message = if req.attachments.is_empty() {
        match &req.html {
            Some(h) => b.multipart(MultiPart::alternative_plain_html(req.text.clone(), h.clone())),
            None => b.singlepart(text),
        }
    } else {
        let mut mixed = match &req.html {
            Some(h) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(req.text.clone(), h.clone())),
            None => MultiPart::mixed().singlepart(text),
        };
        for a in &req.attachments {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(a.base64.trim())
                .map_err(|e| format!("attachment {:?}: bad base64: {e}", a.filename))?;
            let ct = a.content_type.as_deref().unwrap_or("application/octet-stream");
            let ct =
                ContentType::parse(ct).map_err(|e| format!("attachment {:?}: bad content type: {e}", a.filename))?;
            mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(bytes, ct));
        }
        b.multipart(mixed)
    }
    .map_err(|e| e.to_string())?;
    let env = message.envelope();
    Ok(Composed {
        raw: message.formatted(),
        envelope_from: env.from().map(|a| a.to_string()).unwrap_or_default(),
        recipients: env.to().iter().map(|a| a.to_string()).collect(),
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> ComposeReq {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn threads_onto_the_parent() {
        let parent = Parent {
            message_id: Some("<B@acme.test>".into()),
            references: vec!["<A@cust.test>".into()],
            in_reply_to: vec!["<A@cust.test>".into()],
            subject: Some("Pickup for order 1042".into()),
            reply_address: Some("Acme <reply+c-1@acme.test>".into()),
        };
        let c = compose(
            &req(serde_json::json!({"from": "Ana <ana@cust.test>", "text": "Thanks!"})),
            Some(&parent),
            1_767_225_600_000,
            "x1",
        )
        .unwrap();
        let f = headers::fields(&c.raw);
        assert_eq!(headers::get(&f, "In-Reply-To").unwrap(), "<B@acme.test>");
        assert_eq!(headers::get(&f, "References").unwrap(), "<A@cust.test> <B@acme.test>");
        assert_eq!(headers::get(&f, "Subject").unwrap(), "Re: Pickup for order 1042");
        assert_eq!(headers::get(&f, "Message-ID").unwrap(), "<x1@cust.test>");
        assert_eq!(headers::get(&f, "Date").unwrap(), "Thu, 01 Jan 2026 00:00:00 +0000");
        assert_eq!(c.recipients, vec!["reply+c-1@acme.test"]);
        assert_eq!(c.envelope_from, "ana@cust.test");
    }

    #[test]
    fn references_fall_back_to_in_reply_to() {
        let p = Parent {
            message_id: Some("<C@x>".into()),
            in_reply_to: vec!["<B@x>".into()],
            subject: Some("RE: hi".into()),
            ..Parent::default()
        };
        assert_eq!(p.thread().unwrap(), ("<C@x>".to_string(), "<B@x> <C@x>".to_string()));
        assert_eq!(p.reply_subject(), "RE: hi");
    }

    #[test]
    fn out_of_office_with_html_and_attachment() {
        let c = compose(
            &req(serde_json::json!({
                "from": "ana@cust.test", "to": ["s@acme.test"], "subject": "Out of office",
                "text": "Back Monday", "html": "<p>Back Monday</p>", "auto_submitted": true,
                "attachments": [{"filename": "a.txt", "content_type": "text/plain", "base64": "aGk="}]
            })),
            None,
            0,
            "x2",
        )
        .unwrap();
        let f = headers::fields(&c.raw);
        assert_eq!(headers::get(&f, "Auto-Submitted").unwrap(), "auto-replied");
        assert!(headers::get(&f, "Content-Type").unwrap().starts_with("multipart/mixed"));
        let p = MessageParser::default().parse(&c.raw).unwrap();
        assert_eq!(p.attachment_count(), 1);
        assert_eq!(p.body_html(0).unwrap(), "<p>Back Monday</p>");
    }
}
