//! The demo's provider simulators, started in-process next to the server: WhatsApp's Cloud
//! API, Messenger, Instagram, Telegram, Twilio SMS and a mail world (`sb-sim`), each with a
//! demo account wired to it, so a person
//! can play the customer through the simulator's control API and watch the agent side. Each start rewires the account to
//! the simulator's new address and records the details in `demo-credentials.json`.

use std::path::Path;

use sb_core::credentials;
use sb_sim::clock::SimClock;
use sb_sim::mail::{MailConfig, MailSim};
use sb_sim::messenger::{MessengerConfig, MessengerSim};
use sb_sim::telegram::{TelegramConfig, TelegramSim};
use sb_sim::twilio::{TwilioConfig, TwilioNumber, TwilioSim};
use sb_sim::whatsapp::{WhatsAppConfig, WhatsAppSim};
use sb_store::{Store, StoreError, channel_accounts};
use serde_json::json;

use crate::demo::{self, DemoCredentials};

const PHONE_NUMBER_ID: &str = "990000000000001";
const DISPLAY_NUMBER: &str = "15550001111";
const WABA_ID: &str = "880000000000001";
/// The handoff template the demo account uses (name, business, reference).
const HANDOFF_TEMPLATE: &str =
    "Hi {{1}}, this is {{2}}: we are continuing your website chat here (ref #{{3}}). Reply to this message to go on.";

/// The running simulators; stopped with the server.
#[derive(Default)]
pub struct Simulators {
    whatsapp: Option<WhatsAppSim>,
    meta: Vec<MessengerSim>,
    telegram: Option<TelegramSim>,
    twilio: Option<TwilioSim>,
    mail: Option<MailSim>,
}

impl Simulators {
    pub async fn shutdown(self) {
        if let Some(sim) = self.whatsapp {
            sim.shutdown().await;
        }
        for sim in self.meta {
            sim.shutdown().await;
        }
        if let Some(sim) = self.telegram {
            sim.shutdown().await;
        }
        if let Some(sim) = self.twilio {
            sim.shutdown().await;
        }
        if let Some(sim) = self.mail {
            sim.shutdown().await;
        }
    }
}

/// The demo's SMS number on the Twilio simulator; its webhook is our hook for the account.
async fn start_twilio(store: &Store, creds: &mut DemoCredentials, ws: &str) -> Result<TwilioSim, StoreError> {
    let known = creds.channels["twilio_sms"].clone();
    let config = TwilioConfig {
        auth_token: known["auth_token"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(credentials::random_secret),
        ..TwilioConfig::default()
    };
    let sim = TwilioSim::start(config.clone(), SimClock::new()).await.map_err(fail)?;
    let number = config.numbers.first().map(|n| n.phone.clone()).unwrap_or_default();
    let settings = json!({
        "account_sid": config.account_sid,
        "from": number,
        "api_base_url": sim.base_url(),
        "business_name": "Acme Outfitters",
        "simulated": true,
    })
    .to_string();
    let secrets = json!({ "auth_token": config.auth_token }).to_string();
    let known_id = known["account_id"].as_str().map(str::to_owned);
    let name = "SMS +1 555 123 0000 (simulated)";
    let account = wire_account(store, ws, known_id, "twilio_sms", name, settings, secrets).await?;
    let webhook_url = format!("{}/hooks/twilio_sms/{account}", creds.base_url);
    let number = TwilioNumber {
        sms_url: Some(webhook_url.clone()),
        ..TwilioNumber::new(number)
    };
    reqwest::Client::new()
        .post(format!("{}/_sim/numbers", sim.control()))
        .json(&json!({ "phone": number.phone, "sms_url": number.sms_url }))
        .send()
        .await
        .map_err(fail)?;
    creds.channels["twilio_sms"] = json!({
        "account_id": account,
        "webhook_url": webhook_url,
        "auth_token": config.auth_token,
        "account_sid": config.account_sid,
        "from": number.phone,
        "simulator_url": sim.control(),
    });
    Ok(sim)
}

/// The demo's support mailbox: replies go to the mail simulator over SMTP (STARTTLS with
/// its own CA, AUTH); customer mail comes back to our SMTP listener or, signed, to the
/// Mailgun webhook.
async fn start_mail(
    store: &Store,
    creds: &mut DemoCredentials,
    ws: &str,
    smtp_listen: Option<std::net::SocketAddr>,
) -> Result<MailSim, StoreError> {
    let known = creds.channels["email"].clone();
    let secret = |k: &str| {
        known[k]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(credentials::random_secret)
    };
    let config = MailConfig {
        password: secret("smtp_password"),
        mailgun_signing_key: secret("mailgun_signing_key"),
        require_tls: true,
        require_auth: true,
        ..MailConfig::default()
    };
    let sim = MailSim::start(config.clone(), SimClock::new()).await.map_err(fail)?;
    let address = "support@acme-outfitters.example";
    let settings = json!({
        "address": address,
        "display_name": "Acme Outfitters Support",
        "smtp_host": sim.smtp_addr().ip().to_string(),
        "smtp_port": sim.smtp_addr().port(),
        "smtp_security": "starttls",
        "smtp_username": config.username,
        "smtp_ca_pem": sim.certificate_pem(),
        "simulated": true,
    })
    .to_string();
    let secrets = json!({
        "smtp_password": config.password,
        "mailgun_signing_key": config.mailgun_signing_key,
    })
    .to_string();
    let known_id = known["account_id"].as_str().map(str::to_owned);
    let account = wire_account(
        store,
        ws,
        known_id,
        "email",
        "E-mail support@ (simulated)",
        settings,
        secrets,
    )
    .await?;
    let mailgun_webhook_url = format!("{}/hooks/email/{account}", creds.base_url);
    let smtp_target = smtp_listen.map(|a| a.to_string());
    reqwest::Client::new()
        .post(format!("{}/_sim/targets", sim.base_url()))
        .json(&json!({ "smtp": smtp_target.clone().unwrap_or_default(), "mailgun_url": mailgun_webhook_url }))
        .send()
        .await
        .map_err(fail)?;
    creds.channels["email"] = json!({
        "account_id": account,
        "address": address,
        "smtp_listen": smtp_target,
        "mailgun_webhook_url": mailgun_webhook_url,
        "mailgun_signing_key": config.mailgun_signing_key,
        "smtp_password": config.password,
        "simulator_url": sim.base_url(),
    });
    Ok(sim)
}

/// The demo workspace: the one of the demo's API channel account.
async fn demo_workspace(store: &Store, creds: &DemoCredentials) -> Result<Option<String>, StoreError> {
    let api_account = creds.channels["api"]["account_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    store
        .db
        .read(move |c| Ok(channel_accounts::for_webhook(c, &api_account)?.map(|(a, _)| a.workspace_id)))
        .await
}

/// Creates the demo account of `channel`, or points the existing one at the simulator's new
/// address. Returns its id.
async fn wire_account(
    store: &Store,
    ws: &str,
    known_id: Option<String>,
    channel: &'static str,
    name: &'static str,
    settings: String,
    secrets: String,
) -> Result<String, StoreError> {
    let (ws, now) = (ws.to_owned(), store.now());
    store
        .db
        .write(move |c| {
            if let Some(id) = known_id
                && channel_accounts::update_settings(c, &ws, &id, &settings, now)?
            {
                return Ok(id);
            }
            Ok(channel_accounts::create(c, &ws, channel, name, &settings, &secrets, now)?.id)
        })
        .await
}

/// The Telegram simulator and a demo bot connected to it (setWebhook on every start, as the
/// simulator's address changes).
async fn start_telegram(
    store: &Store,
    channels: &sb_inbox::Channels,
    creds: &mut DemoCredentials,
    ws: &str,
) -> Result<Option<TelegramSim>, StoreError> {
    let known = creds.channels["telegram"].clone();
    let config = TelegramConfig::default();
    let sim = TelegramSim::start(config.clone(), SimClock::new())
        .await
        .map_err(fail)?;
    let secret_token = known["secret_token"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(credentials::random_secret);
    let settings = json!({ "api_base_url": sim.base_url(), "simulated": true }).to_string();
    let secrets = json!({ "bot_token": config.bot_token, "secret_token": secret_token });
    let known_id = known["account_id"].as_str().map(str::to_owned);
    let name = "Telegram bot (simulated)";
    let account = wire_account(
        store,
        ws,
        known_id,
        "telegram",
        name,
        settings.clone(),
        secrets.to_string(),
    )
    .await?;
    let webhook_url = format!("{}/hooks/telegram/{account}", creds.base_url);
    if let Some(channel) = channels.get("telegram") {
        let view = sb_channels::Account {
            id: account.clone(),
            settings: serde_json::from_str(&settings).unwrap_or_default(),
            secrets,
        };
        channel.connect(&view, &webhook_url).await.map_err(fail)?;
    }
    creds.channels["telegram"] = json!({
        "account_id": account,
        "webhook_url": webhook_url,
        "secret_token": secret_token,
        "simulator_url": sim.control(),
    });
    Ok(Some(sim))
}

/// Messenger and Instagram simulators with their demo accounts.
async fn start_meta(store: &Store, creds: &mut DemoCredentials, ws: &str) -> Result<Vec<MessengerSim>, StoreError> {
    let mut sims = Vec::new();
    for (channel, name, instagram) in [
        ("messenger", "Facebook Page (simulated)", false),
        ("instagram", "Instagram account (simulated)", true),
    ] {
        let known = creds.channels[channel].clone();
        let secret = |k: &str| {
            known[k]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(credentials::random_secret)
        };
        let base = if instagram {
            MessengerConfig::instagram_default()
        } else {
            MessengerConfig::default()
        };
        let config = MessengerConfig {
            app_secret: secret("app_secret"),
            verify_token: secret("verify_token"),
            page_access_token: secret("page_access_token"),
            ..base
        };
        let sim = MessengerSim::start(config.clone(), SimClock::new())
            .await
            .map_err(fail)?;
        let (id_setting, id) = if instagram {
            ("ig_account_id", config.ig_account_id.clone().unwrap_or_default())
        } else {
            ("page_id", config.page_id.clone())
        };
        let settings = json!({ id_setting: id, "api_base_url": sim.base_url(), "simulated": true }).to_string();
        let secrets = json!({
            "app_secret": config.app_secret, "verify_token": config.verify_token,
            "page_access_token": config.page_access_token,
        })
        .to_string();
        let known_id = known["account_id"].as_str().map(str::to_owned);
        let account = wire_account(store, ws, known_id, channel, name, settings, secrets).await?;
        let webhook_url = format!("{}/hooks/{channel}/{account}", creds.base_url);
        reqwest::Client::new()
            .post(format!("{}/_sim/messenger/webhook", sim.control()))
            .json(&json!({ "url": webhook_url }))
            .send()
            .await
            .map_err(fail)?;
        creds.channels[channel] = json!({
            "account_id": account,
            "webhook_url": webhook_url,
            "app_secret": config.app_secret,
            "verify_token": config.verify_token,
            "simulator_url": sim.control(),
        });
        sims.push(sim);
    }
    Ok(sims)
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("a demo simulator: {e}"))
}

/// Starts the WhatsApp simulator and wires the demo's WhatsApp account to it.
pub async fn start(
    store: &Store,
    channels: &sb_inbox::Channels,
    creds: &mut DemoCredentials,
    data_dir: &Path,
    smtp_listen: Option<std::net::SocketAddr>,
) -> Result<Simulators, StoreError> {
    let known = &creds.channels["whatsapp"];
    let secret = |k: &str| {
        known[k]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(credentials::random_secret)
    };
    let config = WhatsAppConfig {
        app_secret: secret("app_secret"),
        verify_token: secret("verify_token"),
        access_token: secret("access_token"),
        phone_number_id: PHONE_NUMBER_ID.into(),
        display_phone_number: DISPLAY_NUMBER.into(),
        waba_id: WABA_ID.into(),
        webhook_url: None,
    };
    let sim = WhatsAppSim::start(config.clone(), SimClock::new())
        .await
        .map_err(fail)?;
    let settings = json!({
        "phone_number_id": PHONE_NUMBER_ID,
        "waba_id": WABA_ID,
        "api_base_url": sim.base_url(),
        "handoff_template": {"name": "handoff_follow_up", "language": "en_US"},
        "simulated": true,
    })
    .to_string();
    let secrets = json!({
        "app_secret": config.app_secret,
        "verify_token": config.verify_token,
        "access_token": config.access_token,
    })
    .to_string();
    let (known_id, now) = (known["account_id"].as_str().map(str::to_owned), store.now());
    let Some(ws) = demo_workspace(store, creds).await? else {
        sim.shutdown().await;
        return Ok(Simulators::default());
    };
    let name = "WhatsApp +1 555 000 1111 (simulated)";
    let id = wire_account(store, &ws, known_id, "whatsapp", name, settings, secrets).await?;
    let account = store
        .db
        .read(move |c| channel_accounts::get(c, &ws, &id))
        .await?
        .ok_or(StoreError::NotFound("demo WhatsApp account"))?;
    let webhook_url = format!("{}/hooks/whatsapp/{}", creds.base_url, account.id);
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/_sim/whatsapp/webhook", json!({ "url": webhook_url })),
        (
            "/_sim/whatsapp/templates",
            json!({"name": "handoff_follow_up", "language": "en_US", "category": "UTILITY", "body": HANDOFF_TEMPLATE}),
        ),
        (
            "/_sim/whatsapp/templates",
            json!({"name": crate::demo_journeys::CART_TEMPLATE.0, "language": "en_US", "category": "MARKETING",
                   "body": crate::demo_journeys::CART_TEMPLATE.1}),
        ),
    ] {
        http.post(format!("{}{path}", sim.control()))
            .json(&body)
            .send()
            .await
            .map_err(fail)?;
    }
    // The account's templates, as the provider lists them.
    if let Some(channel) = channels.get("whatsapp") {
        let view = sb_channels::Account {
            id: account.id.clone(),
            settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
            secrets: json!({ "access_token": config.access_token }),
        };
        if let Ok(Some(list)) = channel.fetch_templates(&view).await {
            let (ws, id) = (account.workspace_id.clone(), account.id.clone());
            store
                .db
                .write(move |c| sb_inbox::store_templates(c, &ws, &id, &list, now))
                .await?;
        }
    }
    creds.channels["whatsapp"] = json!({
        "account_id": account.id,
        "webhook_url": webhook_url,
        "app_secret": config.app_secret,
        "verify_token": config.verify_token,
        "access_token": config.access_token,
        "simulator_url": sim.control(),
    });
    let meta = start_meta(store, creds, &account.workspace_id).await?;
    let telegram = start_telegram(store, channels, creds, &account.workspace_id).await?;
    let twilio = start_twilio(store, creds, &account.workspace_id).await?;
    let mail = start_mail(store, creds, &account.workspace_id, smtp_listen).await?;
    demo::save(creds, data_dir)?;
    Ok(Simulators {
        whatsapp: Some(sim),
        meta,
        telegram,
        twilio: Some(twilio),
        mail: Some(mail),
    })
}
