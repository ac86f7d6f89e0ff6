//! Request extractors: JSON bodies whose failures become our error codes, and the
//! authenticated principal (API token or session cookie).

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum_extra::extract::CookieJar;
use sb_app::auth;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// `axum::Json` with rejections mapped to stable error codes.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !json {
            return Err(json_rejection(
                JsonRejection::MissingJsonContentType(Default::default()),
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(body_rejection)?;
        // Every body is an object: serde would also read a struct from an array (`[null, null]`).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
        {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "the body must be a JSON object",
            ));
        }
        // JSON can carry a NUL only escaped; no stored text may hold one.
        if escapes_nul(&bytes) {
            return Err(ApiError::unprocessable(
                "invalid_text",
                "text may not contain NUL characters (\\u0000)",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A body that could not be read: too large, or cut off.
pub fn body_rejection(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::invalid("invalid_body", e.body_text())
    }
}

/// Whether a JSON text holds the escape `\u0000` (an escaped backslash followed by `u0000` is
/// text, not a NUL).
fn escapes_nul(json: &[u8]) -> bool {
    memchr::memmem::find_iter(json, b"u0000").any(|at| {
        let backslashes = json[..at].iter().rev().take_while(|b| **b == b'\\').count();
        backslashes % 2 == 1
    })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid("malformed_json", format!("the body is not valid JSON: {e}"))
        }
        JsonRejection::JsonDataError(e) => ApiError::unprocessable("invalid_request", e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        other => ApiError::invalid("invalid_body", other.body_text()),
    }
}

pub use sb_app::auth::SESSION_COOKIE;
pub use sb_app::{Principal, Via};

pub fn client_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

pub fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The client's address, when the server knows it (it does behind `serve`).
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// Where the request comes from, for the use cases' audit entries and rate limits.
pub fn origin(parts: &Parts) -> auth::Origin {
    auth::Origin {
        ip: client_ip(parts),
        request_id: request_id(parts),
    }
}

/// Who is calling: `Authorization: Bearer <token>` or the session cookie, resolved by
/// `sb_app::auth`. A cookie-authenticated write must come from our own origin.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthenticated)?;
            return auth::authenticate_token(&state.app, token, origin(parts)).await;
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated());
        };
        // Cookies ride along on cross-site requests; a state-changing request must come from our own origin.
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !auth::same_origin(&parts.headers, &state.base_url)
        {
            return Err(auth::cross_origin_refused());
        }
        auth::authenticate_session(&state.app, cookie.value(), origin(parts)).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(super::escapes_nul(br#"{"text":"a\u0000b"}"#));
        assert!(super::escapes_nul(br#"{"text":"\\\u0000"}"#));
        assert!(!super::escapes_nul(br#"{"text":"\\u0000"}"#));
        assert!(!super::escapes_nul(br#"{"text":"u0000"}"#));
    }
}
