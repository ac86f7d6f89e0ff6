//! Request extractors: JSON bodies whose failures become our error codes, and the
//! authenticated principal (API token or session cookie).

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum_extra::extract::CookieJar;
use sb_core::{Permission, credentials};
use sb_store::audit::Actor;
use sb_store::users::User;
use sb_store::{sessions, tokens};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "sb_session";

/// `axum::Json` with rejections mapped to stable error codes.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
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

#[derive(Debug, Clone)]
pub enum Via {
    Session,
    Token(String),
}

/// Who is calling, resolved from `Authorization: Bearer` or the session cookie.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub via: Via,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Principal {
    pub fn workspace_id(&self) -> &str {
        &self.user.workspace_id
    }

    /// Every route calls this with the permission it needs.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.user.role().allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this (needs `{}`)",
                self.user.role,
                serde_json::to_value(permission)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            kind: match self.via {
                Via::Session => "user",
                Via::Token(_) => "token",
            },
            id: Some(self.user.id.clone()),
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

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

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts);
        let request_id = request_id(parts);
        let now = state.store.now();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthenticated)?;
            let digest = credentials::secret_digest(token);
            let found = state.store.db.read(move |c| tokens::authenticate(c, &digest)).await?;
            let Some((token_id, last_used, user)) = found else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the API token is unknown or revoked",
                ));
            };
            // Record use at most once a minute, so reads stay reads.
            if last_used.is_none_or(|t| t < now - 60_000) {
                let (ws, id) = (user.workspace_id.clone(), token_id.clone());
                state.store.db.write(move |c| tokens::touch(c, &ws, &id, now)).await?;
            }
            return Ok(Principal {
                user,
                via: Via::Token(token_id),
                ip,
                request_id,
            });
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated());
        };
        // Cookies ride along on cross-site requests; a state-changing request must come from our own origin.
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) && !same_origin(parts) {
            return Err(
                ApiError::forbidden("cross-origin request with a session cookie refused").with_code("csrf_rejected"),
            );
        }
        let digest = credentials::secret_digest(cookie.value());
        let user = state
            .store
            .db
            .read(move |c| sessions::user_for(c, &digest, now))
            .await?;
        match user {
            Some(user) => Ok(Principal {
                user,
                via: Via::Session,
                ip,
                request_id,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the session has ended; sign in again",
            )),
        }
    }
}

/// Whether a request carrying a session cookie comes from our own origin (browsers send `Origin`
/// on cross-site requests). Every cookie-authenticated write must pass this.
pub fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser cross-site request (browsers send Origin on those)
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin.split_once("://").map(|(_, rest)| rest) == Some(host)
}

impl ApiError {
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}
