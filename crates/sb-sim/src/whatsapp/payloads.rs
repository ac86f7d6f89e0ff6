//! Webhook payload builders (channels.md §1.3–§1.5).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{DAY_MS, OutMsg, Wa, WaState, derive_bsuid, looks_like_bsuid, normalise_phone};
use crate::common::{TINY_PDF, TINY_PNG};
use crate::jobj;
use crate::json::Json;

const ERROR_HREF: &str = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/";

/// "The customer sends X" — body of `POST /_sim/whatsapp/customer-message` (and items of `/batch`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerMessage {
    /// Customer phone (digits; `+`/spaces allowed). Optional only with `bsuid_only` + `user_id`.
    pub from: Option<String>,
    /// Profile name (`contacts[].profile.name`).
    pub name: Option<String>,
    /// BSUID (`contacts[].user_id`, `messages[].from_user_id`).
    pub user_id: Option<String>,
    /// `contacts[].profile.username`.
    pub username: Option<String>,
    /// Contacts carry only `user_id` (no `wa_id`), messages only `from_user_id` (no `from`).
    #[serde(default)]
    pub bsuid_only: bool,
    /// text (default) | image | video | audio | document | sticker | location | reaction | button |
    /// interactive | edit | revoke | unsupported | system
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub text: Option<String>,
    /// wamid being replied to (`context.id`).
    pub context_id: Option<String>,
    /// `context.from` (defaults to our display number).
    pub context_from: Option<String>,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub frequently_forwarded: bool,
    /// Override the generated wamid (e.g. to replay a message).
    pub id: Option<String>,
    /// Override the timestamp (Unix seconds, as a string or number).
    pub timestamp: Option<Value>,
    // media
    pub caption: Option<String>,
    pub mime_type: Option<String>,
    pub data_base64: Option<String>,
    pub filename: Option<String>,
    pub voice: Option<bool>,
    pub animated: Option<bool>,
    // location
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub location_name: Option<String>,
    pub address: Option<String>,
    pub url: Option<String>,
    // reaction
    pub message_id: Option<String>,
    pub emoji: Option<String>,
    // button
    pub payload: Option<String>,
    // interactive
    pub interactive_type: Option<String>,
    pub reply_id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    // edit / revoke
    pub original_message_id: Option<String>,
    // system
    pub system_type: Option<String>,
    pub new_wa_id: Option<String>,
    pub new_user_id: Option<String>,
    /// Click-to-WhatsApp `referral` object, passed through.
    pub referral: Option<Value>,
    /// Extra fields merged into the message object as-is.
    pub extra: Option<Value>,
}

/// One built inbound message.
pub(crate) struct Inbound {
    pub wamid: String,
    pub contact: Option<Json>,
    pub message: Json,
    pub media_id: Option<String>,
    pub user_id: Option<String>,
}

/// A status to emit.
pub(crate) struct StatusSpec<'a> {
    pub wamid: &'a str,
    pub status: &'a str,
    pub msg: Option<&'a OutMsg>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub error_details: Option<String>,
    pub recipient_id: Option<String>,
    pub timestamp_secs: i64,
}

impl Wa {
    /// `{"messaging_product":"whatsapp","metadata":{...}}`
    pub fn value_base(&self) -> Json {
        jobj! {
            "messaging_product": "whatsapp",
            "metadata": jobj! {
                "display_phone_number": self.cfg.display_phone_number.as_str(),
                "phone_number_id": self.cfg.phone_number_id.as_str(),
            },
        }
    }

    /// `{"id": <waba>, "changes": [...]}`
    pub fn entry(&self, changes: Vec<Json>) -> Json {
        jobj! { "id": self.cfg.waba_id.as_str(), "changes": changes }
    }

    pub fn change(value: Json, field: &str) -> Json {
        jobj! { "value": value, "field": field }
    }

    pub fn envelope(entries: Vec<Json>) -> Json {
        jobj! { "object": "whatsapp_business_account", "entry": entries }
    }

    /// Envelope with one entry holding one change.
    pub fn single(&self, value: Json, field: &str) -> Json {
        Self::envelope(vec![self.entry(vec![Self::change(value, field)])])
    }

    /// `errors[]` element of a failed status / unsupported message.
    pub fn error_obj(code: i64, title: Option<String>, details: Option<String>) -> Json {
        let (t, d) = error_text(code);
        let title = title.unwrap_or_else(|| t.to_string());
        jobj! {
            "code": code,
            "title": title.as_str(),
            "message": title.as_str(),
            "error_data": jobj! { "details": details.unwrap_or_else(|| d.to_string()) },
            "href": ERROR_HREF,
        }
    }

    /// One element of `statuses[]`.
    pub fn status_obj(&self, s: &StatusSpec<'_>) -> Json {
        let mut o = jobj! { "id": s.wamid, "status": s.status, "timestamp": s.timestamp_secs.to_string() };
        let wa_id = s.recipient_id.clone().or_else(|| s.msg.and_then(|m| m.wa_id.clone()));
        if let Some(w) = wa_id {
            o.set("recipient_id", w);
        }
        if let Some(u) = s.msg.and_then(|m| m.user_id.clone()) {
            o.set("recipient_user_id", u);
        }
        if let Some(b) = s.msg.and_then(|m| m.biz_opaque.clone()) {
            o.set("biz_opaque_callback_data", b);
        }
        if s.status == "failed" {
            let code = s.error_code.unwrap_or(131000);
            o.set(
                "errors",
                vec![Self::error_obj(code, s.error_title.clone(), s.error_details.clone())],
            );
        } else if matches!(s.status, "sent" | "delivered")
            && let Some(p) = s.msg.and_then(|m| m.pricing.clone())
        {
            o.set("pricing", p);
        }
        o
    }

    /// Builds one inbound message from a control request, updating the customer
    /// registry (last-inbound time, BSUID link) and the media store.
    pub fn build_inbound(&self, st: &mut WaState, req: &CustomerMessage) -> Result<Inbound, String> {
        let kind = req.kind.clone().unwrap_or_else(|| "text".to_string());
        let now_ms = self.core.clock.now_ms();
        let wa_id = match &req.from {
            Some(f) => Some(normalise_phone(f).ok_or_else(|| format!("`from` is not a phone number: {f}"))?),
            None => None,
        };
        if let Some(u) = &req.user_id
            && !looks_like_bsuid(u)
        {
            return Err(format!("`user_id` is not BSUID-shaped (CC.digits): {u}"));
        }
        let known_user = st
            .customer_idx(wa_id.as_deref(), None)
            .and_then(|i| st.customers[i].user_id.clone());
        let user_id = match (&req.user_id, req.bsuid_only, &wa_id) {
            (Some(u), _, _) => Some(u.clone()),
            (None, true, Some(w)) => Some(known_user.unwrap_or_else(|| derive_bsuid(&self.cfg.waba_id, w))),
            (None, true, None) => return Err("`bsuid_only` needs `from` or `user_id`".into()),
            (None, false, None) => return Err("`from` is required".into()),
            (None, false, Some(_)) => known_user,
        };
        let counterpart = wa_id.clone().or_else(|| user_id.clone()).unwrap_or_default();
        let wamid = match &req.id {
            Some(id) => id.clone(),
            None => self.new_wamid(st, &counterpart, false),
        };
        let timestamp = match &req.timestamp {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => (now_ms.div_euclid(1000)).to_string(),
        };

        // Customer registry: every customer-originated message except system/revoke (re)opens the window.
        let customer = st.upsert_customer(wa_id.as_deref(), user_id.as_deref());
        if let Some(n) = &req.name {
            customer.name = Some(n.clone());
        }
        if let Some(u) = &req.username {
            customer.username = Some(u.clone());
        }
        if !matches!(kind.as_str(), "system" | "revoke") {
            customer.last_inbound_ms = Some(now_ms);
        }
        let profile_name = customer
            .name
            .clone()
            .or_else(|| customer.username.clone())
            .unwrap_or_else(|| counterpart.clone());
        let username = customer.username.clone();

        let mut msg = Json::obj();
        if let Some(ctx) = &req.context_id {
            let from = req
                .context_from
                .clone()
                .unwrap_or_else(|| self.cfg.display_phone_number.clone());
            msg.set("context", jobj! { "from": from, "id": ctx.as_str() });
        } else if req.forwarded || req.frequently_forwarded {
            let mut ctx = jobj! { "forwarded": true };
            if req.frequently_forwarded {
                ctx.set("frequently_forwarded", true);
            }
            msg.set("context", ctx);
        }
        if !req.bsuid_only
            && let Some(w) = &wa_id
        {
            msg.set("from", w.as_str());
        }
        if let Some(u) = &user_id {
            msg.set("from_user_id", u.as_str());
        }
        msg.set("id", wamid.as_str());
        msg.set("timestamp", timestamp);
        msg.set("type", kind.as_str());

        let mut media_id = None;
        match kind.as_str() {
            "text" => {
                let body = req.text.clone().ok_or("`text` is required for type text")?;
                msg.set("text", jobj! { "body": body });
            }
            "image" | "video" | "audio" | "document" | "sticker" => {
                let bytes = match &req.data_base64 {
                    Some(b) => base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| format!("`data_base64` is not base64: {e}"))?,
                    None if kind == "image" => TINY_PNG.to_vec(),
                    None if kind == "document" => TINY_PDF.to_vec(),
                    None => format!("sb-sim {kind} bytes for {wamid}").into_bytes(),
                };
                let mime = req.mime_type.clone().unwrap_or_else(|| {
                    match kind.as_str() {
                        "image" => "image/png",
                        "video" => "video/mp4",
                        "audio" => "audio/ogg",
                        "sticker" => "image/webp",
                        _ => "application/pdf",
                    }
                    .to_string()
                });
                let id = self.add_media(st, bytes.into(), mime.clone());
                let sha = st.media.get(&id).map(|m| m.sha256.clone()).unwrap_or_default();
                let mut m = jobj! { "id": id.as_str(), "mime_type": mime, "sha256": sha };
                if let Some(c) = &req.caption
                    && matches!(kind.as_str(), "image" | "video" | "document")
                {
                    m.set("caption", c.as_str());
                }
                if kind == "document" {
                    m.set(
                        "filename",
                        req.filename.clone().unwrap_or_else(|| "document.pdf".to_string()),
                    );
                }
                if kind == "audio" {
                    m.set("voice", req.voice.unwrap_or(false));
                }
                if kind == "sticker" {
                    m.set("animated", req.animated.unwrap_or(false));
                }
                msg.set(&kind, m);
                media_id = Some(id);
            }
            "location" => {
                let (Some(lat), Some(lon)) = (req.latitude, req.longitude) else {
                    return Err("`latitude` and `longitude` are required for type location".into());
                };
                let loc = jobj! { "latitude": lat, "longitude": lon }
                    .with_opt("name", req.location_name.clone())
                    .with_opt("address", req.address.clone())
                    .with_opt("url", req.url.clone());
                msg.set("location", loc);
            }
            "reaction" => {
                let target = req
                    .message_id
                    .clone()
                    .ok_or("`message_id` is required for type reaction")?;
                let emoji = req.emoji.clone().unwrap_or_default();
                msg.set("reaction", jobj! { "message_id": target, "emoji": emoji });
            }
            "button" => {
                let text = req
                    .text
                    .clone()
                    .ok_or("`text` (button label) is required for type button")?;
                let payload = req.payload.clone().unwrap_or_else(|| text.clone());
                msg.set("button", jobj! { "payload": payload, "text": text });
            }
            "interactive" => {
                let itype = req
                    .interactive_type
                    .clone()
                    .unwrap_or_else(|| "button_reply".to_string());
                let id = req
                    .reply_id
                    .clone()
                    .ok_or("`reply_id` is required for type interactive")?;
                let title = req
                    .title
                    .clone()
                    .or_else(|| req.text.clone())
                    .unwrap_or_else(|| id.clone());
                let reply = match itype.as_str() {
                    "button_reply" => jobj! { "id": id, "title": title },
                    "list_reply" => jobj! { "id": id, "title": title }.with_opt("description", req.description.clone()),
                    other => {
                        return Err(format!(
                            "`interactive_type` must be button_reply or list_reply, got {other}"
                        ));
                    }
                };
                let mut inter = jobj! { "type": itype.as_str() };
                inter.set(&itype, reply);
                msg.set("interactive", inter);
            }
            "edit" => {
                let orig = req
                    .original_message_id
                    .clone()
                    .ok_or("`original_message_id` is required for type edit")?;
                let body = req.text.clone().ok_or("`text` is required for type edit")?;
                msg.set(
                    "edit",
                    jobj! {
                        "original_message_id": orig,
                        "message": jobj! { "type": "text", "text": jobj! { "body": body } },
                    },
                );
            }
            "revoke" => {
                let orig = req
                    .original_message_id
                    .clone()
                    .ok_or("`original_message_id` is required for type revoke")?;
                msg.set("revoke", jobj! { "original_message_id": orig });
            }
            "unsupported" => {
                msg.set("errors", vec![Self::error_obj(131051, None, None)]);
            }
            "system" => {
                let stype = req
                    .system_type
                    .clone()
                    .unwrap_or_else(|| "user_changed_number".to_string());
                let sys = match stype.as_str() {
                    "user_changed_number" => {
                        let new = req
                            .new_wa_id
                            .clone()
                            .ok_or("`new_wa_id` is required for user_changed_number")?;
                        let new = normalise_phone(&new).ok_or("`new_wa_id` is not a phone number")?;
                        let old = wa_id.clone().unwrap_or_default();
                        let body = format!("User {profile_name} changed from {old} to {new}");
                        // The customer is reachable on the new number from now on.
                        if let Some(i) = st.customer_idx(wa_id.as_deref(), user_id.as_deref()) {
                            st.customers[i].wa_id = Some(new.clone());
                        }
                        jobj! { "body": body, "wa_id": new, "type": "user_changed_number" }
                    }
                    "user_changed_user_id" => {
                        let new = req
                            .new_user_id
                            .clone()
                            .ok_or("`new_user_id` is required for user_changed_user_id")?;
                        let old = user_id.clone().unwrap_or_default();
                        let body = format!("User {profile_name} changed from {old} to {new}");
                        if let Some(i) = st.customer_idx(wa_id.as_deref(), user_id.as_deref()) {
                            st.customers[i].user_id = Some(new.clone());
                        }
                        jobj! { "body": body, "user_id": new, "type": "user_changed_user_id" }
                    }
                    other => return Err(format!("unknown system_type {other}")),
                };
                msg.set("system", sys);
            }
            other => return Err(format!("unsupported customer message type {other}")),
        }
        if let Some(r) = &req.referral {
            msg.set("referral", Json::from(r));
        }
        if let Some(Value::Object(extra)) = &req.extra {
            for (k, v) in extra {
                msg.set(k, Json::from(v));
            }
        }

        // System messages carry no contacts array (Meta's system webhook reference).
        let contact = (kind != "system").then(|| {
            let mut profile = jobj! { "name": profile_name.as_str() };
            if let Some(u) = &username {
                profile.set("username", u.as_str());
            }
            let mut c = jobj! { "profile": profile };
            if !req.bsuid_only
                && let Some(w) = &wa_id
            {
                c.set("wa_id", w.as_str());
            }
            if let Some(u) = &user_id {
                c.set("user_id", u.as_str());
            }
            c
        });
        Ok(Inbound {
            wamid,
            contact,
            message: msg,
            media_id,
            user_id,
        })
    }

    /// `value` for a set of inbound messages (contacts deduplicated, in first-seen order).
    pub fn messages_value(&self, items: &[Inbound]) -> Json {
        let mut contacts: Vec<Json> = Vec::new();
        for c in items.iter().filter_map(|i| i.contact.clone()) {
            if !contacts.contains(&c) {
                contacts.push(c);
            }
        }
        let mut v = self.value_base();
        if !contacts.is_empty() {
            v.set("contacts", contacts);
        }
        v.set("messages", items.iter().map(|i| i.message.clone()).collect::<Vec<_>>());
        v
    }

    /// `value` for a set of statuses.
    pub fn statuses_value(&self, statuses: Vec<Json>) -> Json {
        self.value_base().with("statuses", statuses)
    }

    /// PMP pricing object for a message (channels.md §1.5).
    pub fn pricing(template_category: Option<&str>, window_open: bool) -> Json {
        let (kind, category) = match template_category {
            None => ("free_customer_service", "service".to_string()),
            Some(c) => {
                let c = c.to_ascii_lowercase();
                let kind = if c == "utility" && window_open {
                    "free_customer_service"
                } else {
                    "regular"
                };
                (kind, c)
            }
        };
        jobj! { "billable": kind == "regular", "pricing_model": "PMP", "type": kind, "category": category }
    }

    /// True when the customer's 24 h service window is open at `now_ms`.
    pub fn window_open(st: &WaState, wa_id: Option<&str>, user_id: Option<&str>, now_ms: i64) -> bool {
        st.customer_idx(wa_id, user_id)
            .and_then(|i| st.customers[i].last_inbound_ms)
            .is_some_and(|t| now_ms < t + DAY_MS)
    }
}

/// Title and details of the error codes the simulator emits.
pub(crate) fn error_text(code: i64) -> (&'static str, &'static str) {
    match code {
        131047 => (
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this \
             number.",
        ),
        131026 => (
            "Message undeliverable",
            "Unable to deliver message. Reasons can include: the recipient phone number is not a WhatsApp phone \
             number; the recipient has not accepted the new Terms of Service and Privacy Policy; the recipient is \
             using an old WhatsApp version.",
        ),
        131050 => (
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on \
             WhatsApp from your business",
            "The recipient has stopped marketing messages from this business.",
        ),
        131049 => (
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
        131051 => ("Message type unknown", "Message type is currently not supported."),
        131052 => ("Media download error", "Unable to download the media sent by the user."),
        131053 => ("Media upload error", "Unable to upload the media used in the message."),
        130472 => (
            "User's number is part of an experiment",
            "Failed to send message because this user's phone number is part of an experiment.",
        ),
        131048 => (
            "Spam rate limit hit",
            "Message failed to send because there are restrictions on how many messages can be sent from this phone \
             number.",
        ),
        131056 => (
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same \
             phone number in a short period of time.",
        ),
        _ => (
            "Something went wrong",
            "Message failed to send because of an unknown error.",
        ),
    }
}
