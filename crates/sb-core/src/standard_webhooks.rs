//! Standard Webhooks signing (<https://www.standardwebhooks.com>, spec 1.0.0): the
//! `webhook-signature` header is `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! one entry per valid secret, space-separated; a secret is `whsec_` + base64 of 24–64 random
//! bytes, and the key is those bytes. Our outgoing webhooks and, when asked, the API channel
//! sign this way, so one verification library (any language's `standardwebhooks`) serves both.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far a receiver accepts a timestamp from its clock (the libraries' default).
pub const TOLERANCE_SECS: i64 = 300;
const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a secret, or why it is not one.
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("a signing secret starts with {PREFIX}"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "a signing secret is whsec_ followed by base64".to_owned())?;
    if !(24..=64).contains(&key.len()) {
        return Err("a signing secret holds 24 to 64 bytes".into());
    }
    Ok(key)
}

fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The `webhook-signature` value: one `v1,` entry per secret, in order.
pub fn sign<S: AsRef<str>>(secrets: &[S], id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let mut entries = Vec::with_capacity(secrets.len());
    for secret in secrets {
        entries.push(format!(
            "v1,{}",
            signature(&key_of(secret.as_ref())?, id, timestamp, body)
        ));
    }
    Ok(entries.join(" "))
}

/// Checks a request as a receiver would: the timestamp within the tolerance of `now_secs`
/// and one `v1` entry matching, compared in constant time.
pub fn verify(secret: &str, id: &str, timestamp: i64, header: &str, body: &[u8], now_secs: i64) -> bool {
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return false;
    }
    let Ok(key) = key_of(secret) else {
        return false;
    };
    let expected = signature(&key, id, timestamp, body);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|candidate| {
            use subtle::ConstantTimeEq;
            candidate.len() == expected.len() && bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the specification's reference libraries.
    #[test]
    fn reproduces_the_reference_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let header = sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            &header,
            body,
            1614265330
        ));
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let header = sign(
            &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
        );
        assert_eq!(header.unwrap(), "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn tampering_an_old_timestamp_or_another_secret_fails() {
        let (a, b) = (generate_secret(), generate_secret());
        let body = br#"{"type":"message.created"}"#;
        let header = sign(&[&a], "msg_1", 1_000_000, body).unwrap();
        assert!(verify(&a, "msg_1", 1_000_000, &header, body, 1_000_100));
        assert!(!verify(
            &a,
            "msg_1",
            1_000_000,
            &header,
            br#"{"type":"message.createe"}"#,
            1_000_100
        ));
        assert!(!verify(&a, "msg_2", 1_000_000, &header, body, 1_000_100));
        assert!(!verify(
            &a,
            "msg_1",
            1_000_000,
            &header,
            body,
            1_000_000 + TOLERANCE_SECS + 1
        ));
        assert!(!verify(&b, "msg_1", 1_000_000, &header, body, 1_000_100));
        // During a rotation both secrets sign, and either verifies.
        let both = sign(&[&b, &a], "msg_1", 1_000_000, body).unwrap();
        assert!(verify(&a, "msg_1", 1_000_000, &both, body, 1_000_000));
        assert!(verify(&b, "msg_1", 1_000_000, &both, body, 1_000_000));
    }

    #[test]
    fn secrets_are_checked() {
        assert!(key_of(&generate_secret()).is_ok());
        assert!(key_of("s3cret").is_err());
        assert!(key_of("whsec_!!!").is_err());
        assert!(key_of("whsec_AAAA").is_err());
    }
}
