//! Passwords (argon2id) and secrets shown once (API tokens, session ids), stored only as
//! SHA-256 digests. Pure computation, no IO.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of API tokens, so leaked tokens are easy to recognise and search for.
pub const API_TOKEN_PREFIX: &str = "sbt_";

pub fn hash_password(password: &str) -> String {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail on a valid salt")
        .to_string()
}

/// Constant-time verification (argon2's own comparison).
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A fresh high-entropy secret (32 random bytes, hex).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A readable random password for generated accounts (demo users).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn new_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random_secret())
}

/// What is stored for a secret: its SHA-256, hex. The secret itself is never stored.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse"), "salted");
    }

    #[test]
    fn tokens_are_prefixed_and_digests_are_stable() {
        let t = new_api_token();
        assert!(t.starts_with(API_TOKEN_PREFIX) && t.len() == API_TOKEN_PREFIX.len() + 64);
        assert_eq!(secret_digest(&t), secret_digest(&t));
        assert_ne!(secret_digest(&t), t);
    }
}
