//! An SMTP listener for MX-style delivery (RFC 5321): mail for an e-mail account's address
//! (or its `+tag` and VERP `bounce+…` forms) is stored through the same ingest as every
//! other channel, and `250` is answered only once it is durably stored. Mail for nobody
//! here is refused at RCPT; a message our parser refuses gets `550 5.6.0` and nothing is
//! stored; a storage failure gets `451` so the sender's server tries again later.
//!
//! Commands: EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffed, size-limited), RSET, NOOP, VRFY,
//! QUIT; pipelined commands are answered in order. No AUTH: this is the receiving end, not a
//! submission server.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sb_channels::ChannelError;
use sb_inbox::{Channels, IngestError, IngestOutcome, Intake};
use sb_store::Store;
use smtp_proto::Request;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Longest command line (RFC 5321 §4.5.3.1.4 says 512; extensions make it longer).
const MAX_LINE: usize = 4096;
/// How long a client may stay silent.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_RECIPIENTS: usize = 100;
/// Bad commands before the connection is closed.
const MAX_ERRORS: u32 = 10;
/// Accounts are re-read this often (a new address is accepted within this long).
const ACCOUNTS_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The name in the greeting and `Received:` lines.
    pub hostname: String,
    /// Largest message accepted (`SIZE`).
    pub max_message_bytes: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "switchboard.localhost".into(),
            max_message_bytes: 25 * 1024 * 1024,
        }
    }
}

/// What the listener needs from the rest of the product.
#[derive(Clone)]
pub struct Ingress {
    pub store: Store,
    pub channels: Channels,
    pub intake: Intake,
}

/// Account id by address.
type AddressMap = Arc<HashMap<String, String>>;

/// Addresses we accept mail for, refreshed every few seconds.
#[derive(Default)]
struct Mailboxes {
    cached: Mutex<Option<(Instant, AddressMap)>>,
}

impl Mailboxes {
    async fn load(&self, store: &Store) -> Result<AddressMap, sb_store::StoreError> {
        if let Some((at, map)) = &*self.cached.lock().expect("mailboxes")
            && at.elapsed() < ACCOUNTS_TTL
        {
            return Ok(Arc::clone(map));
        }
        let accounts = store
            .db
            .read(|c| sb_store::channel_accounts::enabled_of_kind(c, sb_channels::email::KIND))
            .await?;
        let map: HashMap<String, String> = accounts
            .into_iter()
            .filter_map(|(account, _)| {
                let settings: serde_json::Value = serde_json::from_str(&account.settings_json).ok()?;
                let address = sb_core::inbox::normalise_email(settings["address"].as_str()?)?;
                Some((address, account.id))
            })
            .collect();
        let map = Arc::new(map);
        *self.cached.lock().expect("mailboxes") = Some((Instant::now(), Arc::clone(&map)));
        Ok(map)
    }

    /// The account an address reaches: exact, or `local+tag@domain` (replies, VERP bounces)
    /// to an account at `local@domain` or, for `bounce+…`, any account of the domain.
    fn account_for(map: &HashMap<String, String>, address: &str) -> Option<String> {
        let address = sb_core::inbox::normalise_email(address)?;
        if let Some(id) = map.get(&address) {
            return Some(id.clone());
        }
        let (local, domain) = address.rsplit_once('@')?;
        let (base, _tag) = local.split_once('+')?;
        if let Some(id) = map.get(&format!("{base}@{domain}")) {
            return Some(id.clone());
        }
        (base == "bounce").then(|| {
            map.iter()
                .filter(|(a, _)| a.ends_with(&format!("@{domain}")))
                .map(|(_, id)| id.clone())
                .min()
        })?
    }
}

/// Accepts connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    ingress: Ingress,
    config: SmtpConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mailboxes = Arc::new(Mailboxes::default());
    let config = Arc::new(config);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (ingress, config, mailboxes) = (ingress.clone(), Arc::clone(&config), Arc::clone(&mailboxes));
                tokio::spawn(async move {
                    let (read, write) = stream.into_split();
                    if let Err(e) = session(read, write, peer, &ingress, &config, &mailboxes).await {
                        tracing::debug!(%peer, error = %e, "an SMTP session ended with an error");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
}

/// One message being received.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    /// Account ids, each once.
    accounts: BTreeSet<String>,
    recipients: usize,
}

async fn reply(w: &mut (impl AsyncWrite + Unpin), text: &str) -> std::io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// Reads one line (CRLF or LF), at most `MAX_LINE` bytes; `None` at end of stream.
async fn read_line(r: &mut (impl AsyncBufReadExt + Unpin), buf: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    buf.clear();
    let read = tokio::time::timeout(IDLE_TIMEOUT, (&mut *r).take(MAX_LINE as u64 + 1).read_until(b'\n', buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if read == 0 {
        return Ok(None);
    }
    Ok(Some(()))
}

async fn session(
    read: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    peer: SocketAddr,
    ingress: &Ingress,
    config: &SmtpConfig,
    mailboxes: &Mailboxes,
) -> std::io::Result<()> {
    let mut r = BufReader::new(read);
    reply(&mut w, &format!("220 {} ESMTP Switchboard", config.hostname)).await?;
    let mut helo: Option<String> = None;
    let mut tx = Transaction::default();
    let mut errors = 0;
    let mut line = Vec::with_capacity(256);
    while read_line(&mut r, &mut line).await?.is_some() {
        if line.len() > MAX_LINE {
            reply(&mut w, "500 5.5.6 line too long").await?;
            return Ok(());
        }
        let request = Request::parse(&mut line.iter()).map(|r| r.into_owned());
        let answer = match request {
            Ok(Request::Ehlo { host }) => {
                helo = Some(host);
                tx = Transaction::default();
                format!(
                    "250-{} greets you\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE {}",
                    config.hostname, config.max_message_bytes
                )
            }
            Ok(Request::Helo { host }) => {
                helo = Some(host);
                tx = Transaction::default();
                format!("250 {}", config.hostname)
            }
            Ok(Request::Mail { from }) if helo.is_none() => {
                let _ = from;
                "503 5.5.1 say EHLO first".into()
            }
            Ok(Request::Mail { from }) => {
                if from.size > config.max_message_bytes {
                    "552 5.3.4 message too large".into()
                } else {
                    tx = Transaction {
                        from: Some(from.address),
                        ..Transaction::default()
                    };
                    "250 2.1.0 sender ok".into()
                }
            }
            Ok(Request::Rcpt { .. }) if tx.from.is_none() => "503 5.5.1 MAIL first".into(),
            Ok(Request::Rcpt { to }) => {
                if tx.recipients >= MAX_RECIPIENTS {
                    "452 4.5.3 too many recipients".into()
                } else {
                    match mailboxes.load(&ingress.store).await {
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the e-mail accounts");
                            "451 4.3.0 try again later".into()
                        }
                        Ok(map) => match Mailboxes::account_for(&map, &to.address) {
                            Some(account) => {
                                tx.accounts.insert(account);
                                tx.recipients += 1;
                                "250 2.1.5 recipient ok".into()
                            }
                            None => "550 5.1.1 no such mailbox here".into(),
                        },
                    }
                }
            }
            Ok(Request::Data) if tx.accounts.is_empty() => "503 5.5.1 RCPT first".into(),
            Ok(Request::Data) => {
                reply(&mut w, "354 end data with <CR><LF>.<CR><LF>").await?;
                let Some(body) = read_data(&mut r, config.max_message_bytes).await? else {
                    tx = Transaction::default();
                    reply(&mut w, "552 5.3.4 message too large").await?;
                    continue;
                };
                let received = format!(
                    "Received: from {} ([{}]) by {} with ESMTP\r\n",
                    helo.as_deref().unwrap_or("unknown"),
                    peer.ip(),
                    config.hostname
                );
                let mut raw = received.into_bytes();
                raw.extend_from_slice(&body);
                let answer = deliver(ingress, &tx.accounts, raw).await;
                tx = Transaction::default();
                answer
            }
            Ok(Request::Rset) => {
                tx = Transaction::default();
                "250 2.0.0 reset".into()
            }
            Ok(Request::Noop { .. }) => "250 2.0.0 ok".into(),
            Ok(Request::Vrfy { .. }) => "252 2.5.2 send some mail and see".into(),
            Ok(Request::Quit) => {
                reply(&mut w, "221 2.0.0 bye").await?;
                return Ok(());
            }
            Ok(Request::StartTls | Request::Auth { .. }) => "502 5.5.1 not offered on this listener".into(),
            Ok(_) => "502 5.5.1 command not implemented".into(),
            Err(smtp_proto::Error::InvalidSenderAddress) => "501 5.1.7 bad sender address".into(),
            Err(smtp_proto::Error::InvalidRecipientAddress) => "501 5.1.3 bad recipient address".into(),
            Err(smtp_proto::Error::UnknownCommand) => "500 5.5.2 unknown command".into(),
            Err(_) => "501 5.5.4 syntax error".into(),
        };
        if answer.starts_with('5') {
            errors += 1;
            if errors > MAX_ERRORS {
                reply(&mut w, "421 4.7.0 too many errors").await?;
                return Ok(());
            }
        }
        reply(&mut w, &answer).await?;
    }
    Ok(())
}

/// Reads the message after DATA up to `.` alone on a line, undoing dot-stuffing; `None`
/// when it is larger than allowed (the rest is read and dropped).
async fn read_data(r: &mut (impl AsyncBufReadExt + Unpin), max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::with_capacity(8 * 1024);
    let mut line = Vec::with_capacity(1024);
    let mut too_large = false;
    loop {
        line.clear();
        let read = tokio::time::timeout(IDLE_TIMEOUT, r.read_until(b'\n', &mut line))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle in DATA"))??;
        if read == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed in DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        if body.len() + content.len() > max {
            too_large = true;
            body.clear();
        }
        if !too_large {
            body.extend_from_slice(content);
        }
    }
    Ok((!too_large).then_some(body))
}

/// Stores the message for each account it reached; the reply says whether it is ours now.
async fn deliver(ingress: &Ingress, accounts: &BTreeSet<String>, raw: Vec<u8>) -> String {
    let mut stored = 0;
    for account in accounts {
        let outcome = sb_inbox::ingest_trusted(
            &ingress.store,
            &ingress.channels,
            &ingress.intake,
            sb_channels::email::KIND,
            account,
            raw.clone(),
        )
        .await;
        match outcome {
            Ok(IngestOutcome::Accepted | IngestOutcome::Duplicate) => stored += 1,
            Err(IngestError::Channel(ChannelError::Malformed(why))) => {
                metrics::counter!("switchboard_smtp_refused_total").increment(1);
                return format!(
                    "550 5.6.0 the message cannot be read: {}",
                    why.replace(['\r', '\n'], " ")
                );
            }
            Err(IngestError::UnknownAccount | IngestError::Disabled) => {}
            Err(e) => {
                tracing::warn!(account_id = %account, error = %e, "could not store a received e-mail");
                return "451 4.3.0 could not store the message; try again later".into();
            }
        }
    }
    if stored == 0 {
        return "550 5.1.1 no such mailbox here".into();
    }
    metrics::counter!("switchboard_smtp_received_total").increment(1);
    "250 2.0.0 stored".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_verp_addresses_reach_their_account() {
        let map: HashMap<String, String> = [
            ("support@acme.example".to_owned(), "A".to_owned()),
            ("sales@acme.example".to_owned(), "B".to_owned()),
        ]
        .into();
        assert_eq!(
            Mailboxes::account_for(&map, "Support@ACME.example").as_deref(),
            Some("A")
        );
        assert_eq!(
            Mailboxes::account_for(&map, "support+c-42@acme.example").as_deref(),
            Some("A")
        );
        assert_eq!(
            Mailboxes::account_for(&map, "bounce+01JF@acme.example").as_deref(),
            Some("A")
        );
        assert_eq!(Mailboxes::account_for(&map, "nobody@acme.example"), None);
        assert_eq!(Mailboxes::account_for(&map, "support@elsewhere.example"), None);
    }

    #[tokio::test]
    async fn data_is_dot_unstuffed_and_size_limited() {
        let input = b"line one\r\n..starts with a dot\r\n.\r\nNOOP\r\n";
        let mut r = BufReader::new(&input[..]);
        let body = read_data(&mut r, 1000).await.unwrap().unwrap();
        assert_eq!(body, b"line one\r\n.starts with a dot\r\n");
        let mut r = BufReader::new(&input[..]);
        assert!(read_data(&mut r, 5).await.unwrap().is_none());
    }
}
