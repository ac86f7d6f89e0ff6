//! The Segment HTTP tracking API's wire format (cdp-journeys.md §1): `/v1/batch` and the
//! single calls, gzip bodies, the size limits, the envelope's ids and timestamps with the
//! client's clock skew corrected, and batch-level `context`/`integrations` merged into each
//! call. What the official libraries send (§1.4) is accepted unchanged.

use std::io::Read;

use sb_core::cdp::TrackedEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Segment's limits: 32 KB per call, 500 KB per request, 2,500 calls per batch.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
pub const MAX_BATCH_EVENTS: usize = 2_500;
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

pub const TYPES: &[&str] = &["track", "identify", "page", "screen", "group", "alias"];

/// Why a request is refused: a stable code (the 400's `code`) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub code: &'static str,
    pub message: String,
}

fn refuse<T>(code: &'static str, message: impl Into<String>) -> Result<T, WireError> {
    Err(WireError {
        code,
        message: message.into(),
    })
}

/// Decompresses a gzip body, refusing anything that inflates past the batch limit (a
/// decompression bomb stops at the limit, not at the end of memory).
pub fn gunzip(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut decoder = flate2::read::GzDecoder::new(body).take(MAX_BATCH_BYTES as u64 + 1);
    if decoder.read_to_end(&mut out).is_err() {
        return refuse(
            "invalid_gzip",
            "the body says Content-Encoding: gzip but is not valid gzip",
        );
    }
    if out.len() > MAX_BATCH_BYTES {
        return refuse("batch_too_large", "the decompressed body is over 500 KB");
    }
    Ok(out)
}

/// Which endpoint the request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Batch,
    /// `/v1/track` etc., and the browser library's `/v1/t` etc.
    Single(&'static str),
}

impl Endpoint {
    /// From the path's last segment: `batch`, `b`, `track`, `t`, …
    pub fn from_segment(s: &str) -> Option<Endpoint> {
        match s {
            "batch" | "b" | "import" => Some(Endpoint::Batch),
            _ => TYPES
                .iter()
                .find(|t| **t == s || (s.len() == 1 && t.starts_with(s)))
                .map(|t| Endpoint::Single(t)),
        }
    }
}

/// A parsed request: the write key if it came in the body, and the calls.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub write_key: Option<String>,
    pub events: Vec<TrackedEvent>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default, rename = "writeKey")]
    write_key: Option<String>,
    #[serde(default, rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    integrations: Option<Value>,
}

/// Parses a request body (already decompressed) that arrived at `endpoint` at `received_at` (ms).
pub fn parse(body: &[u8], endpoint: Endpoint, received_at: i64) -> Result<Accepted, WireError> {
    if body.len() > MAX_BATCH_BYTES {
        return refuse("batch_too_large", "the body is over 500 KB");
    }
    match endpoint {
        Endpoint::Batch => {
            let parsed: BatchBody<'_> = match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => return refuse("invalid_json", format!("the body is not a JSON batch: {e}")),
            };
            let Some(items) = parsed.batch else {
                return refuse("invalid_batch", "the body needs a `batch` array");
            };
            if items.len() > MAX_BATCH_EVENTS {
                return refuse(
                    "batch_too_many_events",
                    format!("{} events in one batch; at most {MAX_BATCH_EVENTS}", items.len()),
                );
            }
            let batch_sent_at = timestamp(parsed.sent_at.as_ref(), "sentAt")?;
            let context = object(parsed.context, "context")?;
            let integrations = object(parsed.integrations, "integrations")?;
            let mut events = Vec::with_capacity(items.len());
            for (n, raw) in items.iter().enumerate() {
                let event =
                    call(raw, None, batch_sent_at, &context, &integrations, received_at).map_err(|e| WireError {
                        code: e.code,
                        message: format!("batch[{n}]: {}", e.message),
                    })?;
                events.push(event);
            }
            Ok(Accepted {
                write_key: parsed.write_key,
                events,
            })
        }
        Endpoint::Single(kind) => {
            let raw: &RawValue = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return refuse("invalid_json", format!("the body is not JSON: {e}")),
            };
            let write_key = serde_json::from_str::<Map<String, Value>>(raw.get())
                .ok()
                .and_then(|m| m.get("writeKey").and_then(Value::as_str).map(str::to_owned));
            let event = call(raw, Some(kind), None, &Map::new(), &Map::new(), received_at)?;
            Ok(Accepted {
                write_key,
                events: vec![event],
            })
        }
    }
}

fn object(v: Option<Value>, field: &str) -> Result<Map<String, Value>, WireError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => refuse("invalid_field", format!("`{field}` must be an object")),
    }
}

/// An ISO-8601 time (with `Z`, an offset, or none, then read as UTC), or epoch milliseconds.
fn timestamp(v: Option<&Value>, field: &str) -> Result<Option<i64>, WireError> {
    let Some(v) = v else { return Ok(None) };
    let parsed = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time(s),
        _ => None,
    };
    match parsed {
        Some(ms) => Ok(Some(ms)),
        None => refuse("invalid_timestamp", format!("`{field}` is not an ISO-8601 time: {v}")),
    }
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    // No offset: Python's naive datetimes. Read as UTC.
    let civil = s.parse::<jiff::civil::DateTime>().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Call {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message_id: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    anonymous_id: Option<Value>,
    #[serde(default)]
    previous_id: Option<Value>,
    #[serde(default)]
    group_id: Option<Value>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    properties: Option<Value>,
    #[serde(default)]
    traits: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    integrations: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    original_timestamp: Option<Value>,
    #[serde(default)]
    sent_at: Option<Value>,
}

/// An id field: a non-empty string, or a number (some clients send numeric user ids).
fn id_field(v: Option<Value>, field: &str) -> Result<Option<String>, WireError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => refuse("invalid_field", format!("`{field}` must be a string")),
    }
}

fn call(
    raw: &RawValue,
    endpoint_kind: Option<&'static str>,
    batch_sent_at: Option<i64>,
    batch_context: &Map<String, Value>,
    batch_integrations: &Map<String, Value>,
    received_at: i64,
) -> Result<TrackedEvent, WireError> {
    if raw.get().len() > MAX_EVENT_BYTES {
        return refuse("event_too_large", "an event is over 32 KB");
    }
    let c: Call = match serde_json::from_str(raw.get()) {
        Ok(c) => c,
        Err(e) => return refuse("invalid_event", format!("not an event object: {e}")),
    };
    let kind = match (endpoint_kind, c.kind.as_deref()) {
        (Some(k), _) => k,
        (None, Some(k)) => match TYPES.iter().find(|t| **t == k) {
            Some(t) => *t,
            None => {
                return refuse(
                    "invalid_type",
                    format!("unknown type `{k}`; one of {}", TYPES.join(", ")),
                );
            }
        },
        (None, None) => return refuse("invalid_type", "every event needs a `type`"),
    };
    let message_id = match id_field(c.message_id, "messageId")? {
        Some(m) if m.chars().count() > MAX_MESSAGE_ID_CHARS => {
            return refuse(
                "message_id_too_long",
                format!("messageId is over {MAX_MESSAGE_ID_CHARS} characters"),
            );
        }
        Some(m) => m,
        // No messageId: one derived from the bytes, so a retry of the same call is still one event.
        None => format!("sha256:{}", &hex::encode(Sha256::digest(raw.get().as_bytes()))[..40]),
    };
    let user_id = id_field(c.user_id, "userId")?;
    let anonymous_id = id_field(c.anonymous_id, "anonymousId")?;
    let previous_id = id_field(c.previous_id, "previousId")?;
    let group_id = id_field(c.group_id, "groupId")?;
    if kind == "alias" {
        if user_id.is_none() || previous_id.is_none() {
            return refuse("missing_previous_id", "alias needs `userId` and `previousId`");
        }
    } else if user_id.is_none() && anonymous_id.is_none() {
        return refuse("no_user_anon_id", "every call needs a `userId` or an `anonymousId`");
    }
    if kind == "group" && group_id.is_none() {
        return refuse("missing_group_id", "group needs a `groupId`");
    }
    let name = match kind {
        "track" => match c.event {
            Some(Value::String(e)) if !e.trim().is_empty() => Some(e),
            _ => return refuse("missing_event", "track needs an `event` name"),
        },
        _ => id_field(c.name, "name")?,
    };
    let mut context = object(c.context, "context")?;
    for (k, v) in batch_context {
        context.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut integrations = object(c.integrations, "integrations")?;
    for (k, v) in batch_integrations {
        integrations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let original_ts = match timestamp(c.original_timestamp.as_ref(), "originalTimestamp")? {
        Some(t) => Some(t),
        None => timestamp(c.timestamp.as_ref(), "timestamp")?,
    };
    let sent_at = timestamp(c.sent_at.as_ref(), "sentAt")?.or(batch_sent_at);
    // Segment's skew correction: the client's clock may be off, but the gap between creating
    // and sending the call is measured on that one clock.
    let ts = match (original_ts, sent_at) {
        (Some(original), Some(sent)) => received_at - (sent - original),
        (Some(original), None) => original,
        _ => received_at,
    };
    Ok(TrackedEvent {
        kind: kind.to_owned(),
        message_id,
        user_id,
        anonymous_id,
        previous_id,
        group_id,
        name,
        properties: object(c.properties, "properties")?,
        traits: object(c.traits, "traits")?,
        context,
        integrations,
        ts,
        original_ts,
        sent_at,
        received_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_000_000_000;

    fn batch(v: Value) -> Result<Accepted, WireError> {
        parse(v.to_string().as_bytes(), Endpoint::Batch, NOW)
    }

    #[test]
    fn what_segment_analytics_python_sends_is_accepted() {
        let body = json!({
            "batch": [{"type": "track", "event": "Product Added", "userId": "u1",
                       "properties": {"sku": "JKT-BLU-M", "cart_id": "c1"},
                       "messageId": "5e1e0b7f-2c1f-4b59-9d38-9a5b1a3d7f10",
                       "timestamp": "2026-11-25T10:00:00.000+00:00",
                       "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
                       "integrations": {}}],
            "sentAt": "2026-11-25T10:00:01.000+00:00",
            "writeKey": "wk_1",
        });
        let a = batch(body).unwrap();
        assert_eq!(a.write_key.as_deref(), Some("wk_1"));
        let e = &a.events[0];
        assert_eq!((e.kind.as_str(), e.name.as_deref()), ("track", Some("Product Added")));
        assert_eq!(e.category(), "commerce");
        // Created one second before it was sent: one second before we received it.
        assert_eq!(e.ts, NOW - 1_000);
    }

    #[test]
    fn skew_is_corrected_from_the_clients_own_clock() {
        // The client's clock is an hour fast; the call was made 5 s before it was sent.
        let a = batch(
            json!({"batch": [{"type": "page", "anonymousId": "a1", "messageId": "m1",
            "originalTimestamp": "2030-01-01T01:00:00Z", "sentAt": "2030-01-01T01:00:05Z"}]}),
        )
        .unwrap();
        assert_eq!(a.events[0].ts, NOW - 5_000);
        assert_eq!(
            a.events[0].original_ts,
            Some(parse_time("2030-01-01T01:00:00Z").unwrap())
        );
    }

    #[test]
    fn batch_context_and_integrations_merge_into_each_call_the_calls_own_keys_winning() {
        let a = batch(json!({"batch": [{"type": "identify", "userId": "u1", "messageId": "m1",
            "context": {"ip": "10.0.0.1"}, "traits": {"email": "a@x.io"}}],
            "context": {"ip": "10.9.9.9", "locale": "es-ES"}, "integrations": {"All": true}}))
        .unwrap();
        let e = &a.events[0];
        assert_eq!(e.context["ip"], "10.0.0.1");
        assert_eq!(e.context["locale"], "es-ES");
        assert_eq!(e.integrations["All"], true);
    }

    #[test]
    fn bad_input_gets_its_documented_code() {
        let code = |v: Value| batch(v).unwrap_err().code;
        assert_eq!(
            parse(b"{not json", Endpoint::Batch, NOW).unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(code(json!({"events": []})), "invalid_batch");
        assert_eq!(
            code(json!({"batch": [{"type": "track", "event": "X", "messageId": "m"}]})),
            "no_user_anon_id"
        );
        assert_eq!(
            code(json!({"batch": [{"type": "track", "userId": "u", "messageId": "m"}]})),
            "missing_event"
        );
        assert_eq!(code(json!({"batch": [{"type": "fly", "userId": "u"}]})), "invalid_type");
        assert_eq!(
            code(json!({"batch": [{"type": "alias", "userId": "u"}]})),
            "missing_previous_id"
        );
        assert_eq!(
            code(json!({"batch": [{"type": "group", "userId": "u"}]})),
            "missing_group_id"
        );
        assert_eq!(
            code(json!({"batch": [{"type": "page", "userId": "u", "messageId": "m".repeat(101)}]})),
            "message_id_too_long"
        );
        assert_eq!(
            code(json!({"batch": [{"type": "page", "userId": "u", "timestamp": "yesterday"}]})),
            "invalid_timestamp"
        );
        let big = "x".repeat(MAX_EVENT_BYTES);
        assert_eq!(
            code(json!({"batch": [{"type": "page", "userId": "u", "name": big}]})),
            "event_too_large"
        );
        let many: Vec<Value> = (0..=MAX_BATCH_EVENTS)
            .map(|n| json!({"type": "page", "userId": n}))
            .collect();
        assert_eq!(code(json!({ "batch": many })), "batch_too_many_events");
        let huge = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(parse(&huge, Endpoint::Batch, NOW).unwrap_err().code, "batch_too_large");
    }

    #[test]
    fn single_calls_and_the_browser_short_forms_take_their_type_from_the_path() {
        assert_eq!(Endpoint::from_segment("t"), Some(Endpoint::Single("track")));
        assert_eq!(Endpoint::from_segment("identify"), Some(Endpoint::Single("identify")));
        assert_eq!(Endpoint::from_segment("b"), Some(Endpoint::Batch));
        assert_eq!(Endpoint::from_segment("x"), None);
        let body = json!({"event": "Signed Up", "anonymousId": "a1", "writeKey": "k"}).to_string();
        let a = parse(body.as_bytes(), Endpoint::Single("track"), NOW).unwrap();
        assert_eq!(a.write_key.as_deref(), Some("k"));
        assert_eq!(a.events[0].ts, NOW, "no timestamp: the time we received it");
        // No messageId: derived from the bytes, so the same call twice is one event.
        let again = parse(body.as_bytes(), Endpoint::Single("track"), NOW).unwrap();
        assert_eq!(a.events[0].message_id, again.events[0].message_id);
    }

    #[test]
    fn gzip_bodies_inflate_and_bombs_stop_at_the_limit() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let gz = |bytes: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let body = json!({"batch": [{"type": "page", "userId": "u", "messageId": "m"}]}).to_string();
        assert_eq!(gunzip(&gz(body.as_bytes())).unwrap(), body.as_bytes());
        assert_eq!(
            gunzip(&gz(&vec![b'a'; 10 * 1024 * 1024])).unwrap_err().code,
            "batch_too_large"
        );
        assert_eq!(gunzip(b"plain").unwrap_err().code, "invalid_gzip");
    }
}
