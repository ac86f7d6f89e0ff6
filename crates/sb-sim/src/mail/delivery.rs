//! Deliveries to our product: customer mail and DSNs over SMTP or as Mailgun
//! route webhooks (with Mailgun's retries on the SimClock), and the log of every
//! attempt (`GET /_sim/deliveries`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dsn::{self, FailedRecipient};
use super::mailgun::{self, Payload, Signed};
use super::store::RecordedMail;
use super::unsubscribe::HttpExchange;
use super::{Hub, smtp_client};

/// How a message reaches our product.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Via {
    /// Our MX listener (`targets.smtp`).
    Smtp,
    /// Our Mailgun route (`targets.mailgun_url`; raw MIME when it ends with `mime`).
    Mailgun,
    /// Our raw-MIME Mailgun route (`targets.mailgun_mime_url`).
    MailgunMime,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Smtp => "smtp",
            Via::Mailgun => "mailgun",
            Via::MailgunMime => "mailgun_mime",
        }
    }
}

/// One attempt to hand something to our product.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryAttempt {
    /// Same for every attempt of one delivery.
    pub delivery_id: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `customer` (composed mail), `raw` (given bytes), `dsn`, `unsubscribe` or `prefetch`.
    pub kind: String,
    /// `smtp`, `mailgun`, `mailgun_mime` or `http`.
    pub via: String,
    /// `host:port` or URL.
    pub target: String,
    /// Message-ID of the delivered message (mail deliveries).
    pub message_id: Option<String>,
    /// SMTP reply code that decided the outcome, or the HTTP status; `None` on connection failure.
    pub status: Option<u16>,
    /// SMTP reply text, or the start of the HTTP response body.
    pub reply: String,
    pub error: Option<String>,
    /// SimClock ms of the attempt.
    pub at_ms: i64,
    /// SimClock ms of the scheduled retry, if any.
    pub next_retry_at_ms: Option<i64>,
    /// Per-kind details: SMTP transcript and per-recipient replies, the posted form fields, or
    /// the HTTP request made.
    pub detail: Value,
}

/// A message to deliver.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub kind: &'static str,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub message_id: Option<String>,
}

/// A Mailgun POST that is retried until it gets 200 or 406.
pub(crate) struct MailgunJob {
    delivery_id: u64,
    kind: &'static str,
    via: Via,
    url: String,
    key: String,
    message_id: Option<String>,
    payload: Payload,
    first: Signed,
}

pub(crate) struct PendingRetry {
    job: Arc<MailgunJob>,
    attempt: u32,
    due_ms: i64,
}

/// The target a `via` names, or why there is none.
fn target_of(hub: &Hub, via: Via) -> Result<String, String> {
    let st = hub.st();
    let t = &st.targets;
    let (v, what) = match via {
        Via::Smtp => (&t.smtp, "targets.smtp"),
        Via::Mailgun => (&t.mailgun_url, "targets.mailgun_url"),
        Via::MailgunMime => (&t.mailgun_mime_url, "targets.mailgun_mime_url"),
    };
    v.clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("no {what} set (POST /_sim/targets)"))
}

/// The first configured of SMTP, Mailgun, Mailgun raw.
pub(crate) fn default_via(hub: &Hub) -> Via {
    [Via::Smtp, Via::Mailgun, Via::MailgunMime]
        .into_iter()
        .find(|v| target_of(hub, *v).is_ok())
        .unwrap_or(Via::Smtp)
}

/// Delivers `out` and returns the first attempt (Mailgun retries continue in the background).
pub(crate) async fn deliver(hub: &Arc<Hub>, out: Outgoing, via: Via) -> Result<DeliveryAttempt, String> {
    let target = target_of(hub, via)?;
    let delivery_id = hub.next_delivery_id();
    if via == Via::Smtp {
        let outcome = smtp_client::deliver(
            &target,
            &hub.cfg.hostname,
            &out.envelope_from,
            &out.recipients,
            &out.raw,
        )
        .await;
        let rec = DeliveryAttempt {
            delivery_id,
            attempt: 1,
            kind: out.kind.into(),
            via: via.name().into(),
            target,
            message_id: out.message_id,
            status: outcome.code,
            reply: outcome.reply.clone(),
            error: outcome.error.clone(),
            at_ms: hub.clock.now_ms(),
            next_retry_at_ms: None,
            detail: json!({
                "envelope_from": out.envelope_from,
                "recipients": out.recipients,
                "accepted": outcome.accepted(),
                "rcpt_replies": outcome.rcpt_replies,
                "transcript": outcome.transcript,
            }),
        };
        hub.st().deliveries.push(rec.clone());
        return Ok(rec);
    }
    let key = hub.st().targets.mailgun_signing_key.clone();
    let payload = mailgun::payload(
        &out.raw,
        &out.envelope_from,
        &out.recipients,
        mailgun::is_mime_route(&target),
    );
    let job = Arc::new(MailgunJob {
        delivery_id,
        kind: out.kind,
        via,
        first: Signed::new(&key, hub.clock.now_secs()),
        url: target,
        key,
        message_id: out.message_id,
        payload,
    });
    Ok(mailgun_attempt(hub, &job, 1).await)
}

async fn mailgun_attempt(hub: &Arc<Hub>, job: &Arc<MailgunJob>, attempt: u32) -> DeliveryAttempt {
    let signed = if attempt == 1 || !hub.cfg.mailgun_resign_retries {
        job.first.clone()
    } else {
        Signed::new(&job.key, hub.clock.now_secs())
    };
    let boundary = format!("sbsim-{}", mailgun::new_token());
    let (content_type, body) = mailgun::encode(&job.payload, &signed, &boundary);
    let at_ms = hub.clock.now_ms();
    let (status, reply, error) = match hub
        .http
        .post(&job.url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (Some(status), text.chars().take(500).collect(), None)
        }
        Err(e) => (None, String::new(), Some(e.to_string())),
    };
    // 200 is success and 406 a rejection; anything else is retried on Mailgun's schedule.
    let retry_gap = match status {
        Some(200) | Some(406) => None,
        _ => mailgun::RETRY_GAPS_MS.get(attempt as usize - 1).copied(),
    };
    let next_retry_at_ms = retry_gap.map(|gap| hub.clock.now_ms() + gap);
    let mut form: serde_json::Map<String, Value> = job
        .payload
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    form.insert("timestamp".into(), signed.timestamp.into());
    form.insert("token".into(), signed.token.into());
    form.insert("signature".into(), signed.signature.into());
    let rec = DeliveryAttempt {
        delivery_id: job.delivery_id,
        attempt,
        kind: job.kind.into(),
        via: job.via.name().into(),
        target: job.url.clone(),
        message_id: job.message_id.clone(),
        status,
        reply,
        error,
        at_ms,
        next_retry_at_ms,
        detail: json!({
            "form": form,
            "files": job.payload.files.iter().map(|f| json!({
                "field": f.field, "filename": f.filename, "content_type": f.content_type, "size": f.data.len(),
            })).collect::<Vec<_>>(),
        }),
    };
    let mut st = hub.st();
    st.deliveries.push(rec.clone());
    if let Some(due_ms) = next_retry_at_ms {
        st.retries.push(PendingRetry {
            job: Arc::clone(job),
            attempt: attempt + 1,
            due_ms,
        });
    }
    rec
}

/// Runs Mailgun retries when the SimClock reaches them (polled, so `clock.advance` is enough).
pub(crate) async fn retry_loop(hub: Arc<Hub>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = hub.stopping() => return,
        }
        let now = hub.clock.now_ms();
        let due: Vec<PendingRetry> = {
            let mut st = hub.st();
            let (due, later) = std::mem::take(&mut st.retries)
                .into_iter()
                .partition(|r| r.due_ms <= now);
            st.retries = later;
            due
        };
        for r in due {
            if hub.stopped() {
                return;
            }
            mailgun_attempt(&hub, &r.job, r.attempt).await;
        }
    }
}

/// Sends a DSN for `mail` reporting `failed` to its envelope sender, from the null sender.
pub(crate) async fn bounce(
    hub: &Arc<Hub>,
    mail: &RecordedMail,
    failed: &[String],
    via: Option<Via>,
) -> Result<(dsn::Dsn, DeliveryAttempt), String> {
    let failed: Vec<FailedRecipient> = failed.iter().map(|a| FailedRecipient::unknown_user(a)).collect();
    bounce_with(hub, mail, &failed, via).await
}

pub(crate) async fn bounce_with(
    hub: &Arc<Hub>,
    mail: &RecordedMail,
    failed: &[FailedRecipient],
    via: Option<Via>,
) -> Result<(dsn::Dsn, DeliveryAttempt), String> {
    if mail.envelope_from.is_empty() {
        return Err("the message has the null sender <>: a bounce is never bounced".into());
    }
    if failed.is_empty() {
        return Err("no recipient to report".into());
    }
    let dsn = dsn::build(&hub.cfg.hostname, mail, failed, hub.clock.now_ms(), &hub.local_token());
    let out = Outgoing {
        kind: "dsn",
        envelope_from: String::new(),
        recipients: vec![dsn.to.clone()],
        raw: dsn.raw.clone(),
        message_id: Some(dsn.message_id.clone()),
    };
    let via = via.unwrap_or_else(|| default_via(hub));
    let rec = deliver(hub, out, via).await?;
    Ok((dsn, rec))
}

/// Logs an unsubscribe POST or prefetch GET made to our product.
pub(crate) fn log_http(hub: &Hub, kind: &'static str, mail: &RecordedMail, ex: &HttpExchange) -> DeliveryAttempt {
    let rec = DeliveryAttempt {
        delivery_id: hub.next_delivery_id(),
        attempt: 1,
        kind: kind.into(),
        via: "http".into(),
        target: ex.url.clone(),
        message_id: mail.header("Message-ID"),
        status: ex.status,
        reply: ex.response_excerpt.clone(),
        error: ex.error.clone(),
        at_ms: hub.clock.now_ms(),
        next_retry_at_ms: None,
        detail: serde_json::to_value(ex).unwrap_or(Value::Null),
    };
    hub.st().deliveries.push(rec.clone());
    rec
}
