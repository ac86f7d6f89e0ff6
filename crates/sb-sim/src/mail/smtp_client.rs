//! A plain SMTP client, as a customer's mail provider delivering to our MX
//! (RFC 5321: EHLO/HELO, MAIL, one RCPT per recipient, DATA with dot-stuffing,
//! QUIT). Written here rather than with lettre so every reply, including each
//! recipient's, ends up in the delivery log.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What happened on one SMTP delivery.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct SmtpOutcome {
    /// Code of the reply that decided the outcome (after DATA when it got that far).
    pub code: Option<u16>,
    /// That reply's text (all lines, joined with `\n`).
    pub reply: String,
    /// `(recipient, code, reply)` for each RCPT.
    pub rcpt_replies: Vec<(String, u16, String)>,
    /// Commands and replies, `C: …` / `S: …` (the message body is not repeated).
    pub transcript: Vec<String>,
    /// Connection or protocol failure.
    pub error: Option<String>,
}

impl SmtpOutcome {
    pub fn accepted(&self) -> bool {
        self.error.is_none() && self.code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Dot-stuffs a message and makes it end with CRLF (RFC 5321 §4.5.2).
pub(crate) fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut at_line_start = true;
    for &b in raw {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        if out.ends_with(b"\n") {
            out.pop();
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    transcript: Vec<String>,
}

impl Client {
    async fn read_reply(&mut self) -> Result<(u16, String), String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| "timeout waiting for a reply".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            self.transcript.push(format!("S: {line}"));
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(format!("malformed reply: {line}"));
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok((code, format!("{code} {}", lines.join("\n"))));
            }
        }
    }

    async fn command(&mut self, cmd: &str) -> Result<(u16, String), String> {
        self.transcript.push(format!("C: {cmd}"));
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.read_reply().await
    }
}

/// Delivers `raw` from `from` to `rcpts` through the SMTP server at `addr` (`host:port`).
pub(crate) async fn deliver(addr: &str, helo: &str, from: &str, rcpts: &[String], raw: &[u8]) -> SmtpOutcome {
    let mut out = SmtpOutcome::default();
    let stream = match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            out.error = Some(format!("connect {addr}: {e}"));
            return out;
        }
        Err(_) => {
            out.error = Some(format!("connect {addr}: timeout"));
            return out;
        }
    };
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut c = Client {
        reader: BufReader::new(r),
        writer: w,
        transcript: Vec::new(),
    };
    let result = transaction(&mut c, helo, from, rcpts, raw, &mut out).await;
    if let Err(e) = result {
        out.error = Some(e);
    }
    out.transcript = c.transcript;
    out
}

/// Makes a reply the deciding one and returns its code.
fn decide((code, reply): (u16, String), out: &mut SmtpOutcome) -> u16 {
    out.code = Some(code);
    out.reply = reply;
    code
}

async fn transaction(
    c: &mut Client,
    helo: &str,
    from: &str,
    rcpts: &[String],
    raw: &[u8],
    out: &mut SmtpOutcome,
) -> Result<(), String> {
    if decide(c.read_reply().await?, out) != 220 {
        let _ = c.command("QUIT").await;
        return Ok(());
    }
    let (code, _) = c.command(&format!("EHLO {helo}")).await?;
    if code != 250 && decide(c.command(&format!("HELO {helo}")).await?, out) != 250 {
        let _ = c.command("QUIT").await;
        return Ok(());
    }
    if decide(c.command(&format!("MAIL FROM:<{from}>")).await?, out) != 250 {
        let _ = c.command("QUIT").await;
        return Ok(());
    }
    let mut accepted = 0;
    for rcpt in rcpts {
        let (code, reply) = c.command(&format!("RCPT TO:<{rcpt}>")).await?;
        out.rcpt_replies.push((rcpt.clone(), code, reply.clone()));
        if (200..300).contains(&code) {
            accepted += 1;
        } else {
            decide((code, reply), out);
        }
    }
    if accepted == 0 {
        let _ = c.command("QUIT").await;
        return Ok(());
    }
    if decide(c.command("DATA").await?, out) != 354 {
        let _ = c.command("QUIT").await;
        return Ok(());
    }
    let mut body = dot_stuff(raw);
    body.extend_from_slice(b".\r\n");
    c.transcript.push(format!("C: <{} octets>", raw.len()));
    c.writer.write_all(&body).await.map_err(|e| e.to_string())?;
    c.transcript.push("C: .".into());
    decide(c.read_reply().await?, out);
    let _ = c.command("QUIT").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffs_leading_dots_and_ends_with_crlf() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c\r\n."), b"..a\r\nb\r\n...c\r\n..\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
        assert_eq!(dot_stuff(b"x\n"), b"x\r\n");
    }
}
