//! `GET /` on every simulator: a small self-contained page to play the customer by hand.
//!
//! It only drives the existing control API: the form POSTs JSON to
//! `{prefix}/customer-message`, the list polls `{prefix}/sent` every 2 s, and the
//! buttons POST `{prefix}/status` for the last business message shown. No external
//! resources; dynamic text is set with `textContent` only.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const TEMPLATE: &str = include_str!("page.html");

/// What differs between the simulators' pages.
pub(crate) struct PageSpec {
    /// "WhatsApp", "Messenger" or "Instagram".
    pub provider: &'static str,
    /// e.g. "/_sim/whatsapp".
    pub control_prefix: &'static str,
    /// Field of the customer-message body naming the customer ("from", "psid").
    pub id_field: &'static str,
    /// Label of that field on the form ("number", "PSID", "IGSID").
    pub id_label: &'static str,
    /// Field of a `/sent` record naming the recipient ("to", "recipient").
    pub recipient_field: &'static str,
    /// Field of a `/sent` record holding the message id ("wamid", "mid").
    pub id_record_field: &'static str,
}

pub(crate) fn render(spec: &PageSpec) -> String {
    TEMPLATE
        .replace("__PROVIDER__", spec.provider)
        .replace("__CONTROL__", spec.control_prefix)
        .replace("__ID_FIELD__", spec.id_field)
        .replace("__ID_LABEL__", spec.id_label)
        .replace("__TO_FIELD__", spec.recipient_field)
        .replace("__MID_FIELD__", spec.id_record_field)
}

pub(crate) fn router(spec: PageSpec) -> Router {
    let html = render(&spec);
    Router::new().route(
        "/",
        get(move || async move {
            let resp: Response = (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                html,
            )
                .into_response();
            resp
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let html = render(&PageSpec {
            provider: "WhatsApp",
            control_prefix: "/_sim/whatsapp",
            id_field: "from",
            id_label: "number",
            recipient_field: "to",
            id_record_field: "wamid",
        });
        assert!(!html.contains("__"), "unfilled placeholder");
        assert!(html.contains("<title>WhatsApp simulator — play the customer</title>"));
        assert!(!html.contains("innerHTML") && !html.contains("http://") && !html.contains("https://"));
    }
}
