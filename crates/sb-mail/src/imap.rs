//! IMAP ingress (channels.md §7.2 item 1): every enabled e-mail account with an `imap_host`
//! has one reader that keeps its mailbox open and hands each new message, as raw RFC 5322
//! bytes, to [`sb_inbox::ingest_trusted`].
//!
//! The read position is `(UIDVALIDITY, last UID)` per account and mailbox
//! ([`sb_store::mailbox_sync`]). It moves past a message only once ingest has stored it (or
//! refused it as malformed, which is final), so a crash between the two reads that one
//! message again and ingest calls it a duplicate: nothing is lost, nothing is stored twice.
//! A changed UIDVALIDITY means the server renumbered the mailbox: reading starts over from
//! UID 1 and de-duplication by Message-ID keeps what was already stored.
//!
//! The mailbox is opened with `EXAMINE` (read-only) and bodies are fetched with
//! `BODY.PEEK[]`, so the owner's flags (`\Seen`, `\Recent`) stay as they were. New mail wakes
//! the reader through `IDLE` (RFC 2177, re-issued well before the 29-minute limit) when the
//! server has it, else the reader polls every `imap_poll_secs` (60). A lost connection is
//! retried with exponential back-off from 1 s to 5 min.
//!
//! Settings (see `sb_channels::email`): `imap_host`, `imap_port` (993 for `tls`, else 143),
//! `imap_security` (`tls`, the default | `starttls` | `none`, plain TCP meant for loopback),
//! `imap_username` (default: `address`), `imap_mailbox` (`INBOX`), `imap_ca_pem` (an extra
//! trusted root besides the webpki roots), `imap_poll_secs`; secret `imap_password`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, RequestId, Response, Status};
use async_imap::types::UnsolicitedResponse;
use futures_util::TryStreamExt;
use sb_channels::ChannelError;
use sb_inbox::{Channels, IngestError, IngestOutcome, Intake};
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::{Store, StoreError, mailbox_sync};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const CHANNEL: &str = sb_channels::email::KIND;
/// How often the supervisor looks for added, changed and removed accounts.
const SCAN_EVERY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// For one batch of message bodies.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages fetched per `UID FETCH`: bounds the memory one batch takes.
const FETCH_BATCH: usize = 20;
/// `IDLE` is ended and re-issued this often: before the 29 minutes of RFC 2177, and often
/// enough that a connection that died silently is noticed.
const IDLE_RENEW: Duration = Duration::from_secs(10 * 60);
const DEFAULT_POLL: Duration = Duration::from_secs(60);
/// A longer poll would outlast servers' 30-minute autologout.
const MAX_POLL_SECS: u64 = 25 * 60;
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("the account's IMAP settings are incomplete: {0}")]
    Misconfigured(String),
    #[error("cannot connect to the IMAP server: {0}")]
    Connect(String),
    #[error("TLS with the IMAP server failed: {0}")]
    Tls(String),
    /// Wrong user name or password (or the server does not allow this login).
    #[error("the IMAP server refused the login: {0}")]
    LoginRefused(String),
    #[error("the IMAP server refused {command}: {message}")]
    Refused { command: &'static str, message: String },
    #[error("IMAP {0}")]
    Protocol(String),
    #[error("the IMAP server did not answer {0} in time")]
    Timeout(&'static str),
    #[error("storing a message failed: {0}")]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImapError {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ImapError::Misconfigured(_) => "misconfigured",
            ImapError::Connect(_) => "connect",
            ImapError::Tls(_) => "tls",
            ImapError::LoginRefused(_) => "login_refused",
            ImapError::Refused { .. } => "refused",
            ImapError::Protocol(_) => "protocol",
            ImapError::Timeout(_) => "timeout",
            ImapError::Ingest(_) => "ingest",
            ImapError::Store(_) => "store",
        }
    }
}

/// An `async-imap` error from `command`.
fn imap_error(command: &'static str) -> impl FnOnce(async_imap::error::Error) -> ImapError {
    move |e| match e {
        async_imap::error::Error::No(message) | async_imap::error::Error::Bad(message) => {
            ImapError::Refused { command, message }
        }
        other => ImapError::Protocol(format!("{command}: {other}")),
    }
}

/// `f`, failing with [`ImapError::Timeout`] after `limit`.
async fn timed<T, E>(
    limit: Duration,
    command: &'static str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, ImapError>
where
    E: Into<async_imap::error::Error>,
{
    match tokio::time::timeout(limit, f).await {
        Ok(result) => result.map_err(|e| imap_error(command)(e.into())),
        Err(_) => Err(ImapError::Timeout(command)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Tls,
    StartTls,
    None,
}

/// One account's mailbox, as its settings and secrets describe it.
struct ImapConfig {
    host: String,
    port: u16,
    security: Security,
    username: String,
    password: String,
    mailbox: String,
    ca_pem: Option<String>,
    poll: Duration,
}

fn text<'a>(settings: &'a Value, key: &str) -> Option<&'a str> {
    settings[key].as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn number(settings: &Value, key: &str) -> Result<Option<u64>, ImapError> {
    match &settings[key] {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ImapError::Misconfigured(format!("`{key}` must be a whole number"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ImapError::Misconfigured(format!("`{key}` must be a whole number"))),
        _ => Err(ImapError::Misconfigured(format!("`{key}` must be a whole number"))),
    }
}

fn has_imap_host(account: &ChannelAccount) -> bool {
    serde_json::from_str::<Value>(&account.settings_json).is_ok_and(|s| text(&s, "imap_host").is_some())
}

fn config_of(account: &ChannelAccount, secrets_json: &str) -> Result<ImapConfig, ImapError> {
    let settings: Value = serde_json::from_str(&account.settings_json)
        .map_err(|_| ImapError::Misconfigured("the settings are not a JSON object".into()))?;
    let secrets: Value = serde_json::from_str(secrets_json).unwrap_or_default();
    let host = text(&settings, "imap_host").ok_or_else(|| ImapError::Misconfigured("no `imap_host`".into()))?;
    let security = match text(&settings, "imap_security").unwrap_or("tls") {
        "tls" => Security::Tls,
        "starttls" => Security::StartTls,
        "none" => Security::None,
        other => {
            return Err(ImapError::Misconfigured(format!(
                "`imap_security` is `{other}`, not `tls`, `starttls` or `none`"
            )));
        }
    };
    let port = match number(&settings, "imap_port")? {
        None if security == Security::Tls => 993,
        None => 143,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ImapError::Misconfigured("`imap_port` must be a port number".into()))?,
    };
    let username = text(&settings, "imap_username")
        .or_else(|| text(&settings, "address"))
        .ok_or_else(|| ImapError::Misconfigured("no `imap_username`".into()))?;
    let password = secrets["imap_password"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ImapError::Misconfigured("no `imap_password` secret".into()))?;
    let poll = match number(&settings, "imap_poll_secs")? {
        None => DEFAULT_POLL,
        Some(s) => Duration::from_secs(s.clamp(1, MAX_POLL_SECS)),
    };
    Ok(ImapConfig {
        host: host.to_owned(),
        port,
        security,
        username: username.to_owned(),
        password: password.to_owned(),
        mailbox: text(&settings, "imap_mailbox").unwrap_or("INBOX").to_owned(),
        ca_pem: text(&settings, "imap_ca_pem").map(str::to_owned),
        poll,
    })
}

/// The connection under the IMAP session: plain TCP, or TLS (from the start or after
/// `STARTTLS`).
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Session = async_imap::Session<Transport>;

/// The webpki roots, plus the account's own CA when it has one.
fn tls_connector(ca_pem: Option<&str>) -> Result<TlsConnector, ImapError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ImapError::Misconfigured(format!("`imap_ca_pem`: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ImapError::Misconfigured(format!("`imap_ca_pem`: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ImapError::Misconfigured("`imap_ca_pem` holds no certificate".into()));
        }
    }
    // The provider is explicit: with more than one compiled into the build there is no
    // process default.
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn tls_handshake(config: &ImapConfig, tcp: TcpStream) -> Result<Transport, ImapError> {
    let connector = tls_connector(config.ca_pem.as_deref())?;
    let name = ServerName::try_from(config.host.clone())
        .map_err(|e| ImapError::Misconfigured(format!("`imap_host` is not a valid server name: {e}")))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(ImapError::Tls(e.to_string())),
        Err(_) => Err(ImapError::Timeout("the TLS handshake")),
    }
}

/// Connects, reads the greeting, upgrades with `STARTTLS` when configured, and logs in.
async fn connect(config: &ImapConfig) -> Result<Session, ImapError> {
    let address = format!("{}:{}", config.host, config.port);
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((config.host.as_str(), config.port))).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(ImapError::Connect(format!("{address}: {e}"))),
        Err(_) => return Err(ImapError::Timeout("the connection")),
    };
    let _ = tcp.set_nodelay(true);
    let stream = match config.security {
        Security::Tls => tls_handshake(config, tcp).await?,
        Security::StartTls | Security::None => Transport::Plain(tcp),
    };
    let mut client = async_imap::Client::new(stream);
    let greeting = match tokio::time::timeout(COMMAND_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(greeting))) => greeting,
        Ok(Ok(None)) => return Err(ImapError::Connect(format!("{address} closed the connection"))),
        Ok(Err(e)) => return Err(ImapError::Connect(format!("{address}: {e}"))),
        Err(_) => return Err(ImapError::Timeout("the greeting")),
    };
    if let Response::Data {
        status: Status::Bye,
        outcome,
    } = greeting.parsed()
    {
        return Err(ImapError::Connect(format!(
            "{address} turned us away: {}",
            outcome.information.as_deref().unwrap_or("BYE")
        )));
    }
    if config.security == Security::StartTls {
        timed(
            COMMAND_TIMEOUT,
            "STARTTLS",
            client.run_command_and_check_ok("STARTTLS", None),
        )
        .await?;
        // Whatever the server sent after its answer is dropped with the plain stream.
        let Transport::Plain(tcp) = client.into_inner() else {
            unreachable!("STARTTLS starts on a plain connection")
        };
        client = async_imap::Client::new(tls_handshake(config, tcp).await?);
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, client.login(&config.username, &config.password)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m), _))) => {
            Err(ImapError::LoginRefused(m))
        }
        Ok(Err((e, _))) => Err(ImapError::Protocol(format!("LOGIN: {e}"))),
        Err(_) => Err(ImapError::Timeout("LOGIN")),
    }
}

/// What one read pass needs.
struct Target<'a> {
    store: &'a Store,
    channels: &'a Channels,
    intake: &'a Intake,
    account: &'a ChannelAccount,
    mailbox: &'a str,
}

impl Target<'_> {
    async fn save(&self, uid_validity: i64, last_uid: i64) -> Result<(), StoreError> {
        let (ws, id, mailbox, now) = (
            self.account.workspace_id.clone(),
            self.account.id.clone(),
            self.mailbox.to_owned(),
            self.store.now(),
        );
        self.store
            .db
            .write(move |c| mailbox_sync::save(c, &ws, &id, &mailbox, uid_validity, last_uid, now))
            .await
    }
}

/// Opens the mailbox and takes in every message past the saved position, in UID order.
/// Returns how many were stored (duplicates and refused messages are not counted).
async fn read_new(session: &mut Session, target: &Target<'_>) -> Result<usize, ImapError> {
    let account = target.account.id.as_str();
    let selected = timed(COMMAND_TIMEOUT, "EXAMINE", session.examine(target.mailbox)).await?;
    let validity = i64::from(
        selected
            .uid_validity
            .ok_or_else(|| ImapError::Protocol("EXAMINE: the server reported no UIDVALIDITY".into()))?,
    );
    let (id, mailbox) = (target.account.id.clone(), target.mailbox.to_owned());
    let saved = target
        .store
        .db
        .read(move |c| mailbox_sync::get(c, &id, &mailbox))
        .await?;
    let last = match saved {
        Some((saved_validity, last)) if saved_validity == validity => last,
        previous => {
            if let Some((old, _)) = previous {
                tracing::info!(
                    account,
                    old,
                    new = validity,
                    "the mailbox's UIDVALIDITY changed; reading it again from the start"
                );
            }
            target.save(validity, 0).await?;
            0
        }
    };
    if selected.exists == 0 {
        return Ok(0);
    }
    let from = u32::try_from(last + 1).unwrap_or(u32::MAX);
    let found = timed(
        COMMAND_TIMEOUT,
        "UID SEARCH",
        session.uid_search(format!("UID {from}:*")),
    )
    .await?;
    // `n:*` names the highest UID even when it is below n.
    let mut uids: Vec<u32> = found.into_iter().filter(|uid| i64::from(*uid) > last).collect();
    uids.sort_unstable();
    let mut stored = 0;
    for batch in uids.chunks(FETCH_BATCH) {
        let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut bodies = fetch_bodies(session, &set).await?;
        for &uid in batch {
            match bodies.remove(&uid) {
                Some(body) => {
                    if ingest(target, uid, body).await? {
                        stored += 1;
                    }
                }
                // Expunged between the search and the fetch: nothing left to read.
                None => tracing::warn!(account, uid, "the message went away before it could be read"),
            }
            target.save(validity, i64::from(uid)).await?;
        }
    }
    Ok(stored)
}

/// The bodies of the messages in `set`, by UID (without setting `\Seen`).
async fn fetch_bodies(session: &mut Session, set: &str) -> Result<BTreeMap<u32, Vec<u8>>, ImapError> {
    timed(FETCH_TIMEOUT, "UID FETCH", async {
        let mut bodies = BTreeMap::new();
        let mut responses = session.uid_fetch(set, "(UID BODY.PEEK[])").await?;
        while let Some(fetch) = responses.try_next().await? {
            // Other FETCH responses (another client's flag changes) carry no body.
            if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                bodies.insert(uid, body.to_vec());
            }
        }
        Ok::<_, async_imap::error::Error>(bodies)
    })
    .await
}

/// Stores one message; `true` when it is new. A message our parser refuses is skipped for
/// good (it would be refused again); any other failure stops the pass before the position
/// moves.
async fn ingest(target: &Target<'_>, uid: u32, body: Vec<u8>) -> Result<bool, ImapError> {
    let account = target.account.id.as_str();
    let outcome = sb_inbox::ingest_trusted(target.store, target.channels, target.intake, CHANNEL, account, body).await;
    let (label, new) = match outcome {
        Ok(IngestOutcome::Accepted) => ("accepted", true),
        Ok(IngestOutcome::Duplicate) => ("duplicate", false),
        Err(IngestError::Channel(ChannelError::Malformed(reason))) => {
            tracing::warn!(account, uid, %reason, "skipping a message that cannot be read as e-mail");
            ("malformed", false)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(account, uid, outcome = label, "read a message");
    metrics::counter!("switchboard_imap_messages_total", "outcome" => label).increment(1);
    Ok(new)
}

/// Empties the queue of responses the server sent on its own; whether new mail was among
/// them (mail that arrived during a pass, which the next `IDLE` would not announce again).
fn new_mail_announced(session: &Session) -> bool {
    let mut announced = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        announced |= matches!(
            response,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    announced
}

/// A server response, as far as `IDLE` cares.
enum Event {
    /// `+ idling`.
    Continuation,
    /// The tagged completion of our command.
    Completed(Result<(), String>),
    NewMail,
    Bye(String),
    Other,
}

async fn next_event(session: &mut Session, tag: &RequestId, limit: Duration) -> Result<Event, ImapError> {
    let response = match tokio::time::timeout(limit, session.read_response()).await {
        Ok(Ok(Some(response))) => response,
        Ok(Ok(None)) => return Err(ImapError::Protocol("IDLE: the server closed the connection".into())),
        Ok(Err(e)) => return Err(ImapError::Protocol(format!("IDLE: {e}"))),
        Err(_) => return Err(ImapError::Timeout("IDLE")),
    };
    let information =
        |outcome: &async_imap::imap_proto::Outcome<'_>| outcome.information.as_deref().unwrap_or_default().to_owned();
    Ok(match response.parsed() {
        Response::Continue { .. } => Event::Continuation,
        Response::Done {
            tag: done,
            status,
            outcome,
        } if done == tag => Event::Completed(match status {
            Status::Ok => Ok(()),
            _ => Err(information(outcome)),
        }),
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => Event::NewMail,
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Event::Bye(information(outcome)),
        _ => Event::Other,
    })
}

/// Waits in `IDLE` until the server announces new mail or `renew` passes, then ends it.
async fn idle(session: &mut Session, renew: Duration) -> Result<(), ImapError> {
    let tag = timed(COMMAND_TIMEOUT, "IDLE", session.run_command("IDLE")).await?;
    let refused = |message: String| ImapError::Refused {
        command: "IDLE",
        message,
    };
    let bye = |message: String| ImapError::Protocol(format!("the server closed the session: {message}"));
    // What the server reports before it idles counts too.
    let mut woken = false;
    loop {
        match next_event(session, &tag, COMMAND_TIMEOUT).await? {
            Event::Continuation => break,
            Event::Completed(result) => return result.map_err(refused),
            Event::Bye(message) => return Err(bye(message)),
            Event::NewMail => woken = true,
            Event::Other => {}
        }
    }
    tracing::debug!("idling");
    let deadline = tokio::time::Instant::now() + renew;
    while !woken {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_event(session, &tag, left).await {
            // Time to renew.
            Err(ImapError::Timeout(_)) => break,
            Err(e) => return Err(e),
            // The server ended it (some do after a while): the caller reads and idles anew.
            Ok(Event::Completed(result)) => return result.map_err(refused),
            Ok(Event::Bye(message)) => return Err(bye(message)),
            Ok(Event::NewMail) => woken = true,
            Ok(Event::Continuation | Event::Other) => {}
        }
    }
    timed(COMMAND_TIMEOUT, "DONE", session.run_command_untagged("DONE")).await?;
    loop {
        match next_event(session, &tag, COMMAND_TIMEOUT).await? {
            Event::Completed(result) => return result.map_err(refused),
            Event::Bye(message) => return Err(bye(message)),
            Event::Continuation | Event::NewMail | Event::Other => {}
        }
    }
}

/// Everything a reader shares with the others.
#[derive(Clone)]
struct Shared {
    store: Store,
    channels: Channels,
    intake: Intake,
}

/// One connection's life: read, wait for more, read again — until something fails.
/// `healthy` turns true once a pass has succeeded (the back-off then starts over).
async fn follow(
    shared: &Shared,
    account: &ChannelAccount,
    config: &ImapConfig,
    healthy: &mut bool,
) -> Result<Infallible, ImapError> {
    let mut session = connect(config).await?;
    let can_idle = timed(COMMAND_TIMEOUT, "CAPABILITY", session.capabilities())
        .await?
        .has_str("IDLE");
    tracing::info!(account = %account.id, mailbox = %config.mailbox, idle = can_idle, "reading the mailbox");
    let target = Target {
        store: &shared.store,
        channels: &shared.channels,
        intake: &shared.intake,
        account,
        mailbox: &config.mailbox,
    };
    loop {
        let stored = read_new(&mut session, &target).await?;
        if stored > 0 {
            tracing::info!(account = %account.id, stored, "took in new mail");
        }
        *healthy = true;
        if new_mail_announced(&session) {
            continue;
        }
        if can_idle {
            idle(&mut session, IDLE_RENEW).await?;
        } else {
            tokio::time::sleep(config.poll).await;
        }
    }
}

/// A reader: [`follow`] again and again, backing off after failures.
async fn read_forever(shared: Shared, account: ChannelAccount, config: ImapConfig) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut healthy = false;
        let Err(e) = follow(&shared, &account, &config, &mut healthy).await;
        if healthy {
            backoff = MIN_BACKOFF;
        }
        metrics::counter!("switchboard_imap_errors_total", "kind" => e.kind()).increment(1);
        tracing::warn!(account = %account.id, error = %e, retry_in_secs = backoff.as_secs(), "reading the mailbox failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connect and read pass for an account (tests, a "sync now" action): how many messages
/// were stored.
pub async fn sync_once(
    store: &Store,
    channels: &Channels,
    intake: &Intake,
    account: &ChannelAccount,
    secrets_json: &str,
) -> Result<usize, ImapError> {
    let result: Result<usize, ImapError> = async {
        let config = config_of(account, secrets_json)?;
        let mut session = connect(&config).await?;
        let target = Target {
            store,
            channels,
            intake,
            account,
            mailbox: &config.mailbox,
        };
        let stored = read_new(&mut session, &target).await?;
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, session.logout()).await;
        Ok(stored)
    }
    .await;
    if let Err(e) = &result {
        metrics::counter!("switchboard_imap_errors_total", "kind" => e.kind()).increment(1);
    }
    result
}

/// A reader the supervisor started, and what it was started with.
struct Running {
    fingerprint: u64,
    /// `None` when the settings are unusable (the account waits for them to change).
    task: Option<JoinHandle<()>>,
}

fn fingerprint(account: &ChannelAccount, secrets_json: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    account.settings_json.hash(&mut hasher);
    secrets_json.hash(&mut hasher);
    hasher.finish()
}

async fn stop_reader(running: Running) {
    if let Some(task) = running.task {
        task.abort();
        let _ = task.await;
    }
}

/// Makes the running readers match the accounts: one per account with an `imap_host`,
/// restarted when its settings or secrets changed (or it ended), stopped when it is gone.
async fn reconcile(shared: &Shared, readers: &mut HashMap<String, Running>, accounts: Vec<(ChannelAccount, String)>) {
    let mut wanted = HashSet::new();
    for (account, secrets) in accounts {
        if !has_imap_host(&account) {
            continue;
        }
        wanted.insert(account.id.clone());
        let fingerprint = fingerprint(&account, &secrets);
        if let Some(running) = readers.remove(&account.id) {
            let alive = running.task.as_ref().is_none_or(|t| !t.is_finished());
            if running.fingerprint == fingerprint && alive {
                readers.insert(account.id.clone(), running);
                continue;
            }
            tracing::info!(account = %account.id, "the account changed; restarting its mailbox reader");
            stop_reader(running).await;
        }
        let task = match config_of(&account, &secrets) {
            Ok(config) => Some(tokio::spawn(read_forever(shared.clone(), account.clone(), config))),
            Err(e) => {
                metrics::counter!("switchboard_imap_errors_total", "kind" => e.kind()).increment(1);
                tracing::warn!(account = %account.id, error = %e, "not reading this account's mailbox");
                None
            }
        };
        readers.insert(account.id, Running { fingerprint, task });
    }
    let gone: Vec<String> = readers.keys().filter(|id| !wanted.contains(*id)).cloned().collect();
    for id in gone {
        if let Some(running) = readers.remove(&id) {
            tracing::info!(account = %id, "the account is gone or disabled; stopping its mailbox reader");
            stop_reader(running).await;
        }
    }
}

/// Starts the supervisor: at once and every 30 s it lists the enabled e-mail accounts with an
/// `imap_host` and keeps exactly one reader per account. Ends (stopping every reader) when
/// `stop` turns true or its sender goes away.
pub fn spawn(store: Store, channels: Channels, intake: Intake, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shared = Shared {
            store,
            channels,
            intake,
        };
        let mut readers: HashMap<String, Running> = HashMap::new();
        while !*stop.borrow() {
            let listed = shared
                .store
                .db
                .read(|c| channel_accounts::enabled_of_kind(c, CHANNEL))
                .await;
            match listed {
                Ok(accounts) => reconcile(&shared, &mut readers, accounts).await,
                // The readers keep going; the next scan tries again.
                Err(e) => tracing::warn!(error = %e, "cannot list the e-mail accounts"),
            }
            metrics::gauge!("switchboard_imap_readers")
                .set(readers.values().filter(|r| r.task.is_some()).count() as f64);
            tokio::select! {
                _ = tokio::time::sleep(SCAN_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, running) in readers.drain() {
            stop_reader(running).await;
        }
        metrics::gauge!("switchboard_imap_readers").set(0.0);
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
    use sb_store::Db;
    use serde_json::json;

    use super::*;

    fn account(settings: Value) -> ChannelAccount {
        ChannelAccount {
            id: "01JF8Z7Q3V5M8R2T4X6Y8Z0A1B".into(),
            workspace_id: "ws".into(),
            channel: CHANNEL.into(),
            name: "Support".into(),
            settings_json: settings.to_string(),
            disabled: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    const SECRETS: &str = r#"{"imap_password": "pw"}"#;

    #[test]
    fn settings_have_sensible_defaults() {
        let config = config_of(
            &account(json!({"address": "support@acme.example", "imap_host": "imap.acme.example"})),
            SECRETS,
        )
        .unwrap();
        assert_eq!(
            (
                config.port,
                config.security,
                config.username.as_str(),
                config.mailbox.as_str()
            ),
            (993, Security::Tls, "support@acme.example", "INBOX")
        );
        assert_eq!(config.poll, DEFAULT_POLL);
        assert!(config.ca_pem.is_none());

        let config = config_of(
            &account(
                json!({"imap_host": "h", "imap_security": "starttls", "imap_username": "u",
                "imap_mailbox": "Support", "imap_poll_secs": 0}),
            ),
            SECRETS,
        )
        .unwrap();
        assert_eq!(
            (config.port, config.security, config.mailbox.as_str()),
            (143, Security::StartTls, "Support")
        );
        assert_eq!(config.poll, Duration::from_secs(1));
        let config = config_of(
            &account(json!({"imap_host": "h", "imap_username": "u", "imap_port": "1993"})),
            SECRETS,
        )
        .unwrap();
        assert_eq!(config.port, 1993);
    }

    #[test]
    fn unusable_settings_are_refused() {
        for (settings, secrets) in [
            (json!({"imap_username": "u"}), SECRETS),
            (json!({"imap_host": "h", "imap_username": "u"}), "{}"),
            (
                json!({"imap_host": "h", "imap_username": "u"}),
                r#"{"imap_password": ""}"#,
            ),
            (json!({"imap_host": "h"}), SECRETS),
            (
                json!({"imap_host": "h", "imap_username": "u", "imap_security": "ssl"}),
                SECRETS,
            ),
            (
                json!({"imap_host": "h", "imap_username": "u", "imap_port": 70000}),
                SECRETS,
            ),
            (json!({"imap_host": "h", "imap_username": "u", "imap_port": 0}), SECRETS),
            (
                json!({"imap_host": "h", "imap_username": "u", "imap_poll_secs": -5}),
                SECRETS,
            ),
        ] {
            let result = config_of(&account(settings.clone()), secrets);
            assert!(matches!(result, Err(ImapError::Misconfigured(_))), "{settings}");
        }
    }

    #[test]
    fn a_ca_that_is_not_a_certificate_is_refused() {
        assert!(tls_connector(None).is_ok());
        assert!(matches!(
            tls_connector(Some("not a certificate")),
            Err(ImapError::Misconfigured(_))
        ));
    }

    async fn shared() -> (tempfile::TempDir, Shared) {
        let dir = tempfile::tempdir().unwrap();
        let executor = SqliteExecutor::open(&SqliteOptions::new(dir.path().join("db"))).unwrap();
        let store = Store::new(Db::new(Arc::new(executor)), Arc::new(sb_core::SystemClock));
        let shared = Shared {
            store,
            channels: Channels::new(Vec::new()),
            intake: Intake::default(),
        };
        (dir, shared)
    }

    /// A closed port: the reader keeps retrying, so its task stays alive.
    fn reader_account(port: u16, extra: Value) -> ChannelAccount {
        let mut settings = json!({"imap_host": "127.0.0.1", "imap_port": port, "imap_security": "none",
            "imap_username": "u"});
        for (k, v) in extra.as_object().unwrap() {
            settings[k] = v.clone();
        }
        account(settings)
    }

    fn task_id(readers: &HashMap<String, Running>, id: &str) -> Option<tokio::task::Id> {
        readers.get(id).and_then(|r| r.task.as_ref()).map(|t| t.id())
    }

    #[tokio::test]
    async fn the_supervisor_keeps_one_reader_per_account_and_follows_changes() {
        let (_dir, shared) = shared().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut readers = HashMap::new();
        let reading = reader_account(port, json!({}));
        let id = reading.id.clone();
        let mut no_imap = reader_account(port, json!({}));
        no_imap.id = "01JF8Z7Q3V5M8R2T4X6Y8Z0A1C".into();
        no_imap.settings_json = json!({"address": "sales@acme.example"}).to_string();

        reconcile(
            &shared,
            &mut readers,
            vec![(reading.clone(), SECRETS.into()), (no_imap, SECRETS.into())],
        )
        .await;
        assert_eq!(readers.len(), 1, "only accounts with an imap_host");
        let first = task_id(&readers, &id).expect("a reader");

        // Unchanged: the same reader.
        reconcile(&shared, &mut readers, vec![(reading.clone(), SECRETS.into())]).await;
        assert_eq!(task_id(&readers, &id), Some(first));

        // A new secret: a new reader.
        reconcile(
            &shared,
            &mut readers,
            vec![(reading.clone(), r#"{"imap_password": "new"}"#.into())],
        )
        .await;
        let second = task_id(&readers, &id).expect("a reader");
        assert_ne!(second, first);

        // Changed settings that cannot work: no reader, and none restarted until they change.
        let broken = reader_account(port, json!({"imap_security": "ssl"}));
        reconcile(&shared, &mut readers, vec![(broken.clone(), SECRETS.into())]).await;
        assert!(readers.get(&id).is_some_and(|r| r.task.is_none()));
        reconcile(&shared, &mut readers, vec![(broken, SECRETS.into())]).await;
        assert!(readers.get(&id).is_some_and(|r| r.task.is_none()));

        // Fixed, then gone (deleted or disabled): started, then stopped.
        reconcile(&shared, &mut readers, vec![(reading, SECRETS.into())]).await;
        assert!(task_id(&readers, &id).is_some());
        reconcile(&shared, &mut readers, Vec::new()).await;
        assert!(readers.is_empty());
    }

    #[tokio::test]
    async fn the_supervisor_stops_when_told() {
        let (_dir, shared) = shared().await;
        shared.store.migrate().await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let supervisor = spawn(shared.store, shared.channels, shared.intake, stopped);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .unwrap()
            .unwrap();
    }
}
