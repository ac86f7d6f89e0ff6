//! The provider REST API our adapter calls (channels.md §5.7):
//! `POST /2010-04-01/Accounts/{AC}/Messages.json`, `GET …/Messages/{sid}.json`,
//! inbound media under `…/Messages/{MM}/Media/{ME}`, and the CDN path media
//! redirects to. Every request under `/2010-04-01` is recorded in the outbox.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get};
use base64::Engine as _;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::media::json_response;
use super::message::{API_VERSION, Message, utf8_json};
use super::segments;
use super::webhooks::form_decode;
use super::{Tw, bare, is_e164, is_whatsapp};

/// Longest `Body` Twilio accepts (characters).
const MAX_BODY_CHARS: usize = 1600;
const MAX_MEDIA: usize = 10;
/// `ValidityPeriod` range and default, seconds.
const MAX_VALIDITY_SECS: i64 = 36_000;

pub(super) fn router(tw: Arc<Tw>) -> Router {
    Router::new()
        .route(&format!("/{API_VERSION}/{{*rest}}"), any(api_call))
        .route("/cdn/{account}/{token}", get(cdn))
        .with_state(tw)
}

async fn cdn(State(tw): State<Arc<Tw>>, Path((_account, token)): Path<(String, String)>) -> Response {
    tw.cdn(&token)
}

/// Result of a provider call: the response plus the message SID it concerned, for the outbox.
struct Handled {
    response: Response,
    status: u16,
    body: Option<String>,
    sid: Option<String>,
}

impl Handled {
    fn json(status: u16, body: String, sid: Option<String>) -> Self {
        let mut response = json_response(body.clone());
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        Self {
            response,
            status,
            body: Some(body),
            sid,
        }
    }

    fn error(e: &ApiError) -> Self {
        Self {
            response: e.response(),
            status: e.http,
            body: Some(e.body_json()),
            sid: None,
        }
    }

    fn other(response: Response) -> Self {
        let status = response.status().as_u16();
        Self {
            response,
            status,
            body: None,
            sid: None,
        }
    }
}

async fn api_call(
    State(tw): State<Arc<Tw>>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/{API_VERSION}/{rest}");
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let params = form_decode(&raw_body);
    let credentials = basic_credentials(&headers);
    let idx = {
        let mut st = tw.st();
        let seq = st.outbox.len() + 1;
        st.outbox.push(json!({
            "seq": seq,
            "method": method.as_str(),
            "path": path,
            "query": query,
            "headers": crate::common::headers_json(&headers),
            "authorization": headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
            "auth_user": credentials.as_ref().map(|(u, _)| u.clone()),
            "body": raw_body,
            "params": params,
            "at_ms": tw.clock.now_ms(),
            "status": null,
            "response": null,
            "sid": null,
        }));
        st.outbox.len() - 1
    };
    let authed = credentials.as_ref().is_some_and(|(u, p)| tw.basic_auth_ok(u, p));
    let handled = route(&tw, &method, &rest, &params, authed);
    {
        let mut st = tw.st();
        if let Some(Value::Object(rec)) = st.outbox.get_mut(idx) {
            let response = handled
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            rec.insert("status".into(), json!(handled.status));
            rec.insert("response".into(), response);
            rec.insert("sid".into(), json!(handled.sid));
        }
    }
    tw.wake.notify_one();
    handled.response
}

fn route(tw: &Arc<Tw>, method: &Method, rest: &str, params: &[(String, String)], authed: bool) -> Handled {
    let path = format!("/{API_VERSION}/{rest}");
    let parts: Vec<&str> = rest.split('/').collect();
    let (account, tail) = match parts.as_slice() {
        ["Accounts", account, tail @ ..] => (*account, tail),
        _ => return Handled::error(&ApiError::not_found(&path)),
    };
    let media_read = matches!(tail, ["Messages", _, "Media", _]) && method == Method::GET;
    let media_open = media_read && !tw.st().options.media_requires_auth;
    if !authed && !media_open {
        return Handled::error(&ApiError::authenticate());
    }
    if account != tw.cfg.account_sid {
        return Handled::error(&ApiError::not_found(&path));
    }
    match (method, tail) {
        (&Method::POST, ["Messages.json"]) => match tw.create_message(params) {
            Ok((sid, body)) => Handled::json(201, body, Some(sid)),
            Err(e) => Handled::error(&e),
        },
        (&Method::GET, ["Messages", file]) if file.ends_with(".json") => {
            let sid = file.trim_end_matches(".json");
            let st = tw.st();
            match st.message(sid) {
                Some(m) => Handled::json(200, utf8_json(&m.to_json(&tw.cfg.account_sid)), Some(sid.to_string())),
                None => Handled::error(&ApiError::not_found(&path)),
            }
        }
        (&Method::GET, ["Messages", sid, "Media", file]) => match tw.media_resource(sid, file) {
            Some(resp) => {
                let mut h = Handled::other(resp);
                h.sid = Some((*sid).to_string());
                h
            }
            None => Handled::error(&ApiError::not_found(&path)),
        },
        _ => Handled::error(&ApiError::not_found(&path)),
    }
}

/// `(user, password)` of an `Authorization: Basic …` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The validated parameters of a create call.
struct SendRequest {
    to: String,
    from: Option<String>,
    service: Option<String>,
    body: String,
    media_urls: Vec<String>,
    status_callback: Option<String>,
    content_sid: Option<String>,
    content_variables: Option<String>,
    validity_secs: Option<i64>,
}

fn parse_send(params: &[(String, String)]) -> Result<SendRequest, ApiError> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let to = get("To").ok_or_else(|| ApiError::bad(21604, "A 'To' phone number is required."))?;
    let from = get("From");
    let service = get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(ApiError::bad(21603, "A 'From' phone number is required."));
    }
    let body = get("Body").unwrap_or_default();
    let media_urls: Vec<String> = params
        .iter()
        .filter(|(n, v)| n == "MediaUrl" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    let content_sid = get("ContentSid");
    if body.is_empty() && media_urls.is_empty() && content_sid.is_none() {
        return Err(ApiError::bad(21602, "Message body is required."));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::bad(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if media_urls.len() > MAX_MEDIA {
        return Err(ApiError::bad(21623, "Number of media files exceeds allowed limit"));
    }
    if media_urls
        .iter()
        .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(ApiError::bad(21620, "Invalid media URL(s)"));
    }
    let validity_secs = match get("ValidityPeriod") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(s) if (1..=MAX_VALIDITY_SECS).contains(&s) => Some(s),
            _ => return Err(ApiError::bad(21624, format!("Invalid validity period value: {v}"))),
        },
    };
    Ok(SendRequest {
        to,
        from,
        service,
        body,
        media_urls,
        status_callback: get("StatusCallback"),
        content_sid,
        content_variables: get("ContentVariables"),
        validity_secs,
    })
}

impl Tw {
    /// `POST …/Messages.json`: validates, enqueues and returns `(sid, Message JSON)`.
    fn create_message(self: &Arc<Self>, params: &[(String, String)]) -> Result<(String, String), ApiError> {
        {
            let mut st = self.st();
            if st.faults.fail_sends > 0 {
                st.faults.fail_sends -= 1;
                return Err(if st.faults.fail_status == 500 {
                    ApiError::new(500, 20500, "Internal Server Error")
                } else {
                    ApiError::new(429, 20429, "Too Many Requests")
                });
            }
        }
        let req = parse_send(params)?;
        let whatsapp = is_whatsapp(&req.to);
        if !is_e164(bare(&req.to)) {
            return Err(ApiError::bad(21211, format!("Invalid 'To' Phone Number: {}", req.to)));
        }
        let now = self.clock.now_ms();
        let mut st = self.st();
        if let Some(from) = &req.from {
            if st.number(from).is_none() {
                return Err(ApiError::bad(
                    21606,
                    format!(
                        "The From phone number {from} is not a valid, SMS-capable inbound phone number or short code \
                         for your account."
                    ),
                ));
            }
            if is_whatsapp(from) != whatsapp {
                return Err(ApiError::bad(
                    21910,
                    "Invalid From and To pair. From and To should be of the same channel.",
                ));
            }
        } else if let Some(service) = &req.service {
            if !service.starts_with("MG") || service.len() != 34 {
                return Err(ApiError::bad(21705, "The Messaging Service is invalid"));
            }
            if self.cfg.messaging_service_sid.as_deref() != Some(service.as_str()) {
                return Err(ApiError::bad(21701, "The Messaging Service does not exist"));
            }
        }
        let service = if req.from.is_some() { None } else { req.service.clone() };
        if !whatsapp {
            if st.landlines.contains(&req.to) {
                return Err(ApiError::bad(21614, "'To' number is not a valid mobile number"));
            }
            let scope = match (&req.from, &service) {
                (Some(from), _) => self.opt_out_scope(from),
                (None, Some(ms)) => ms.clone(),
                (None, None) => String::new(),
            };
            if st.optouts.contains(&(scope, req.to.clone())) {
                return Err(ApiError::bad(21610, "Attempt to send to unsubscribed recipient"));
            }
        }
        if whatsapp && req.content_sid.is_none() && st.options.whatsapp_window_sync_error {
            let key = (req.from.clone().unwrap_or_default(), req.to.clone());
            let open = st
                .last_inbound
                .get(&key)
                .is_some_and(|&t| now.saturating_sub(t) <= 24 * 3_600_000);
            if !open {
                return Err(ApiError::bad(63016, super::errors::async_error_message(63016)));
            }
        }
        if let Some(from) = &req.from {
            let backlog = st.number(from).map_or(0, |n| n.next_free_ms.saturating_sub(now));
            if backlog > st.options.max_queue_secs.saturating_mul(1000) {
                return Err(ApiError::bad(
                    21611,
                    "This 'From' number has exceeded the maximum number of queued messages",
                ));
            }
        }
        let billed_segments = if whatsapp || !req.media_urls.is_empty() || req.content_sid.is_some() {
            1
        } else {
            segments::count(&req.body).segments
        };
        let sid = st.sids.next(if req.media_urls.is_empty() { "SM" } else { "MM" });
        let message = Message {
            sid: sid.clone(),
            direction: "outbound-api",
            from: req.from.clone(),
            to: req.to.clone(),
            body: req.body.clone(),
            status: if service.is_some() { "accepted" } else { "queued" },
            num_segments: if service.is_some() { 0 } else { billed_segments },
            num_media: req.media_urls.len(),
            messaging_service_sid: service.clone().or_else(|| self.cfg.messaging_service_sid.clone()),
            error_code: None,
            error_message: None,
            created_ms: now,
            updated_ms: now,
            sent_ms: None,
            whatsapp,
            status_callback: req.status_callback.clone(),
            validity_ms: req.validity_secs.unwrap_or(MAX_VALIDITY_SECS) * 1000,
            validity_explicit: req.validity_secs.is_some(),
            content_sid: req.content_sid.clone(),
            content_variables: req.content_variables.clone(),
            media_urls: req.media_urls.clone(),
            media_fetches: Vec::new(),
            media_pending: req.media_urls.len(),
            billed_segments,
            send_at_ms: None,
            deliver_at_ms: None,
            expire_at_ms: None,
            history: Vec::new(),
        };
        let json = utf8_json(&message.to_json(&self.cfg.account_sid));
        let i = st.push_message(message);
        let initial = st.messages[i].status;
        st.messages[i].history.push(super::message::StatusStep {
            status: initial,
            at_ms: now,
            error_code: None,
        });
        if service.is_some() {
            // The pacer picks the sender and enqueues it (status `queued`, with a callback).
            st.active.insert(i);
        } else {
            self.schedule(&mut st, i, now, false)
                .map_err(|code| ApiError::bad(code, "The From phone number is not a valid sender"))?;
        }
        drop(st);
        if !req.media_urls.is_empty() {
            self.spawn_media_fetches(sid.clone(), req.media_urls, whatsapp);
        }
        Ok((sid, json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn send_validation() {
        let code = |pairs: &[(&str, &str)]| parse_send(&p(pairs)).err().map(|e| e.code);
        assert_eq!(code(&[("From", "+15551230000"), ("Body", "x")]), Some(21604));
        assert_eq!(code(&[("To", "+15557654321"), ("Body", "x")]), Some(21603));
        assert_eq!(code(&[("To", "+15557654321"), ("From", "+15551230000")]), Some(21602));
        let long = "a".repeat(1601);
        assert_eq!(
            code(&[("To", "+15557654321"), ("From", "+1"), ("Body", &long)]),
            Some(21617)
        );
        assert_eq!(
            code(&[("To", "+1"), ("From", "+1"), ("Body", &"é".repeat(1600))]),
            None,
            "1600 characters, not bytes"
        );
        let mut many = vec![("To", "+15557654321"), ("From", "+1")];
        many.extend(std::iter::repeat_n(("MediaUrl", "https://x.test/a.png"), 11));
        assert_eq!(code(&many), Some(21623));
        assert_eq!(
            code(&[("To", "+1"), ("From", "+1"), ("MediaUrl", "x.test/a.png")]),
            Some(21620)
        );
        assert_eq!(
            code(&[("To", "+1"), ("From", "+1"), ("Body", "x"), ("ValidityPeriod", "0")]),
            Some(21624)
        );
        let ok = parse_send(&p(&[
            ("To", "+15557654321"),
            ("MessagingServiceSid", "MG1"),
            ("ContentSid", "HX1"),
            ("MediaUrl", "https://x.test/1"),
            ("MediaUrl", "https://x.test/2"),
        ]))
        .unwrap();
        assert_eq!(ok.media_urls.len(), 2);
        assert_eq!(ok.service.as_deref(), Some("MG1"));
    }

    #[test]
    fn basic_auth_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic QUMxOnRvazplbg==".parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("AC1".into(), "tok:en".into())));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}
