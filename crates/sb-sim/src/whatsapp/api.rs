//! The provider face: what our adapter calls (channels.md §1.4 media, §1.8 send, §1.10 templates).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::payloads::StatusSpec;
use super::{OutMsg, Wa, looks_like_bsuid, normalise_phone, placeholders};
use crate::common::{
    GraphError, bearer_token, graph_json, headers_json, hmac_hex, parse_multipart, parse_urlencoded, request_token,
    valid_version,
};
use crate::jobj;
use crate::json::Json;

pub(super) fn router(wa: Arc<Wa>) -> Router {
    Router::new()
        .route("/{version}/{node}/messages", post(send_message))
        .route("/{version}/{node}/media", post(upload_media))
        .route("/{version}/{node}/message_templates", get(list_templates))
        .route("/{version}/{node}", get(get_media).delete(delete_media))
        .route("/media-download/{id}", get(download_media))
        .with_state(wa)
}

/// The accepted send, validated.
struct Outgoing {
    input: String,
    wa_id: Option<String>,
    user_id: Option<String>,
    kind: String,
    biz_opaque: Option<String>,
}

/// Async outcome of an accepted send.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Deliver,
    Fail(i64),
}

fn missing(param: &str) -> GraphError {
    GraphError::new(400, 131008, "(#131008) Required parameter is missing")
        .details(format!("Parameter '{param}' is required."))
}

fn invalid(details: impl Into<String>) -> GraphError {
    GraphError::new(400, 131009, "(#131009) Parameter value is not valid").details(details)
}

fn param_err(message: impl Into<String>) -> GraphError {
    let m = message.into();
    GraphError::new(400, 100, format!("(#100) {m}")).details(m)
}

fn str_field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

impl Wa {
    /// Appends a provider-request record and returns its index.
    fn record_call(
        &self,
        method: &str,
        path: &str,
        query: &Option<String>,
        headers: &HeaderMap,
        body: Value,
        raw: String,
    ) -> usize {
        let (to, kind) = match &body {
            Value::Object(o) => (
                o.get("to")
                    .or_else(|| o.get("recipient"))
                    .cloned()
                    .unwrap_or(Value::Null),
                o.get("type").cloned().unwrap_or_else(|| {
                    if o.contains_key("text") {
                        json!("text")
                    } else {
                        Value::Null
                    }
                }),
            ),
            _ => (Value::Null, Value::Null),
        };
        self.core.record_request(json!({
            "seq": null,
            "method": method,
            "path": path,
            "query": query,
            "wamid": null,
            "to": to,
            "type": kind,
            "body": body,
            "raw_body": raw,
            "headers": headers_json(headers),
            "at_ms": self.core.clock.now_ms(),
            "status": null,
            "response": null,
        }))
    }

    fn finish(&self, idx: usize, result: Result<(u16, Json), GraphError>, wamid: Option<String>) -> Response {
        let (status, body) = match result {
            Ok(ok) => ok,
            Err(e) => (e.http, e.body(true, self.core.fbtrace())),
        };
        self.core.complete_request(
            idx,
            &[
                ("status", json!(status)),
                ("response", body.to_value()),
                ("wamid", json!(wamid)),
            ],
        );
        graph_json(status, &body)
    }

    /// Version, fault and token checks shared by every Graph call.
    fn check_call(
        &self,
        version: &str,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
    ) -> Result<(), GraphError> {
        if !valid_version(version) {
            return Err(GraphError::new(
                400,
                2500,
                format!("Unknown path components: /{version}"),
            ));
        }
        if self.core.faults().expired_token {
            return Err(GraphError::expired_token(self.core.clock.now_secs()));
        }
        match request_token(headers, query) {
            Some(t) if t == self.cfg.access_token => Ok(()),
            _ => Err(GraphError::bad_token()),
        }
    }

    async fn send(
        self: &Arc<Self>,
        version: &str,
        node: &str,
        query: &BTreeMap<String, String>,
        headers: &HeaderMap,
        body: Option<Value>,
    ) -> Result<(Json, Option<String>), GraphError> {
        self.check_call(version, headers, query)?;
        if node != self.cfg.phone_number_id {
            return Err(GraphError::no_object("post", node));
        }
        if let Some(f) = self.core.take_send_fault() {
            if let Some(ms) = f.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            return Err(GraphError::from_fault(&f));
        }
        let body = body.ok_or_else(|| param_err("Invalid parameter").details("The request body is not valid JSON."))?;
        let obj = body.as_object().ok_or_else(|| param_err("Invalid parameter"))?;
        match obj.get("messaging_product") {
            None => return Err(param_err("The parameter messaging_product is required.")),
            Some(Value::String(s)) if s == "whatsapp" => {}
            Some(other) => {
                return Err(param_err(format!(
                    "Param messaging_product must be 'whatsapp', got {other}."
                )));
            }
        }
        // Mark as read (+ typing indicator) shares the endpoint.
        if str_field(obj, "status") == Some("read") {
            if str_field(obj, "message_id").is_none() {
                return Err(missing("message_id"));
            }
            return Ok((jobj! { "success": true }, None));
        }
        let out = validate(obj)?;
        let template_category = if out.kind == "template" {
            Some(self.check_template(obj)?)
        } else {
            None
        };

        let now = self.core.clock.now_ms();
        let (wamid, outcome, delay, auto) = {
            let mut st = self.st();
            let opts = st.options.clone();
            if !st.mps.take(f64::from(opts.mps), f64::from(opts.mps) / 1000.0, now) {
                return Err(GraphError::new(429, 130429, "(#130429) Rate limit hit")
                    .details("Cloud API message throughput has been reached."));
            }
            let pair_key = out.wa_id.clone().or_else(|| out.user_id.clone()).unwrap_or_default();
            let burst = f64::from(opts.pair_burst);
            let refill = 1.0 / opts.pair_interval_ms.max(1) as f64;
            let pair = st
                .pairs
                .entry(pair_key.clone())
                .or_insert_with(|| crate::common::Bucket::new(burst, now));
            if !pair.take(burst, refill, now) {
                let (t, d) = super::payloads::error_text(131056);
                return Err(GraphError::new(429, 131056, format!("(#131056) {t}")).details(d));
            }

            let cust = st.customer_idx(out.wa_id.as_deref(), out.user_id.as_deref());
            let open = Wa::window_open(&st, out.wa_id.as_deref(), out.user_id.as_deref(), now);
            let stopped = cust.is_some_and(|i| st.customers[i].marketing_stopped);
            let unknown = out.wa_id.as_ref().is_some_and(|w| st.unknown.contains(w))
                || out.user_id.as_ref().is_some_and(|u| st.unknown.contains(u));
            let outcome = if unknown {
                Outcome::Fail(131026)
            } else if template_category.is_none() && !open {
                Outcome::Fail(131047)
            } else if stopped && template_category.as_deref() == Some("MARKETING") {
                Outcome::Fail(131050)
            } else {
                Outcome::Deliver
            };
            // A user known only by BSUID: statuses name the BSUID.
            let user_id = out
                .user_id
                .clone()
                .or_else(|| cust.and_then(|i| st.customers[i].user_id.clone()));
            let wamid = self.new_wamid(&mut st, &pair_key, true);
            st.sent.insert(
                wamid.clone(),
                OutMsg {
                    wa_id: out.wa_id.clone(),
                    user_id,
                    biz_opaque: out.biz_opaque.clone(),
                    pricing: Some(Wa::pricing(template_category.as_deref(), open)),
                },
            );
            (wamid, outcome, opts.status_delay_ms, opts.auto_statuses)
        };

        if auto {
            self.spawn_statuses(wamid.clone(), outcome, delay);
        }
        let contact = match &out.wa_id {
            Some(w) => jobj! { "input": out.input.as_str(), "wa_id": w.as_str() },
            None => jobj! { "input": out.input.as_str(), "user_id": out.user_id.clone() },
        };
        let resp = jobj! {
            "messaging_product": "whatsapp",
            "contacts": vec![contact],
            "messages": vec![jobj! { "id": wamid.as_str(), "message_status": "accepted" }],
        };
        Ok((resp, Some(wamid)))
    }

    /// Emits `sent` then `delivered` (reversed with the out-of-order fault), or `failed`.
    fn spawn_statuses(self: &Arc<Self>, wamid: String, outcome: Outcome, delay_ms: u64) {
        let wa = Arc::clone(self);
        tokio::spawn(async move {
            let seq: Vec<(&str, Option<i64>)> = match outcome {
                Outcome::Fail(code) => vec![("failed", Some(code))],
                Outcome::Deliver if wa.core.faults().out_of_order_statuses => {
                    vec![("delivered", None), ("sent", None)]
                }
                Outcome::Deliver => vec![("sent", None), ("delivered", None)],
            };
            for (status, code) in seq {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let body = {
                    let st = wa.st();
                    let msg = st.sent.get(&wamid);
                    let s = wa.status_obj(&StatusSpec {
                        wamid: &wamid,
                        status,
                        msg,
                        error_code: code,
                        error_title: None,
                        error_details: None,
                        recipient_id: None,
                        timestamp_secs: wa.core.clock.now_secs(),
                    });
                    wa.single(wa.statuses_value(vec![s]), "messages").to_wire()
                };
                wa.core.deliver(body, false).await;
            }
        });
    }

    /// Template checks: 132001 unknown name+language, 132015/132016 paused/disabled,
    /// 132000 parameter count mismatch. Returns the template category.
    fn check_template(&self, obj: &Map<String, Value>) -> Result<String, GraphError> {
        let t = obj
            .get("template")
            .and_then(Value::as_object)
            .ok_or_else(|| missing("template"))?;
        let name = str_field(t, "name").ok_or_else(|| missing("template.name"))?;
        let code = t
            .get("language")
            .and_then(Value::as_object)
            .and_then(|l| str_field(l, "code"))
            .ok_or_else(|| missing("template.language.code"))?;
        let tpl = self
            .st()
            .templates
            .iter()
            .find(|x| x.name == name && x.language == code)
            .cloned();
        let not_found = || {
            GraphError::new(400, 132001, "(#132001) Template name does not exist in the translation")
                .details(format!("template name ({name}) does not exist in {code}"))
        };
        let tpl = tpl.ok_or_else(not_found)?;
        match tpl.status.as_str() {
            "APPROVED" => {}
            "PAUSED" => {
                return Err(GraphError::new(400, 132015, "(#132015) Template is paused")
                    .details(format!("Template {name} is paused due to low quality.")));
            }
            "DISABLED" => {
                return Err(GraphError::new(400, 132016, "(#132016) Template is disabled")
                    .details(format!("Template {name} has been disabled.")));
            }
            _ => return Err(not_found()),
        }
        let empty = Vec::new();
        let components = match t.get("components") {
            None | Some(Value::Null) => &empty,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(param_err("Param template['components'] must be an array.")),
        };
        let mut body_params: Vec<&Value> = Vec::new();
        let mut header_params: Vec<&Value> = Vec::new();
        for c in components {
            let ctype = c.get("type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            let params: Vec<&Value> = c
                .get("parameters")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            for (i, p) in params.iter().enumerate() {
                check_param(&ctype, i, p)?;
            }
            match ctype.as_str() {
                "body" => body_params.extend(params),
                "header" => header_params.extend(params),
                _ => {}
            }
        }
        check_count("body", &tpl.body, &body_params)?;
        if let Some(h) = &tpl.header_text {
            check_count("header", h, &header_params)?;
        }
        Ok(tpl.category)
    }
}

/// 132000 when the parameters given do not match the `{{n}}` / `{{name}}` placeholders of `text`.
fn check_count(section: &str, text: &str, given: &[&Value]) -> Result<(), GraphError> {
    let mismatch = |details: String| {
        GraphError::new(
            400,
            132000,
            "(#132000) Number of parameters does not match the expected number of params",
        )
        .details(details)
    };
    let expected = placeholders(text);
    if given.len() != expected.len() {
        return Err(mismatch(format!(
            "{section}: number of localizable_params ({}) does not match the expected number of params ({})",
            given.len(),
            expected.len()
        )));
    }
    if expected.iter().any(|n| !n.bytes().all(|b| b.is_ascii_digit())) {
        for p in given {
            let pname = p.get("parameter_name").and_then(Value::as_str).unwrap_or("");
            if !expected.iter().any(|n| n == pname) {
                return Err(mismatch(format!(
                    "{section}: parameter_name '{pname}' does not match the template"
                )));
            }
        }
    }
    Ok(())
}

fn check_param(section: &str, i: usize, p: &Value) -> Result<(), GraphError> {
    const TYPES: [&str; 12] = [
        "text",
        "currency",
        "date_time",
        "image",
        "video",
        "document",
        "location",
        "payload",
        "coupon_code",
        "action",
        "product",
        "order_status",
    ];
    let ptype = p
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&format!("{section}.parameters[{i}].type")))?;
    let ptype = ptype.to_ascii_lowercase();
    if !TYPES.contains(&ptype.as_str()) {
        return Err(param_err(format!(
            "Param {section}.parameters[{i}].type must be one of {{{}}}.",
            TYPES.join(", ")
        )));
    }
    let ok = match ptype.as_str() {
        "text" => p.get("text").and_then(Value::as_str).is_some_and(|s| !s.is_empty()),
        "payload" => p.get("payload").and_then(Value::as_str).is_some(),
        "coupon_code" => p.get("coupon_code").and_then(Value::as_str).is_some(),
        "currency" => p.get("currency").is_some_and(Value::is_object),
        "date_time" => p.get("date_time").is_some_and(Value::is_object),
        "image" | "video" | "document" => p
            .get(ptype.as_str())
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("link") || m.contains_key("id")),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(GraphError::new(
            400,
            132012,
            "(#132012) Parameter format does not match format in the created template",
        )
        .details(format!(
            "{section}: parameters[{i}] of type {ptype} is missing its value"
        )))
    }
}

/// Validates a send body (channels.md §1.8): `to` xor `recipient`, a type object matching `type`.
fn validate(obj: &Map<String, Value>) -> Result<Outgoing, GraphError> {
    if let Some(rt) = obj.get("recipient_type")
        && rt.as_str() != Some("individual")
    {
        return Err(invalid(format!(
            "recipient_type {rt} is not supported by the simulator (use \"individual\")"
        )));
    }
    let (input, wa_id, user_id) = match (obj.get("to"), obj.get("recipient")) {
        (Some(_), Some(_)) => return Err(invalid("Use either 'to' or 'recipient', not both.")),
        (None, None) => return Err(missing("to")),
        (Some(to), None) => {
            let s = to.as_str().ok_or_else(|| invalid("'to' must be a string."))?;
            let w = normalise_phone(s).ok_or_else(|| invalid(format!("'to' is not a valid phone number: {s}")))?;
            (s.to_string(), Some(w), None)
        }
        (None, Some(r)) => {
            let s = r.as_str().ok_or_else(|| invalid("'recipient' must be a string."))?;
            if !looks_like_bsuid(s) {
                return Err(invalid(format!("'recipient' is not a business-scoped user id: {s}")));
            }
            (s.to_string(), None, Some(s.to_string()))
        }
    };
    let kind = match obj.get("type") {
        None => "text".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(param_err("Param type must be a string.")),
    };
    let tobj = || {
        obj.get(kind.as_str())
            .and_then(Value::as_object)
            .ok_or_else(|| missing(&kind))
    };
    match kind.as_str() {
        "text" => {
            let t = tobj()?;
            let body = str_field(t, "body").ok_or_else(|| missing("text.body"))?;
            if body.is_empty() {
                return Err(invalid("text.body must not be empty."));
            }
            if body.chars().count() > 4096 {
                return Err(param_err("Param text['body'] must be at most 4096 characters long."));
            }
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let m = tobj()?;
            match (m.get("link"), m.get("id")) {
                (Some(Value::String(_)), None) | (None, Some(Value::String(_))) => {}
                (Some(_), Some(_)) => {
                    return Err(invalid(format!("{kind} must contain either 'id' or 'link', not both.")));
                }
                _ => return Err(missing(&format!("{kind}.link or {kind}.id"))),
            }
            if let Some(c) = str_field(m, "caption")
                && c.chars().count() > 1024
            {
                return Err(param_err(format!(
                    "Param {kind}['caption'] must be at most 1024 characters long."
                )));
            }
        }
        "location" => {
            let l = tobj()?;
            for k in ["latitude", "longitude"] {
                let ok = match l.get(k) {
                    Some(Value::Number(_)) => true,
                    Some(Value::String(s)) => s.parse::<f64>().is_ok(),
                    _ => false,
                };
                if !ok {
                    return Err(missing(&format!("location.{k}")));
                }
            }
        }
        "reaction" => {
            let r = tobj()?;
            if str_field(r, "message_id").is_none() {
                return Err(missing("reaction.message_id"));
            }
            if str_field(r, "emoji").is_none() {
                return Err(missing("reaction.emoji"));
            }
        }
        "interactive" => {
            let i = tobj()?;
            if str_field(i, "type").is_none() {
                return Err(missing("interactive.type"));
            }
            if !i.get("action").is_some_and(Value::is_object) {
                return Err(missing("interactive.action"));
            }
        }
        "contacts" => {
            if obj.get("contacts").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                return Err(missing("contacts"));
            }
        }
        "template" => {
            tobj()?;
        }
        other => {
            return Err(param_err(format!(
                "Param type must be one of {{audio, contacts, document, image, interactive, location, reaction, \
                 sticker, template, text, video}} - got \"{other}\"."
            )));
        }
    }
    if let Some(ctx) = obj.get("context")
        && ctx.get("message_id").and_then(Value::as_str).is_none()
    {
        return Err(missing("context.message_id"));
    }
    let biz_opaque = match obj.get("biz_opaque_callback_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 512 => Some(s.clone()),
        Some(_) => {
            return Err(invalid(
                "biz_opaque_callback_data must be a string of at most 512 characters.",
            ));
        }
    };
    Ok(Outgoing {
        input,
        wa_id,
        user_id,
        kind,
        biz_opaque,
    })
}

async fn send_message(
    State(wa): State<Arc<Wa>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let idx = wa.record_call(
        "POST",
        &format!("/{version}/{node}/messages"),
        &q,
        &headers,
        parsed.clone().unwrap_or_else(|| Value::String(raw.clone())),
        raw,
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    match wa.send(&version, &node, &query, &headers, parsed).await {
        Ok((resp, wamid)) => wa.finish(idx, Ok((200, resp)), wamid),
        Err(e) => wa.finish(idx, Err(e), None),
    }
}

async fn upload_media(
    State(wa): State<Arc<Wa>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let idx = wa.record_call(
        "POST",
        &format!("/{version}/{node}/media"),
        &q,
        &headers,
        Value::Null,
        format!("<{} bytes of multipart>", body.len()),
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let result = (|| {
        wa.check_call(&version, &headers, &query)?;
        if node != wa.cfg.phone_number_id {
            return Err(GraphError::no_object("post", &node));
        }
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parts = parse_multipart(ctype, &body).ok_or_else(|| param_err("Invalid multipart body."))?;
        let field = |n: &str| parts.iter().find(|p| p.name == n);
        let product = field("messaging_product").map(|p| String::from_utf8_lossy(&p.data).into_owned());
        if product.as_deref() != Some("whatsapp") {
            return Err(param_err("The parameter messaging_product is required."));
        }
        let file = field("file").ok_or_else(|| missing("file"))?;
        let mime = field("type")
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .or_else(|| file.content_type.clone())
            .ok_or_else(|| missing("type"))?;
        let mut st = wa.st();
        let id = wa.add_media(&mut st, file.data.clone(), mime);
        Ok((200, jobj! { "id": id }))
    })();
    wa.finish(idx, result, None)
}

async fn list_templates(
    State(wa): State<Arc<Wa>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = wa.record_call(
        "GET",
        &format!("/{version}/{node}/message_templates"),
        &q,
        &headers,
        Value::Null,
        String::new(),
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let result = (|| {
        wa.check_call(&version, &headers, &query)?;
        if node != wa.cfg.waba_id {
            return Err(GraphError::no_object("get", &node));
        }
        let st = wa.st();
        let data: Vec<Json> = st
            .templates
            .iter()
            .filter(|t| query.get("name").is_none_or(|n| t.name.contains(n.as_str())))
            .filter(|t| query.get("language").is_none_or(|l| &t.language == l))
            .filter(|t| query.get("status").is_none_or(|s| t.status.eq_ignore_ascii_case(s)))
            .filter(|t| query.get("category").is_none_or(|c| t.category.eq_ignore_ascii_case(c)))
            .map(|t| {
                let mut components = Vec::new();
                if let Some(h) = &t.header_text {
                    components.push(jobj! { "type": "HEADER", "format": "TEXT", "text": h.as_str() });
                }
                components.push(jobj! { "type": "BODY", "text": t.body.as_str() });
                let format = if placeholders(&t.body)
                    .iter()
                    .all(|n| n.bytes().all(|b| b.is_ascii_digit()))
                {
                    "POSITIONAL"
                } else {
                    "NAMED"
                };
                jobj! {
                    "name": t.name.as_str(),
                    "language": t.language.as_str(),
                    "status": t.status.as_str(),
                    "category": t.category.as_str(),
                    "id": t.id.as_str(),
                    "parameter_format": format,
                    "components": components,
                }
            })
            .collect();
        Ok((200, jobj! { "data": data, "paging": jobj! { "cursors": Json::obj() } }))
    })();
    wa.finish(idx, result, None)
}

fn media_sig(wa: &Wa, id: &str, exp: i64) -> String {
    hmac_hex(wa.cfg.app_secret.as_bytes(), format!("media:{id}:{exp}").as_bytes())[..32].to_string()
}

async fn get_media(
    State(wa): State<Arc<Wa>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = wa.record_call(
        "GET",
        &format!("/{version}/{node}"),
        &q,
        &headers,
        Value::Null,
        String::new(),
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let result = (|| {
        wa.check_call(&version, &headers, &query)?;
        let st = wa.st();
        let m = st.media.get(&node).ok_or_else(|| GraphError::no_object("get", &node))?;
        let exp = wa.core.clock.now_ms() + st.options.media_url_ttl_ms;
        let url = format!(
            "{}/media-download/{node}?exp={exp}&sig={}",
            wa.base_url,
            media_sig(&wa, &node, exp)
        );
        Ok((
            200,
            jobj! {
                "url": url,
                "mime_type": m.mime_type.as_str(),
                "sha256": m.sha256.as_str(),
                "file_size": m.bytes.len(),
                "id": node.as_str(),
                "messaging_product": "whatsapp",
            },
        ))
    })();
    wa.finish(idx, result, None)
}

async fn delete_media(
    State(wa): State<Arc<Wa>>,
    Path((version, node)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = wa.record_call(
        "DELETE",
        &format!("/{version}/{node}"),
        &q,
        &headers,
        Value::Null,
        String::new(),
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let result = (|| {
        wa.check_call(&version, &headers, &query)?;
        wa.st()
            .media
            .remove(&node)
            .ok_or_else(|| GraphError::no_object("delete", &node))?;
        Ok((200, jobj! { "success": true }))
    })();
    wa.finish(idx, result, None)
}

async fn download_media(
    State(wa): State<Arc<Wa>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idx = wa.record_call(
        "GET",
        &format!("/media-download/{id}"),
        &q,
        &headers,
        Value::Null,
        String::new(),
    );
    let query = parse_urlencoded(q.as_deref().unwrap_or(""));
    let fail = |e: GraphError| wa.finish(idx, Err(e), None);
    if wa.core.faults().expired_token {
        return fail(GraphError::expired_token(wa.core.clock.now_secs()));
    }
    if bearer_token(&headers).as_deref() != Some(wa.cfg.access_token.as_str()) {
        return fail(GraphError::bad_token());
    }
    let exp: i64 = query.get("exp").and_then(|e| e.parse().ok()).unwrap_or(0);
    let sig_ok = query.get("sig").is_some_and(|s| *s == media_sig(&wa, &id, exp));
    let media = wa.st().media.get(&id).cloned();
    let Some(media) = media.filter(|_| sig_ok && exp > wa.core.clock.now_ms()) else {
        wa.core.complete_request(idx, &[("status", json!(404))]);
        return (StatusCode::NOT_FOUND, "URL signature expired or media not found").into_response();
    };
    wa.core.complete_request(
        idx,
        &[
            ("status", json!(200)),
            ("response", json!({ "bytes": media.bytes.len() })),
        ],
    );
    let mut resp = (StatusCode::OK, media.bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&media.mime_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}
