//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`: the scheme of our own
//! API channel and outgoing webhooks (CONVENTIONS.md). Verification is constant-time and
//! refuses timestamps outside the tolerance.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ChannelError;

pub const HEADER: &str = "x-switchboard-signature";
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

pub fn sign(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp_secs, body).finalize().into_bytes();
    format!("t={timestamp_secs},v1={}", hex::encode(tag))
}

/// Checks `header` against `body`; returns the signed timestamp.
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now_ms: i64) -> Result<i64, ChannelError> {
    let header = header.ok_or(ChannelError::MissingSignature)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(ChannelError::InvalidSignature)?;
    if (now_ms / 1000 - timestamp).abs() > TOLERANCE_SECS {
        return Err(ChannelError::Expired);
    }
    for candidate in candidates {
        if let Ok(tag) = hex::decode(candidate)
            && mac(secret, timestamp, body).verify_slice(&tag).is_ok()
        {
            return Ok(timestamp);
        }
    }
    Err(ChannelError::InvalidSignature)
}

/// The signature of a file URL handed to a provider (`/media/{account}/{attachment}?exp=…&sig=…`):
/// hex HMAC-SHA256 over `account|attachment|exp` with a key derived from the account's secrets,
/// so the URL works only for that file, until `exp`, and not after the secrets change.
pub fn media_signature(key: &str, account_id: &str, attachment_id: &str, expires_ms: i64) -> String {
    hmac_sha256_hex(
        key.as_bytes(),
        format!("{account_id}|{attachment_id}|{expires_ms}").as_bytes(),
    )
}

/// Hex HMAC-SHA256.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The signature in an unsubscribe link (`/unsubscribe/{account}/{address}/{sig}`): it names
/// one address on one account, with a key derived from the account's secrets, so links
/// cannot be made up for other addresses.
pub fn unsubscribe_signature(key: &str, account_id: &str, address: &str) -> String {
    hmac_sha256_hex(key.as_bytes(), format!("unsubscribe|{account_id}|{address}").as_bytes())
}

/// Checks an unsubscribe link's signature in constant time.
pub fn unsubscribe_signature_valid(key: &str, account_id: &str, address: &str, sig: &str) -> bool {
    let Ok(tag) = hex::decode(sig) else { return false };
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("unsubscribe|{account_id}|{address}").as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// Checks a file URL's signature (constant time) and expiry.
pub fn media_signature_valid(
    key: &str,
    account_id: &str,
    attachment_id: &str,
    expires_ms: i64,
    sig: &str,
    now_ms: i64,
) -> bool {
    let Ok(tag) = hex::decode(sig) else { return false };
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{account_id}|{attachment_id}|{expires_ms}").as_bytes());
    mac.verify_slice(&tag).is_ok() && now_ms < expires_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_767_225_600_000;

    #[test]
    fn a_signature_verifies_only_for_its_bytes_secret_and_time() {
        let body = br#"{"id":"m1","text":"Hola"}"#;
        let header = sign("s3cret", NOW_MS / 1000, body);
        assert_eq!(verify("s3cret", Some(&header), body, NOW_MS), Ok(NOW_MS / 1000));
        assert_eq!(
            verify("other", Some(&header), body, NOW_MS),
            Err(ChannelError::InvalidSignature)
        );
        assert_eq!(
            verify("s3cret", Some(&header), br#"{"id":"m1","text":"Hola!"}"#, NOW_MS),
            Err(ChannelError::InvalidSignature)
        );
        assert_eq!(
            verify("s3cret", None, body, NOW_MS),
            Err(ChannelError::MissingSignature)
        );
        assert_eq!(
            verify("s3cret", Some("t=1,v1=zz"), body, NOW_MS),
            Err(ChannelError::Expired)
        );
        assert_eq!(
            verify("s3cret", Some(&header), body, NOW_MS + 301_000),
            Err(ChannelError::Expired)
        );
        assert!(verify("s3cret", Some(&header), body, NOW_MS + 299_000).is_ok());
    }

    #[test]
    fn a_known_vector() {
        // HMAC-SHA256("whsec", "1767225600.{}") computed independently with Python's hmac.
        assert_eq!(
            sign("whsec", 1_767_225_600, b"{}"),
            "t=1767225600,v1=5ba148cb6916cb6116d779d0c88555b31ef0bec7b98ac2545ebcdbe03d55d9e2"
        );
    }
}
