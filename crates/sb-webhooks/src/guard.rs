//! The SSRF guard: a webhook may not reach this machine, the private network or a cloud's
//! metadata service. Applied to the URL when an endpoint is saved, and to every address the
//! name resolves to at each request (the client's resolver), so DNS that changes later
//! (rebinding) is caught too. Redirects are not followed. An instance may allow private
//! addresses for development (`webhooks_allow_private_networks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an absolute http(s) URL with a host.
    InvalidUrl(String),
    /// The host is, or resolves to, an address webhooks may not reach.
    AddressNotAllowed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::InvalidUrl(m) | Refusal::AddressNotAllowed(m) => f.write_str(m),
        }
    }
}

/// Whether a webhook may be sent to `ip`: public unicast only.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 (AWS metadata) included
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 onto any v4
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: the metadata service
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// The URL parsed and checked for its form; a literal IP host is checked here too.
pub fn parse(url: &str, allow_private: bool) -> Result<Url, Refusal> {
    let parsed = Url::parse(url).map_err(|e| Refusal::InvalidUrl(format!("the URL is not valid: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(Refusal::InvalidUrl(
            "the URL must start with https:// or http://".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refusal::InvalidUrl(
            "the URL may not carry a user name or password; authenticate with the signature".into(),
        ));
    }
    let literal = match parsed.host() {
        None => return Err(Refusal::InvalidUrl("the URL has no host".into())),
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = literal
        && !allow_private
        && !is_public(ip)
    {
        return Err(not_allowed(ip));
    }
    Ok(parsed)
}

fn not_allowed(ip: IpAddr) -> Refusal {
    Refusal::AddressNotAllowed(format!(
        "{ip} is a loopback, private, link-local or reserved address; webhooks go to public addresses only"
    ))
}

/// Checks a URL as an endpoint is saved: its form, then what its host resolves to now. A name
/// that does not resolve from here is accepted (it is checked again at each request).
pub async fn check(url: &str, allow_private: bool) -> Result<Url, Refusal> {
    let parsed = parse(url, allow_private)?;
    if allow_private {
        return Ok(parsed);
    }
    if let Some(url::Host::Domain(host)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        if let Ok(addrs) = tokio::net::lookup_host((host, port)).await {
            for addr in addrs {
                if !is_public(addr.ip()) {
                    return Err(not_allowed(addr.ip()));
                }
            }
        }
    }
    Ok(parsed)
}

/// The webhook client's resolver: the system's answers without the addresses the guard
/// refuses; a name left with none fails the request.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                let refused = found
                    .first()
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                return Err(Box::new(std::io::Error::other(not_allowed(refused).to_string()))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of webhook deliveries: guarded resolution, no redirects, no proxy, bounded
/// time.
pub fn client(allow_private: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .pool_max_idle_per_host(128)
        .tcp_nodelay(true)
        .user_agent(concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the webhook client's settings are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_the_note_lists_and_accepts_public_addresses() {
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "169.254.169.254",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused} must be refused");
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"] {
            assert!(is_public(allowed.parse().unwrap()), "{allowed} must be allowed");
        }
    }

    #[test]
    fn literal_private_hosts_are_refused_unless_allowed() {
        assert!(matches!(
            parse("http://127.0.0.1:9000/hook", false),
            Err(Refusal::AddressNotAllowed(_))
        ));
        assert!(matches!(
            parse("http://[::ffff:169.254.169.254]/", false),
            Err(Refusal::AddressNotAllowed(_))
        ));
        assert!(parse("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(matches!(
            parse("ftp://example.com/", false),
            Err(Refusal::InvalidUrl(_))
        ));
        assert!(matches!(
            parse("https://u:p@example.com/", false),
            Err(Refusal::InvalidUrl(_))
        ));
        assert!(matches!(parse("not a url", false), Err(Refusal::InvalidUrl(_))));
        assert!(parse("https://hooks.example.com/switchboard", false).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        assert!(matches!(
            check("http://localhost:9000/hook", false).await,
            Err(Refusal::AddressNotAllowed(_))
        ));
        let refused = GuardedResolver { allow_private: false }
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(refused.is_err());
        let allowed = GuardedResolver { allow_private: true }
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(allowed.is_ok());
    }
}
