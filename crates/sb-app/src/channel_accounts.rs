//! Channel accounts: connecting a channel, its secrets, templates and text limits.

use crate::error::{AppError, AppResult};
use crate::views::{ChannelAccountView, Page};
use crate::{App, Principal};
use http::StatusCode;
use sb_core::Permission;
use sb_store::audit::{self, Change};
use sb_store::channel_accounts;
use sb_store::objects::ObjectKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
pub struct MeasureText {
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct TextMeasure {
    pub channel: String,
    pub characters: usize,
    pub max_text_chars: usize,
    /// Whether the text fits the channel's limit.
    pub fits: bool,
    /// SMS: the encoding (`gsm7` or `ucs2`), units and billed segments, so the agent sees the
    /// cost before sending.
    #[schema(value_type = Option<Object>)]
    pub segments: Option<sb_core::sms::Segments>,
}
/// What a text costs on this account before it is sent: length against the channel's limit
/// and, for SMS, its encoding and segments (GSM 03.38 rules).
pub async fn measure_text(app: &App, principal: &Principal, id: String, body: MeasureText) -> AppResult<TextMeasure> {
    principal.require(Permission::ReplyConversations)?;
    let account = load_account(app, principal, &id).await?;
    let channel = app
        .channels
        .get(&account.channel)
        .ok_or_else(|| AppError::not_found("channel_account_not_found", "this build does not support the channel"))?;
    let characters = body.text.chars().count();
    let max_text_chars = channel.policy().max_text_chars;
    Ok(TextMeasure {
        channel: account.channel.clone(),
        characters,
        max_text_chars,
        fits: characters <= max_text_chars,
        segments: channel.segments(&body.text),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct CreateChannelAccount {
    /// `api`, `whatsapp`, `messenger`, `instagram`, `telegram`, `twilio_sms`, `twilio_whatsapp`,
    /// `email` or `widget`.
    pub channel: String,
    /// 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Non-secret settings. API channel: `webhook_url`, where replies are delivered. Widget:
    /// `allowed_origins` (list of `scheme://host[:port]`; empty = any), `hmac_mandatory`,
    /// `prechat`, `title`, `welcome`, `max_upload_bytes`. WhatsApp: `phone_number_id`,
    /// `waba_id`, `api_base_url`, `api_version`, `handoff_template` (`{"name","language"}`).
    /// Twilio SMS: `account_sid`, `from` or `messaging_service_sid`, `api_base_url`,
    /// `webhook_url` (the URL the provider signs, when a proxy changes ours),
    /// `segments_per_second`, `keyword_replies` (`provider` | `switchboard`), `business_name`;
    /// WhatsApp through Twilio the same with `from` = `whatsapp:+E164`. E-mail: `address`,
    /// `display_name`, `smtp_host`/`smtp_port`/`smtp_security`/`smtp_username`/`smtp_ca_pem`,
    /// `imap_host`/`imap_port`/`imap_security`/`imap_username`/`imap_mailbox`/`imap_ca_pem`/
    /// `imap_poll_secs`, `require_authenticated_from`.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// Secrets; generated when omitted (API channel: `secret`; widget: `hmac_secret` for
    /// `identifier_hash`, `token_key` for visitor tokens; WhatsApp: `app_secret`, `access_token`,
    /// `verify_token`; Twilio: `auth_token` (required), `api_key_sid` + `api_key_secret`; e-mail:
    /// `smtp_password`, `imap_password`, `mailgun_signing_key`).
    pub secrets: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedChannelAccount {
    #[serde(flatten)]
    pub account: ChannelAccountView,
    /// Shown only in this response.
    pub secrets: serde_json::Value,
}

fn validate(channel: &str, settings: &serde_json::Value) -> Result<(), AppError> {
    if !settings.is_object() && !settings.is_null() {
        return Err(AppError::unprocessable(
            "invalid_settings",
            "settings must be an object",
        ));
    }
    if channel == sb_channels::api::KIND
        && let Some(url) = settings.get("webhook_url")
    {
        let ok = url
            .as_str()
            .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        if !ok {
            return Err(AppError::unprocessable(
                "invalid_settings",
                "webhook_url must be an http(s) URL",
            ));
        }
    }
    if settings.get("api_base_url").is_some_and(|u| {
        u.as_str()
            .is_none_or(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    }) {
        return Err(AppError::unprocessable(
            "invalid_settings",
            "api_base_url must be an http(s) URL",
        ));
    }
    if channel == sb_channels::whatsapp::KIND {
        let text = |k: &str| settings.get(k).and_then(|v| v.as_str());
        if text("phone_number_id").is_none_or(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(AppError::unprocessable(
                "invalid_settings",
                "phone_number_id (digits, from the WhatsApp Manager) is required",
            ));
        }
        if text("api_base_url").is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(AppError::unprocessable(
                "invalid_settings",
                "api_base_url must be an http(s) URL",
            ));
        }
        if settings
            .get("handoff_template")
            .is_some_and(|t| t.get("name").and_then(|n| n.as_str()).is_none())
        {
            return Err(AppError::unprocessable(
                "invalid_settings",
                "handoff_template must be {\"name\": \"…\", \"language\": \"en_US\"}",
            ));
        }
    }
    if channel == sb_channels::widget::KIND {
        let origins_ok = settings.get("allowed_origins").is_none_or(|o| {
            o.as_array().is_some_and(|list| {
                list.iter().all(|v| {
                    v.as_str()
                        .is_some_and(|u| (u.starts_with("http://") || u.starts_with("https://")) && !u.ends_with('/'))
                })
            })
        });
        if !origins_ok {
            return Err(AppError::unprocessable(
                "invalid_settings",
                "allowed_origins must be a list of origins like `https://shop.example` (no trailing slash)",
            ));
        }
        for flag in ["hmac_mandatory", "prechat"] {
            if settings.get(flag).is_some_and(|v| !v.is_boolean()) {
                return Err(AppError::unprocessable(
                    "invalid_settings",
                    format!("{flag} must be true or false"),
                ));
            }
        }
        let max = sb_channels::widget::DEFAULT_MAX_UPLOAD_BYTES as u64;
        if settings
            .get("max_upload_bytes")
            .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0 || n > max))
        {
            return Err(AppError::unprocessable(
                "invalid_settings",
                format!("max_upload_bytes must be 1–{max}"),
            ));
        }
    }
    Ok(())
}
/// The workspace's channel accounts (secrets are never returned).
pub async fn list_accounts(app: &App, principal: &Principal) -> AppResult<Page<ChannelAccountView>> {
    principal.require(Permission::ReadConversations)?;
    let ws = principal.workspace_id().to_owned();
    let rows = app.store.db.read(move |c| channel_accounts::list(c, &ws)).await?;
    let items = rows.iter().map(|a| ChannelAccountView::new(a, &app.base_url)).collect();
    Ok(Page {
        items,
        next_cursor: None,
    })
}
/// One channel account.
pub async fn get_account(app: &App, principal: &Principal, id: String) -> AppResult<ChannelAccountView> {
    principal.require(Permission::ReadConversations)?;
    let (ws, aid) = (principal.workspace_id().to_owned(), id.clone());
    match app.store.db.read(move |c| channel_accounts::get(c, &ws, &aid)).await? {
        Some(a) => Ok(ChannelAccountView::new(&a, &app.base_url)),
        None => Err(crate::access::not_found(
            app,
            principal,
            ObjectKind::ChannelAccount,
            &id,
            "channel_account_not_found",
        )
        .await),
    }
}

async fn load_account(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<channel_accounts::ChannelAccount, AppError> {
    let (ws, aid) = (principal.workspace_id().to_owned(), id.to_owned());
    match app.store.db.read(move |c| channel_accounts::get(c, &ws, &aid)).await? {
        Some(a) => Ok(a),
        None => Err(crate::access::not_found(
            app,
            principal,
            ObjectKind::ChannelAccount,
            id,
            "channel_account_not_found",
        )
        .await),
    }
}
/// The account's message templates, as last synced from the provider.
pub async fn list_templates(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    principal.require(Permission::ReadConversations)?;
    let account = load_account(app, principal, &id).await?;
    let ws = principal.workspace_id().to_owned();
    let items = app
        .store
        .db
        .read(move |c| sb_store::templates::list(c, &ws, &account.id))
        .await?;
    Ok(serde_json::json!({ "items": items }))
}
/// Fetches the account's templates from the provider and replaces the stored list (audited).
pub async fn sync_templates(app: &App, principal: &Principal, id: String) -> AppResult<serde_json::Value> {
    principal.require(Permission::ManageWorkspace)?;
    let account = load_account(app, principal, &id).await?;
    let channel = app
        .channels
        .get(&account.channel)
        .cloned()
        .ok_or_else(|| AppError::unprocessable("templates_unsupported", "this channel has no templates"))?;
    let aid = account.id.clone();
    let secrets = app
        .store
        .db
        .read(move |c| channel_accounts::for_webhook(c, &aid))
        .await?
        .map(|(_, s)| s)
        .unwrap_or_default();
    let view = sb_channels::Account {
        id: account.id.clone(),
        settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
        secrets: serde_json::from_str(&secrets).unwrap_or_default(),
    };
    let fetched = channel
        .fetch_templates(&view)
        .await
        .map_err(|e| {
            AppError::new(
                StatusCode::BAD_GATEWAY,
                "provider_error",
                format!("{}: {}", e.code, e.message),
            )
        })?
        .ok_or_else(|| AppError::unprocessable("templates_unsupported", "this channel has no templates"))?;
    let (ws, actor, now) = (principal.workspace_id().to_owned(), principal.actor(), app.store.now());
    let items = app
        .store
        .db
        .write(move |c| {
            sb_inbox::store_templates(c, &ws, &account.id, &fetched, now)?;
            let change = Change {
                action: "channel_account.templates_synced",
                object_kind: "channel_account",
                object_id: Some(&account.id),
                before: None,
                after: Some(serde_json::json!({ "templates": fetched.len() })),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            sb_store::templates::list(c, &ws, &account.id)
        })
        .await?;
    Ok(serde_json::json!({ "items": items }))
}
/// Connects a channel account (one number, one bot, one integration).
pub async fn create_account(
    app: &App,
    principal: &Principal,
    body: CreateChannelAccount,
) -> AppResult<CreatedChannelAccount> {
    principal.require(Permission::ManageWorkspace)?;
    if app.channels.get(&body.channel).is_none() {
        return Err(AppError::unprocessable(
            "unknown_channel",
            format!("channel must be one of: {}", app.channels.kinds().join(", ")),
        ));
    }
    let name = body.name.trim().to_owned();
    if name.is_empty() || body.name.chars().count() > 100 {
        return Err(AppError::unprocessable(
            "invalid_request",
            "name must be 1–100 characters",
        ));
    }
    let settings = if body.settings.is_null() {
        serde_json::json!({})
    } else {
        body.settings
    };
    validate(&body.channel, &settings)?;
    let secrets = match body.secrets {
        Some(secrets) => secrets,
        None => app
            .channels
            .get(&body.channel)
            .map(|c| c.new_secrets())
            .unwrap_or_default(),
    };
    if let Some(channel) = app.channels.get(&body.channel) {
        if let Err(problem) = channel.check_account(&settings, &secrets) {
            return Err(AppError::unprocessable("invalid_settings", problem));
        }
        let missing: Vec<&str> = channel
            .signing_secrets()
            .iter()
            .copied()
            .filter(|name| {
                secrets
                    .get(name)
                    .and_then(|v| v.as_str())
                    .is_none_or(|v| v.trim().is_empty())
            })
            .collect();
        if !missing.is_empty() {
            return Err(AppError::unprocessable(
                "missing_signing_secret",
                format!(
                    "{} requests are verified with {}: give it in `secrets` (it comes from the provider's console)",
                    body.channel,
                    missing.join(" and ")
                ),
            )
            .with_details(serde_json::json!({ "missing": missing })));
        }
    }
    let (ws, actor, now, channel) = (
        principal.workspace_id().to_owned(),
        principal.actor(),
        app.store.now(),
        body.channel,
    );
    let (settings_json, secrets_json) = (settings.to_string(), secrets.to_string());
    let account = app
        .store
        .db
        .write(move |c| {
            let account = channel_accounts::create(c, &ws, &channel, &name, &settings_json, &secrets_json, now)?;
            let change = Change {
                action: "channel_account.created",
                object_kind: "channel_account",
                object_id: Some(&account.id),
                before: None,
                after: Some(
                    serde_json::json!({ "channel": account.channel, "name": account.name, "settings": settings }),
                ),
            };
            audit::record(c, &ws, &actor, &change, now)?;
            Ok::<_, sb_store::StoreError>(account)
        })
        .await?;
    let view = ChannelAccountView::new(&account, &app.base_url);
    // Providers that are told where to deliver (Telegram's setWebhook) are told now; an account
    // the provider refuses is not kept.
    if let Some(channel) = app.channels.get(&account.channel) {
        let connection = sb_channels::Account {
            id: account.id.clone(),
            settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
            secrets: secrets.clone(),
        };
        if let Err(e) = channel.connect(&connection, &view.webhook_url).await {
            let (ws, id) = (account.workspace_id.clone(), account.id.clone());
            app.store
                .db
                .write(move |c| channel_accounts::delete_unused(c, &ws, &id))
                .await?;
            // Settings we cannot connect with are the admin's to fix, not the provider's refusal.
            if e.code == "channel_misconfigured" {
                return Err(AppError::unprocessable("invalid_settings", e.message));
            }
            // A refusal of these credentials is the admin's to fix; an outage is the provider's.
            if !e.retryable {
                return Err(AppError::unprocessable(
                    "provider_refused",
                    format!("the provider refused the connection: {}: {}", e.code, e.message),
                ));
            }
            return Err(AppError::new(
                StatusCode::BAD_GATEWAY,
                "provider_error",
                format!(
                    "the provider could not be reached to connect: {}: {}",
                    e.code, e.message
                ),
            ));
        }
    }
    Ok(CreatedChannelAccount { account: view, secrets })
}
