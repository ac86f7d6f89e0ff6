//! Mailgun's inbound route webhook (channels.md §7.2): a form post signed with a
//! `timestamp`, `token` and `signature` = hex HMAC-SHA256(webhook signing key, timestamp ‖
//! token). The raw-MIME mode (`body-mime`) is stored as it is; the parsed mode is rebuilt
//! into one RFC 5322 message from its headers and bodies, so every ingress ends in the same
//! parser.

use crate::ChannelError;

/// A signed request older or newer than this is refused (a captured request replayed later).
pub const MAX_AGE_MS: i64 = 15 * 60 * 1000;

pub fn signature(signing_key: &str, timestamp: &str, token: &str) -> String {
    crate::signing::hmac_sha256_hex(signing_key.as_bytes(), format!("{timestamp}{token}").as_bytes())
}

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The form's fields, decoded.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Checks the signature triple and returns the message as RFC 5322 bytes.
/// Checks the signature and the timestamp's window; returns the message and the signed
/// `timestamp.token` (to remember: the signature does not cover the message).
pub fn verify(body: &[u8], signing_key: &str, now_ms: i64) -> Result<(Vec<u8>, String), ChannelError> {
    let params = form_pairs(body);
    let (Some(timestamp), Some(token), Some(given)) = (
        field(&params, "timestamp"),
        field(&params, "token"),
        field(&params, "signature"),
    ) else {
        return Err(ChannelError::MissingSignature);
    };
    let expected = signature(signing_key, timestamp, token);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes())) {
        return Err(ChannelError::InvalidSignature);
    }
    let at_ms = timestamp
        .parse::<i64>()
        .map_err(|_| ChannelError::Malformed("`timestamp` is not a number".into()))?
        * 1000;
    if (now_ms - at_ms).abs() > MAX_AGE_MS {
        return Err(ChannelError::Expired);
    }
    Ok((message_of(&params)?, format!("{timestamp}.{token}")))
}

/// The message a (verified) form carries, as RFC 5322 bytes.
pub fn message_of(params: &[(String, String)]) -> Result<Vec<u8>, ChannelError> {
    if let Some(mime) = field(params, "body-mime") {
        return Ok(mime.as_bytes().to_vec());
    }
    rebuild(params)
}

/// One message from the parsed fields: the original headers (`message-headers`, a JSON list
/// of pairs) and the plain and HTML bodies.
fn rebuild(params: &[(String, String)]) -> Result<Vec<u8>, ChannelError> {
    let headers: Vec<(String, String)> = field(params, "message-headers")
        .map(|h| {
            serde_json::from_str(h)
                .map_err(|e| ChannelError::Malformed(format!("`message-headers` is not a list: {e}")))
        })
        .transpose()?
        .unwrap_or_default();
    let from = field(params, "from").or_else(|| field(params, "sender"));
    if from.is_none() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("from")) {
        return Err(ChannelError::Malformed("the form has no `from`".into()));
    }
    let mut out = String::new();
    let skip = ["content-type", "content-transfer-encoding", "mime-version"];
    for (name, value) in &headers {
        if !skip.contains(&name.to_ascii_lowercase().as_str()) && !name.contains(['\r', '\n']) {
            out.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
        }
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("from"))
        && let Some(from) = from
    {
        out.push_str(&format!("From: {from}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("subject"))
        && let Some(subject) = field(params, "subject")
    {
        out.push_str(&format!("Subject: {subject}\r\n"));
    }
    let plain = field(params, "body-plain").unwrap_or_default();
    let html = field(params, "body-html").filter(|h| !h.is_empty());
    out.push_str("MIME-Version: 1.0\r\n");
    match html {
        None => {
            out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            out.push_str(plain);
        }
        Some(html) => {
            let boundary = "sb-mailgun-alternative";
            out.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{plain}\r\n\
                 --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n\
                 --{boundary}--\r\n"
            ));
        }
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    }

    const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829";

    /// channels.md Appendix A.4.
    #[test]
    fn appendix_a4_signature_vector() {
        assert_eq!(
            signature("demo-signing-key", "1767225600", TOKEN),
            "0c0513714facc5afbdf18946915424d72b5c90367859ee8d7dc63e3e50063fa4"
        );
    }

    #[test]
    fn signed_forms_verify_and_others_do_not() {
        let sig = "0c0513714facc5afbdf18946915424d72b5c90367859ee8d7dc63e3e50063fa4";
        let now = 1_767_225_600_000;
        let mime = "From: a@x.test\r\nMessage-ID: <1@x>\r\n\r\nhi";
        let good = form(&[
            ("timestamp", "1767225600"),
            ("token", TOKEN),
            ("signature", sig),
            ("body-mime", mime),
        ]);
        assert_eq!(verify(&good, "demo-signing-key", now).unwrap().0, mime.as_bytes());
        assert_eq!(
            verify(&good, "other-key", now).err(),
            Some(ChannelError::InvalidSignature)
        );
        assert_eq!(
            verify(&good, "demo-signing-key", now + MAX_AGE_MS + 1).err(),
            Some(ChannelError::Expired)
        );
        let unsigned = form(&[("body-mime", mime)]);
        assert_eq!(
            verify(&unsigned, "demo-signing-key", now).err(),
            Some(ChannelError::MissingSignature)
        );
    }

    #[test]
    fn the_parsed_mode_is_rebuilt_into_one_message() {
        let now = 1_767_225_600_000;
        let sig = signature("k", "1767225600", TOKEN);
        let headers = r#"[["From","Ana <ana@x.test>"],["Subject","Hola"],["Message-Id","<m1@x.test>"],["Content-Type","multipart/alternative; boundary=zzz"]]"#;
        let body = form(&[
            ("timestamp", "1767225600"),
            ("token", TOKEN),
            ("signature", &sig),
            ("message-headers", headers),
            ("body-plain", "¿Está listo?"),
            ("body-html", "<p>¿Está listo?</p>"),
        ]);
        let (raw, _) = verify(&body, "k", now).expect("verifies");
        let (key, events) =
            super::super::inbound::parse(&raw, now, super::super::inbound::FromTrust::UnlessFailed).expect("parses");
        assert_eq!(key, "msgid:m1@x.test");
        let crate::Inbound::Message(m) = &events[0] else {
            panic!()
        };
        assert_eq!(m.text, "¿Está listo?");
        let missing = form(&[
            ("timestamp", "1767225600"),
            ("token", TOKEN),
            ("signature", &sig),
            ("body-plain", "x"),
        ]);
        assert!(matches!(verify(&missing, "k", now), Err(ChannelError::Malformed(_))));
    }
}
