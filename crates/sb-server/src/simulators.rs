//! The demo's provider simulators, started in-process next to the server: WhatsApp's Cloud
//! API (`sb-sim`) with a demo account wired to it, so a person can play the customer through
//! the simulator's control API and watch the agent side. Each start rewires the account to
//! the simulator's new address and records the details in `demo-credentials.json`.

use std::path::Path;

use sb_core::credentials;
use sb_sim::clock::SimClock;
use sb_sim::whatsapp::{WhatsAppConfig, WhatsAppSim};
use sb_store::{Store, StoreError, channel_accounts, templates, workspaces};
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
}

impl Simulators {
    pub async fn shutdown(self) {
        if let Some(sim) = self.whatsapp {
            sim.shutdown().await;
        }
    }
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("demo WhatsApp simulator: {e}"))
}

/// Starts the WhatsApp simulator and wires the demo's WhatsApp account to it.
pub async fn start(
    store: &Store,
    channels: &sb_inbox::Channels,
    creds: &mut DemoCredentials,
    data_dir: &Path,
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
    // The demo workspace is the one of the demo's API channel account.
    let api_account = creds.channels["api"]["account_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let account = store
        .db
        .write(move |c| {
            let Some((api, _)) = channel_accounts::for_webhook(c, &api_account)? else {
                return Ok(None);
            };
            let Some(ws) = workspaces::get(c, &api.workspace_id)? else {
                return Ok(None);
            };
            if let Some(id) = known_id
                && channel_accounts::update_settings(c, &ws.id, &id, &settings, now)?
            {
                return channel_accounts::get(c, &ws.id, &id);
            }
            let name = "WhatsApp +1 555 000 1111 (simulated)";
            Ok::<_, StoreError>(Some(channel_accounts::create(
                c, &ws.id, "whatsapp", name, &settings, &secrets, now,
            )?))
        })
        .await?;
    let Some(account) = account else {
        sim.shutdown().await;
        return Ok(Simulators::default());
    };
    let webhook_url = format!("{}/hooks/whatsapp/{}", creds.base_url, account.id);
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/_sim/whatsapp/webhook", json!({ "url": webhook_url })),
        (
            "/_sim/whatsapp/templates",
            json!({"name": "handoff_follow_up", "language": "en_US", "category": "UTILITY", "body": HANDOFF_TEMPLATE}),
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
                .write(move |c| {
                    let synced: Vec<templates::SyncedTemplate<'_>> = list
                        .iter()
                        .map(|t| templates::SyncedTemplate {
                            name: &t.name,
                            language: &t.language,
                            category: &t.category,
                            status: &t.status,
                            body: &t.body,
                            parameter_count: sb_channels::whatsapp::template_parameter_count(&t.body) as i64,
                        })
                        .collect();
                    templates::replace_all(c, &ws, &id, &synced, now)
                })
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
    demo::save(creds, data_dir)?;
    Ok(Simulators { whatsapp: Some(sim) })
}
