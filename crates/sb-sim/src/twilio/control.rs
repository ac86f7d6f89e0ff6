//! Control API for tests (not part of Twilio), mounted at `/_sim/...` and
//! `/_sim/twilio/...`, plus the `GET /` page to play a customer's phone.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::inbound::InboundReq;
use super::message::utf8_json;
use super::webhooks::form_decode;
use super::{NumberState, ProxyRewrite, Tw, TwFaults, TwilioNumber, segments};
use crate::common::{clock_move, clock_now, ctl_err, parse_body};

const PAGE: &str = include_str!("../twilio.html");

pub(super) fn router(tw: Arc<Tw>) -> Router {
    let mut r: Router<Arc<Tw>> = Router::new().route("/", get(page));
    for prefix in ["/_sim", "/_sim/twilio"] {
        r = r
            .route(&format!("{prefix}/inbound"), post(inbound))
            .route(&format!("{prefix}/numbers"), get(list_numbers).post(upsert_number))
            .route(&format!("{prefix}/outbox"), get(outbox))
            .route(&format!("{prefix}/messages"), get(messages))
            .route(&format!("{prefix}/received"), get(received))
            .route(&format!("{prefix}/deliver/{{sid}}"), post(deliver))
            .route(&format!("{prefix}/fail/{{sid}}"), post(fail))
            .route(&format!("{prefix}/read/{{sid}}"), post(read))
            .route(&format!("{prefix}/faults"), get(get_faults).post(set_faults))
            .route(&format!("{prefix}/landline"), get(landlines).post(set_landline))
            .route(&format!("{prefix}/optouts"), get(optouts).post(set_optout))
            .route(&format!("{prefix}/webhooks"), get(webhooks))
            .route(&format!("{prefix}/options"), get(get_options).post(set_options))
            .route(&format!("{prefix}/segments"), post(count_segments))
            .route(&format!("{prefix}/clock"), get(get_clock).post(set_clock))
            .route(&format!("{prefix}/reset-logs"), post(reset_logs));
    }
    r.with_state(tw)
}

macro_rules! body_or_400 {
    ($body:expr) => {
        match parse_body(&$body) {
            Ok(v) => v,
            Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
        }
    };
}

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    form_decode(query.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
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

/// `POST /_sim/inbound`: a customer texts one of our numbers.
async fn inbound(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let req: InboundReq = body_or_400!(body);
    match tw.inbound(req).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ctl_err(StatusCode::BAD_REQUEST, e),
    }
}

fn number_json(n: &NumberState, now: i64) -> Value {
    let mut v = serde_json::to_value(&n.cfg).unwrap_or(Value::Null);
    v["queue_ms"] = json!(n.next_free_ms.saturating_sub(now).max(0));
    v
}

async fn list_numbers(State(tw): State<Arc<Tw>>) -> Response {
    let now = tw.clock.now_ms();
    let st = tw.st();
    let list: Vec<Value> = st.numbers.iter().map(|n| number_json(n, now)).collect();
    axum::Json(list).into_response()
}

/// `POST /_sim/numbers`: adds a number or changes some of its settings ("" clears a URL).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NumberPatch {
    phone: String,
    sms_url: Option<String>,
    status_callback: Option<String>,
    signing_url: Option<String>,
    segments_per_second: Option<f64>,
    delivery_receipts: Option<bool>,
}

async fn upsert_number(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let p: NumberPatch = body_or_400!(body);
    let now = tw.clock.now_ms();
    let mut st = tw.st();
    if st.number(&p.phone).is_none() {
        st.numbers.push(NumberState {
            cfg: TwilioNumber::new(p.phone.clone()),
            next_free_ms: 0,
        });
    }
    let n = st.number_mut(&p.phone).expect("just ensured");
    let url = |v: String| (!v.is_empty()).then_some(v);
    if let Some(v) = p.sms_url {
        n.cfg.sms_url = url(v);
    }
    if let Some(v) = p.status_callback {
        n.cfg.status_callback = url(v);
    }
    if let Some(v) = p.signing_url {
        n.cfg.signing_url = url(v);
    }
    if let Some(v) = p.segments_per_second {
        n.cfg.segments_per_second = v;
    }
    if let Some(v) = p.delivery_receipts {
        n.cfg.delivery_receipts = v;
    }
    axum::Json(number_json(n, now)).into_response()
}

async fn outbox(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(tw.st().outbox.clone()).into_response()
}

/// `GET /_sim/messages[?sid=]`: every message resource with the simulator's bookkeeping.
async fn messages(State(tw): State<Arc<Tw>>, RawQuery(q): RawQuery) -> Response {
    let only = query_param(&q, "sid");
    let st = tw.st();
    let list: Vec<Value> = st
        .messages
        .iter()
        .filter(|m| only.as_deref().is_none_or(|s| s == m.sid))
        .map(|m| {
            json!({
                "sid": m.sid,
                "resource": serde_json::from_str::<Value>(&utf8_json(&m.to_json(&tw.cfg.account_sid)))
                    .unwrap_or(Value::Null),
                "history": m.history,
                "status_callback": m.status_callback,
                "content_sid": m.content_sid,
                "content_variables": m.content_variables,
                "media_urls": m.media_urls,
                "media_fetches": m.media_fetches,
                "send_at_ms": m.send_at_ms,
                "deliver_at_ms": m.deliver_at_ms,
                "expire_at_ms": m.expire_at_ms,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `GET /_sim/received[?to=+1555…]`: what handsets received, in order.
async fn received(State(tw): State<Arc<Tw>>, RawQuery(q): RawQuery) -> Response {
    let to = query_param(&q, "to");
    let st = tw.st();
    let list: Vec<&super::Received> = st
        .received
        .iter()
        .filter(|r| to.as_deref().is_none_or(|t| t == r.to))
        .collect();
    axum::Json(json!(list)).into_response()
}

fn message_answer(tw: &Tw, sid: &str) -> Response {
    let st = tw.st();
    match st.message(sid) {
        Some(m) => axum::Json(
            serde_json::from_str::<Value>(&utf8_json(&m.to_json(&tw.cfg.account_sid))).unwrap_or(Value::Null),
        )
        .into_response(),
        None => ctl_err(StatusCode::NOT_FOUND, format!("unknown message {sid}")),
    }
}

async fn deliver(State(tw): State<Arc<Tw>>, Path(sid): Path<String>) -> Response {
    match tw.force_deliver(&sid) {
        Ok(()) => message_answer(&tw, &sid),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

/// `POST /_sim/fail/{sid}?code=30003[&status=failed|undelivered]`.
async fn fail(State(tw): State<Arc<Tw>>, Path(sid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let code = match query_param(&q, "code").map(|c| c.parse::<u32>()) {
        None => 30003,
        Some(Ok(c)) => c,
        Some(Err(_)) => return ctl_err(StatusCode::BAD_REQUEST, "code must be a number"),
    };
    let status = query_param(&q, "status");
    match tw.force_fail(&sid, code, status.as_deref()) {
        Ok(()) => message_answer(&tw, &sid),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

async fn read(State(tw): State<Arc<Tw>>, Path(sid): Path<String>) -> Response {
    match tw.mark_read(&sid) {
        Ok(()) => message_answer(&tw, &sid),
        Err(e) => ctl_err(StatusCode::CONFLICT, e),
    }
}

async fn get_faults(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(tw.st().faults.clone()).into_response()
}

async fn set_faults(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let f: TwFaults = body_or_400!(body);
    if !matches!(f.fail_status, 429 | 500) {
        return ctl_err(StatusCode::BAD_REQUEST, "fail_status must be 429 or 500");
    }
    tw.st().faults = f.clone();
    axum::Json(f).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LandlineReq {
    number: String,
    #[serde(default = "yes")]
    landline: bool,
}

fn yes() -> bool {
    true
}

async fn landlines(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(json!({ "landlines": tw.st().landlines })).into_response()
}

/// `POST /_sim/landline {"number", "landline": true}`: sends to it fail with 21614.
async fn set_landline(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let req: LandlineReq = body_or_400!(body);
    let mut st = tw.st();
    if req.landline {
        st.landlines.insert(req.number);
    } else {
        st.landlines.remove(&req.number);
    }
    axum::Json(json!({ "landlines": st.landlines })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOutReq {
    /// Our number (or Messaging Service SID).
    sender: String,
    /// The customer.
    number: String,
    #[serde(default = "yes")]
    opted_out: bool,
}

fn optouts_json(tw: &Tw) -> Value {
    let st = tw.st();
    let list: Vec<Value> = st
        .optouts
        .iter()
        .map(|(scope, number)| json!({ "scope": scope, "number": number }))
        .collect();
    json!(list)
}

async fn optouts(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(optouts_json(&tw)).into_response()
}

/// `POST /_sim/optouts`: sets an opt-out as if the customer had texted STOP (without the webhook).
async fn set_optout(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let req: OptOutReq = body_or_400!(body);
    let key = (tw.opt_out_scope(&req.sender), req.number);
    {
        let mut st = tw.st();
        if req.opted_out {
            st.optouts.insert(key);
        } else {
            st.optouts.remove(&key);
        }
    }
    axum::Json(optouts_json(&tw)).into_response()
}

async fn webhooks(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(json!(tw.st().webhooks)).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsPatch {
    keyword_engine: Option<bool>,
    advanced_opt_out: Option<bool>,
    sign_with_explicit_port: Option<bool>,
    auto_deliver: Option<bool>,
    dlr_delay_ms: Option<i64>,
    max_queue_secs: Option<i64>,
    media_requires_auth: Option<bool>,
    whatsapp_window_sync_error: Option<bool>,
    webhook_timeout_ms: Option<u64>,
    proxy_rewrites: Option<Vec<ProxyRewrite>>,
}

async fn get_options(State(tw): State<Arc<Tw>>) -> Response {
    axum::Json(tw.st().options.clone()).into_response()
}

async fn set_options(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let p: OptionsPatch = body_or_400!(body);
    let mut st = tw.st();
    let o = &mut st.options;
    macro_rules! patch {
        ($($f:ident),*) => { $( if let Some(v) = p.$f { o.$f = v; } )* };
    }
    patch!(
        keyword_engine,
        advanced_opt_out,
        sign_with_explicit_port,
        auto_deliver,
        dlr_delay_ms,
        max_queue_secs,
        media_requires_auth,
        whatsapp_window_sync_error,
        webhook_timeout_ms,
        proxy_rewrites
    );
    axum::Json(o.clone()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsReq {
    text: String,
}

/// `POST /_sim/segments {"text"}`: the simulator's own segment count (the page shows it live).
async fn count_segments(body: Bytes) -> Response {
    let req: SegmentsReq = body_or_400!(body);
    axum::Json(segments::count(&req.text)).into_response()
}

async fn get_clock(State(tw): State<Arc<Tw>>) -> Response {
    clock_now(&tw.clock)
}

async fn set_clock(State(tw): State<Arc<Tw>>, body: Bytes) -> Response {
    let resp = clock_move(&tw.clock, &body);
    tw.wake.notify_one();
    resp
}

async fn reset_logs(State(tw): State<Arc<Tw>>) -> Response {
    let mut st = tw.st();
    st.outbox.clear();
    st.webhooks.clear();
    st.received.clear();
    axum::Json(json!({ "ok": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        assert!(PAGE.contains("<title>Twilio simulator — play the customer's phone</title>"));
        assert!(!PAGE.contains("innerHTML") && !PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
