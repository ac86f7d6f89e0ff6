//! The generic API channel, for anything that has no provider of its own. Inbound: a JSON
//! POST signed with `X-Switchboard-Signature` (HMAC-SHA256 over timestamp and raw body,
//! refused outside ±5 minutes). Outbound: a POST to the account's `webhook_url` with the
//! message as JSON; its `message_id` is the same on every retry of that message, the id a
//! receiver de-duplicates on; 2xx means accepted. Signed with the same `X-Switchboard-Signature`,
//! or, with the setting `signature_scheme: "standard_webhooks"`, as Standard Webhooks
//! (`webhook-id` = `message_id`, `webhook-timestamp`, `webhook-signature`), like the outgoing
//! webhooks, so one verification library serves both. New accounts get a `whsec_` secret,
//! which works for both schemes.
//!
//! Inbound body: `{"type":"message","id":"…","from":{"id":"…","name":"…","email":"…",
//! "phone":"…"},"text":"…","sent_at_ms":…}` or `{"type":"status","id":"…","message_id":"…",
//! "status":"delivered|read|failed","error_code":"…","error_message":"…"}`.

use std::time::Duration;

use async_trait::async_trait;
use sb_core::inbox::{DeliveryStatus, normalise_email, normalise_phone};
use serde::Deserialize;

use crate::{
    Account, Channel, ChannelError, IdentityHint, Inbound, InboundMessage, OutboundMessage, Policy, RawRequest,
    SendError, StatusReport, Verified, signing,
};

pub const KIND: &str = "api";
const MAX_TEXT: usize = 65_536;
const MAX_ID: usize = 200;

pub struct ApiChannel {
    http: reqwest::Client,
}

impl Default for ApiChannel {
    fn default() -> Self {
        ApiChannel {
            http: crate::http_client(Duration::from_secs(10)),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Body {
    Message {
        id: String,
        from: From,
        text: String,
        sent_at_ms: Option<i64>,
    },
    Status {
        id: String,
        message_id: String,
        status: String,
        error_code: Option<String>,
        error_message: Option<String>,
    },
}

#[derive(Deserialize)]
struct From {
    id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

fn check_id(what: &str, id: &str) -> Result<(), ChannelError> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(ChannelError::Malformed(format!(
            "`{what}` must be 1–{MAX_ID} characters"
        )));
    }
    Ok(())
}

fn parse_body(body: &[u8], received_at_ms: i64) -> Result<(String, Inbound), ChannelError> {
    let parsed: Body = serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    match parsed {
        Body::Message {
            id,
            from,
            text,
            sent_at_ms,
        } => {
            check_id("id", &id)?;
            check_id("from.id", &from.id)?;
            if text.chars().count() > MAX_TEXT {
                return Err(ChannelError::Malformed(format!(
                    "`text` is longer than {MAX_TEXT} characters"
                )));
            }
            // The business signs these requests, so the identifiers it sends are vouched for.
            let mut identities = vec![IdentityHint {
                kind: KIND.into(),
                value: from.id,
                verified: true,
            }];
            if let Some(raw) = from.email {
                let email = normalise_email(&raw)
                    .ok_or_else(|| ChannelError::Malformed(format!("`{raw}` is not an e-mail address")))?;
                identities.push(IdentityHint {
                    kind: "email".into(),
                    value: email,
                    verified: true,
                });
            }
            if let Some(raw) = from.phone {
                let phone = normalise_phone(&raw)
                    .ok_or_else(|| ChannelError::Malformed(format!("`{raw}` is not an E.164 phone number")))?;
                identities.push(IdentityHint {
                    kind: "phone".into(),
                    value: phone,
                    verified: true,
                });
            }
            let message = InboundMessage {
                provider_message_id: id.clone(),
                identities,
                sender_name: from.name.filter(|n| !n.trim().is_empty()),
                text,
                sent_at_ms: sent_at_ms.unwrap_or(received_at_ms),
                media: Vec::new(),
                auto_reply: None,
                files: Vec::new(),
                meta: None,
                automatic: false,
            };
            Ok((format!("message:{id}"), Inbound::Message(message)))
        }
        Body::Status {
            id,
            message_id,
            status,
            error_code,
            error_message,
        } => {
            check_id("id", &id)?;
            check_id("message_id", &message_id)?;
            let status = DeliveryStatus::parse(&status)
                .filter(|s| *s != DeliveryStatus::Queued)
                .ok_or_else(|| ChannelError::Malformed("`status` must be sent, delivered, read or failed".into()))?;
            let report = StatusReport {
                provider_message_id: message_id,
                our_message_id: None,
                status,
                error_code,
                error_message,
            };
            Ok((format!("status:{id}"), Inbound::Status(report)))
        }
    }
}

#[async_trait]
impl Channel for ApiChannel {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn policy(&self) -> Policy {
        Policy {
            reply_window_ms: None,
            max_text_chars: MAX_TEXT,
            supports_media: false,
            max_files: 0,
            recipient_pace: None,
        }
    }

    fn address_kind(&self) -> &'static str {
        KIND
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn signing_secrets(&self) -> &'static [&'static str] {
        &["secret"]
    }

    fn new_secrets(&self) -> serde_json::Value {
        serde_json::json!({ "secret": sb_core::standard_webhooks::generate_secret() })
    }

    fn check_account(&self, settings: &serde_json::Value, secrets: &serde_json::Value) -> Result<(), String> {
        match settings.get("signature_scheme").and_then(|v| v.as_str()) {
            None | Some("switchboard") => Ok(()),
            Some("standard_webhooks") => match secrets.get("secret").and_then(|v| v.as_str()) {
                // Left out, a `whsec_` secret is generated.
                None => Ok(()),
                Some(secret) => sb_core::standard_webhooks::key_of(secret).map(|_| ()).map_err(|e| {
                    format!("with signature_scheme standard_webhooks the secret must be a whsec_ secret: {e}")
                }),
            },
            Some(other) => Err(format!(
                "signature_scheme {other} is not known: use switchboard (the default) or standard_webhooks"
            )),
        }
    }

    fn verify(&self, request: &RawRequest<'_>, account: &Account, now_ms: i64) -> Result<Verified, ChannelError> {
        let secret = account
            .secret("secret")
            .ok_or_else(|| ChannelError::Misconfigured("no `secret`".into()))?;
        signing::verify(secret, request.header(signing::HEADER), request.body, now_ms)?;
        let (dedupe_key, event) = parse_body(request.body, now_ms)?;
        Ok(Verified {
            dedupe_key,
            events: vec![event],
            store_body: None,
            replay_token: None,
        })
    }

    fn parse(&self, body: &[u8], received_at_ms: i64, _account: &Account) -> Result<Vec<Inbound>, ChannelError> {
        Ok(vec![parse_body(body, received_at_ms)?.1])
    }

    async fn send(&self, message: &OutboundMessage, account: &Account) -> Result<String, SendError> {
        let permanent = |code: &str, message: String| SendError {
            retryable: false,
            code: code.into(),
            message,
            retry_after_ms: None,
        };
        let url = account
            .setting("webhook_url")
            .ok_or_else(|| permanent("channel_misconfigured", "the API channel has no webhook_url".into()))?;
        let secret = account
            .secret("secret")
            .ok_or_else(|| permanent("channel_misconfigured", "the API channel has no secret".into()))?;
        let body = serde_json::to_vec(message).map_err(|e| permanent("encoding_failed", e.to_string()))?;
        // Signed at each attempt: a retry hours later must still fall inside the receiver's window.
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let request = self.http.post(url).header("content-type", "application/json");
        let request = if account.setting("signature_scheme") == Some("standard_webhooks") {
            let signature = sb_core::standard_webhooks::sign(&[secret], &message.message_id, now_secs, &body)
                .map_err(|e| permanent("channel_misconfigured", format!("the API channel's secret: {e}")))?;
            request
                .header(sb_core::standard_webhooks::ID_HEADER, &message.message_id)
                .header(sb_core::standard_webhooks::TIMESTAMP_HEADER, now_secs.to_string())
                .header(sb_core::standard_webhooks::SIGNATURE_HEADER, signature)
        } else {
            request.header(signing::HEADER, signing::sign(secret, now_secs, &body))
        };
        let response = request.body(body).send().await.map_err(SendError::network)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
                .unwrap_or_else(|| message.message_id.clone());
            return Ok(id);
        }
        let retryable = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        Err(SendError {
            retryable,
            code: format!("http_{}", status.as_u16()),
            message: text.chars().take(500).collect(),
            retry_after_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    fn account() -> Account {
        Account {
            id: "acc".into(),
            settings: serde_json::json!({}),
            secrets: serde_json::json!({"secret": "s3cret"}),
        }
    }

    fn signed(body: &[u8]) -> Vec<(String, String)> {
        vec![(signing::HEADER.into(), signing::sign("s3cret", NOW / 1000, body))]
    }

    #[test]
    fn a_signed_message_parses_with_normalised_identities() {
        let body = br#"{"type":"message","id":"m-1","from":{"id":"u-7","name":"Ana","email":" Ana@Example.com","phone":"+34 600 111 222"},"text":"Hola"}"#;
        let headers = signed(body);
        let v = ApiChannel::default()
            .verify(
                &RawRequest {
                    url: "https://hooks.example.test/",
                    headers: &headers,
                    body,
                },
                &account(),
                NOW,
            )
            .expect("valid");
        assert_eq!(v.dedupe_key, "message:m-1");
        let Inbound::Message(m) = &v.events[0] else {
            panic!("a message")
        };
        let kinds: Vec<(&str, &str)> = m
            .identities
            .iter()
            .map(|i| (i.kind.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("api", "u-7"), ("email", "ana@example.com"), ("phone", "+34600111222")]
        );
        assert_eq!(m.sent_at_ms, NOW, "no sent_at: the receipt time");
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let ch = ApiChannel::default();
        let good: &[u8] = br#"{"type":"message","id":"m-1","from":{"id":"u"},"text":"x"}"#;
        // (body, secret it is signed with or None for no signature, expected code)
        let cases: [(&[u8], Option<&str>, &str); 5] = [
            (good, None, "missing_signature"),
            (good, Some("other"), "invalid_signature"),
            (b"{not json", Some("s3cret"), "malformed_payload"),
            (
                br#"{"type":"message","id":"","from":{"id":"u"},"text":"x"}"#,
                Some("s3cret"),
                "malformed_payload",
            ),
            (
                br#"{"type":"message","id":"m","from":{"id":"u","phone":"600111222"},"text":"x"}"#,
                Some("s3cret"),
                "malformed_payload",
            ),
        ];
        for (body, secret, code) in cases {
            let headers: Vec<(String, String)> = secret
                .map(|k| (signing::HEADER.to_owned(), signing::sign(k, NOW / 1000, body)))
                .into_iter()
                .collect();
            let err = ch
                .verify(
                    &RawRequest {
                        url: "https://hooks.example.test/",
                        headers: &headers,
                        body,
                    },
                    &account(),
                    NOW,
                )
                .expect_err(code);
            assert_eq!(err.code(), code);
        }
        let headers = signed(good);
        let late = ch.verify(
            &RawRequest {
                url: "https://hooks.example.test/",
                headers: &headers,
                body: good,
            },
            &account(),
            NOW + 6 * 60_000,
        );
        assert_eq!(late.expect_err("expired").code(), "expired_timestamp");
    }

    #[test]
    fn status_reports_parse() {
        let body = br#"{"type":"status","id":"e-1","message_id":"p-9","status":"read"}"#;
        let events = ApiChannel::default()
            .parse(body, NOW, &Account::default())
            .expect("valid");
        assert_eq!(
            events,
            vec![Inbound::Status(StatusReport {
                provider_message_id: "p-9".into(),
                our_message_id: None,
                status: DeliveryStatus::Read,
                error_code: None,
                error_message: None
            })]
        );
    }
}
