//! The webhook emitter (channels.md §5.1–§5.5): form POSTs signed with
//! `X-Twilio-Signature` over the configured URL, one attempt each (Twilio does not
//! retry HTTP errors by default), every attempt recorded with our answer.
//!
//! Status callbacks of one message are delivered one after another, in the order
//! of its transitions; different messages are independent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use serde::Serialize;

use super::signature::{strip_fragment, twilio_signature, with_default_port};
use super::{ProxyRewrite, Tw};

/// One logical webhook.
#[derive(Clone, Debug)]
pub(crate) struct Post {
    /// `inbound` or `status`.
    pub kind: &'static str,
    pub message_sid: String,
    /// The URL as configured at Twilio (`sms_url`, `StatusCallback`).
    pub url: String,
    /// Signed instead of `url` (a number's `signing_url`).
    pub signing_url: Option<String>,
    pub params: Vec<(String, String)>,
}

/// One POST the simulator made (`GET /_sim/webhooks`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WebhookRecord {
    pub seq: usize,
    pub kind: &'static str,
    pub message_sid: String,
    /// Where the POST went (after proxy rewrites).
    pub url: String,
    /// The URL the signature covers.
    pub signed_url: String,
    /// Parameters in the order sent, as `[name, value]` pairs.
    pub params: Vec<(String, String)>,
    /// The same parameters as an object, for convenience.
    pub form: BTreeMap<String, String>,
    /// Exact form body sent.
    pub body: String,
    pub signature: Option<String>,
    /// `I-Twilio-Idempotency-Token`: identical for the copies of one webhook.
    pub idempotency_token: String,
    /// Our server's HTTP status; `null` on connection error or timeout.
    pub status: Option<u16>,
    pub response_body: Option<String>,
    pub response_content_type: Option<String>,
    pub error: Option<String>,
    /// What Twilio's debugger would log: 11200 for a non-2xx answer, 11205 for no answer.
    pub error_code: Option<u32>,
    pub at_ms: i64,
    /// The extra copy of the duplicate fault.
    pub duplicate: bool,
}

/// What the first attempt of a webhook got back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Answer {
    pub status: Option<u16>,
    pub body: Option<String>,
}

impl Tw {
    /// POSTs `post` (twice with the duplicate fault) and returns the first answer.
    pub(super) async fn emit(&self, post: &Post) -> Answer {
        let (faults, options, token) = {
            let mut st = self.st();
            let token = st.tokens.next("");
            (st.faults.clone(), st.options.clone(), token)
        };
        let configured = strip_fragment(&post.url).to_string();
        let mut signed_url = strip_fragment(post.signing_url.as_deref().unwrap_or(&configured)).to_string();
        if options.sign_with_explicit_port {
            signed_url = with_default_port(&signed_url);
        }
        let target = rewrite(&options.proxy_rewrites, &configured);
        let signature = if faults.missing_signature {
            None
        } else if faults.bad_signature {
            let wrong = format!("{}-wrong", self.cfg.auth_token);
            Some(twilio_signature(&wrong, &signed_url, &post.params))
        } else {
            Some(twilio_signature(&self.cfg.auth_token, &signed_url, &post.params))
        };
        let body = form_encode(&post.params);
        let copies = if faults.duplicate_webhooks { 2 } else { 1 };
        let mut first = Answer::default();
        for copy in 0..copies {
            let mut rec = WebhookRecord {
                seq: 0,
                kind: post.kind,
                message_sid: post.message_sid.clone(),
                url: target.clone(),
                signed_url: signed_url.clone(),
                params: post.params.clone(),
                form: post.params.iter().cloned().collect(),
                body: body.clone(),
                signature: signature.clone(),
                idempotency_token: token.clone(),
                status: None,
                response_body: None,
                response_content_type: None,
                error: None,
                error_code: None,
                at_ms: self.clock.now_ms(),
                duplicate: copy > 0,
            };
            let mut req = self
                .client
                .post(&target)
                .timeout(Duration::from_millis(options.webhook_timeout_ms.max(1)))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "*/*")
                .header("I-Twilio-Idempotency-Token", &token)
                .body(body.clone());
            if let Some(sig) = &signature {
                req = req.header("X-Twilio-Signature", sig);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    rec.status = Some(status.as_u16());
                    rec.response_content_type = resp
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    rec.response_body = Some(resp.text().await.unwrap_or_default());
                    if !status.is_success() {
                        rec.error = Some(format!("HTTP {} from the webhook", status.as_u16()));
                        rec.error_code = Some(11200);
                    }
                }
                Err(e) => {
                    rec.error = Some(if e.is_timeout() {
                        "timed out waiting for the webhook's answer".to_string()
                    } else {
                        e.to_string()
                    });
                    rec.error_code = Some(11205);
                }
            }
            if copy == 0 {
                first = Answer {
                    status: rec.status,
                    body: rec.response_body.clone(),
                };
            }
            let mut st = self.st();
            rec.seq = st.webhooks.len() + 1;
            st.webhooks.push(rec);
        }
        first
    }

    /// Queues a status callback behind the earlier ones of the same message.
    pub(super) fn enqueue_callback(self: &Arc<Self>, post: Post) {
        let sid = post.message_sid.clone();
        let mut st = self.st();
        let start_worker = !st.callback_queues.contains_key(&sid);
        st.callback_queues.entry(sid.clone()).or_default().push_back(post);
        if start_worker {
            tokio::spawn(Arc::clone(self).callback_worker(sid));
        }
    }

    async fn callback_worker(self: Arc<Self>, sid: String) {
        loop {
            let next = {
                let mut st = self.st();
                let next = st.callback_queues.get_mut(&sid).and_then(|q| q.pop_front());
                if next.is_none() || self.stopped() {
                    st.callback_queues.remove(&sid);
                    return;
                }
                next
            };
            if let Some(post) = next {
                self.emit(&post).await;
            }
        }
    }
}

/// The URL a proxy in front of our server forwards `url` to.
fn rewrite(rules: &[ProxyRewrite], url: &str) -> String {
    rules
        .iter()
        .find_map(|r| {
            url.strip_prefix(r.public_prefix.as_str())
                .map(|rest| format!("{}{rest}", r.local_prefix))
        })
        .unwrap_or_else(|| url.to_string())
}

/// `application/x-www-form-urlencoded` as browsers and Twilio write it (space → `+`).
pub(crate) fn form_encode(params: &[(String, String)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// Parses a form body (or query string) keeping order and repeated names.
pub(crate) fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::common::percent_decode(k), crate::common::percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_roundtrip() {
        let p = vec![
            ("Body".to_string(), "¿Hay talla M? 25€ & más+".to_string()),
            ("From".to_string(), "+15557654321".to_string()),
            ("MediaUrl".to_string(), "https://x.test/a?b=1".to_string()),
            ("MediaUrl".to_string(), "".to_string()),
        ];
        let body = form_encode(&p);
        assert!(body.starts_with("Body=%C2%BFHay+talla+M%3F+25%E2%82%AC+%26+m%C3%A1s%2B&From=%2B15557654321"));
        assert_eq!(form_decode(&body), p);
    }

    #[test]
    fn proxy_rewrite() {
        let rules = vec![ProxyRewrite {
            public_prefix: "https://inbox.example.test".into(),
            local_prefix: "http://127.0.0.1:9000".into(),
        }];
        assert_eq!(
            rewrite(&rules, "https://inbox.example.test/twilio/sms?x=1"),
            "http://127.0.0.1:9000/twilio/sms?x=1"
        );
        assert_eq!(rewrite(&rules, "https://other.test/a"), "https://other.test/a");
    }
}
