//! Twilio REST error bodies and the error codes the simulator uses (channels.md §5.7 table).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::message::utf8_json;
use crate::jobj;

/// A synchronous REST error: `{code, message, more_info, status}` with that HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub http: u16,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(http: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            http,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`, the usual status of parameter and policy errors.
    pub fn bad(code: u32, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn authenticate() -> Self {
        Self::new(401, 20003, "Authenticate")
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(404, 20404, format!("The requested resource {path} was not found"))
    }

    pub fn body_json(&self) -> String {
        utf8_json(&jobj! {
            "code": u64::from(self.code),
            "message": self.message.as_str(),
            "more_info": more_info(self.code),
            "status": u64::from(self.http),
        })
    }

    pub fn response(&self) -> Response {
        let mut resp = (
            StatusCode::from_u16(self.http).unwrap_or(StatusCode::BAD_REQUEST),
            self.body_json(),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.http == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        resp
    }
}

pub(crate) fn more_info(code: u32) -> String {
    format!("https://www.twilio.com/docs/errors/{code}")
}

/// Short description of an asynchronous error code (the `ErrorMessage` / `error_message`).
pub(crate) fn async_error_message(code: u32) -> String {
    match code {
        11200 => "HTTP retrieval failure",
        11751 => "Media exceeds messaging provider size limit",
        12300 => "Invalid Content-Type",
        30001 => "Queue overflow",
        30003 => "Unreachable destination handset",
        30004 => "Message blocked",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered",
        30008 => "Unknown error",
        30036 => "Validity Period Expired",
        63016 => {
            "Failed to send freeform message because you are outside the allowed window. If you are using WhatsApp, \
             please use a Message Template."
        }
        63019 => "Media failed to download",
        _ => return format!("Error {code}"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let e = ApiError::bad(21211, "Invalid 'To' Phone Number: +1555");
        assert_eq!(
            e.body_json(),
            r#"{"code":21211,"message":"Invalid 'To' Phone Number: +1555","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#
        );
        assert_eq!(ApiError::authenticate().http, 401);
        assert!(async_error_message(63016).starts_with("Failed to send freeform"));
        assert_eq!(async_error_message(12345), "Error 12345");
    }
}
