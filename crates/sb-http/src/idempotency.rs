//! `Idempotency-Key` on every mutating API route: the first request under a key (per
//! credential) is recorded before it runs and its answer after; a retry gets the same answer,
//! a retry while it still runs gets 409 `request_in_progress`, and the key sent with another
//! request gets 422 `idempotency_key_reused`. Server errors are forgotten so that their retry
//! runs again. Replies and notes keep their key in the message's own transaction instead.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sb_core::credentials::secret_digest;
use sb_store::idempotency::{self, Prior};

use crate::AppState;
use crate::error::ApiError;

/// The longest answer kept for a retry; a longer one is not kept (the retry runs again).
const MAX_KEPT: usize = 1024 * 1024;

pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let path = request.uri().path().to_owned();
    let own_key =
        path.starts_with("/api/v1/conversations/") && (path.ends_with("/messages") || path.ends_with("/notes"));
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .or_else(|| request.headers().get(header::COOKIE))
        .and_then(|v| v.to_str().ok())
        .map(secret_digest);
    let (Some(credential), true, false) = (credential, mutating, own_key) else {
        return next.run(request).await;
    };
    if key.trim().is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return ApiError::unprocessable(
            "invalid_idempotency_key",
            "an idempotency key is 1–200 printable characters",
        )
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
            .into_response();
        }
    };
    let (method, now) = (parts.method.as_str().to_owned(), state.store.now());
    let body_digest = secret_digest(&String::from_utf8_lossy(&body));
    let (c2, k2, p2) = (credential.clone(), key.clone(), path.clone());
    let prior = state
        .store
        .db
        .write(move |c| {
            let request = idempotency::Request {
                credential_digest: &c2,
                key: &k2,
                method: &method,
                path: &p2,
                body_digest: &body_digest,
            };
            idempotency::begin(c, &request, now)
        })
        .await;
    match prior {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Prior::Fresh) => {}
        Ok(Prior::Running) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "request_in_progress",
                "a request with this idempotency key is still running; retry later",
            )
            .into_response();
        }
        Ok(Prior::Mismatch) => {
            return ApiError::unprocessable(
                "idempotency_key_reused",
                "this idempotency key was sent with another request",
            )
            .into_response();
        }
        Ok(Prior::Answered {
            status,
            content_type,
            body,
        }) => {
            let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            if let Some(t) = content_type.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, t);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.ok();
    let status = parts.status;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let keep = bytes
        .clone()
        .filter(|b| !status.is_server_error() && b.len() <= MAX_KEPT);
    let outcome = state
        .store
        .db
        .write(move |c| match keep {
            Some(b) => idempotency::finish(c, &credential, &key, status.as_u16(), content_type.as_deref(), &b),
            None => idempotency::abandon(c, &credential, &key),
        })
        .await;
    if let Err(e) = outcome {
        tracing::error!(error = %e, "could not keep an idempotent answer");
    }
    Response::from_parts(parts, Body::from(bytes.unwrap_or_else(Bytes::new)))
}
