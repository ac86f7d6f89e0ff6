//! Media both ways (channels.md §5.3, §5.7).
//!
//! Inbound: a customer's picture is kept by the simulator and announced as
//! `MediaUrl{i}` = `…/Accounts/{AC}/Messages/{MM}/Media/{ME}`; that URL wants HTTP
//! Basic auth (an account setting at Twilio) and answers 307 to a CDN path that
//! serves the bytes without auth. Outbound: every `MediaUrl` we pass is fetched
//! like Twilio does; a failed fetch fails the message asynchronously.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::message::{API_VERSION, MediaFetch, rfc2822, utf8_json};
use super::{StoredMedia, Tw};
use crate::json::Json;

/// MMS size limits (channels.md §5.7): 5 MB for JPEG/PNG/GIF, 500 KB for other types.
const IMAGE_LIMIT: usize = 5 * 1024 * 1024;
const OTHER_LIMIT: usize = 500 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub(crate) enum MediaSource {
    Bytes(Bytes),
    /// Served by redirecting the CDN request to this URL.
    Url(String),
}

impl Tw {
    /// `{base}/2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}`.
    pub(super) fn media_url(&self, message_sid: &str, media_sid: &str) -> String {
        format!(
            "{}/{API_VERSION}/Accounts/{}/Messages/{message_sid}/Media/{media_sid}",
            self.base_url, self.cfg.account_sid
        )
    }

    /// `GET …/Messages/{MM}/Media/{ME}` (307 to the CDN) or `…/Media/{ME}.json` (the Media resource).
    pub(super) fn media_resource(&self, message_sid: &str, file: &str) -> Option<Response> {
        let (media_sid, as_json) = match file.strip_suffix(".json") {
            Some(s) => (s, true),
            None => (file, false),
        };
        let st = self.st();
        let m = st.media.get(media_sid).filter(|m| m.message_sid == message_sid)?;
        if as_json {
            let uri = format!(
                "/{API_VERSION}/Accounts/{}/Messages/{message_sid}/Media/{media_sid}.json",
                self.cfg.account_sid
            );
            let body = Json::obj()
                .with("sid", media_sid)
                .with("account_sid", self.cfg.account_sid.as_str())
                .with("parent_sid", message_sid)
                .with("content_type", m.content_type.as_str())
                .with("date_created", rfc2822(m.created_ms))
                .with("date_updated", rfc2822(m.created_ms))
                .with("uri", uri);
            return Some(json_response(utf8_json(&body)));
        }
        let location = format!("{}/cdn/{}/{}", self.base_url, self.cfg.account_sid, m.cdn_token);
        let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Some(resp)
    }

    /// `GET /cdn/{AC}/{token}`: the bytes (or a redirect to where they live).
    pub(super) fn cdn(&self, token: &str) -> Response {
        let st = self.st();
        let Some(m) = st.media.values().find(|m| m.cdn_token == token) else {
            return (StatusCode::NOT_FOUND, "NoSuchKey").into_response();
        };
        match &m.source {
            MediaSource::Bytes(b) => {
                let mut resp = (StatusCode::OK, b.clone()).into_response();
                if let Ok(v) = HeaderValue::from_str(&m.content_type) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                resp
            }
            MediaSource::Url(u) => {
                let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
                if let Ok(v) = HeaderValue::from_str(u) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
        }
    }

    /// Keeps one inbound media item and returns its `MediaUrl`.
    pub(super) fn store_inbound_media(&self, message_sid: &str, content_type: &str, source: MediaSource) -> String {
        let now = self.clock.now_ms();
        let mut st = self.st();
        let media_sid = st.sids.next("ME");
        let cdn_token = st.tokens.next("");
        st.media.insert(
            media_sid.clone(),
            StoredMedia {
                message_sid: message_sid.to_string(),
                content_type: content_type.to_string(),
                source,
                cdn_token,
                created_ms: now,
            },
        );
        drop(st);
        self.media_url(message_sid, &media_sid)
    }

    /// Fetches an outbound message's `MediaUrl`s in the background; the pacer holds
    /// the message until they are all done.
    pub(super) fn spawn_media_fetches(self: &Arc<Self>, sid: String, urls: Vec<String>, whatsapp: bool) {
        let tw = Arc::clone(self);
        tokio::spawn(async move {
            let mut fetches = Vec::with_capacity(urls.len());
            for url in urls {
                fetches.push(tw.fetch_media(url, whatsapp).await);
            }
            {
                let mut st = tw.st();
                if let Some(&i) = st.index.get(&sid) {
                    let m = &mut st.messages[i];
                    m.media_fetches = fetches;
                    m.media_pending = 0;
                }
            }
            tw.wake.notify_one();
        });
    }

    async fn fetch_media(&self, url: String, whatsapp: bool) -> MediaFetch {
        let mut f = MediaFetch {
            url: url.clone(),
            status: None,
            content_type: None,
            size: None,
            error: None,
            error_code: None,
        };
        // WhatsApp reports any download problem as 63019; SMS/MMS as Twilio's HTTP errors.
        let retrieval_failed = if whatsapp { 63019 } else { 11200 };
        let resp = match self.client.get(&url).timeout(FETCH_TIMEOUT).send().await {
            Ok(r) => r,
            Err(e) => {
                f.error = Some(e.to_string());
                f.error_code = Some(retrieval_failed);
                return f;
            }
        };
        f.status = Some(resp.status().as_u16());
        f.content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = resp.status().is_success();
        let bytes = resp.bytes().await.unwrap_or_default();
        f.size = Some(bytes.len());
        let mime = f
            .content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        if !ok || bytes.is_empty() {
            f.error = Some(format!("HTTP {} with {} bytes", f.status.unwrap_or(0), bytes.len()));
            f.error_code = Some(retrieval_failed);
        } else if mime.as_deref().is_none_or(str::is_empty) {
            f.error = Some("no Content-Type".into());
            f.error_code = Some(12300);
        } else if !whatsapp {
            let image = matches!(mime.as_deref(), Some("image/jpeg" | "image/png" | "image/gif"));
            let limit = if image { IMAGE_LIMIT } else { OTHER_LIMIT };
            if bytes.len() > limit {
                f.error = Some(format!("{} bytes exceed the {limit}-byte MMS limit", bytes.len()));
                f.error_code = Some(11751);
            }
        }
        f
    }
}

pub(super) fn json_response(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
