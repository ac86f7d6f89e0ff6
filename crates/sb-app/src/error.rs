//! Errors of the use cases: a stable `snake_case` code that users can search for, a sentence
//! that says what to do, and the HTTP status its meaning maps to (see CONVENTIONS.md). The JSON
//! API answers with it as `{"error":{"code","message","details"}}` (the one `IntoResponse`
//! below); the web app shows the same code and sentence on a page.

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sb_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    pub retry_after_secs: Option<u64>,
}

/// The error body, as documented in the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, searchable code, e.g. `user_not_found`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_required",
            "sign in, or send an API token as `Authorization: Bearer <token>`",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry later",
        );
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side",
        )
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
            }
            StoreError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => AppError::unprocessable("invalid_request", m),
            StoreError::Sql(sb_sql::SqlError::Unavailable(m)) => {
                tracing::error!(error = %m, "database unavailable");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is not reachable",
                )
            }
            StoreError::Sql(e) => AppError::internal(e),
        }
    }
}

impl From<sb_sql::SqlError> for AppError {
    fn from(e: sb_sql::SqlError) -> Self {
        StoreError::Sql(e).into()
    }
}

/// A widget or hand-off failure, as the visitor or agent sees it.
impl From<sb_inbox::widget::WidgetError> for AppError {
    fn from(e: sb_inbox::widget::WidgetError) -> Self {
        let message = e.to_string();
        match e {
            sb_inbox::widget::WidgetError::UnknownWidget => AppError::not_found("widget_not_found", message),
            sb_inbox::widget::WidgetError::OriginNotAllowed => {
                AppError::new(StatusCode::FORBIDDEN, "origin_not_allowed", message)
            }
            sb_inbox::widget::WidgetError::InvalidToken(_) => {
                AppError::new(StatusCode::UNAUTHORIZED, "invalid_visitor_token", message)
            }
            sb_inbox::widget::WidgetError::HashRequired => {
                AppError::new(StatusCode::UNAUTHORIZED, "identifier_hash_required", message)
            }
            sb_inbox::widget::WidgetError::InvalidHash => {
                AppError::new(StatusCode::UNAUTHORIZED, "invalid_identifier_hash", message)
            }
            sb_inbox::widget::WidgetError::Invalid(code, message) => AppError::unprocessable(code, message),
            sb_inbox::widget::WidgetError::Attachment(a) => match a {
                sb_channels::widget::AttachmentError::TooLarge(_) => {
                    AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "attachment_too_large", message)
                }
                sb_channels::widget::AttachmentError::UnsupportedType(_)
                | sb_channels::widget::AttachmentError::ContentMismatch(_) => AppError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_attachment_type",
                    message,
                ),
                sb_channels::widget::AttachmentError::Empty => AppError::unprocessable("empty_attachment", message),
            },
            sb_inbox::widget::WidgetError::AttachmentNotFound => {
                AppError::unprocessable("attachment_not_found", message)
            }
            sb_inbox::widget::WidgetError::IdentityConflict => {
                AppError::new(StatusCode::CONFLICT, "identity_conflict", message)
            }
            sb_inbox::widget::WidgetError::Reply(r) => crate::conversations::reply_error(r),
            sb_inbox::widget::WidgetError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            bytes,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;
