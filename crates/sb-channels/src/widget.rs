//! The website chat widget: our own channel, so there is no provider wire format. Visitors
//! write through `/widget/v1` (not a webhook) and read their thread over a WebSocket; what
//! lives here is the pure part: visitor tokens, identity verification, attachment checks.
//!
//! - A visitor token is `sbv1.<account id>.<visitor id>.<expiry ms>.<hex HMAC-SHA256>` signed
//!   with the account's `token_key`, so rotating that key ends every visitor session.
//! - `identifier_hash` = hex HMAC-SHA256(key = the account's `hmac_secret`, message = the
//!   site's user identifier), computed by the site's backend (Chatwoot's and Intercom's scheme).

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{Account, Channel, ChannelError, Inbound, OutboundMessage, Policy, RawRequest, SendError, Verified};

pub const KIND: &str = "widget";
/// The scoped identity kind of a website visitor.
pub const ADDRESS_KIND: &str = "visitor";
pub const MAX_TEXT: usize = 10_000;
/// Visitor tokens last 180 days (Chatwoot's default) and are refreshed on every session start.
pub const TOKEN_TTL_MS: i64 = 180 * 24 * 3_600_000;
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// What visitors may upload. Each type is checked against the file's first bytes, so a
/// renamed executable or an HTML page posing as an image is refused.
pub const UPLOAD_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message);
    mac
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorToken {
    pub account_id: String,
    pub visitor_id: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the visitor token is malformed")]
    Malformed,
    #[error("the visitor token's signature does not match")]
    BadSignature,
    #[error("the visitor token has expired")]
    Expired,
}

impl VisitorToken {
    fn signed_part(&self) -> String {
        format!("sbv1.{}.{}.{}", self.account_id, self.visitor_id, self.expires_at_ms)
    }

    pub fn encode(&self, token_key: &str) -> String {
        let part = self.signed_part();
        let tag = hex::encode(mac(token_key, part.as_bytes()).finalize().into_bytes());
        format!("{part}.{tag}")
    }

    /// Reads the unsigned fields, so the caller can load the account's key; check with
    /// [`VisitorToken::verify`] before trusting any of them.
    pub fn peek(token: &str) -> Result<VisitorToken, TokenError> {
        let mut parts = token.split('.');
        let (Some("sbv1"), Some(account), Some(visitor), Some(expiry), Some(_tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let ok_id =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_id(account) || !ok_id(visitor) {
            return Err(TokenError::Malformed);
        }
        Ok(VisitorToken {
            account_id: account.to_owned(),
            visitor_id: visitor.to_owned(),
            expires_at_ms: expiry.parse().map_err(|_| TokenError::Malformed)?,
        })
    }

    /// Checks the signature (constant time) and the expiry.
    pub fn verify(token: &str, token_key: &str, now_ms: i64) -> Result<VisitorToken, TokenError> {
        let parsed = Self::peek(token)?;
        let tag = token.rsplit('.').next().unwrap_or_default();
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        mac(token_key, parsed.signed_part().as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if parsed.expires_at_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(parsed)
    }
}

/// Whether `hash` is the site's HMAC of `identifier` (hex, either case; constant time).
pub fn identifier_hash_valid(hmac_secret: &str, identifier: &str, hash: &str) -> bool {
    match hex::decode(hash.trim()) {
        Ok(tag) => mac(hmac_secret, identifier.as_bytes()).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// The site backend's side of identity verification (for tests and the demo page).
pub fn identifier_hash(hmac_secret: &str, identifier: &str) -> String {
    hex::encode(mac(hmac_secret, identifier.as_bytes()).finalize().into_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("files of type `{0}` are not accepted (accepted: png, jpeg, gif, webp, pdf, plain text)")]
    UnsupportedType(String),
    #[error("the file's contents are not a `{0}`")]
    ContentMismatch(String),
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
}

/// Checks an upload against the allowed types and its magic bytes; returns the canonical type.
pub fn check_attachment(content_type: &str, bytes: &[u8], max_bytes: usize) -> Result<&'static str, AttachmentError> {
    let declared = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(kind) = UPLOAD_TYPES.iter().copied().find(|t| *t == declared) else {
        return Err(AttachmentError::UnsupportedType(declared));
    };
    if bytes.is_empty() {
        return Err(AttachmentError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(AttachmentError::TooLarge(max_bytes));
    }
    let matches = match kind {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        "application/pdf" => bytes.starts_with(b"%PDF-"),
        // Plain text must be text: no NUL bytes, valid UTF-8.
        _ => std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0),
    };
    if !matches {
        return Err(AttachmentError::ContentMismatch(kind.to_owned()));
    }
    Ok(kind)
}

/// A file name safe to echo in a `Content-Disposition` header and to show: no path, no
/// control or quote characters, at most 200 characters.
pub fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';' | '\\'))
        .take(200)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "file".into()
    } else {
        cleaned
    }
}

#[derive(Default)]
pub struct WidgetChannel;

#[async_trait]
impl Channel for WidgetChannel {
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
        ADDRESS_KIND
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["hmac_secret", "token_key"]
    }

    fn new_secrets(&self) -> serde_json::Value {
        serde_json::json!({
            "hmac_secret": sb_core::credentials::random_secret(),
            "token_key": sb_core::credentials::random_secret(),
        })
    }

    fn takes_webhooks(&self) -> bool {
        false
    }

    fn verify(&self, _request: &RawRequest<'_>, _account: &Account, _now_ms: i64) -> Result<Verified, ChannelError> {
        Err(ChannelError::Misconfigured(
            "the widget writes to /widget/v1/messages, not to a webhook".into(),
        ))
    }

    fn parse(&self, _body: &[u8], _received_at_ms: i64, _account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(Vec::new())
    }

    /// The reply is already stored and pushed to the visitor's socket (or read when they come
    /// back): accepted as it stands, with our own id as the provider's.
    async fn send(&self, message: &OutboundMessage, _account: &Account) -> Result<String, SendError> {
        Ok(message.message_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_hash_matches_the_vector_of_channels_md_appendix_a3() {
        let expected = "302eb741ae2862164d1e2c43a899938538821babeed747002bc18bef1d417b31";
        assert_eq!(identifier_hash("widget-hmac-token", "cust-42"), expected);
        assert!(identifier_hash_valid("widget-hmac-token", "cust-42", expected));
        assert!(identifier_hash_valid(
            "widget-hmac-token",
            "cust-42",
            &expected.to_uppercase()
        ));
        assert!(!identifier_hash_valid("widget-hmac-token", "cust-43", expected));
        assert!(!identifier_hash_valid("other-secret", "cust-42", expected));
        assert!(!identifier_hash_valid("widget-hmac-token", "cust-42", "not hex"));
        assert!(!identifier_hash_valid("widget-hmac-token", "cust-42", ""));
    }

    #[test]
    fn a_visitor_token_verifies_only_with_its_key_and_before_expiry() {
        let token = VisitorToken {
            account_id: "acc-1".into(),
            visitor_id: "v-1".into(),
            expires_at_ms: 2_000,
        };
        let encoded = token.encode("key");
        assert_eq!(VisitorToken::verify(&encoded, "key", 1_000), Ok(token.clone()));
        assert_eq!(
            VisitorToken::verify(&encoded, "other", 1_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(VisitorToken::verify(&encoded, "key", 2_000), Err(TokenError::Expired));
        // Changing any signed field breaks the signature.
        let forged = encoded.replace("v-1", "v-2");
        assert_eq!(
            VisitorToken::verify(&forged, "key", 1_000),
            Err(TokenError::BadSignature)
        );
        let later = encoded.replace(".2000.", ".9000.");
        assert_eq!(
            VisitorToken::verify(&later, "key", 1_000),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "sbv1",
            "sbv1.a.b.c",
            "sbv1.a.b.1.zz",
            "sbv2.a.b.1.00",
            "sbv1.a.b.1.00.extra",
        ] {
            assert!(VisitorToken::verify(bad, "key", 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn attachments_are_checked_by_type_size_and_magic_bytes() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        assert_eq!(check_attachment("image/png", png, 100), Ok("image/png"));
        assert_eq!(check_attachment("IMAGE/PNG; charset=x", png, 100), Ok("image/png"));
        assert_eq!(check_attachment("image/png", png, 4), Err(AttachmentError::TooLarge(4)));
        assert_eq!(
            check_attachment("image/jpeg", png, 100),
            Err(AttachmentError::ContentMismatch("image/jpeg".into()))
        );
        assert_eq!(
            check_attachment("text/html", b"<script>", 100),
            Err(AttachmentError::UnsupportedType("text/html".into()))
        );
        assert_eq!(check_attachment("text/plain", b"", 100), Err(AttachmentError::Empty));
        assert!(check_attachment("text/plain", b"a\0b", 100).is_err());
        assert_eq!(
            check_attachment("application/pdf", b"%PDF-1.7", 100),
            Ok("application/pdf")
        );
    }

    #[test]
    fn file_names_lose_paths_and_header_breaking_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\x\\a\"b;c.txt"), "abc.txt");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename("re\r\nport.pdf"), "report.pdf");
    }
}
