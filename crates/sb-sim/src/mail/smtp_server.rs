//! The SMTP server (RFC 5321, STARTTLS per RFC 3207, AUTH per RFC 4954 with
//! PLAIN and LOGIN). One task per connection; a session is a small state machine
//! over lines. Replies carry RFC 3463 enhanced status codes.

use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::store::RecordedMail;
use super::{Hub, delivery};

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; AUTH lines may be longer).
const MAX_COMMAND_LINE: usize = 4_096;
/// Longest line inside DATA kept as is (998 + CRLF is the RFC limit; be lenient).
const MAX_DATA_LINE: usize = 1 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

pub(crate) async fn serve(listener: TcpListener, hub: Arc<Hub>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = hub.stopping() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let hub = Arc::clone(&hub);
                tokio::spawn(async move {
                    tokio::select! {
                        r = session(stream, Arc::clone(&hub)) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "smtp session ended with an error");
                            }
                        }
                        _ = hub.stopping() => {}
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "smtp accept failed"),
        }
    }
}

/// An open mail transaction (after MAIL FROM).
struct Transaction {
    from: String,
    rcpts: Vec<String>,
}

struct Session {
    hub: Arc<Hub>,
    helo: Option<String>,
    tls: bool,
    auth_user: Option<String>,
    tx: Option<Transaction>,
}

enum Line {
    Eof,
    TooLong,
    Data(Vec<u8>),
}

/// Reads one line including its terminator; a line over `cap` is consumed and reported as too long.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, cap: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else {
                Line::Data(buf)
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            buf.extend_from_slice(&chunk[..take]);
            if buf.len() > cap {
                too_long = true;
                buf.clear();
            }
        }
        r.consume(take);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Data(buf) });
        }
    }
}

/// Writes one reply in a single write: split writes stall on Nagle + delayed ACK.
async fn reply(conn: &mut Conn, text: &str) -> std::io::Result<()> {
    let w = conn.get_mut();
    w.write_all(format!("{text}\r\n").as_bytes()).await?;
    w.flush().await
}

/// Text of a command line without its terminator (lossy: commands are ASCII).
fn command_text(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    s.trim_end_matches(['\r', '\n']).to_string()
}

/// The path of `FROM:<a@b> SIZE=10` / `TO:<a@b>`: `(path, parameters)`, or `None` when malformed.
fn parse_path(arg: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let rest = arg
        .get(..keyword.len())?
        .eq_ignore_ascii_case(keyword)
        .then(|| &arg[keyword.len()..])?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = rest[..end].trim();
    // A source route (`@a,@b:user@c`) is accepted and ignored (RFC 5321 §4.1.2).
    let path = path
        .rsplit_once(':')
        .filter(|_| path.starts_with('@'))
        .map_or(path, |(_, p)| p);
    let params = rest[end + 1..].split_whitespace().map(str::to_string).collect();
    Some((path.to_string(), params))
}

fn size_param(params: &[String]) -> Option<usize> {
    params
        .iter()
        .find_map(|p| p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")).map(|_| &p[5..]))
        .and_then(|v| v.parse().ok())
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

async fn session(stream: TcpStream, hub: Arc<Hub>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn: Conn = BufReader::new(Box::new(stream));
    let mut s = Session {
        hub,
        helo: None,
        tls: false,
        auth_user: None,
        tx: None,
    };
    reply(
        &mut conn,
        &format!("220 {} ESMTP Switchboard mail sink", s.hub.cfg.hostname),
    )
    .await?;
    loop {
        let line = match read_line(&mut conn, MAX_COMMAND_LINE).await? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                reply(&mut conn, "500 5.5.6 Line too long").await?;
                continue;
            }
            Line::Data(l) => command_text(&l),
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => reply(&mut conn, "501 5.5.4 Syntax: EHLO hostname").await?,
            "EHLO" => {
                s.helo = Some(arg);
                s.tx = None;
                let ehlo = s.ehlo_lines();
                reply(&mut conn, &ehlo).await?;
            }
            "HELO" => {
                s.helo = Some(arg);
                s.tx = None;
                reply(&mut conn, &format!("250 {}", s.hub.cfg.hostname)).await?;
            }
            "STARTTLS" => {
                if s.tls {
                    reply(&mut conn, "503 5.5.1 TLS already active").await?;
                } else if !arg.is_empty() {
                    reply(&mut conn, "501 5.5.4 Syntax: STARTTLS").await?;
                } else {
                    reply(&mut conn, "220 2.0.0 Ready to start TLS").await?;
                    // Anything the client pipelined after STARTTLS is discarded (RFC 3207 §4.2):
                    // it was sent in clear and must not be taken as coming through TLS.
                    let plain = conn.into_inner();
                    let tls = s.hub.tls.accept(plain).await?;
                    conn = BufReader::new(Box::new(tls));
                    // RFC 3207 §4.2: forget everything learnt before TLS.
                    s.tls = true;
                    s.helo = None;
                    s.auth_user = None;
                    s.tx = None;
                }
            }
            "AUTH" => s.auth(&mut conn, &arg).await?,
            "MAIL" => {
                let r = s.mail(&arg);
                reply(&mut conn, &r).await?;
            }
            "RCPT" => {
                let r = s.rcpt(&arg);
                reply(&mut conn, &r).await?;
            }
            "DATA" => s.data(&mut conn).await?,
            "RSET" => {
                s.tx = None;
                reply(&mut conn, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut conn, "250 2.0.0 OK").await?,
            "VRFY" => reply(&mut conn, "252 2.5.2 Cannot VRFY user, but will accept message").await?,
            "HELP" => reply(&mut conn, "214 2.0.0 See RFC 5321").await?,
            "QUIT" => {
                reply(
                    &mut conn,
                    &format!("221 2.0.0 {} closing connection", s.hub.cfg.hostname),
                )
                .await?;
                return Ok(());
            }
            _ => reply(&mut conn, "500 5.5.2 Command unrecognized").await?,
        }
    }
}

impl Session {
    /// AUTH is offered before TLS only when TLS is not required (RFC 4954 §4 lets a server hide it).
    fn auth_offered(&self) -> bool {
        self.tls || !self.hub.cfg.require_tls
    }

    fn ehlo_lines(&self) -> String {
        let cfg = &self.hub.cfg;
        let mut lines = vec![
            format!("{} greets {}", cfg.hostname, self.helo.as_deref().unwrap_or("")),
            format!("SIZE {}", cfg.max_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    async fn auth(&mut self, conn: &mut Conn, arg: &str) -> std::io::Result<()> {
        if self.helo.is_none() {
            return reply(conn, "503 5.5.1 EHLO first").await;
        }
        if !self.auth_offered() {
            return reply(conn, "530 5.7.0 Must issue a STARTTLS command first").await;
        }
        if self.auth_user.is_some() {
            return reply(conn, "503 5.5.1 Already authenticated").await;
        }
        if self.tx.is_some() {
            return reply(conn, "503 5.5.1 AUTH not permitted during a mail transaction").await;
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let creds = match mech.as_str() {
            "PLAIN" => {
                let response = match initial {
                    // `=` is an empty initial response (RFC 4954 §4).
                    Some(i) if i != "=" => Some(i),
                    _ => self.challenge(conn, "").await?,
                };
                let Some(response) = response else { return Ok(()) };
                let Some(decoded) = b64(&response) else {
                    return reply(conn, "501 5.5.2 Cannot decode response").await;
                };
                // authzid NUL authcid NUL passwd (RFC 4616).
                let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
                if parts.len() != 3 {
                    return reply(conn, "501 5.5.2 Malformed PLAIN response").await;
                }
                (
                    String::from_utf8_lossy(parts[1]).into_owned(),
                    String::from_utf8_lossy(parts[2]).into_owned(),
                )
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => Some(i),
                    None => self.challenge(conn, "VXNlcm5hbWU6").await?,
                };
                let Some(user) = user else { return Ok(()) };
                let Some(pass) = self.challenge(conn, "UGFzc3dvcmQ6").await? else {
                    return Ok(());
                };
                match (b64(&user), b64(&pass)) {
                    (Some(u), Some(p)) => (
                        String::from_utf8_lossy(&u).into_owned(),
                        String::from_utf8_lossy(&p).into_owned(),
                    ),
                    _ => return reply(conn, "501 5.5.2 Cannot decode response").await,
                }
            }
            "" => return reply(conn, "501 5.5.4 Syntax: AUTH mechanism").await,
            _ => return reply(conn, "504 5.5.4 Unrecognized authentication type").await,
        };
        let cfg = &self.hub.cfg;
        if creds.0 == cfg.username && creds.1 == cfg.password {
            self.auth_user = Some(creds.0);
            reply(conn, "235 2.7.0 Authentication successful").await
        } else {
            reply(conn, "535 5.7.8 Authentication credentials invalid").await
        }
    }

    /// Sends a `334` challenge and reads the answer; `None` after the client cancelled (`*`) or left.
    async fn challenge(&self, conn: &mut Conn, challenge: &str) -> std::io::Result<Option<String>> {
        reply(conn, &format!("334 {challenge}")).await?;
        match read_line(conn, MAX_COMMAND_LINE).await? {
            Line::Data(l) => {
                let answer = command_text(&l);
                if answer.trim() == "*" {
                    reply(conn, "501 5.7.0 Authentication cancelled").await?;
                    return Ok(None);
                }
                Ok(Some(answer))
            }
            Line::TooLong => {
                reply(conn, "500 5.5.6 Line too long").await?;
                Ok(None)
            }
            Line::Eof => Ok(None),
        }
    }

    fn mail(&mut self, arg: &str) -> String {
        let cfg = &self.hub.cfg;
        if self.helo.is_none() {
            return "503 5.5.1 EHLO first".into();
        }
        if cfg.require_tls && !self.tls {
            return "530 5.7.0 Must issue a STARTTLS command first".into();
        }
        if cfg.require_auth && self.auth_user.is_none() {
            return "530 5.7.0 Authentication required".into();
        }
        if self.tx.is_some() {
            return "503 5.5.1 Sender already specified".into();
        }
        let Some((from, params)) = parse_path(arg, "FROM:") else {
            return "501 5.5.4 Syntax: MAIL FROM:<address>".into();
        };
        if size_param(&params).is_some_and(|n| n > cfg.max_size) {
            return "552 5.3.4 Message size exceeds fixed maximum message size".into();
        }
        self.tx = Some(Transaction {
            from,
            rcpts: Vec::new(),
        });
        "250 2.1.0 Sender OK".into()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        let max = self.hub.cfg.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return "503 5.5.1 Need MAIL command".into();
        };
        let Some((rcpt, _)) = parse_path(arg, "TO:") else {
            return "501 5.5.4 Syntax: RCPT TO:<address>".into();
        };
        if !rcpt.contains('@') && !rcpt.eq_ignore_ascii_case("postmaster") {
            return "501 5.1.3 Bad recipient address syntax".into();
        }
        if let Some(r) = self.hub.st().faults.rcpt_reply(&rcpt) {
            return r.clone();
        }
        if tx.rcpts.len() >= max {
            return "452 4.5.3 Too many recipients".into();
        }
        tx.rcpts.push(rcpt);
        "250 2.1.5 Recipient OK".into()
    }

    async fn data(&mut self, conn: &mut Conn) -> std::io::Result<()> {
        let Some(tx) = self.tx.as_ref() else {
            return reply(conn, "503 5.5.1 Need MAIL command").await;
        };
        if tx.rcpts.is_empty() {
            return reply(conn, "554 5.5.1 No valid recipients").await;
        }
        reply(conn, "354 End data with <CR><LF>.<CR><LF>").await?;
        let max = self.hub.cfg.max_size;
        let mut raw = Vec::new();
        let mut oversize = false;
        loop {
            let mut line = match read_line(conn, MAX_DATA_LINE).await? {
                // The client went away mid-message: nothing is recorded.
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    oversize = true;
                    continue;
                }
                Line::Data(l) => l,
            };
            if line == b".\r\n" || line == b".\n" {
                break;
            }
            // Dot-unstuffing (RFC 5321 §4.5.2).
            if line.first() == Some(&b'.') {
                line.remove(0);
            }
            if raw.len() + line.len() > max {
                oversize = true;
            }
            if !oversize {
                raw.extend_from_slice(&line);
            }
        }
        let tx = self.tx.take().expect("checked above");
        if oversize {
            return reply(conn, "552 5.3.4 Message size exceeds fixed maximum message size").await;
        }
        let data_reply = self.hub.st().faults.data_reply.clone();
        if let Some(r) = data_reply {
            return reply(conn, &r).await;
        }
        let bouncing: Vec<String> = {
            let st = self.hub.st();
            tx.rcpts
                .iter()
                .filter(|r| st.faults.bounces_after_accept(r))
                .cloned()
                .collect()
        };
        let mail = self.hub.st().store.record(RecordedMail {
            id: String::new(),
            received_at_ms: self.hub.clock.now_ms(),
            envelope_from: tx.from,
            recipients: tx.rcpts,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            raw,
        });
        reply(conn, &format!("250 2.0.0 OK: queued as {}", mail.id)).await?;
        // A relay accepts first and bounces later; never bounce a bounce (null sender).
        if !bouncing.is_empty() && !mail.envelope_from.is_empty() {
            let hub = Arc::clone(&self.hub);
            tokio::spawn(async move {
                if let Err(e) = delivery::bounce(&hub, &mail, &bouncing, None).await {
                    tracing::warn!(error = %e, id = %mail.id, "bounce after accept not sent");
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("FROM:<bounce+t@acme.test> SIZE=1000 BODY=8BITMIME", "FROM:"),
            Some((
                "bounce+t@acme.test".into(),
                vec!["SIZE=1000".to_string(), "BODY=8BITMIME".to_string()]
            ))
        );
        assert_eq!(parse_path("from: <>", "FROM:"), Some((String::new(), vec![])));
        assert_eq!(
            parse_path("TO:<@relay.test:ana@x.test>", "TO:").unwrap().0,
            "ana@x.test"
        );
        assert_eq!(parse_path("TO:ana@x.test", "TO:"), None);
        assert_eq!(size_param(&["size=42".to_string()]), Some(42));
    }

    #[tokio::test]
    async fn lines_are_capped() {
        let mut r = BufReader::new(&b"short\r\nwaytoolongline\r\nok\n"[..]);
        assert!(matches!(read_line(&mut r, 10).await.unwrap(), Line::Data(l) if l == b"short\r\n"));
        assert!(matches!(read_line(&mut r, 10).await.unwrap(), Line::TooLong));
        assert!(matches!(read_line(&mut r, 10).await.unwrap(), Line::Data(l) if l == b"ok\n"));
        assert!(matches!(read_line(&mut r, 10).await.unwrap(), Line::Eof));
    }
}
