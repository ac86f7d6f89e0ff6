//! A customer writes to one of our numbers (channels.md §5.3, §5.4, §6.2):
//! the keyword engine acts first (opt-out/in, auto-reply), then the message is
//! form-POSTed to the number's `sms_url` with Twilio's full parameter set, and a
//! TwiML `<Message>` in our answer is delivered to the customer like Twilio would.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::keywords::{self, Keyword};
use super::media::MediaSource;
use super::message::{API_VERSION, Message};
use super::segments;
use super::webhooks::Post;
use super::{Received, Tw, bare, is_whatsapp};

/// `POST /_sim/inbound`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboundReq {
    /// The customer: `+E164` or `whatsapp:+E164` (or `whatsapp:<BSUID>`).
    pub from: String,
    /// One of our numbers, exactly as configured.
    pub to: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub media: Vec<InboundMedia>,
    pub from_city: Option<String>,
    pub from_state: Option<String>,
    pub from_zip: Option<String>,
    pub from_country: Option<String>,
    // WhatsApp (§5.4)
    pub profile_name: Option<String>,
    /// Defaults to the digits of `from`.
    pub wa_id: Option<String>,
    /// Defaults to `text`, or the media kind (`image`, `video`, `audio`, `document`).
    pub message_type: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub address: Option<String>,
    pub label: Option<String>,
    pub original_replied_message_sid: Option<String>,
    pub original_replied_message_sender: Option<String>,
    pub button_text: Option<String>,
    pub button_payload: Option<String>,
    pub forwarded: Option<bool>,
    pub frequently_forwarded: Option<bool>,
    pub referral_ctwa_clid: Option<String>,
    /// Further parameters appended as-is (Twilio adds parameters without notice; validators must sign them all).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InboundMedia {
    /// Defaults to `image/png`.
    pub content_type: Option<String>,
    pub bytes_base64: Option<String>,
    /// Served by redirect instead of bytes.
    pub url: Option<String>,
}

impl Tw {
    /// Runs one inbound message end to end; returns the control API's answer.
    pub(super) async fn inbound(self: &Arc<Self>, req: InboundReq) -> Result<Value, String> {
        let now = self.clock.now_ms();
        let whatsapp = is_whatsapp(&req.to);
        if whatsapp != is_whatsapp(&req.from) {
            return Err("`from` and `to` must both be whatsapp: addresses or both phone numbers".into());
        }
        let number = {
            let st = self.st();
            let n = st
                .number(&req.to)
                .ok_or_else(|| format!("{} is not one of our numbers", req.to))?;
            n.cfg.clone()
        };
        let mut media = Vec::with_capacity(req.media.len());
        for m in &req.media {
            let content_type = m.content_type.clone().unwrap_or_else(|| "image/png".into());
            let source = match (&m.bytes_base64, &m.url) {
                (Some(b), _) => MediaSource::Bytes(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .map_err(|e| format!("bytes_base64: {e}"))?
                        .into(),
                ),
                (None, Some(u)) => MediaSource::Url(u.clone()),
                (None, None) => MediaSource::Bytes(crate::common::TINY_PNG.to_vec().into()),
            };
            media.push((content_type, source));
        }
        if media.len() > 10 {
            return Err("at most 10 media per message".into());
        }
        let sid = self.st().sids.next(if media.is_empty() { "SM" } else { "MM" });
        let media_urls: Vec<(String, String)> = media
            .into_iter()
            .map(|(ct, src)| (self.store_inbound_media(&sid, &ct, src), ct))
            .collect();
        let num_segments = if whatsapp || !media_urls.is_empty() {
            1
        } else {
            segments::count(&req.body).segments
        };

        // The keyword engine answers before the webhook (SMS only; WhatsApp has no STOP filtering).
        let keyword = {
            let mut st = self.st();
            let keyword = (!whatsapp && st.options.keyword_engine)
                .then(|| keywords::classify(&req.body))
                .flatten();
            let advanced = st.options.advanced_opt_out;
            st.push_message(Message {
                sid: sid.clone(),
                direction: "inbound",
                from: Some(req.from.clone()),
                to: req.to.clone(),
                body: req.body.clone(),
                status: "received",
                num_segments,
                num_media: media_urls.len(),
                messaging_service_sid: self.cfg.messaging_service_sid.clone(),
                error_code: None,
                error_message: None,
                created_ms: now,
                updated_ms: now,
                sent_ms: Some(now),
                whatsapp,
                status_callback: None,
                validity_ms: 0,
                validity_explicit: false,
                content_sid: None,
                content_variables: None,
                media_urls: media_urls.iter().map(|(u, _)| u.clone()).collect(),
                media_fetches: Vec::new(),
                media_pending: 0,
                billed_segments: num_segments,
                send_at_ms: None,
                deliver_at_ms: None,
                expire_at_ms: None,
                history: vec![super::message::StatusStep {
                    status: "received",
                    at_ms: now,
                    error_code: None,
                }],
            });
            if whatsapp {
                st.last_inbound.insert((req.to.clone(), req.from.clone()), now);
            }
            let auto_reply = keyword.and_then(|k| self.apply_keyword(&mut st, k, &req.to, &req.from, now));
            (keyword, auto_reply, advanced)
        };
        let (keyword, auto_reply, advanced) = keyword;

        let params = self.inbound_params(&req, &sid, num_segments, &media_urls, keyword.filter(|_| advanced));
        let answer = match &number.sms_url {
            Some(url) => {
                let post = Post {
                    kind: "inbound",
                    message_sid: sid.clone(),
                    url: url.clone(),
                    signing_url: number.signing_url.clone(),
                    params,
                };
                Some(self.emit(&post).await)
            }
            None => None,
        };
        let status = answer.as_ref().and_then(|a| a.status);
        if let Some(body) = answer.and_then(|a| a.body).filter(|_| status == Some(200)) {
            let now = self.clock.now_ms();
            let mut st = self.st();
            for text in twiml_messages(&body) {
                st.push_received(Received {
                    seq: 0,
                    to: req.from.clone(),
                    from: req.to.clone(),
                    body: text,
                    media: Vec::new(),
                    sid: None,
                    kind: "twiml_reply",
                    at_ms: now,
                });
            }
        }
        Ok(json!({
            "sid": sid,
            "delivered_status": status,
            "webhook_url": number.sms_url,
            "keyword": keyword,
            "auto_reply": auto_reply,
            "media_urls": media_urls.iter().map(|(u, _)| u).collect::<Vec<_>>(),
        }))
    }

    /// Opt-out / opt-in / help for (our number, customer); returns the auto-reply sent, if any.
    fn apply_keyword(
        &self,
        st: &mut super::TwState,
        keyword: Keyword,
        ours: &str,
        customer: &str,
        now: i64,
    ) -> Option<String> {
        let key = (self.opt_out_scope(ours), customer.to_string());
        let was_out = st.optouts.contains(&key);
        match keyword {
            Keyword::OptOut => {
                st.optouts.insert(key);
            }
            Keyword::OptIn => {
                st.optouts.remove(&key);
            }
            // An opted-out customer gets no help text until they opt back in.
            Keyword::Help if was_out => return None,
            Keyword::Help => {}
        }
        let reply = keyword.reply().to_string();
        st.push_received(Received {
            seq: 0,
            to: customer.to_string(),
            from: ours.to_string(),
            body: reply.clone(),
            media: Vec::new(),
            sid: None,
            kind: "auto_reply",
            at_ms: now,
        });
        Some(reply)
    }

    /// The form parameters of the inbound webhook, in the order of channels.md §5.3.
    fn inbound_params(
        &self,
        req: &InboundReq,
        sid: &str,
        num_segments: usize,
        media: &[(String, String)],
        opt_out_type: Option<Keyword>,
    ) -> Vec<(String, String)> {
        let whatsapp = is_whatsapp(&req.to);
        let mut p: Vec<(String, String)> = Vec::with_capacity(32);
        let mut add = |k: &str, v: String| p.push((k.to_string(), v));
        add("MessageSid", sid.to_string());
        add("SmsSid", sid.to_string());
        add("SmsMessageSid", sid.to_string());
        add("AccountSid", self.cfg.account_sid.clone());
        if let Some(ms) = &self.cfg.messaging_service_sid {
            add("MessagingServiceSid", ms.clone());
        }
        add("From", req.from.clone());
        add("To", req.to.clone());
        add("Body", req.body.clone());
        add("NumMedia", media.len().to_string());
        add("NumSegments", num_segments.to_string());
        add("SmsStatus", "received".into());
        add("ApiVersion", API_VERSION.into());
        for (i, (url, ct)) in media.iter().enumerate() {
            add(&format!("MediaContentType{i}"), ct.clone());
            add(&format!("MediaUrl{i}"), url.clone());
        }
        if whatsapp {
            let kind = req.message_type.clone().unwrap_or_else(|| {
                match media.first().map(|(_, ct)| ct.split('/').next().unwrap_or("")) {
                    None if req.latitude.is_some() => "location".into(),
                    None => "text".into(),
                    Some("image") => "image".into(),
                    Some("video") => "video".into(),
                    Some("audio") => "audio".into(),
                    Some(_) => "document".into(),
                }
            });
            if let Some(name) = &req.profile_name {
                add("ProfileName", name.clone());
            }
            let digits: String = bare(&req.from).chars().filter(char::is_ascii_digit).collect();
            add("WaId", req.wa_id.clone().unwrap_or(digits));
            add("MessageType", kind);
            let opt = |k: &str, v: &Option<String>, add: &mut dyn FnMut(&str, String)| {
                if let Some(v) = v {
                    add(k, v.clone());
                }
            };
            if let (Some(lat), Some(lon)) = (req.latitude, req.longitude) {
                add("Latitude", lat.to_string());
                add("Longitude", lon.to_string());
            }
            opt("Address", &req.address, &mut add);
            opt("Label", &req.label, &mut add);
            opt("OriginalRepliedMessageSid", &req.original_replied_message_sid, &mut add);
            opt(
                "OriginalRepliedMessageSender",
                &req.original_replied_message_sender,
                &mut add,
            );
            opt("ButtonText", &req.button_text, &mut add);
            opt("ButtonPayload", &req.button_payload, &mut add);
            if let Some(f) = req.forwarded {
                add("Forwarded", f.to_string());
            }
            if let Some(f) = req.frequently_forwarded {
                add("FrequentlyForwarded", f.to_string());
            }
            opt("ReferralCtwaClid", &req.referral_ctwa_clid, &mut add);
        } else {
            let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
            add("FromCity", or_empty(&req.from_city));
            add("FromState", or_empty(&req.from_state));
            add("FromZip", or_empty(&req.from_zip));
            add(
                "FromCountry",
                req.from_country.clone().unwrap_or_else(|| country_of(&req.from).into()),
            );
            add("ToCity", String::new());
            add("ToState", String::new());
            add("ToZip", String::new());
            add("ToCountry", country_of(&req.to).into());
        }
        if let Some(k) = opt_out_type {
            add("OptOutType", k.opt_out_type().into());
        }
        for (k, v) in &req.extra {
            add(k, v.clone());
        }
        p
    }
}

/// ISO country of an E.164 number, for the few calling codes our tests use.
fn country_of(number: &str) -> &'static str {
    let n = bare(number);
    [
        ("+1", "US"),
        ("+34", "ES"),
        ("+44", "GB"),
        ("+52", "MX"),
        ("+49", "DE"),
        ("+33", "FR"),
        ("+55", "BR"),
    ]
    .iter()
    .find(|(prefix, _)| n.starts_with(prefix))
    .map_or("", |(_, c)| c)
}

/// Texts of the `<Message>` verbs of a TwiML answer (`<Message>text</Message>` or with a `<Body>`).
pub(super) fn twiml_messages(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Message") {
        let after = &rest[start + "<Message".len()..];
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') || !(after.starts_with('>') || after.starts_with(char::is_whitespace)) {
            rest = &after[gt + 1..];
            continue;
        }
        let inner_and_rest = &after[gt + 1..];
        let Some(end) = inner_and_rest.find("</Message>") else {
            break;
        };
        let inner = &inner_and_rest[..end];
        let text = match (inner.find("<Body>"), inner.find("</Body>")) {
            (Some(a), Some(b)) if a < b => &inner[a + "<Body>".len()..b],
            _ => inner,
        };
        out.push(unescape_xml(&strip_tags(text)).trim().to_string());
        rest = &inner_and_rest[end + "</Message>".len()..];
    }
    out
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml() {
        assert!(twiml_messages(r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#).is_empty());
        assert!(twiml_messages("<Response/>").is_empty());
        assert_eq!(
            twiml_messages(
                "<Response><Message>Thanks &amp; bye</Message><Message to=\"+1\"><Body>Two</Body><Media>x</Media></Message></Response>"
            ),
            vec!["Thanks & bye".to_string(), "Two".to_string()]
        );
        assert!(twiml_messages("<Response><MessageX>no</MessageX><Message/></Response>").is_empty());
    }

    #[test]
    fn countries() {
        assert_eq!(country_of("+15557654321"), "US");
        assert_eq!(country_of("whatsapp:+34600111222"), "ES");
        assert_eq!(country_of("+8613800000000"), "");
    }
}
