//! The Segment HTTP tracking API, so Segment's (and RudderStack's) libraries work against us
//! with only their host changed: `POST /v1/batch`, `/v1/{track,identify,page,screen,group,alias}`
//! and the browser library's `/v1/{t,i,p,s,g,a,b}`. Answered `200 {"success":true}` (exactly
//! 200: older clients retry anything else) once the batch is durably stored.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use sb_cdp::{Endpoint, IngestError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// The raw body. Anything over the server's body limit is a `batch_too_large` 400, as every
/// Segment client treats a 400 as final (a 413 is retried by some).
pub struct SegmentBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for SegmentBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(SegmentBody).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::invalid("batch_too_large", "the body is over 500 KB")
            } else {
                ApiError::invalid("invalid_body", e.body_text())
            }
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

/// The write key from `Authorization: Basic base64(key:)`.
fn basic_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':').map_or(text.clone(), |(user, _)| user.to_owned()))
}

/// Receives Segment calls. The write key is the HTTP Basic user or `writeKey` in the body;
/// `Content-Encoding: gzip` bodies are inflated (limits apply to the inflated size).
#[utoipa::path(post, path = "/v1/{call}", tag = "customer data",
    params(("call" = String, Path, description = "`batch`, `track`, `identify`, `page`, `screen`, `group`, `alias`, or a browser short form `b`, `t`, `i`, `p`, `s`, `g`, `a`")),
    request_body(content = String, description = "a Segment batch `{\"batch\":[…],\"sentAt\",\"context\",\"writeKey\"}` or one call"),
    responses(
        (status = 200, body = Success),
        (status = 400, description = "`invalid_json`, `invalid_batch`, `invalid_gzip`, `batch_too_large`, `event_too_large`, `batch_too_many_events`, `no_user_anon_id`, `missing_event`, `invalid_type`, `message_id_too_long`, `invalid_timestamp`, …", body = ErrorBody),
        (status = 401, description = "`invalid_write_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with Retry-After", body = ErrorBody),
    ))]
async fn receive(
    State(state): State<AppState>,
    Path(call): Path<String>,
    headers: HeaderMap,
    SegmentBody(body): SegmentBody,
) -> ApiResult<axum::Json<Success>> {
    let endpoint = Endpoint::from_segment(&call)
        .ok_or_else(|| ApiError::not_found("route_not_found", format!("no Segment call `{call}`")))?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let key = basic_key(&headers);
    match state
        .cdp
        .accept(&state.store, key.as_deref(), &body, gzip, endpoint)
        .await
    {
        Ok(_) => Ok(axum::Json(Success { success: true })),
        Err(IngestError::Unauthorized) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_write_key",
            IngestError::Unauthorized.to_string(),
        )),
        Err(IngestError::Wire(e)) => Err(ApiError::invalid(e.code, e.message)),
        Err(e @ IngestError::RateLimited { retry_after_secs, .. }) => {
            let mut error = ApiError::rate_limited(retry_after_secs);
            error.message = e.to_string();
            Err(error)
        }
        Err(IngestError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_key_is_the_basic_user() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic d2tfYWJjOg==".parse().unwrap()); // "wk_abc:"
        assert_eq!(basic_key(&h).as_deref(), Some("wk_abc"));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_key(&h), None);
    }
}
