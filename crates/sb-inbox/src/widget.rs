//! The website chat widget's use cases: visitor sessions, the visitor's view of their chat,
//! the pre-chat form, verified identify, messages with echo ids, attachments, typing, "seen",
//! and handoff to another channel (which agents can start too).
//!
//! Trust rules: a visitor token proves only "this browser is visitor V of widget W". What a
//! visitor types (pre-chat e-mail, phone, an unverified identify) is attached only when nobody
//! holds it and never merges into an existing customer; only an `identifier_hash` made with
//! the widget's secret does. A visitor sees only the messages of their own chat on this widget,
//! never what the customer wrote on other channels.

use sb_channels::widget::{self as wire, AttachmentError, TokenError, VisitorToken};
use sb_channels::{IdentityHint, InboundMessage};
use sb_core::clock::rfc3339;
use sb_core::inbox::Purpose;
use sb_core::inbox::{normalise_email, normalise_phone};
use sb_engine::Engine;
use sb_store::attachments::{self, Attachment, AttachmentMeta, NewAttachment};
use sb_store::audit::{self, Actor, Change};
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::customers::{self, Hint, scope_of};
use sb_store::live_events::{self, LiveEvent};
use sb_store::messages::{self, Message, NewMessage};
use sb_store::{Conn, Store, StoreError, conversations, merges, presence, workspaces};
use serde::Serialize;

use crate::Channels;
use crate::live::{self, Live, message_payload};
use crate::outbox::{self, Author, ReplyError};
use crate::process::apply_message;

/// How many of the chat's latest messages a visitor gets when the widget loads.
const THREAD_LIMIT: i64 = 200;
const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum WidgetError {
    #[error("no widget has this website token")]
    UnknownWidget,
    #[error("this website may not embed the widget (origin not in allowed_origins)")]
    OriginNotAllowed,
    #[error("the visitor token is not valid: {0}")]
    InvalidToken(TokenError),
    #[error("this widget requires identifier_hash with identify")]
    HashRequired,
    #[error("identifier_hash does not match the identifier")]
    InvalidHash,
    #[error("{0}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    #[error("one of attachment_ids is unknown, not yours, or attached already")]
    AttachmentNotFound,
    #[error("another customer already has this address: an agent can merge the two")]
    IdentityConflict,
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sb_sql::SqlError> for WidgetError {
    fn from(e: sb_sql::SqlError) -> Self {
        WidgetError::Store(e.into())
    }
}

impl From<merges::MergeError> for WidgetError {
    fn from(e: merges::MergeError) -> Self {
        match e {
            merges::MergeError::Store(e) => WidgetError::Store(e),
            other => WidgetError::Store(StoreError::Conflict(other.to_string())),
        }
    }
}

/// An authenticated visitor.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub workspace_id: String,
    pub account: ChannelAccount,
    pub visitor_id: String,
    /// `None` until the visitor sends something: a visitor who only opens the page makes no
    /// customer.
    pub customer_id: Option<String>,
    token_key: String,
}

/// The visitor's customer, made now when this is the first thing they send.
fn customer_of(c: &mut dyn Conn, v: &Visitor, now: i64) -> Result<String, StoreError> {
    if let Some(id) = &v.customer_id {
        return Ok(id.clone());
    }
    customers::resolve(
        c,
        &v.workspace_id,
        &v.account.id,
        &[visitor_hint(&v.visitor_id)],
        None,
        now,
    )
}

/// The customer holding a visitor's widget address, if they have one yet.
fn visitor_customer(
    c: &mut dyn Conn,
    account: &ChannelAccount,
    visitor_id: &str,
) -> Result<Option<String>, StoreError> {
    let scope = scope_of(wire::ADDRESS_KIND, &account.id);
    customers::find_identity_owner(c, &account.workspace_id, wire::ADDRESS_KIND, &scope, visitor_id)
}

/// The visitor's customer once they have one (a live feed opened before the first message
/// asks again when a message appears on its widget).
pub async fn customer_of_visitor(store: &Store, visitor: &Visitor) -> Result<Option<String>, StoreError> {
    let (account, id) = (visitor.account.clone(), visitor.visitor_id.clone());
    store.db.read(move |c| visitor_customer(c, &account, &id)).await
}

/// The visitor's customer, made now if they have none (a hand-off before any message).
pub async fn ensure_customer(store: &Store, visitor: &Visitor) -> Result<String, StoreError> {
    let (v, now) = (visitor.clone(), store.now());
    store.db.write(move |c| customer_of(c, &v, now)).await
}

#[derive(Debug, Clone, Serialize)]
pub struct HandoffTarget {
    pub channel_account_id: String,
    pub channel: String,
    pub name: String,
    pub address_kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WidgetSettings {
    pub title: String,
    pub welcome: String,
    pub prechat: bool,
    pub hmac_mandatory: bool,
    pub max_upload_bytes: usize,
    pub upload_types: &'static [&'static str],
    pub handoff: Vec<HandoffTarget>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub token: String,
    pub visitor_id: String,
    pub expires_at: String,
    pub settings: WidgetSettings,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadView {
    pub customer: ContactView,
    pub messages: Vec<serde_json::Value>,
    /// Open the socket with `after=last_seq`: nothing between this read and the socket is lost.
    pub last_seq: i64,
}

fn setting_bool(settings: &serde_json::Value, name: &str, default: bool) -> bool {
    settings.get(name).and_then(|v| v.as_bool()).unwrap_or(default)
}

fn settings_of(account: &ChannelAccount) -> serde_json::Value {
    serde_json::from_str(&account.settings_json).unwrap_or_default()
}

pub fn max_upload_bytes(account: &ChannelAccount) -> usize {
    settings_of(account)
        .get("max_upload_bytes")
        .and_then(|v| v.as_u64())
        .map_or(wire::DEFAULT_MAX_UPLOAD_BYTES, |n| {
            (n as usize).min(wire::DEFAULT_MAX_UPLOAD_BYTES)
        })
}

/// `Ok` when the widget may run on a page of `origin` (an empty or absent list allows any).
pub fn check_origin(account: &ChannelAccount, origin: Option<&str>) -> Result<(), WidgetError> {
    let settings = settings_of(account);
    let Some(allowed) = settings.get("allowed_origins").and_then(|v| v.as_array()) else {
        return Ok(());
    };
    if allowed.is_empty() {
        return Ok(());
    }
    let origin = origin.ok_or(WidgetError::OriginNotAllowed)?;
    if allowed.iter().any(|a| a.as_str() == Some(origin)) {
        Ok(())
    } else {
        Err(WidgetError::OriginNotAllowed)
    }
}

fn widget_settings(
    c: &mut dyn Conn,
    channels: &Channels,
    account: &ChannelAccount,
) -> Result<WidgetSettings, StoreError> {
    let settings = settings_of(account);
    let text = |name: &str, default: &str| {
        settings
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_owned()
    };
    let handoff = channel_accounts::list(c, &account.workspace_id)?
        .into_iter()
        .filter(|a| !a.disabled && a.channel != wire::KIND)
        .filter_map(|a| {
            let channel = channels.get(&a.channel)?;
            Some(HandoffTarget {
                channel_account_id: a.id.clone(),
                channel: a.channel.clone(),
                name: a.name.clone(),
                address_kind: channel.address_kind().to_owned(),
            })
        })
        .collect();
    Ok(WidgetSettings {
        title: text("title", &account.name),
        welcome: text("welcome", "Hi! Ask us anything, we usually answer within minutes."),
        prechat: setting_bool(&settings, "prechat", true),
        hmac_mandatory: setting_bool(&settings, "hmac_mandatory", false),
        max_upload_bytes: max_upload_bytes(account),
        upload_types: wire::UPLOAD_TYPES,
        handoff,
    })
}

fn token_key(secrets_json: &str) -> Result<String, WidgetError> {
    let secrets: serde_json::Value = serde_json::from_str(secrets_json).unwrap_or_default();
    secrets
        .get("token_key")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| WidgetError::Store(StoreError::Invalid("the widget has no token_key".into())))
}

fn hmac_secret(c: &mut dyn Conn, account_id: &str) -> Result<Option<String>, WidgetError> {
    let Some((_, secrets)) = channel_accounts::for_webhook(c, account_id)? else {
        return Ok(None);
    };
    let secrets: serde_json::Value = serde_json::from_str(&secrets).unwrap_or_default();
    Ok(secrets.get("hmac_secret").and_then(|v| v.as_str()).map(str::to_owned))
}

fn visitor_hint(visitor_id: &str) -> Hint<'_> {
    Hint {
        kind: wire::ADDRESS_KIND,
        value: visitor_id,
        verified: true,
    }
}

fn load_widget(c: &mut dyn Conn, account_id: &str) -> Result<(ChannelAccount, String), WidgetError> {
    match channel_accounts::for_webhook(c, account_id)? {
        Some((account, secrets)) if account.channel == wire::KIND && !account.disabled => Ok((account, secrets)),
        _ => Err(WidgetError::UnknownWidget),
    }
}

fn issue_token(visitor: &Visitor, now: i64) -> (String, i64) {
    let token = VisitorToken {
        account_id: visitor.account.id.clone(),
        visitor_id: visitor.visitor_id.clone(),
        expires_at_ms: now + wire::TOKEN_TTL_MS,
    };
    (token.encode(&visitor.token_key), token.expires_at_ms)
}

/// Checks a visitor token and finds the visitor's customer.
pub async fn authenticate(store: &Store, token: &str, origin: Option<&str>) -> Result<Visitor, WidgetError> {
    let peeked = VisitorToken::peek(token).map_err(WidgetError::InvalidToken)?;
    let (token, now, origin) = (token.to_owned(), store.now(), origin.map(str::to_owned));
    store
        .db
        .read(move |c| {
            let (account, secrets) = match load_widget(c, &peeked.account_id) {
                Err(WidgetError::UnknownWidget) => return Err(WidgetError::InvalidToken(TokenError::BadSignature)),
                other => other?,
            };
            check_origin(&account, origin.as_deref())?;
            let key = token_key(&secrets)?;
            let verified = VisitorToken::verify(&token, &key, now).map_err(WidgetError::InvalidToken)?;
            let customer = visitor_customer(c, &account, &verified.visitor_id)?;
            Ok(Visitor {
                workspace_id: account.workspace_id.clone(),
                account,
                visitor_id: verified.visitor_id,
                customer_id: customer,
                token_key: key,
            })
        })
        .await
}

/// Starts (or resumes, with a still-valid token) a visitor session. A new visitor gets a
/// customer at once, holding only the visitor id, so everything later has one owner.
pub async fn start_session(
    store: &Store,
    channels: &Channels,
    website_token: &str,
    existing: Option<&str>,
    origin: Option<&str>,
) -> Result<Session, WidgetError> {
    if let Some(token) = existing
        && let Ok(visitor) = authenticate(store, token, origin).await
        && visitor.account.id == website_token
    {
        let (channels, now) = (channels.clone(), store.now());
        let account = visitor.account.clone();
        let settings = store.db.read(move |c| widget_settings(c, &channels, &account)).await?;
        let (token, expires) = issue_token(&visitor, now);
        return Ok(Session {
            token,
            visitor_id: visitor.visitor_id,
            expires_at: rfc3339(expires),
            settings,
        });
    }
    let (id, channels, now, origin) = (
        website_token.to_owned(),
        channels.clone(),
        store.now(),
        origin.map(str::to_owned),
    );
    store
        .db
        .write(move |c| {
            let (account, secrets) = load_widget(c, &id)?;
            check_origin(&account, origin.as_deref())?;
            // The customer is made with the visitor's first message or form, not here: a page
            // view makes no profile.
            let visitor_id = sb_core::new_id();
            let customer_id = None;
            let settings = widget_settings(c, &channels, &account)?;
            let visitor = Visitor {
                workspace_id: account.workspace_id.clone(),
                account,
                visitor_id,
                customer_id,
                token_key: token_key(&secrets)?,
            };
            let (token, expires) = issue_token(&visitor, now);
            Ok(Session {
                token,
                visitor_id: visitor.visitor_id,
                expires_at: rfc3339(expires),
                settings,
            })
        })
        .await
}

/// A message as the visitor's widget shows it, from a live event's payload.
pub fn visitor_message(payload: &serde_json::Value) -> serde_json::Value {
    let direction = payload["direction"].as_str().unwrap_or_default();
    let attachments: Vec<serde_json::Value> = payload["attachments"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    let mut a = a.clone();
                    a["url"] = format!("/widget/v1/attachments/{}", a["id"].as_str().unwrap_or_default()).into();
                    a
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "id": payload["id"],
        "echo_id": if direction == "inbound" { payload["provider_message_id"].clone() } else { serde_json::Value::Null },
        "direction": direction,
        "author": if payload["author_kind"] == "customer" { "customer" } else { "agent" },
        "channel": payload["channel"],
        "body": payload["body"],
        "attachments": attachments,
        "card": payload["card"],
        "status": payload["status"],
        "sent_at": payload["sent_at"],
    })
}

/// Whether a message event belongs in this visitor's widget: their own chat on this widget
/// (private notes never have an account, so they never match).
pub fn visible_to(visitor: &Visitor, payload: &serde_json::Value) -> bool {
    payload["channel_account_id"].as_str() == Some(visitor.account.id.as_str())
        && visitor
            .customer_id
            .as_deref()
            .is_some_and(|id| payload["customer_id"].as_str() == Some(id))
}

/// The visitor's profile fields and the latest messages of their chat on this widget.
pub async fn thread(store: &Store, visitor: &Visitor) -> Result<ThreadView, WidgetError> {
    let (ws, account, customer) = (
        visitor.workspace_id.clone(),
        visitor.account.id.clone(),
        visitor.customer_id.clone(),
    );
    store
        .db
        .read(move |c| {
            let last_seq = live_events::latest(c, &ws)?;
            // A visitor who has sent nothing has no profile and no messages yet.
            let Some(customer) = customer else {
                return Ok(ThreadView {
                    customer: ContactView {
                        name: None,
                        email: None,
                        phone: None,
                    },
                    messages: Vec::new(),
                    last_seq,
                });
            };
            let profile = customers::get(c, &ws, &customer)?.ok_or(StoreError::NotFound("customer"))?;
            let messages = match conversations::id_for_customer(c, &ws, &customer)? {
                Some(conversation) => messages::latest_on_account(c, &ws, &conversation, &account, THREAD_LIMIT)?
                    .iter()
                    .map(|m| visitor_message(&message_payload(m)))
                    .collect(),
                None => Vec::new(),
            };
            Ok(ThreadView {
                customer: ContactView {
                    name: profile.name,
                    email: profile.email,
                    phone: profile.phone,
                },
                messages,
                last_seq,
            })
        })
        .await
}

fn clean_name(name: Option<&str>) -> Result<Option<String>, WidgetError> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > 100 => Err(WidgetError::Invalid(
            "invalid_name",
            "name is longer than 100 characters".into(),
        )),
        Some(n) => Ok(Some(n.to_owned())),
        None => Ok(None),
    }
}

fn clean_email(email: Option<&str>) -> Result<Option<String>, WidgetError> {
    match email.map(str::trim).filter(|e| !e.is_empty()) {
        Some(raw) => normalise_email(raw)
            .map(Some)
            .ok_or_else(|| WidgetError::Invalid("invalid_email", format!("`{raw}` is not an e-mail address"))),
        None => Ok(None),
    }
}

fn clean_phone(phone: Option<&str>) -> Result<Option<String>, WidgetError> {
    match phone.map(str::trim).filter(|p| !p.is_empty()) {
        Some(raw) => normalise_phone(raw).map(Some).ok_or_else(|| {
            WidgetError::Invalid(
                "invalid_phone",
                format!("`{raw}` is not a phone number in international format (+15551234567)"),
            )
        }),
        None => Ok(None),
    }
}

/// Adds what the visitor typed to their own profile: an e-mail or phone nobody holds is
/// attached as unverified and shown on the profile; one that belongs to someone else is left
/// alone (no merge, and the profile does not show it). The name fills an empty name.
fn add_claims(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let mut own = |kind: &'static str, value: Option<&str>| -> Result<Option<String>, StoreError> {
        let Some(value) = value else { return Ok(None) };
        let hint = Hint {
            kind,
            value,
            verified: false,
        };
        let theirs = customers::attach(c, ws, customer_id, &hint, "", now)?
            || customers::find_identity_owner(c, ws, kind, "", value)?.as_deref() == Some(customer_id);
        Ok(theirs.then(|| value.to_owned()))
    };
    let email = own("email", email)?;
    let phone = own("phone", phone)?;
    customers::fill_profile(c, ws, customer_id, name, email.as_deref(), phone.as_deref(), now)
}

/// The pre-chat form: name, e-mail and phone of the visitor, as claims.
pub async fn update_contact(
    store: &Store,
    visitor: &Visitor,
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<ContactView, WidgetError> {
    let (name, email, phone) = (clean_name(name)?, clean_email(email)?, clean_phone(phone)?);
    let (ws, v, now) = (visitor.workspace_id.clone(), visitor.clone(), store.now());
    store
        .db
        .write(move |c| {
            let customer = customer_of(c, &v, now)?;
            add_claims(
                c,
                &ws,
                &customer,
                name.as_deref(),
                email.as_deref(),
                phone.as_deref(),
                now,
            )?;
            let profile = customers::get(c, &ws, &customer)?.ok_or(StoreError::NotFound("customer"))?;
            Ok(ContactView {
                name: profile.name,
                email: profile.email,
                phone: profile.phone,
            })
        })
        .await
}

#[derive(Debug, Clone, Default)]
pub struct Identify {
    pub identifier: String,
    pub identifier_hash: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Identified {
    pub verified: bool,
    /// A fresh token (the old one stays valid until it expires).
    pub token: String,
    /// Set when the visitor was merged into the customer the identifier belongs to.
    pub merged_into: Option<String>,
}

/// The site tells who the visitor is. With a valid `identifier_hash` the visitor becomes (is
/// merged into) the customer holding that identifier; without one it is only a claim.
pub async fn identify(store: &Store, visitor: &Visitor, request: Identify) -> Result<Identified, WidgetError> {
    let identifier = request.identifier.trim().to_owned();
    if identifier.is_empty() || identifier.len() > 200 {
        return Err(WidgetError::Invalid(
            "invalid_identifier",
            "identifier must be 1–200 characters".into(),
        ));
    }
    let (name, email, phone) = (
        clean_name(request.name.as_deref())?,
        clean_email(request.email.as_deref())?,
        clean_phone(request.phone.as_deref())?,
    );
    let hmac_mandatory = setting_bool(&settings_of(&visitor.account), "hmac_mandatory", false);
    let (v, now) = (visitor.clone(), store.now());
    let (verified, merged_into) = store
        .db
        .write(move |c| {
            let ws = v.workspace_id.as_str();
            let verified = match request.identifier_hash.as_deref().filter(|h| !h.is_empty()) {
                Some(hash) => {
                    let secret = hmac_secret(c, &v.account.id)?.ok_or(WidgetError::InvalidHash)?;
                    if !wire::identifier_hash_valid(&secret, &identifier, hash) {
                        return Err(WidgetError::InvalidHash);
                    }
                    true
                }
                None if hmac_mandatory => return Err(WidgetError::HashRequired),
                None => false,
            };
            let mut merged_into = None;
            let visitors = customer_of(c, &v, now)?;
            let mut customer = visitors.clone();
            if verified {
                // Only a verified holder counts: a visitor who merely typed this identifier
                // must not capture the real user (the claim moves to them instead).
                match customers::find_verified_owner(c, ws, "user_id", "", &identifier)? {
                    Some(owner) if owner != visitors => {
                        let merge = merges::merge(c, ws, &owner, &visitors, None, now)?;
                        let actor = Actor {
                            kind: "visitor",
                            id: Some(v.visitor_id.clone()),
                            ..Default::default()
                        };
                        let change = Change {
                            action: "customer.merged",
                            object_kind: "customer",
                            object_id: Some(&owner),
                            before: None,
                            after: Some(serde_json::json!({
                                "merge_id": merge.id, "source_customer_id": visitors,
                                "reason": "verified widget identify",
                            })),
                        };
                        audit::record(c, ws, &actor, &change, now)?;
                        merged_into = Some(owner.clone());
                        customer = owner;
                    }
                    Some(_) => {}
                    None => {
                        customers::attach_verified(c, ws, &customer, "user_id", "", &identifier, now)?;
                    }
                }
            } else {
                // A claim: attached only when nobody holds it, never a merge.
                let hint = Hint {
                    kind: "user_id",
                    value: &identifier,
                    verified: false,
                };
                customers::attach(c, ws, &customer, &hint, "", now)?;
            }
            add_claims(
                c,
                ws,
                &customer,
                name.as_deref(),
                email.as_deref(),
                phone.as_deref(),
                now,
            )?;
            Ok::<_, WidgetError>((verified, merged_into))
        })
        .await?;
    let (token, _) = issue_token(visitor, now);
    Ok(Identified {
        verified,
        token,
        merged_into,
    })
}

fn check_echo_id(echo_id: &str) -> Result<(), WidgetError> {
    let ok = !echo_id.is_empty()
        && echo_id.len() <= 100
        && echo_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(WidgetError::Invalid(
            "invalid_echo_id",
            "echo_id must be 1–100 letters, digits, `-` or `_`".into(),
        ))
    }
}

/// Stores a visitor's message, once per echo id: sending the same echo id again (a retry
/// after a lost answer) returns the stored message with `false`.
pub async fn post_message(
    engine: &Engine,
    live: &Live,
    visitor: &Visitor,
    echo_id: &str,
    text: &str,
    attachment_ids: &[String],
) -> Result<(serde_json::Value, bool), WidgetError> {
    check_echo_id(echo_id)?;
    let text = text.trim().to_owned();
    if text.is_empty() && attachment_ids.is_empty() {
        return Err(WidgetError::Invalid("empty_message", "the message is empty".into()));
    }
    if text.chars().count() > wire::MAX_TEXT {
        return Err(WidgetError::Invalid(
            "text_too_long",
            format!("a message takes at most {} characters", wire::MAX_TEXT),
        ));
    }
    if attachment_ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(WidgetError::Invalid(
            "too_many_attachments",
            format!("a message takes at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments"),
        ));
    }
    let store = engine.store();
    let (v, echo, ids, now) = (
        visitor.clone(),
        echo_id.to_owned(),
        attachment_ids.to_vec(),
        store.now(),
    );
    let (message, created, events) = store
        .db
        .write(move |c| {
            let ws = v.workspace_id.as_str();
            if let Some(existing) = messages::by_provider_id(c, ws, &v.account.id, &echo)? {
                return Ok((existing, false, Vec::new()));
            }
            // The first message makes the visitor's customer (and its widget address).
            let customer = customer_of(c, &v, now)?;
            let metas = attachments::unclaimed(c, ws, &customer, &ids)?.ok_or(WidgetError::AttachmentNotFound)?;
            let inbound = InboundMessage {
                provider_message_id: echo.clone(),
                identities: vec![IdentityHint {
                    kind: wire::ADDRESS_KIND.into(),
                    value: v.visitor_id.clone(),
                    verified: true,
                }],
                sender_name: None,
                text,
                sent_at_ms: now,
                media: Vec::new(),
                auto_reply: None,
                files: Vec::new(),
                meta: None,
                automatic: false,
            };
            let json = serde_json::to_string(&metas).unwrap_or_else(|_| "[]".into());
            let mut events = Vec::new();
            let message = apply_message(c, ws, &v.account, &inbound, &json, now, &mut events)?
                .ok_or_else(|| StoreError::Conflict("echo_id".into()))?;
            attachments::claim(c, ws, &customer, &ids, &message.id)?.ok_or(WidgetError::AttachmentNotFound)?;
            Ok::<_, WidgetError>((message, true, events))
        })
        .await?;
    live.publish(&events).await;
    if created {
        metrics::counter!("switchboard_inbound_accepted_total", "channel" => wire::KIND).increment(1);
    }
    Ok((visitor_message(&message_payload(&message)), created))
}

/// Stores an upload of the visitor, after checking type, magic bytes and size.
pub async fn upload(
    store: &Store,
    visitor: &Visitor,
    filename: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Result<AttachmentMeta, WidgetError> {
    let kind = wire::check_attachment(content_type, &bytes, max_upload_bytes(&visitor.account))?;
    let (v, name, now) = (visitor.clone(), wire::clean_filename(filename), store.now());
    store
        .db
        .write(move |c| {
            let customer = customer_of(c, &v, now)?;
            let new = NewAttachment {
                workspace_id: &v.workspace_id,
                channel_account_id: Some(&v.account.id),
                customer_id: Some(&customer),
                filename: &name,
                content_type: kind,
                data: &bytes,
            };
            Ok(attachments::insert(c, &new, now)?)
        })
        .await
}

/// A file the visitor uploaded (`None` for anyone else's).
pub async fn download(store: &Store, visitor: &Visitor, id: &str) -> Result<Option<Attachment>, WidgetError> {
    let Some(customer) = visitor.customer_id.clone() else {
        return Ok(None);
    };
    let (ws, id) = (visitor.workspace_id.clone(), id.to_owned());
    let account = visitor.account.id.clone();
    Ok(store
        .db
        .read(move |c| {
            let Some(file) = attachments::get(c, &ws, &id)? else {
                return Ok(None);
            };
            if file.customer_id.as_deref() == Some(customer.as_str()) {
                return Ok(Some(file));
            }
            // A file an agent sent in this visitor's chat.
            let theirs = match file.message_id.as_deref() {
                Some(message) => messages::get(c, &ws, message)?.is_some_and(|m| {
                    m.customer_id == customer && m.channel_account_id.as_deref() == Some(account.as_str())
                }),
                None => false,
            };
            Ok::<_, StoreError>(theirs.then_some(file))
        })
        .await?)
}

/// The visitor types (or stops): agents watching the conversation see it; nothing is stored.
pub async fn typing(store: &Store, live: &Live, visitor: &Visitor, on: bool) -> Result<(), WidgetError> {
    let Some(customer) = visitor.customer_id.clone() else {
        return Ok(()); // no conversation yet: nobody to tell
    };
    let ws = visitor.workspace_id.clone();
    let conversation = store
        .db
        .read(move |c| conversations::id_for_customer(c, &ws, &customer))
        .await?;
    if let Some(conversation) = conversation {
        let data = serde_json::json!({ "author": "customer", "customer_id": visitor.customer_id, "on": on });
        live.publish_ephemeral(&visitor.workspace_id, "typing", Some(&conversation), data)
            .await;
    }
    Ok(())
}

/// The visitor has seen the chat: agents' messages on this widget become `read`.
pub async fn seen(store: &Store, live: &Live, visitor: &Visitor) -> Result<usize, WidgetError> {
    let (v, now) = (visitor.clone(), store.now());
    let events = store
        .db
        .write(move |c| {
            let ws = v.workspace_id.as_str();
            let Some(customer) = &v.customer_id else {
                return Ok(Vec::new());
            };
            let Some(conversation) = conversations::id_for_customer(c, ws, customer)? else {
                return Ok(Vec::new());
            };
            let changed = messages::mark_read_through(c, ws, &conversation, &v.account.id, now, now)?;
            let mut events = Vec::with_capacity(changed.len());
            for m in &changed {
                events.push(live::message_event(c, "message.updated", m, now)?);
            }
            Ok::<_, StoreError>(events)
        })
        .await?;
    live.publish(&events).await;
    Ok(events.len())
}

/// Whether agents are online now (the widget says "we'll reply by e-mail" otherwise).
pub async fn agents_online(store: &Store, ws: &str) -> Result<bool, WidgetError> {
    let (ws, now) = (ws.to_owned(), store.now());
    let list = store.db.read(move |c| presence::list(c, &ws)).await?;
    Ok(list.iter().any(|p| p.effective_status(now) == "online"))
}

/// Who moves the chat to another channel.
#[derive(Debug, Clone)]
pub enum HandoffBy {
    /// The customer, from the widget.
    Visitor(Visitor),
    /// An agent, from the inbox (audited).
    Agent(Actor),
}

#[derive(Debug, Clone)]
pub struct Handoff {
    pub workspace_id: String,
    pub customer_id: String,
    pub channel_account_id: String,
    /// The customer's address there; `None`: the one already known.
    pub address: Option<String>,
}

fn normalise_address(kind: &str, raw: &str) -> Result<String, WidgetError> {
    let raw = raw.trim();
    let invalid = |what: &str| WidgetError::Invalid("invalid_address", format!("`{raw}` is not {what}"));
    match kind {
        "email" => normalise_email(raw).ok_or_else(|| invalid("an e-mail address")),
        "phone" => normalise_phone(raw).ok_or_else(|| invalid("a phone number in international format (+15551234567)")),
        _ if raw.is_empty() || raw.len() > 200 => Err(invalid("an address (1–200 characters)")),
        _ => Ok(raw.to_owned()),
    }
}

/// The account's template for a handoff's first message where free text may not open a
/// conversation: setting `handoff_template` = `{"name", "language"}`, a template whose body
/// takes the customer's first name, the business name and the conversation reference.
fn handoff_template(account: &ChannelAccount) -> Option<(String, String)> {
    let settings = settings_of(account);
    let t = settings.get("handoff_template")?;
    Some((
        t.get("name")?.as_str()?.to_owned(),
        t.get("language").and_then(|l| l.as_str()).unwrap_or("en_US").to_owned(),
    ))
}

/// Short reference to a conversation, quoted in the first message on the new channel.
pub fn conversation_ref(conversation_id: &str) -> String {
    let tail: String = conversation_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    tail[tail.len().saturating_sub(8)..].to_uppercase()
}

/// Continues a conversation on another channel: links the customer's address there (when
/// nobody else holds it), sends a first message on it that refers to the conversation, and
/// tells the widget chat where it went. The customer's replies there resolve to the same
/// customer, so they land in the same thread. Returns the message on the new channel.
pub async fn handoff(
    engine: &Engine,
    channels: &Channels,
    live: &Live,
    request: Handoff,
    by: HandoffBy,
) -> Result<Message, WidgetError> {
    let (channels, now) = (channels.clone(), engine.store().now());
    let (message, events) = engine
        .store()
        .db
        .write(move |c| {
            let ws = request.workspace_id.as_str();
            let target = channel_accounts::get(c, ws, &request.channel_account_id)?
                .filter(|a| !a.disabled)
                .ok_or(ReplyError::AccountNotFound)?;
            let channel = channels
                .get(&target.channel)
                .filter(|_| target.channel != wire::KIND)
                .ok_or_else(|| {
                    WidgetError::Invalid(
                        "handoff_unsupported",
                        "a chat can move to a messaging channel, not to another widget".into(),
                    )
                })?
                .clone();
            let kind = channel.address_kind();
            let scope = scope_of(kind, &target.id);
            let address = match request.address.as_deref() {
                Some(raw) => {
                    let address = normalise_address(kind, raw)?;
                    let hint = Hint {
                        kind,
                        value: &address,
                        verified: false,
                    };
                    if !customers::attach(c, ws, &request.customer_id, &hint, &scope, now)?
                        && customers::find_identity_owner(c, ws, kind, &scope, &address)?.as_deref()
                            != Some(request.customer_id.as_str())
                    {
                        return Err(WidgetError::IdentityConflict);
                    }
                    address
                }
                None => {
                    customers::address(c, ws, &request.customer_id, kind, &target.id)?.ok_or(ReplyError::NotAllowed(
                        format!("the customer has no {kind} address on this account"),
                        "no_address",
                    ))?
                }
            };
            let conversation = conversations::for_customer(c, ws, &request.customer_id, now)?;
            let business = workspaces::get(c, ws)?.map_or_else(|| "us".to_owned(), |w| w.name);
            let reference = conversation_ref(&conversation.id);
            let text = format!(
                "{business}: we are continuing your website chat here (ref #{reference}). \
                 Reply to this message and we will pick up where we left off."
            );
            let content = outbox::Content::Text(&text);
            let (message, event) = match outbox::queue_reply(
                c,
                &channels,
                &conversation,
                &target,
                outbox::Draft {
                    author: Author::System,
                    content,
                    purpose: Purpose::Conversation,
                    meta_json: None,
                },
                now,
            )? {
                Ok(queued) => queued,
                // Free text may not open a conversation there (WhatsApp's 24-hour window):
                // the account's handoff template does, with name, business and reference.
                Err(ReplyError::NotAllowed(_, "reply_window_closed")) if handoff_template(&target).is_some() => {
                    let (name, language) = handoff_template(&target).unwrap_or_default();
                    let customer = customers::get(c, ws, &request.customer_id)?;
                    let first_name = customer
                        .and_then(|p| p.name)
                        .and_then(|n| n.split_whitespace().next().map(str::to_owned))
                        .unwrap_or_else(|| "there".to_owned());
                    let template = sb_channels::TemplateSend {
                        name,
                        language,
                        parameters: vec![first_name, business.clone(), reference.clone()],
                    };
                    let content = outbox::Content::Template(&template);
                    outbox::queue_reply(
                        c,
                        &channels,
                        &conversation,
                        &target,
                        outbox::Draft {
                            author: Author::System,
                            content,
                            purpose: Purpose::Conversation,
                            meta_json: None,
                        },
                        now,
                    )??
                }
                Err(e) => return Err(e.into()),
            };
            let mut events = vec![event];
            // The chat the customer leaves says where the conversation went.
            let widget = match &by {
                HandoffBy::Visitor(v) => Some(v.account.clone()),
                HandoffBy::Agent(_) => match conversation.last_inbound_account_id.as_deref() {
                    Some(id) => channel_accounts::get(c, ws, id)?.filter(|a| a.channel == wire::KIND),
                    None => None,
                },
            };
            if let Some(widget) = widget {
                let notice = format!("This conversation continues on {} ({address}).", target.name);
                let new = NewMessage {
                    workspace_id: ws,
                    conversation_id: &conversation.id,
                    customer_id: &request.customer_id,
                    channel_account_id: Some(&widget.id),
                    channel: Some(wire::KIND),
                    direction: "outbound",
                    author_kind: "system",
                    author_id: None,
                    body: &notice,
                    provider_message_id: None,
                    status: "sent",
                    sent_at: now,
                    attachments_json: "[]",
                    template_json: None,
                    purpose: "conversation",
                    meta_json: None,
                };
                if let Some(m) = messages::insert(c, &new, now)? {
                    events.push(live::message_event(c, "message.created", &m, now)?);
                }
            }
            if let HandoffBy::Agent(actor) = &by {
                let change = Change {
                    action: "conversation.handed_off",
                    object_kind: "conversation",
                    object_id: Some(&conversation.id),
                    before: None,
                    after: Some(serde_json::json!({
                        "channel_account_id": target.id, "address": address, "message_id": message.id,
                    })),
                };
                audit::record(c, ws, actor, &change, now)?;
            }
            Ok::<_, WidgetError>((message, events))
        })
        .await?;
    engine.notify_jobs();
    live.publish(&events).await;
    Ok(message)
}

/// Events of the workspace log after `seq`, for a visitor's socket to replay.
pub async fn events_after(store: &Store, ws: &str, seq: i64, limit: i64) -> Result<Vec<LiveEvent>, WidgetError> {
    let ws = ws.to_owned();
    Ok(store.db.read(move |c| live_events::after(c, &ws, seq, limit)).await?)
}
