//! The STARTTLS certificate: self-signed, made fresh at every start, so no key
//! material lives in the repository. Tests trust it through its PEM.

use std::io;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The acceptor for STARTTLS and the certificate a client must trust.
pub(crate) struct TlsIdentity {
    pub acceptor: TlsAcceptor,
    pub certificate_pem: String,
}

/// Names the certificate is valid for; lettre clients connect to `localhost` or `127.0.0.1`.
fn subject_names(hostname: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !hostname.is_empty() && !names.iter().any(|n| n == hostname) {
        names.push(hostname.to_string());
    }
    names
}

pub(crate) fn self_signed(hostname: &str) -> io::Result<TlsIdentity> {
    let certified = rcgen::generate_simple_self_signed(subject_names(hostname)).map_err(io::Error::other)?;
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    // The provider is explicit: other crates in the build enable rustls' aws-lc provider
    // too, and with two compiled in there is no process default.
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(io::Error::other)?;
    Ok(TlsIdentity {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate_pem: certified.cert.pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_pem_certificate_for_loopback_names() {
        let id = self_signed("mx.sim.example.test").unwrap();
        assert!(id.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(subject_names("localhost"), vec!["localhost", "127.0.0.1"]);
    }
}
