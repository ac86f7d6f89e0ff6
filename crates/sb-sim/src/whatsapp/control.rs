//! Control API for tests (`/_sim/whatsapp/...`; not part of the provider).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::payloads::{CustomerMessage, Inbound, StatusSpec};
use super::{Wa, WaOptions, normalise_phone};
use crate::common::{ctl_err, parse_body};
use crate::jobj;
use crate::json::Json;

pub(super) fn router(wa: Arc<Wa>) -> Router {
    Router::new()
        .route("/_sim/whatsapp/customer-message", post(customer_message))
        .route("/_sim/whatsapp/batch", post(batch))
        .route("/_sim/whatsapp/status", post(status))
        .route("/_sim/whatsapp/user-preferences", post(user_preferences))
        .route("/_sim/whatsapp/templates", get(list_templates).post(upsert_template))
        .route("/_sim/whatsapp/unknown-number", post(unknown_number))
        .route("/_sim/whatsapp/options", get(get_options).post(set_options))
        .route("/_sim/whatsapp/customers", get(customers))
        .with_state(wa)
}

macro_rules! body_or_return {
    ($body:expr) => {
        match parse_body(&$body) {
            Ok(v) => v,
            Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
        }
    };
}

async fn customer_message(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: CustomerMessage = body_or_return!(body);
    let inbound = {
        let mut st = wa.st();
        match wa.build_inbound(&mut st, &req) {
            Ok(i) => i,
            Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
        }
    };
    let wire = wa
        .single(wa.messages_value(std::slice::from_ref(&inbound)), "messages")
        .to_wire();
    let delivered = wa.core.deliver(wire, false).await;
    axum::Json(json!({
        "wamid": inbound.wamid,
        "delivered_status": delivered,
        "media_id": inbound.media_id,
        "user_id": inbound.user_id,
    }))
    .into_response()
}

/// `POST /_sim/whatsapp/status`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusReq {
    message_id: String,
    /// sent | delivered | read | played | failed
    status: String,
    error_code: Option<i64>,
    error_title: Option<String>,
    error_details: Option<String>,
    /// Needed only for a wamid the simulator did not issue.
    recipient_id: Option<String>,
    /// Unix seconds; defaults to the SimClock.
    timestamp: Option<i64>,
}

impl Wa {
    fn status_json(&self, req: &StatusReq) -> Result<Json, String> {
        if !matches!(req.status.as_str(), "sent" | "delivered" | "read" | "played" | "failed") {
            return Err(format!(
                "status must be sent|delivered|read|played|failed, got {}",
                req.status
            ));
        }
        let st = self.st();
        let msg = st.sent.get(&req.message_id);
        if msg.is_none() && req.recipient_id.is_none() {
            return Err(format!(
                "unknown message_id {} (pass recipient_id to emit anyway)",
                req.message_id
            ));
        }
        Ok(self.status_obj(&StatusSpec {
            wamid: &req.message_id,
            status: &req.status,
            msg,
            error_code: req.error_code,
            error_title: req.error_title.clone(),
            error_details: req.error_details.clone(),
            recipient_id: req.recipient_id.clone(),
            timestamp_secs: req.timestamp.unwrap_or_else(|| self.core.clock.now_secs()),
        }))
    }
}

async fn status(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: StatusReq = body_or_return!(body);
    let s = match wa.status_json(&req) {
        Ok(s) => s,
        Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
    };
    let wire = wa.single(wa.statuses_value(vec![s]), "messages").to_wire();
    let delivered = wa.core.deliver(wire, false).await;
    axum::Json(json!({ "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchReq {
    #[serde(default)]
    messages: Vec<CustomerMessage>,
    #[serde(default)]
    statuses: Vec<StatusReq>,
    /// One entry per item instead of one entry with (up to) two changes.
    #[serde(default)]
    separate_entries: bool,
}

/// Several customer messages and/or statuses in ONE webhook POST.
async fn batch(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: BatchReq = body_or_return!(body);
    if req.messages.is_empty() && req.statuses.is_empty() {
        return ctl_err(StatusCode::BAD_REQUEST, "batch needs `messages` and/or `statuses`");
    }
    let mut inbound: Vec<Inbound> = Vec::new();
    {
        let mut st = wa.st();
        for m in &req.messages {
            match wa.build_inbound(&mut st, m) {
                Ok(i) => inbound.push(i),
                Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
            }
        }
    }
    let mut statuses = Vec::new();
    for s in &req.statuses {
        match wa.status_json(s) {
            Ok(j) => statuses.push(j),
            Err(e) => return ctl_err(StatusCode::BAD_REQUEST, e),
        }
    }
    let entries = if req.separate_entries {
        let mut e: Vec<Json> = inbound
            .iter()
            .map(|i| wa.entry(vec![Wa::change(wa.messages_value(std::slice::from_ref(i)), "messages")]))
            .collect();
        e.extend(
            statuses
                .into_iter()
                .map(|s| wa.entry(vec![Wa::change(wa.statuses_value(vec![s]), "messages")])),
        );
        e
    } else {
        let mut changes = Vec::new();
        if !inbound.is_empty() {
            changes.push(Wa::change(wa.messages_value(&inbound), "messages"));
        }
        if !statuses.is_empty() {
            changes.push(Wa::change(wa.statuses_value(statuses), "messages"));
        }
        vec![wa.entry(changes)]
    };
    let wire = Wa::envelope(entries).to_wire();
    let delivered = wa.core.deliver(wire, false).await;
    let wamids: Vec<&str> = inbound.iter().map(|i| i.wamid.as_str()).collect();
    axum::Json(json!({ "wamids": wamids, "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefReq {
    wa_id: String,
    /// stop | resume
    value: String,
    name: Option<String>,
}

/// Marketing stop/resume → `user_preferences` webhook field; `stop` makes marketing templates fail 131050.
async fn user_preferences(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: PrefReq = body_or_return!(body);
    let Some(wa_id) = normalise_phone(&req.wa_id) else {
        return ctl_err(StatusCode::BAD_REQUEST, "wa_id is not a phone number");
    };
    let detail = match req.value.as_str() {
        "stop" => "User requested to stop marketing messages",
        "resume" => "User requested to resume marketing messages",
        other => {
            return ctl_err(
                StatusCode::BAD_REQUEST,
                format!("value must be stop|resume, got {other}"),
            );
        }
    };
    let name = {
        let mut st = wa.st();
        let c = st.upsert_customer(Some(&wa_id), None);
        c.marketing_stopped = req.value == "stop";
        if let Some(n) = &req.name {
            c.name = Some(n.clone());
        }
        c.name.clone().unwrap_or_else(|| wa_id.clone())
    };
    let value = wa
        .value_base()
        .with(
            "contacts",
            vec![jobj! { "profile": jobj! { "name": name }, "wa_id": wa_id.as_str() }],
        )
        .with(
            "user_preferences",
            vec![jobj! {
                "wa_id": wa_id.as_str(),
                "detail": detail,
                "category": "marketing_messages",
                "value": req.value.as_str(),
                "timestamp": wa.core.clock.now_secs(),
            }],
        );
    let wire = wa.single(value, "user_preferences").to_wire();
    let delivered = wa.core.deliver(wire, false).await;
    axum::Json(json!({ "delivered_status": delivered })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateReq {
    name: String,
    language: String,
    #[serde(default = "utility")]
    category: String,
    body: String,
    /// APPROVED (default) | PAUSED | DISABLED | PENDING | REJECTED
    #[serde(default = "approved")]
    status: String,
    header_text: Option<String>,
}

fn utility() -> String {
    "UTILITY".into()
}

fn approved() -> String {
    "APPROVED".into()
}

async fn list_templates(State(wa): State<Arc<Wa>>) -> Response {
    axum::Json(wa.st().templates.clone()).into_response()
}

async fn upsert_template(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: TemplateReq = body_or_return!(body);
    let t = wa.st().upsert_template(
        &req.name,
        &req.language,
        &req.category,
        &req.status,
        &req.body,
        req.header_text,
    );
    axum::Json(t).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnknownReq {
    wa_id: String,
    #[serde(default)]
    remove: bool,
}

/// Sends to this number (digits) or BSUID are accepted, then fail asynchronously with 131026.
async fn unknown_number(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let req: UnknownReq = body_or_return!(body);
    let key = normalise_phone(&req.wa_id).unwrap_or(req.wa_id);
    let mut st = wa.st();
    if req.remove {
        st.unknown.remove(&key);
    } else {
        st.unknown.insert(key);
    }
    axum::Json(json!({ "unknown_numbers": st.unknown })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsPatch {
    mps: Option<u32>,
    pair_burst: Option<u32>,
    pair_interval_ms: Option<u64>,
    status_delay_ms: Option<u64>,
    auto_statuses: Option<bool>,
    media_url_ttl_ms: Option<i64>,
}

async fn get_options(State(wa): State<Arc<Wa>>) -> Response {
    axum::Json(wa.st().options.clone()).into_response()
}

async fn set_options(State(wa): State<Arc<Wa>>, body: Bytes) -> Response {
    let p: OptionsPatch = body_or_return!(body);
    let now = wa.core.clock.now_ms();
    let mut st = wa.st();
    let o: &mut WaOptions = &mut st.options;
    if let Some(v) = p.mps {
        o.mps = v;
    }
    if let Some(v) = p.pair_burst {
        o.pair_burst = v;
    }
    if let Some(v) = p.pair_interval_ms {
        o.pair_interval_ms = v.max(1);
    }
    if let Some(v) = p.status_delay_ms {
        o.status_delay_ms = v;
    }
    if let Some(v) = p.auto_statuses {
        o.auto_statuses = v;
    }
    if let Some(v) = p.media_url_ttl_ms {
        o.media_url_ttl_ms = v;
    }
    let opts = o.clone();
    // New limits start with full buckets.
    st.mps = crate::common::Bucket::new(f64::from(opts.mps), now);
    st.pairs.clear();
    axum::Json(opts).into_response()
}

async fn customers(State(wa): State<Arc<Wa>>) -> Response {
    let st = wa.st();
    let list: Vec<Value> = st
        .customers
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    axum::Json(list).into_response()
}
