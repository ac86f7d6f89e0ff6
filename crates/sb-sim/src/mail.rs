//! E-mail simulator (channels.md §7 and the "E-mail" part of §10).
//!
//! It plays the two sides of mail that our product is not:
//!
//! - **The outside mail world receiving our mail**: an SMTP server on 127.0.0.1
//!   (RFC 5321: EHLO, STARTTLS with a self-signed certificate made at start, AUTH
//!   PLAIN/LOGIN, MAIL/RCPT/DATA with dot-unstuffing, RSET, NOOP, QUIT, SIZE limit)
//!   that records every accepted message byte-exactly, answers configured
//!   per-recipient 4xx/5xx replies, and sends RFC 3464 DSN bounces to the envelope
//!   sender (on demand or for "bounce after acceptance" recipients).
//! - **The customers writing to us**: RFC 5322 MIME messages composed from a
//!   customer address (threaded replies to recorded mail, attachments,
//!   out-of-office `Auto-Submitted`) delivered to our product either over SMTP (our
//!   MX listener) or as a Mailgun inbound-route webhook (parsed or raw MIME, signed,
//!   retried on Mailgun's schedule on the SimClock); and an RFC 8058 client that
//!   performs the one-click unsubscribe POST (and a link scanner's GET).
//!
//! Control API under `/_sim/` (also `/_sim/mail/`), see [`control`]; `GET /` is a
//! small webmail to play the customer by hand.

mod compose;
mod control;
mod delivery;
mod dsn;
mod headers;
mod mailgun;
mod smtp_client;
mod smtp_server;
mod store;
mod tls;
mod unsubscribe;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SimClock;
use crate::common::{Server, lock};

pub use delivery::DeliveryAttempt;
pub use mailgun::signature as mailgun_signature;
pub use store::RecordedMail;

/// How the simulator is set up. Targets (our MX listener, our Mailgun route URL)
/// can also be set at runtime with `POST /_sim/targets`.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// AUTH PLAIN/LOGIN username.
    pub username: String,
    /// AUTH password; anything else answers `535 5.7.8`.
    pub password: String,
    /// MAIL and AUTH before STARTTLS answer `530 5.7.0`; AUTH is only advertised after STARTTLS.
    pub require_tls: bool,
    /// MAIL before a successful AUTH answers `530 5.7.0 Authentication required`.
    pub require_auth: bool,
    /// `SIZE` advertised in EHLO; larger messages answer `552 5.3.4`.
    pub max_size: usize,
    /// More RCPTs in one transaction answer `452 4.5.3`.
    pub max_recipients: usize,
    /// Name in the greeting, EHLO and the DSN's `Reporting-MTA`.
    pub hostname: String,
    /// Key for the Mailgun webhook `signature` (channels.md A.4 uses `demo-signing-key`).
    pub mailgun_signing_key: String,
    /// Our product's SMTP ingress (`host:port`) for customer mail and DSNs.
    pub smtp_target: Option<String>,
    /// Our product's Mailgun route URL (raw MIME mode when its path ends with `mime`).
    pub mailgun_url: Option<String>,
    /// A second route for `via: "mailgun_mime"` (its path should end with `mime`).
    pub mailgun_mime_url: Option<String>,
    /// Mailgun retries carry a fresh `timestamp`/`token`/`signature` (else the first attempt's).
    pub mailgun_resign_retries: bool,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            username: "switchboard".into(),
            password: "sim-smtp-password".into(),
            require_tls: false,
            require_auth: false,
            max_size: 10 * 1024 * 1024,
            max_recipients: 100,
            hostname: "mx.sim.example.test".into(),
            mailgun_signing_key: "demo-signing-key".into(),
            smtp_target: None,
            mailgun_url: None,
            mailgun_mime_url: None,
            mailgun_resign_retries: true,
        }
    }
}

/// A running mail simulator: the SMTP sink plus the HTTP control API and page.
pub struct MailSim {
    server: Server,
    hub: Arc<Hub>,
}

impl MailSim {
    /// Binds the SMTP server and the HTTP server on free 127.0.0.1 ports and serves them on tokio tasks.
    pub async fn start(config: MailConfig, clock: SimClock) -> std::io::Result<MailSim> {
        let identity = tls::self_signed(&config.hostname)?;
        let smtp_listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let smtp_addr = smtp_listener.local_addr()?;
        let (http_listener, base_url) = Server::bind().await?;
        let hub = Arc::new(Hub::new(config, clock, identity, smtp_addr));
        tokio::spawn(smtp_server::serve(smtp_listener, Arc::clone(&hub)));
        tokio::spawn(delivery::retry_loop(Arc::clone(&hub)));
        let server = Server::serve(http_listener, base_url, control::router(Arc::clone(&hub)));
        Ok(MailSim { server, hub })
    }

    /// `http://127.0.0.1:PORT`: the control API (`/_sim/...`) and the webmail page (`/`).
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Where the SMTP server listens (submission and MX alike).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.hub.smtp_addr
    }

    /// The STARTTLS certificate (self-signed, for `localhost` and `127.0.0.1`) for a client to trust.
    pub fn certificate_pem(&self) -> &str {
        &self.hub.certificate_pem
    }

    /// Every message the SMTP server accepted, in order.
    pub fn messages(&self) -> Vec<RecordedMail> {
        self.hub.st().store.all().to_vec()
    }

    /// Every delivery attempt to our product (customer mail, DSNs, unsubscribe requests).
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.hub.st().deliveries.clone()
    }

    /// Stops the servers and pending retries.
    pub async fn shutdown(mut self) {
        self.hub.stop();
        self.server.shutdown().await;
    }
}

impl Drop for MailSim {
    fn drop(&mut self) {
        self.hub.stop();
    }
}

/// Where customer mail goes (`POST /_sim/targets`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Targets {
    pub smtp: Option<String>,
    pub mailgun_url: Option<String>,
    pub mailgun_mime_url: Option<String>,
    pub mailgun_signing_key: String,
}

/// Replies and behaviours of the SMTP server set with `POST /_sim/faults` (replaces the whole set).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmtpFaults {
    /// Recipient address (case-insensitive) → the full reply to its RCPT, e.g. `550 5.1.1 user unknown`.
    #[serde(default)]
    pub rcpt_replies: std::collections::BTreeMap<String, String>,
    /// Recipients accepted with 250 and then bounced with a DSN to the envelope sender.
    #[serde(default)]
    pub bounce_after_accept: Vec<String>,
    /// Reply to the end of DATA instead of `250` (the message is then not recorded).
    #[serde(default)]
    pub data_reply: Option<String>,
}

impl SmtpFaults {
    pub fn rcpt_reply(&self, rcpt: &str) -> Option<&String> {
        self.rcpt_replies
            .iter()
            .find(|(addr, _)| addr.eq_ignore_ascii_case(rcpt))
            .map(|(_, reply)| reply)
    }

    pub fn bounces_after_accept(&self, rcpt: &str) -> bool {
        self.bounce_after_accept.iter().any(|a| a.eq_ignore_ascii_case(rcpt))
    }
}

pub(crate) struct MailState {
    pub store: store::Store,
    pub faults: SmtpFaults,
    pub targets: Targets,
    pub deliveries: Vec<DeliveryAttempt>,
    pub retries: Vec<delivery::PendingRetry>,
    /// Customer messages composed here, newest last (for the page's thread view).
    pub sent: Vec<serde_json::Value>,
    next_delivery: u64,
    next_local_id: u64,
}

/// State shared by the SMTP server, the deliverers and the control API.
pub(crate) struct Hub {
    pub cfg: MailConfig,
    pub clock: SimClock,
    pub tls: tokio_rustls::TlsAcceptor,
    pub certificate_pem: String,
    pub smtp_addr: SocketAddr,
    /// Webhooks and one-click POSTs: no cookies, redirects not followed.
    pub http: reqwest::Client,
    /// The link scanner: follows redirects like a browser.
    pub scanner: reqwest::Client,
    stop_tx: watch::Sender<bool>,
    state: Mutex<MailState>,
}

impl Hub {
    fn new(cfg: MailConfig, clock: SimClock, identity: tls::TlsIdentity, smtp_addr: SocketAddr) -> Self {
        let client = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(redirects)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client")
        };
        let targets = Targets {
            smtp: cfg.smtp_target.clone(),
            mailgun_url: cfg.mailgun_url.clone(),
            mailgun_mime_url: cfg.mailgun_mime_url.clone(),
            mailgun_signing_key: cfg.mailgun_signing_key.clone(),
        };
        let (stop_tx, _) = watch::channel(false);
        Self {
            cfg,
            clock,
            tls: identity.acceptor,
            certificate_pem: identity.certificate_pem,
            smtp_addr,
            http: client(reqwest::redirect::Policy::none()),
            scanner: client(reqwest::redirect::Policy::limited(5)),
            stop_tx,
            state: Mutex::new(MailState {
                store: store::Store::default(),
                faults: SmtpFaults::default(),
                targets,
                deliveries: Vec::new(),
                retries: Vec::new(),
                sent: Vec::new(),
                next_delivery: 1,
                next_local_id: 1,
            }),
        }
    }

    pub fn st(&self) -> MutexGuard<'_, MailState> {
        lock(&self.state)
    }

    fn stop(&self) {
        let _ = self.stop_tx.send(true);
    }

    pub fn stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Resolves when the simulator stops.
    pub async fn stopping(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn next_delivery_id(&self) -> u64 {
        let mut st = self.st();
        st.next_delivery += 1;
        st.next_delivery - 1
    }

    /// A short unique token for ids made here (Message-IDs, DSN boundaries).
    pub fn local_token(&self) -> String {
        let n = {
            let mut st = self.st();
            st.next_local_id += 1;
            st.next_local_id - 1
        };
        format!("{:x}.{n}.{:08x}", self.clock.now_ms(), rand::random::<u32>())
    }
}
