//! E-mail simulator, driven as our product and tests would: lettre submitting over
//! STARTTLS, raw SMTP dialogs for exact replies, the control API for customer mail,
//! DSNs, Mailgun webhooks and RFC 8058 one-click unsubscribes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail_parser::{MessageParser, MimeHeaders};
use sb_sim::{MailConfig, MailSim, SimClock, mailgun_signature};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn start(cfg: MailConfig) -> (MailSim, SimClock) {
    let clock = SimClock::fixed(T0);
    let sim = MailSim::start(cfg, clock.clone()).await.unwrap();
    (sim, clock)
}

async fn post(sim: &MailSim, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get(sim: &MailSim, path: &str) -> Value {
    reqwest::get(format!("{}/_sim/{path}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A raw SMTP client for asserting exact replies.
struct Dialog {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Dialog {
    async fn open(sim: &MailSim) -> Dialog {
        let (r, w) = tokio::net::TcpStream::connect(sim.smtp_addr())
            .await
            .unwrap()
            .into_split();
        let mut d = Dialog {
            r: BufReader::new(r),
            w,
        };
        assert!(d.reply().await.starts_with("220 "));
        d
    }

    /// One reply; the lines of a multi-line reply are joined with `\n`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).await.unwrap();
            let l = l.trim_end().to_string();
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }

    async fn data(&mut self, stuffed: &[u8]) -> String {
        assert!(self.cmd("DATA").await.starts_with("354 "));
        self.w.write_all(&[stuffed, b".\r\n"].concat()).await.unwrap();
        self.reply().await
    }
}

fn trusted_tls(sim: &MailSim) -> Tls {
    let cert = Certificate::from_pem(sim.certificate_pem().as_bytes()).unwrap();
    Tls::Required(
        TlsParameters::builder("localhost".into())
            .add_root_certificate(cert)
            .build_rustls()
            .unwrap(),
    )
}

fn submission(sim: &MailSim, user: &str, pass: &str, mech: Mechanism) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(sim.smtp_addr().port())
        .tls(trusted_tls(sim))
        .credentials(Credentials::new(user.into(), pass.into()))
        .authentication(vec![mech])
        .build()
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::new(
        Some(from.parse().unwrap()),
        to.iter().map(|t| t.parse().unwrap()).collect(),
    )
    .unwrap()
}

/// What our product sends: a reply to a customer, with list headers.
const OUR_MAIL: &[u8] = b"From: Acme Support <support@acme.example.test>\r\n\
To: Ana <ana@cust.example.test>\r\n\
Reply-To: Acme Support <reply+c-3f9a@acme.example.test>\r\n\
Subject: Pickup for order 1042\r\n\
Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
Message-ID: <o1.01JF8Z7Q@mail.acme.example.test>\r\n\
In-Reply-To: <A-7f21@cust.example.test>\r\n\
References: <A-7f21@cust.example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Your order is ready.\r\n\
.hidden line starting with a dot\r\n\
..two dots\r\n";

const VERP: &str = "bounce+o1tok@mail.acme.example.test";

/// lettre always ends DATA with `CRLF.CRLF` after the bytes it is given, so the
/// message's own final CRLF is left to it (else the sink sees an extra empty line).
fn for_lettre(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r\n").unwrap_or(raw)
}

/// Our product's mail, accepted by the sink over plain SMTP (as `m1`).
async fn record_our_mail(sim: &MailSim, raw: &[u8]) {
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sim.smtp_addr().port())
        .build();
    t.send_raw(&envelope(VERP, &["ana@cust.example.test"]), for_lettre(raw))
        .await
        .unwrap();
}

/// A tiny HTTP receiver standing in for our product: records every request,
/// answers scripted statuses (then 200).
#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

#[derive(Clone, Debug)]
struct Hit {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn form(&self) -> std::collections::BTreeMap<String, String> {
        url_decode_form(std::str::from_utf8(&self.body).unwrap())
    }
}

fn url_decode_form(s: &str) -> std::collections::BTreeMap<String, String> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    s.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (dec(k), dec(v))
        })
        .collect()
}

async fn on_request(
    State(rx): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    rx.hits.lock().unwrap().push(Hit {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    let status = rx.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let rx = Receiver::default();
        let app = Router::new().fallback(on_request).with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rx, base)
    }

    fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (real time, bounded) until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        for _ in 0..200 {
            if self.hits().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.hits()
    }
}

// ---------------------------------------------------------------------------
// The SMTP sink
// ---------------------------------------------------------------------------

#[tokio::test]
async fn starttls_auth_submission_is_recorded_byte_exact() {
    let cfg = MailConfig {
        require_tls: true,
        require_auth: true,
        ..MailConfig::default()
    };
    let (user, pass) = (cfg.username.clone(), cfg.password.clone());
    let (sim, _) = start(cfg).await;
    for mech in [Mechanism::Plain, Mechanism::Login] {
        let resp = submission(&sim, &user, &pass, mech)
            .send_raw(&envelope(VERP, &["ana@cust.example.test"]), for_lettre(OUR_MAIL))
            .await
            .unwrap();
        assert!(resp.is_positive());
    }
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        // Byte-exact, including the lines that were dot-stuffed on the wire.
        assert_eq!(m.raw, OUR_MAIL);
        assert!(m.tls);
        assert_eq!(m.auth_user.as_deref(), Some(user.as_str()));
        assert_eq!(m.envelope_from, VERP);
        assert_eq!(m.recipients, vec!["ana@cust.example.test"]);
    }
    let listed = get(&sim, "messages?to=ANA@cust.example.test").await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["subject"], "Pickup for order 1042");
    assert_eq!(
        listed[0]["text"],
        "Your order is ready.\r\n.hidden line starting with a dot\r\n..two dots\r\n"
    );

    // Without TLS nothing but STARTTLS gets through.
    let mut d = Dialog::open(&sim).await;
    let ehlo = d.cmd("EHLO client.test").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    assert!(ehlo.contains(&format!("SIZE {}", MailConfig::default().max_size)));
    assert_eq!(
        d.cmd("MAIL FROM:<a@b.test>").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        d.cmd("AUTH PLAIN AHN3aXRjaGJvYXJkAHg=").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert!(d.cmd("QUIT").await.starts_with("221 "));
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_535() {
    let (sim, _) = start(MailConfig {
        require_tls: true,
        require_auth: true,
        ..MailConfig::default()
    })
    .await;
    let err = submission(&sim, "switchboard", "wrong", Mechanism::Plain)
        .send_raw(&envelope(VERP, &["ana@cust.example.test"]), OUR_MAIL)
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.status().map(|c| c.to_string()).as_deref(), Some("535"));
    assert!(sim.messages().is_empty());

    // The same over a plain dialog (TLS not required here), PLAIN and LOGIN.
    let (sim, _) = start(MailConfig {
        require_auth: true,
        ..MailConfig::default()
    })
    .await;
    let mut d = Dialog::open(&sim).await;
    assert!(d.cmd("EHLO client.test").await.ends_with("\n250 AUTH PLAIN LOGIN"));
    // \0switchboard\0nope
    assert_eq!(
        d.cmd("AUTH PLAIN AHN3aXRjaGJvYXJkAG5vcGU=").await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(d.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(d.cmd("c3dpdGNoYm9hcmQ=").await, "334 UGFzc3dvcmQ6");
    assert_eq!(d.cmd("bm9wZQ==").await, "535 5.7.8 Authentication credentials invalid");
    assert_eq!(d.cmd("MAIL FROM:<a@b.test>").await, "530 5.7.0 Authentication required");
    assert_eq!(
        d.cmd("AUTH CRAM-MD5").await,
        "504 5.5.4 Unrecognized authentication type"
    );
    // \0switchboard\0sim-smtp-password
    assert_eq!(
        d.cmd("AUTH PLAIN AHN3aXRjaGJvYXJkAHNpbS1zbXRwLXBhc3N3b3Jk").await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(d.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    sim.shutdown().await;
}

#[tokio::test]
async fn per_recipient_replies_size_limit_and_rset() {
    let (sim, _) = start(MailConfig {
        max_size: 200,
        ..MailConfig::default()
    })
    .await;
    let (s, v) = post(
        &sim,
        "faults",
        json!({ "rcpt_replies": {
            "Gone@Cust.example.test": "550 5.1.1 user unknown",
            "busy@cust.example.test": "451 4.3.0 try later"
        }}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut d = Dialog::open(&sim).await;
    assert_eq!(d.cmd("MAIL FROM:<a@b.test>").await, "503 5.5.1 EHLO first");
    assert!(d.cmd("EHLO client.test").await.starts_with("250-mx.sim.example.test"));
    assert_eq!(d.cmd("RCPT TO:<x@y.test>").await, "503 5.5.1 Need MAIL command");
    assert_eq!(d.cmd(&format!("MAIL FROM:<{VERP}>")).await, "250 2.1.0 Sender OK");
    assert_eq!(
        d.cmd("RCPT TO:<gone@cust.example.test>").await,
        "550 5.1.1 user unknown"
    );
    assert_eq!(d.cmd("RCPT TO:<busy@cust.example.test>").await, "451 4.3.0 try later");
    assert_eq!(d.cmd("RCPT TO:<ana@cust.example.test>").await, "250 2.1.5 Recipient OK");
    assert_eq!(d.cmd("NOOP").await, "250 2.0.0 OK");
    let reply = d.data(b"Subject: hi\r\n\r\nhello\r\n").await;
    assert_eq!(reply, "250 2.0.0 OK: queued as m1");
    assert_eq!(sim.messages()[0].recipients, vec!["ana@cust.example.test"]);

    // SIZE announced too big, then a body over the limit.
    assert_eq!(
        d.cmd(&format!("MAIL FROM:<{VERP}> SIZE=5000")).await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(d.cmd(&format!("MAIL FROM:<{VERP}>")).await, "250 2.1.0 Sender OK");
    assert_eq!(d.cmd("RSET").await, "250 2.0.0 OK");
    assert_eq!(d.cmd("DATA").await, "503 5.5.1 Need MAIL command");
    assert_eq!(d.cmd(&format!("MAIL FROM:<{VERP}>")).await, "250 2.1.0 Sender OK");
    assert_eq!(d.cmd("RCPT TO:<ana@cust.example.test>").await, "250 2.1.5 Recipient OK");
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(300));
    assert_eq!(
        d.data(big.as_bytes()).await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(sim.messages().len(), 1);
    assert!(d.cmd("QUIT").await.starts_with("221 "));
    sim.shutdown().await;
}

#[tokio::test]
async fn dot_stuffing_round_trip() {
    let (sim, _) = start(MailConfig::default()).await;
    let mut d = Dialog::open(&sim).await;
    d.cmd("HELO client.test").await;
    d.cmd(&format!("MAIL FROM:<{VERP}>")).await;
    d.cmd("RCPT TO:<ana@cust.example.test>").await;
    // On the wire every line starting with "." carries one more.
    let wire = b"Subject: dots\r\n\r\n..\r\n...\r\n..leading\r\nmiddle.dot\r\n";
    assert_eq!(d.data(wire).await, "250 2.0.0 OK: queued as m1");
    assert_eq!(
        sim.messages()[0].raw,
        b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmiddle.dot\r\n"
    );

    // And back out: the sink's own SMTP client stuffs them again when it delivers.
    let (s, v) = post(&sim, "targets", json!({ "smtp": sim.smtp_addr().to_string() })).await;
    assert_eq!(s, 200, "{v}");
    let raw = "From: ana@cust.example.test\r\nTo: support@acme.example.test\r\nSubject: dots\r\n\r\n.\r\n.x\r\n";
    let (s, v) = post(&sim, "send_raw", json!({ "raw": raw })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["delivery"]["status"], 250, "{v}");
    assert_eq!(sim.messages()[1].raw, raw.as_bytes());
    assert_eq!(sim.messages()[1].recipients, vec!["support@acme.example.test"]);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// DSN bounces
// ---------------------------------------------------------------------------

fn assert_is_dsn(raw: &[u8], failed: &str) {
    let p = MessageParser::default().parse(raw).unwrap();
    let ct = p.root_part().content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(p.header_raw("X-Failed-Recipients").map(str::trim), Some(failed));
    let text = String::from_utf8_lossy(raw);
    assert!(text.contains("Content-Type: message/delivery-status"));
    assert!(text.contains(&format!("Final-Recipient: rfc822; {failed}")));
    assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1"));
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Message-ID: <o1.01JF8Z7Q@mail.acme.example.test>\r\n"));
}

#[tokio::test]
async fn dsn_for_a_recorded_message_reaches_the_envelope_sender() {
    let (sim, _) = start(MailConfig::default()).await;
    record_our_mail(&sim, OUR_MAIL).await;
    // Our MX is played by the sink itself here.
    post(&sim, "targets", json!({ "smtp": sim.smtp_addr().to_string() })).await;
    let (s, v) = post(&sim, "bounce/m1", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["to"], VERP);
    assert_eq!(v["delivery"]["status"], 250, "{v}");
    assert_eq!(v["delivery"]["kind"], "dsn");
    assert_eq!(v["delivery"]["detail"]["envelope_from"], "");
    let inbox = get(&sim, &format!("messages?to={}", VERP.replace('+', "%2B"))).await;
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
    assert_eq!(inbox[0]["content_type"], "multipart/report");
    assert_eq!(inbox[0]["envelope_from"], "");
    let dsn = &sim.messages()[1];
    assert_is_dsn(&dsn.raw, "ana@cust.example.test");
    assert_eq!(dsn.raw, v["raw"].as_str().unwrap().as_bytes());

    // A bounce is never bounced.
    let (s, _) = post(&sim, "bounce/m2", json!({})).await;
    assert_eq!(s, 409);
    let (s, _) = post(&sim, "bounce/m9", json!({})).await;
    assert_eq!(s, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn bounce_after_accept_sends_a_dsn_on_its_own() {
    let (sim, _) = start(MailConfig::default()).await;
    post(&sim, "targets", json!({ "smtp": sim.smtp_addr().to_string() })).await;
    post(
        &sim,
        "faults",
        json!({ "bounce_after_accept": ["ana@cust.example.test"] }),
    )
    .await;
    record_our_mail(&sim, OUR_MAIL).await;
    let mut found = None;
    for _ in 0..200 {
        if let Some(m) = sim.messages().into_iter().find(|m| m.recipients == [VERP]) {
            found = Some(m);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dsn = found.expect("a DSN arrived at the VERP address");
    assert_is_dsn(&dsn.raw, "ana@cust.example.test");
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// Customers writing to us
// ---------------------------------------------------------------------------

#[tokio::test]
async fn customer_reply_threads_onto_our_message() {
    let (sim, _) = start(MailConfig::default()).await;
    record_our_mail(&sim, OUR_MAIL).await;
    post(&sim, "targets", json!({ "smtp": sim.smtp_addr().to_string() })).await;
    let (s, v) = post(
        &sim,
        "send",
        json!({
            "from": "Ana <ana@cust.example.test>",
            "text": "Great, I'll come tomorrow.",
            "html": "<p>Great, I'll come tomorrow.</p>",
            "in_reply_to_id": "m1",
            "attachments": [{"filename": "id.pdf", "content_type": "application/pdf", "base64": "JVBERi0xLjQK"}],
            "via": "smtp"
        }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["delivery"]["status"], 250, "{v}");
    let mid = v["message_id"].as_str().unwrap();
    assert!(mid.starts_with('<') && mid.ends_with("@cust.example.test>"), "{mid}");
    // It went to the Reply-To address our mail carried.
    assert_eq!(v["recipients"], json!(["reply+c-3f9a@acme.example.test"]));

    let got = &get(&sim, "messages?to=reply%2Bc-3f9a@acme.example.test").await[0];
    assert_eq!(got["in_reply_to"], "<o1.01JF8Z7Q@mail.acme.example.test>");
    assert_eq!(
        got["references"],
        "<A-7f21@cust.example.test> <o1.01JF8Z7Q@mail.acme.example.test>"
    );
    assert_eq!(got["subject"], "Re: Pickup for order 1042");
    assert_eq!(got["message_id"], mid);
    assert_eq!(got["date"], "Thu, 01 Jan 2026 00:00:00 +0000");
    assert_eq!(got["content_type"], "multipart/mixed");
    assert_eq!(got["text"], "Great, I'll come tomorrow.");
    assert_eq!(got["attachments"][0]["filename"], "id.pdf");
    assert_eq!(got["envelope_from"], "ana@cust.example.test");

    // An out-of-office is marked as such.
    let (s, v) = post(
        &sim,
        "send",
        json!({ "from": "ana@cust.example.test", "to": "support@acme.example.test",
                "subject": "Out of office", "text": "Back Monday", "auto_submitted": true }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ooo = &get(&sim, "messages?to=support@acme.example.test").await[0];
    assert_eq!(ooo["auto_submitted"], "auto-replied");
    assert_eq!(get(&sim, "sent").await.as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[test]
fn mailgun_signature_vector_a4() {
    assert_eq!(
        mailgun_signature(
            "demo-signing-key",
            "1767225600",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829"
        ),
        "0c0513714facc5afbdf18946915424d72b5c90367859ee8d7dc63e3e50063fa4"
    );
}

#[tokio::test]
async fn mailgun_webhook_is_signed_and_retried_on_the_sim_clock() {
    let (rx, base) = Receiver::start().await;
    let (sim, clock) = start(MailConfig::default()).await;
    post(
        &sim,
        "targets",
        json!({ "mailgun_url": format!("{base}/hooks/mailgun") }),
    )
    .await;
    rx.script(&[500, 503]);
    let (s, v) = post(
        &sim,
        "send",
        json!({ "from": "Ana <ana@cust.example.test>", "to": "support@acme.example.test",
                "subject": "Order 1042", "text": "Is it ready?", "via": "mailgun" }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["delivery"]["status"], 500);
    assert_eq!(v["delivery"]["next_retry_at_ms"], T0 + 10 * MIN);

    let first = &rx.hits()[0];
    assert_eq!(first.path, "/hooks/mailgun");
    assert_eq!(
        first.headers["content-type"].to_str().unwrap(),
        "application/x-www-form-urlencoded"
    );
    let form = first.form();
    assert_eq!(form["recipient"], "support@acme.example.test");
    assert_eq!(form["sender"], "ana@cust.example.test");
    assert_eq!(form["from"], "Ana <ana@cust.example.test>");
    assert_eq!(form["subject"], "Order 1042");
    assert_eq!(form["body-plain"], "Is it ready?\r\n");
    assert_eq!(form["stripped-text"], "Is it ready?");
    assert_eq!(form["Message-Id"], v["message_id"].as_str().unwrap());
    assert_eq!(form["timestamp"], (T0 / 1000).to_string());
    assert_eq!(form["token"].len(), 50);
    assert_eq!(
        form["signature"],
        mailgun_signature("demo-signing-key", &form["timestamp"], &form["token"])
    );
    let hdrs: Vec<(String, String)> = serde_json::from_str(&form["message-headers"]).unwrap();
    assert!(hdrs.iter().any(|(n, v)| n == "Subject" && v == "Order 1042"));
    assert!(!form.contains_key("body-mime"));

    // Nothing before 10 minutes; then 503; then 15 minutes later a 200 ends it.
    clock.advance(9 * MIN);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 1);
    clock.advance(MIN);
    assert_eq!(rx.wait_for(2).await.len(), 2);
    // The receiver records the hit before the simulator reads its 503 and schedules the
    // retry on the clock: let it do so before moving the clock.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    clock.advance(15 * MIN);
    let hits = rx.wait_for(3).await;
    assert_eq!(hits.len(), 3);
    for h in &hits[1..] {
        let f = h.form();
        assert_eq!(
            f["signature"],
            mailgun_signature("demo-signing-key", &f["timestamp"], &f["token"])
        );
        assert_eq!(f["body-plain"], "Is it ready?\r\n");
    }
    assert_eq!(hits[2].form()["timestamp"], ((T0 + 25 * MIN) / 1000).to_string());
    clock.advance(10 * 60 * MIN);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 3);
    let log = get(&sim, "deliveries").await;
    let statuses: Vec<Value> = log.as_array().unwrap().iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[2]["next_retry_at_ms"], Value::Null);
    sim.shutdown().await;
}

#[tokio::test]
async fn mailgun_406_is_final_and_raw_mime_routes_get_body_mime() {
    let (rx, base) = Receiver::start().await;
    let (sim, clock) = start(MailConfig::default()).await;
    post(
        &sim,
        "targets",
        json!({ "mailgun_url": format!("{base}/mg"), "mailgun_mime_url": format!("{base}/mg/mime"),
                "mailgun_signing_key": "other-key" }),
    )
    .await;
    rx.script(&[406]);
    let (_, v) = post(
        &sim,
        "send",
        json!({ "from": "a@cust.example.test", "to": "s@acme.example.test", "text": "x", "via": "mailgun" }),
    )
    .await;
    assert_eq!(v["delivery"]["status"], 406);
    assert_eq!(v["delivery"]["next_retry_at_ms"], Value::Null);
    clock.advance(8 * 60 * MIN);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 1);

    let raw = "From: a@cust.example.test\r\nTo: s@acme.example.test\r\nSubject: broken\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n";
    let (s, v) = post(&sim, "send_raw", json!({ "raw": raw, "via": "mailgun_mime" })).await;
    assert_eq!(s, 200, "{v}");
    let hits = rx.wait_for(2).await;
    assert_eq!(hits[1].path, "/mg/mime");
    let form = hits[1].form();
    assert_eq!(form["body-mime"], raw);
    assert_eq!(form["recipient"], "s@acme.example.test");
    assert_eq!(
        form["signature"],
        mailgun_signature("other-key", &form["timestamp"], &form["token"])
    );
    assert!(!form.contains_key("body-plain"));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// RFC 8058 one-click unsubscribe
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_click_post_and_prefetch_are_exactly_as_documented() {
    let (rx, base) = Receiver::start().await;
    let (sim, _) = start(MailConfig::default()).await;
    let with_list = String::from_utf8(OUR_MAIL.to_vec()).unwrap().replacen(
        "MIME-Version: 1.0\r\n",
        &format!(
            "List-Unsubscribe: <mailto:unsub+T0K@acme.example.test?subject=unsubscribe>,\r\n <{base}/u/T0K>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\n"
        ),
        1,
    );
    record_our_mail(&sim, with_list.as_bytes()).await;
    record_our_mail(&sim, OUR_MAIL).await;

    let (s, v) = post(&sim, "unsubscribe/m1", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["list_unsubscribe"]["one_click"], true);
    let hit = &rx.hits()[0];
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.path, "/u/T0K");
    assert_eq!(&hit.body[..], b"List-Unsubscribe=One-Click");
    assert_eq!(hit.headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(hit.headers["content-length"], "26");
    assert!(hit.headers.get("cookie").is_none() && hit.headers.get("authorization").is_none());

    let (s, v) = post(&sim, "prefetch/m1", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let hit = &rx.hits()[1];
    assert_eq!(hit.method, Method::GET);
    assert_eq!(hit.path, "/u/T0K");
    assert!(hit.body.is_empty());

    // No List-Unsubscribe-Post: a client offers no one-click.
    let (s, _) = post(&sim, "unsubscribe/m2", json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(rx.hits().len(), 2);
    let kinds: Vec<Value> = get(&sim, "deliveries")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("unsubscribe"), json!("prefetch")]);
    sim.shutdown().await;
}

#[tokio::test]
async fn page_and_control_basics() {
    let (sim, clock) = start(MailConfig::default()).await;
    let page = reqwest::get(format!("{}/", sim.base_url())).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Mail simulator"));
    // Mail content is shown with textContent only.
    assert!(!html.contains("innerHTML") && !html.contains("http://") && !html.contains("https://"));
    let cfg = get(&sim, "config").await;
    assert_eq!(cfg["smtp_addr"], sim.smtp_addr().to_string());
    assert!(cfg["certificate_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let (s, v) = post(&sim, "clock", json!({ "advance_ms": 1_000 })).await;
    assert_eq!((s, v["now_ms"].as_i64()), (200, Some(T0 + 1_000)));
    assert_eq!(clock.now_ms(), T0 + 1_000);
    // Nothing to deliver to yet.
    let (s, v) = post(
        &sim,
        "send",
        json!({ "from": "a@x.test", "to": "b@y.test", "text": "x" }),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = post(&sim, "send", json!({ "from": "a@x.test", "text": "no recipient" })).await;
    assert_eq!(s, 400);
    sim.shutdown().await;
}
