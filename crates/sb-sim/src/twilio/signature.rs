//! `X-Twilio-Signature` (channels.md §5.2, vector in Appendix A.2).
//!
//! The signed string is the URL Twilio requested (scheme, host, path, query; no
//! fragment) followed by every POST parameter as `name` + `value`, sorted by
//! name (and by value for repeated names), with no separators. The signature is
//! base64(HMAC-SHA1(auth token, that string)). Twilio is inconsistent about
//! explicit default ports, so validators accept the URL with and without one.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The string Twilio signs for a form POST to `url`.
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    pairs.sort_unstable();
    let mut out = String::from(url);
    for (k, v) in pairs {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// `X-Twilio-Signature` value for a form POST of `params` to `url`, signed with `auth_token`.
pub fn twilio_signature<K: AsRef<str>, V: AsRef<str>>(auth_token: &str, url: &str, params: &[(K, V)]) -> String {
    let mac = hmac_sha1(auth_token.as_bytes(), string_to_sign(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Checks `header` the way Twilio's official validators do: against `url` as
/// given, with the default port added, and with any port removed; constant-time.
pub fn validate_twilio_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    header: &str,
) -> bool {
    let url = strip_fragment(url);
    [url.to_string(), with_default_port(url), without_port(url)]
        .iter()
        .any(|u| constant_time_eq(twilio_signature(auth_token, u, params).as_bytes(), header.as_bytes()))
}

/// `url` with an explicit `:443` (https) or `:80` (http) when it has no port.
pub fn with_default_port(url: &str) -> String {
    let Some((scheme, start, end)) = authority(url) else {
        return url.to_string();
    };
    if port_start(&url[start..end]).is_some() {
        return url.to_string();
    }
    let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    format!("{}:{port}{}", &url[..end], &url[end..])
}

/// `url` without any explicit port.
pub fn without_port(url: &str) -> String {
    let Some((_, start, end)) = authority(url) else {
        return url.to_string();
    };
    match port_start(&url[start..end]) {
        Some(p) => format!("{}{}", &url[..start + p], &url[end..]),
        None => url.to_string(),
    }
}

/// The URL without its `#fragment` (Twilio's connection overrides live there and are not signed).
pub fn strip_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(u, _)| u)
}

/// Scheme and the byte range of the authority (`user@host:port`).
fn authority(url: &str) -> Option<(&str, usize, usize)> {
    let (scheme, rest) = url.split_once("://")?;
    let start = scheme.len() + 3;
    let end = rest.find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    Some((scheme, start, end))
}

/// Offset of the `:` that starts the port within an authority, if any (IPv6 literals are bracketed).
fn port_start(authority: &str) -> Option<usize> {
    let host_from = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_from..];
    let after_bracket = host.rfind(']').map_or(0, |i| i + 1);
    host[after_bracket..].rfind(':').map(|i| host_from + after_bracket + i)
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    // HMAC per RFC 2104, written out because the workspace's `hmac` (0.13) and `sha1` (0.10)
    // implement different `digest` versions.
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "demo-auth-token";
    const URL: &str = "https://hooks.example.test/twilio/sms?inbox=7";
    const SIG: &str = "aqkXrMQMC2c1UPcXLj/rhL9mpvg=";

    /// The A.2 parameters, deliberately not in sorted order.
    fn params() -> Vec<(&'static str, &'static str)> {
        vec![
            ("To", "+15551230000"),
            ("Body", "STOP"),
            ("NumMedia", "0"),
            ("From", "+15557654321"),
            ("MessageSid", "SM00000000000000000000000000000001"),
            ("AccountSid", "AC00000000000000000000000000000001"),
        ]
    }

    #[test]
    fn appendix_a2_vector() {
        assert_eq!(
            string_to_sign(URL, &params()),
            "https://hooks.example.test/twilio/sms?inbox=7AccountSidAC00000000000000000000000000000001BodySTOP\
             From+15557654321MessageSidSM00000000000000000000000000000001NumMedia0To+15551230000"
        );
        assert_eq!(twilio_signature(TOKEN, URL, &params()), SIG);
        assert!(validate_twilio_signature(TOKEN, URL, &params(), SIG));
    }

    #[test]
    fn appendix_a2_with_explicit_port() {
        let with_port = "https://hooks.example.test:443/twilio/sms?inbox=7";
        assert_eq!(with_default_port(URL), with_port);
        assert_eq!(without_port(with_port), URL);
        // The validator accepts the A.2 header whichever form of the URL it is given.
        assert!(validate_twilio_signature(TOKEN, with_port, &params(), SIG));
        // And a signature made over the explicit-port URL validates against the plain one.
        let sig443 = twilio_signature(TOKEN, with_port, &params());
        assert_ne!(sig443, SIG);
        assert!(validate_twilio_signature(TOKEN, URL, &params(), &sig443));
    }

    #[test]
    fn rejects_wrong_token_params_or_url() {
        assert!(!validate_twilio_signature("other-token", URL, &params(), SIG));
        let mut p = params();
        p[1].1 = "STOP ";
        assert!(!validate_twilio_signature(TOKEN, URL, &p, SIG));
        assert!(!validate_twilio_signature(
            TOKEN,
            "https://hooks.example.test/twilio/sms",
            &params(),
            SIG
        ));
        assert!(!validate_twilio_signature(TOKEN, URL, &params(), ""));
    }

    #[test]
    fn repeated_names_sort_by_value_and_fragment_is_ignored() {
        let a = string_to_sign("u", &[("MediaUrl", "b"), ("Body", "x"), ("MediaUrl", "a")]);
        assert_eq!(a, "uBodyxMediaUrlaMediaUrlb");
        let sig = twilio_signature(TOKEN, URL, &params());
        assert!(validate_twilio_signature(
            TOKEN,
            &format!("{URL}#rc=2&rp=5xx"),
            &params(),
            &sig
        ));
    }

    #[test]
    fn ports() {
        assert_eq!(with_default_port("http://127.0.0.1/x"), "http://127.0.0.1:80/x");
        assert_eq!(with_default_port("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
        assert_eq!(with_default_port("https://h.test?q=1"), "https://h.test:443?q=1");
        assert_eq!(with_default_port("https://u:p@h.test"), "https://u:p@h.test:443");
        assert_eq!(without_port("http://[::1]:9000/a"), "http://[::1]/a");
        assert_eq!(with_default_port("http://[::1]/a"), "http://[::1]:80/a");
        assert_eq!(without_port("not a url"), "not a url");
    }

    #[test]
    fn hmac_sha1_rfc2202_case_1_and_long_key() {
        assert_eq!(
            hex::encode(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        // RFC 2202 case 6: an 80-byte key is hashed first.
        assert_eq!(
            hex::encode(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }
}
