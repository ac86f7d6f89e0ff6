//! Mailgun inbound routes, `forward("https://…")` (channels.md §7.2): the POST
//! Mailgun makes for a received message, parsed or raw MIME (route URL ending in
//! `mime`), signed with `timestamp`/`token`/`signature`, and its retry schedule.

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;

use super::headers;
use crate::common::{hmac_hex, percent_encode};

/// Gaps between attempts after a failure: 10 min, 15 min, 30 min, 1 h, 2 h, 4 h (≈ 8 h in all).
pub(crate) const RETRY_GAPS_MS: [i64; 6] = [600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000];

/// `signature` = lowercase hex HMAC-SHA256(signing key, `timestamp` followed by `token`).
pub fn signature(signing_key: &str, timestamp: &str, token: &str) -> String {
    hmac_hex(signing_key.as_bytes(), format!("{timestamp}{token}").as_bytes())
}

/// 50 random lowercase hex characters.
pub(crate) fn new_token() -> String {
    (0..25).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Raw MIME mode: "the destination URL must end with mime" (path only, query ignored).
pub(crate) fn is_mime_route(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.trim_end_matches('/').ends_with("mime")
}

/// A file field (`attachment-N`) of a parsed-mode POST.
#[derive(Clone, Debug)]
pub(crate) struct FilePart {
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Everything of one POST but the signature triple, which is added per attempt.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub fields: Vec<(String, String)>,
    pub files: Vec<FilePart>,
}

/// The signature triple of one attempt.
#[derive(Clone, Debug)]
pub(crate) struct Signed {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

impl Signed {
    pub fn new(key: &str, now_secs: i64) -> Self {
        let timestamp = now_secs.to_string();
        let token = new_token();
        let signature = signature(key, &timestamp, &token);
        Self {
            timestamp,
            token,
            signature,
        }
    }
}

/// Reply stripping as Mailgun's `stripped-text` / `stripped-signature` would do it, simply:
/// cut at an attribution line (`On … wrote:`) or the first `>` line; the signature after `-- `.
fn strip_reply(text: &str) -> (String, String) {
    let mut reply = Vec::new();
    for line in text.lines() {
        let t = line.trim_end();
        if t.starts_with('>') || (t.starts_with("On ") && t.ends_with("wrote:")) {
            break;
        }
        reply.push(line);
    }
    let (body, sig) = match reply.iter().position(|l| *l == "-- ") {
        Some(i) => (reply[..i].join("\n"), reply[i + 1..].join("\n")),
        None => (reply.join("\n"), String::new()),
    };
    (body.trim().to_string(), sig.trim().to_string())
}

/// The fields Mailgun posts for `raw`, received from `sender` for `recipients`.
pub(crate) fn payload(raw: &[u8], sender: &str, recipients: &[String], mime: bool) -> Payload {
    let fields_in = headers::fields(raw);
    let parsed = MessageParser::default().parse(raw);
    let hdr = |n: &str| headers::get(&fields_in, n).unwrap_or_default();
    let subject = parsed
        .as_ref()
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_else(|| hdr("Subject"));
    let mut fields = vec![
        ("recipient".to_string(), recipients.join(", ")),
        ("sender".to_string(), sender.to_string()),
        ("from".to_string(), hdr("From")),
        ("subject".to_string(), subject),
    ];
    if mime {
        fields.push(("body-mime".into(), String::from_utf8_lossy(raw).into_owned()));
        return Payload {
            fields,
            files: Vec::new(),
        };
    }
    let text = parsed
        .as_ref()
        .and_then(|p| p.body_text(0))
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let html = parsed
        .as_ref()
        .filter(|p| p.html_body_count() > 0)
        .and_then(|p| p.body_html(0))
        .map(|t| t.into_owned());
    let (stripped, signature) = strip_reply(&text);
    let list: Vec<Value> = fields_in
        .iter()
        .map(|(n, v)| Value::Array(vec![Value::from(n.as_str()), Value::from(v.as_str())]))
        .collect();
    fields.push(("message-headers".into(), Value::Array(list).to_string()));
    fields.push(("body-plain".into(), text));
    if let Some(h) = html {
        fields.push(("body-html".into(), h));
    }
    fields.push(("stripped-text".into(), stripped));
    fields.push(("stripped-signature".into(), signature));
    // Threading headers are posted as fields of their own too (verify against a real capture).
    for name in ["Message-Id", "In-Reply-To", "References", "To", "Date"] {
        if let Some(v) = headers::get(&fields_in, name) {
            fields.push((name.to_string(), v));
        }
    }
    let files: Vec<FilePart> = parsed
        .as_ref()
        .map(|p| {
            p.attachments()
                .enumerate()
                .map(|(i, a)| FilePart {
                    field: format!("attachment-{}", i + 1),
                    filename: a.attachment_name().unwrap_or("attachment").to_string(),
                    content_type: a
                        .content_type()
                        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")))
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    data: a.contents().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !files.is_empty() {
        fields.push(("attachment-count".into(), files.len().to_string()));
    }
    Payload { fields, files }
}

/// The request body and its content type: urlencoded, or multipart/form-data when there are files.
pub(crate) fn encode(p: &Payload, s: &Signed, boundary: &str) -> (String, Vec<u8>) {
    let mut all: Vec<(&str, &str)> = p.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("timestamp", &s.timestamp));
    all.push(("token", &s.token));
    all.push(("signature", &s.signature));
    if p.files.is_empty() {
        let body = all
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        return ("application/x-www-form-urlencoded".into(), body.into_bytes());
    }
    let mut body = Vec::new();
    for (k, v) in all {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for f in &p.files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
                 Content-Type: {}\r\n\r\n",
                f.field,
                f.filename.replace('"', "'"),
                f.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(&f.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::parse_urlencoded;

    #[test]
    fn signature_vector_a4() {
        assert_eq!(
            signature(
                "demo-signing-key",
                "1767225600",
                "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829"
            ),
            "0c0513714facc5afbdf18946915424d72b5c90367859ee8d7dc63e3e50063fa4"
        );
        let t = new_token();
        assert_eq!(t.len(), 50);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn mime_routes() {
        assert!(is_mime_route("http://127.0.0.1:9/hooks/mailgun/mime"));
        assert!(is_mime_route("http://127.0.0.1:9/inbound-mime?x=1"));
        assert!(!is_mime_route("http://127.0.0.1:9/hooks/mailgun?mode=mime"));
    }

    #[test]
    fn parsed_payload() {
        let raw =
            b"From: Ana <ana@cust.test>\r\nTo: s@acme.test\r\nSubject: Re: Pickup\r\nMessage-Id: <r1@cust.test>\r\n\
In-Reply-To: <o1@acme.test>\r\n\r\nYes, tomorrow.\r\n\r\nOn Thu, Acme wrote:\r\n> ready\r\n";
        let p = payload(raw, "ana@cust.test", &["s@acme.test".into()], false);
        let s = Signed::new("k", 1_767_225_600);
        let (ct, body) = encode(&p, &s, "b");
        assert_eq!(ct, "application/x-www-form-urlencoded");
        let form = parse_urlencoded(std::str::from_utf8(&body).unwrap());
        assert_eq!(form["recipient"], "s@acme.test");
        assert_eq!(form["sender"], "ana@cust.test");
        assert_eq!(form["from"], "Ana <ana@cust.test>");
        assert_eq!(form["stripped-text"], "Yes, tomorrow.");
        assert_eq!(form["Message-Id"], "<r1@cust.test>");
        assert_eq!(form["signature"], signature("k", &form["timestamp"], &form["token"]));
        let hdrs: Vec<(String, String)> = serde_json::from_str(&form["message-headers"]).unwrap();
        assert_eq!(hdrs[2], ("Subject".to_string(), "Re: Pickup".to_string()));
        assert!(!form.contains_key("body-mime"));
        let m = payload(raw, "ana@cust.test", &["s@acme.test".into()], true);
        assert!(m.fields.iter().any(|(k, v)| k == "body-mime" && v.as_bytes() == raw));
    }

    #[test]
    fn strips_quotes_and_signature() {
        assert_eq!(
            strip_reply("Hi\n-- \nAna\n> old"),
            ("Hi".to_string(), "Ana".to_string())
        );
    }
}
