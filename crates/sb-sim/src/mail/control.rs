//! The control API (JSON) under `/_sim/` and `/_sim/mail/`, and the webmail page at `GET /`.
//!
//! | route | body → answer |
//! |---|---|
//! | `GET /_sim/config` | SMTP address, hostname, TLS/AUTH settings, certificate PEM |
//! | `GET/POST /_sim/targets` | `{smtp?, mailgun_url?, mailgun_mime_url?, mailgun_signing_key?}` (a patch; `""` clears) |
//! | `GET/POST /_sim/faults` | `{rcpt_replies?: {addr: "550 5.1.1 …"}, bounce_after_accept?: [addr], data_reply?}` (replaces) |
//! | `POST /_sim/send` | [`ComposeReq`] → `{message_id, envelope_from, recipients, raw, delivery}` |
//! | `POST /_sim/send_raw` | `{raw \| raw_base64, envelope_from?, recipients?, via?}` → `{message_id, delivery}` |
//! | `GET /_sim/messages?to=` | recorded mail (parsed headers, text, HTML, raw) |
//! | `GET /_sim/messages/{id}` (`/raw`) | one message (its exact bytes as `message/rfc822`) |
//! | `GET /_sim/mailboxes` | `[{address, count}]` |
//! | `POST /_sim/bounce/{id}` | `{recipients?, status?, diagnostic?, via?}` → `{dsn_message_id, to, raw, delivery}` |
//! | `POST /_sim/unsubscribe/{id}` | one-click POST → `{list_unsubscribe, exchange, status}` |
//! | `POST /_sim/prefetch/{id}` | link-scanner GET → `{list_unsubscribe, exchange, status}` |
//! | `GET /_sim/deliveries`, `GET /_sim/sent` | delivery attempts to our product; customer mail composed |
//! | `GET/POST /_sim/clock`, `POST /_sim/reset-logs` | as on the other simulators |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::compose::{self, ComposeReq, OneOrMany, Parent};
use super::delivery::{self, Outgoing, Via};
use super::dsn::FailedRecipient;
use super::store::{self, RecordedMail};
use super::{Hub, SmtpFaults, headers, unsubscribe};
use crate::common::{clock_move, clock_now, ctl_err, parse_body, parse_urlencoded};

const PAGE: &str = include_str!("../mail.html");

pub(crate) fn router(hub: Arc<Hub>) -> Router {
    let mut r: Router<Arc<Hub>> = Router::new().route("/", get(page));
    for p in ["/_sim", "/_sim/mail"] {
        r = r
            .route(&format!("{p}/config"), get(config))
            .route(&format!("{p}/targets"), get(get_targets).post(set_targets))
            .route(&format!("{p}/faults"), get(get_faults).post(set_faults))
            .route(&format!("{p}/send"), post(send))
            .route(&format!("{p}/send_raw"), post(send_raw))
            .route(&format!("{p}/messages"), get(messages))
            .route(&format!("{p}/messages/{{id}}"), get(message))
            .route(&format!("{p}/messages/{{id}}/raw"), get(message_raw))
            .route(&format!("{p}/mailboxes"), get(mailboxes))
            .route(&format!("{p}/bounce/{{id}}"), post(bounce))
            .route(&format!("{p}/unsubscribe/{{id}}"), post(unsubscribe))
            .route(&format!("{p}/prefetch/{{id}}"), post(prefetch))
            .route(&format!("{p}/deliveries"), get(deliveries))
            .route(&format!("{p}/sent"), get(sent))
            .route(&format!("{p}/clock"), get(get_clock).post(set_clock))
            .route(&format!("{p}/reset-logs"), post(reset_logs));
    }
    r.with_state(hub)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn bad(e: impl Into<String>) -> Response {
    ctl_err(StatusCode::BAD_REQUEST, e)
}

fn not_found(id: &str) -> Response {
    ctl_err(StatusCode::NOT_FOUND, format!("no recorded message {id:?}"))
}

fn recorded(hub: &Hub, id: &str) -> Option<RecordedMail> {
    hub.st().store.get(id).cloned()
}

async fn config(State(hub): State<Arc<Hub>>) -> Response {
    let c = &hub.cfg;
    axum::Json(json!({
        "smtp_addr": hub.smtp_addr.to_string(),
        "hostname": c.hostname,
        "require_tls": c.require_tls,
        "require_auth": c.require_auth,
        "username": c.username,
        "max_size": c.max_size,
        "certificate_pem": hub.certificate_pem,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsPatch {
    smtp: Option<String>,
    mailgun_url: Option<String>,
    mailgun_mime_url: Option<String>,
    mailgun_signing_key: Option<String>,
}

async fn get_targets(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.st().targets.clone()).into_response()
}

async fn set_targets(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let p = match parse_body::<TargetsPatch>(&body) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let clear = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_string());
    let mut st = hub.st();
    let t = &mut st.targets;
    if let Some(v) = p.smtp {
        t.smtp = clear(v);
    }
    if let Some(v) = p.mailgun_url {
        t.mailgun_url = clear(v);
    }
    if let Some(v) = p.mailgun_mime_url {
        t.mailgun_mime_url = clear(v);
    }
    if let Some(v) = p.mailgun_signing_key {
        t.mailgun_signing_key = v;
    }
    axum::Json(t.clone()).into_response()
}

async fn get_faults(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.st().faults.clone()).into_response()
}

async fn set_faults(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    match parse_body::<SmtpFaults>(&body) {
        Ok(f) => {
            hub.st().faults = f.clone();
            axum::Json(f).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn send(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let req = match parse_body::<ComposeReq>(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let parent = match &req.in_reply_to_id {
        Some(id) => match recorded(&hub, id) {
            Some(m) => Some(Parent::of(&m)),
            None => return not_found(id),
        },
        None => None,
    };
    let composed = match compose::compose(&req, parent.as_ref(), hub.clock.now_ms(), &hub.local_token()) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let via = req.via.unwrap_or_else(|| delivery::default_via(&hub));
    let out = Outgoing {
        kind: "customer",
        envelope_from: composed.envelope_from.clone(),
        recipients: composed.recipients.clone(),
        raw: composed.raw.clone(),
        message_id: Some(composed.message_id.clone()),
    };
    let rec = match delivery::deliver(&hub, out, via).await {
        Ok(r) => r,
        Err(e) => return ctl_err(StatusCode::CONFLICT, e),
    };
    let fields = headers::fields(&composed.raw);
    hub.st().sent.push(json!({
        "message_id": composed.message_id,
        "from": headers::get(&fields, "From"),
        "to": headers::get(&fields, "To"),
        "subject": req.subject.clone().or_else(|| parent.as_ref().map(Parent::reply_subject)),
        "text": req.text,
        "in_reply_to_id": req.in_reply_to_id,
        "via": via,
        "at_ms": rec.at_ms,
        "delivery_id": rec.delivery_id,
        "status": rec.status,
    }));
    axum::Json(json!({
        "message_id": composed.message_id,
        "envelope_from": composed.envelope_from,
        "recipients": composed.recipients,
        "raw": String::from_utf8_lossy(&composed.raw),
        "delivery": rec,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReq {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    raw_base64: Option<String>,
    /// Defaults to the `From` address.
    #[serde(default)]
    envelope_from: Option<String>,
    /// Defaults to the `To` and `Cc` addresses.
    #[serde(default)]
    recipients: Option<OneOrMany>,
    #[serde(default)]
    via: Option<Via>,
}

async fn send_raw(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let req = match parse_body::<RawReq>(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let raw = match (req.raw, req.raw_base64) {
        (Some(r), None) => r.into_bytes(),
        (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
            Ok(v) => v,
            Err(e) => return bad(format!("raw_base64: {e}")),
        },
        _ => return bad("give exactly one of `raw` and `raw_base64`"),
    };
    let fields = headers::fields(&raw);
    let envelope_from = req
        .envelope_from
        .or_else(|| headers::get(&fields, "From").and_then(|f| headers::addr_spec(&f)))
        .unwrap_or_default();
    let recipients = match req.recipients {
        Some(r) => r.into_vec(),
        None => ["To", "Cc"]
            .iter()
            .filter_map(|n| headers::get(&fields, n))
            .flat_map(|v| headers::addr_list(&v))
            .collect(),
    };
    if recipients.is_empty() {
        return bad("no recipients: give `recipients` or a To header");
    }
    let message_id = headers::get(&fields, "Message-ID");
    let via = req.via.unwrap_or_else(|| delivery::default_via(&hub));
    let out = Outgoing {
        kind: "raw",
        envelope_from,
        recipients,
        raw,
        message_id: message_id.clone(),
    };
    match delivery::deliver(&hub, out, via).await {
        Ok(rec) => axum::Json(json!({ "message_id": message_id, "delivery": rec })).into_response(),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

async fn messages(State(hub): State<Arc<Hub>>, RawQuery(q): RawQuery) -> Response {
    let q = parse_urlencoded(q.as_deref().unwrap_or(""));
    let to = q.get("to").map(|s| s.trim()).filter(|s| !s.is_empty());
    let st = hub.st();
    let list: Vec<Value> = st.store.mailbox(to).into_iter().map(store::view).collect();
    axum::Json(list).into_response()
}

async fn message(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    match recorded(&hub, &id) {
        Some(m) => axum::Json(store::view(&m)).into_response(),
        None => not_found(&id),
    }
}

async fn message_raw(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    match recorded(&hub, &id) {
        Some(m) => ([(header::CONTENT_TYPE, "message/rfc822")], m.raw).into_response(),
        None => not_found(&id),
    }
}

async fn mailboxes(State(hub): State<Arc<Hub>>) -> Response {
    let list: Vec<Value> = hub
        .st()
        .store
        .mailboxes()
        .into_iter()
        .map(|(address, count)| json!({ "address": address, "count": count }))
        .collect();
    axum::Json(list).into_response()
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BounceReq {
    /// Defaults to every recipient of the message.
    #[serde(default)]
    recipients: Option<Vec<String>>,
    /// RFC 3463 status (default `5.1.1`).
    #[serde(default)]
    status: Option<String>,
    /// Remote reply quoted in `Diagnostic-Code` (default a 550 user-unknown).
    #[serde(default)]
    diagnostic: Option<String>,
    #[serde(default)]
    via: Option<Via>,
}

async fn bounce(State(hub): State<Arc<Hub>>, Path(id): Path<String>, body: Bytes) -> Response {
    let req = match parse_body::<BounceReq>(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let Some(mail) = recorded(&hub, &id) else {
        return not_found(&id);
    };
    let failed: Vec<FailedRecipient> = req
        .recipients
        .unwrap_or_else(|| mail.recipients.clone())
        .iter()
        .map(|a| {
            let mut f = FailedRecipient::unknown_user(a);
            if let Some(s) = &req.status {
                f.status = s.clone();
            }
            if let Some(d) = &req.diagnostic {
                f.diagnostic = d.clone();
            }
            f
        })
        .collect();
    match delivery::bounce_with(&hub, &mail, &failed, req.via).await {
        Ok((dsn, rec)) => axum::Json(json!({
            "dsn_message_id": dsn.message_id,
            "to": dsn.to,
            "raw": String::from_utf8_lossy(&dsn.raw),
            "delivery": rec,
        }))
        .into_response(),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

async fn unsubscribe(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let Some(mail) = recorded(&hub, &id) else {
        return not_found(&id);
    };
    let info = unsubscribe::inspect(&mail);
    let Some(url) = info.http_uri.clone().filter(|_| info.one_click) else {
        // A client only offers one-click with both headers and an HTTP(S) URI (RFC 8058 §3.1).
        let mut e = json!({ "error": "no one-click unsubscribe: needs List-Unsubscribe with an https URI and \
                                      List-Unsubscribe-Post: List-Unsubscribe=One-Click" });
        e["list_unsubscribe"] = serde_json::to_value(&info).unwrap_or(Value::Null);
        return (StatusCode::CONFLICT, axum::Json(e)).into_response();
    };
    let ex = unsubscribe::one_click(&hub.http, &url).await;
    delivery::log_http(&hub, "unsubscribe", &mail, &ex);
    axum::Json(json!({ "list_unsubscribe": info, "status": ex.status, "exchange": ex })).into_response()
}

async fn prefetch(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let Some(mail) = recorded(&hub, &id) else {
        return not_found(&id);
    };
    let info = unsubscribe::inspect(&mail);
    let Some(url) = info.http_uri.clone() else {
        return ctl_err(StatusCode::CONFLICT, "no http(s) URI in List-Unsubscribe");
    };
    let ex = unsubscribe::prefetch(&hub.scanner, &url).await;
    delivery::log_http(&hub, "prefetch", &mail, &ex);
    axum::Json(json!({ "list_unsubscribe": info, "status": ex.status, "exchange": ex })).into_response()
}

async fn deliveries(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.st().deliveries.clone()).into_response()
}

async fn sent(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.st().sent.clone()).into_response()
}

async fn get_clock(State(hub): State<Arc<Hub>>) -> Response {
    clock_now(&hub.clock)
}

async fn set_clock(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    clock_move(&hub.clock, &body)
}

async fn reset_logs(State(hub): State<Arc<Hub>>) -> Response {
    let mut st = hub.st();
    st.deliveries.clear();
    st.sent.clear();
    axum::Json(json!({ "ok": true })).into_response()
}
