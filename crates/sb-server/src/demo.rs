//! The demo workspace: created once on an empty database so that `cargo run --release`
//! shows a working product. Credentials go to `<data dir>/demo-credentials.json`.

use std::path::Path;

use sb_core::{Role, credentials};
use sb_store::users::{self, NewUser};
use sb_store::{Store, StoreError, channel_accounts, tokens, workspaces};
use serde::{Deserialize, Serialize};

pub const DEMO_WORKSPACE: &str = "Demo Shop";
pub const CREDENTIALS_FILE: &str = "demo-credentials.json";

/// The demo shop's canned responses, matching its stores' pickup and return rules.
const CANNED_RESPONSES: [(&str, &str); 3] = [
    (
        "hours",
        "Our stores are open Monday to Saturday, 10:00–21:00. Online orders ship every weekday.",
    ),
    (
        "pickup",
        "Your order is ready about 30 minutes after you place it and we keep it for 5 days. \
         Bring your order number to the counter.",
    ),
    (
        "returns",
        "You can return any item within 30 days, in any of our stores or by post. \
         We refund to your original payment method within 5 working days.",
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    pub email: String,
    pub password: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoCredentials {
    pub base_url: String,
    pub users: Vec<DemoUser>,
    pub api_token: String,
    /// Per channel: where to send inbound requests and the secret to sign them with.
    #[serde(default)]
    pub channels: serde_json::Value,
    /// Where Segment's libraries send events (`host`) and the `write_key` they send.
    #[serde(default)]
    pub segment: serde_json::Value,
}

impl DemoCredentials {
    pub fn print(&self, data_dir: &Path) {
        println!(
            "Demo workspace \"{DEMO_WORKSPACE}\" (credentials in {}):",
            data_dir.join(CREDENTIALS_FILE).display()
        );
        for u in &self.users {
            println!("  {:<12} {:<34} password {}", u.role, u.email, u.password);
        }
        println!(
            "  sign in: curl -c cookies -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"…\"}}' {}/api/v1/auth/login",
            self.users[0].email, self.base_url
        );
        println!("  web app: {}/app (sign in with any user above)", self.base_url);
        if let Some(token) = self.channels["widget"]["website_token"].as_str() {
            println!("  demo storefront: {}/shop/{token}", self.base_url);
        }
        println!("  API token (admin): {}", self.api_token);
        if let Some(url) = self.channels["api"]["inbound_url"].as_str() {
            println!("  API channel: POST signed messages to {url} (secret in the credentials file)");
        }
        if let Some(url) = self.channels["widget"]["page_url"].as_str() {
            println!("  website chat: open {url} and write; answer in the inbox");
        }
        for (channel, label) in [
            ("whatsapp", "WhatsApp"),
            ("messenger", "Messenger"),
            ("instagram", "Instagram"),
            ("telegram", "Telegram"),
            ("twilio_sms", "SMS"),
        ] {
            if let Some(url) = self.channels[channel]["simulator_url"].as_str() {
                println!("  {label} (simulated): play the customer at {url}/");
            }
        }
        if let (Some(host), Some(key)) = (self.segment["host"].as_str(), self.segment["write_key"].as_str()) {
            println!("  customer data: point a Segment library at host {host} with write key {key}");
        }
        let email = &self.channels["email"];
        if let (Some(url), Some(address)) = (email["simulator_url"].as_str(), email["address"].as_str()) {
            println!("  e-mail (simulated): write to {address} and read replies at {url}/");
        }
    }
}

const PEOPLE: [(&str, &str, Role); 5] = [
    ("admin@demo.switchboard.local", "Ada Admin", Role::Admin),
    ("agent1@demo.switchboard.local", "Alex Agent", Role::Agent),
    ("agent2@demo.switchboard.local", "Sam Agent", Role::Agent),
    ("marketer@demo.switchboard.local", "Mia Marketer", Role::Marketer),
    ("store@demo.switchboard.local", "Stan Store", Role::StoreStaff),
];

/// Creates the demo workspace if the database has no workspace yet; otherwise returns the
/// credentials written at that time (if the file is still there).
pub async fn ensure(store: &Store, data_dir: &Path, base_url: &str) -> Result<Option<DemoCredentials>, StoreError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    if store.db.read(workspaces::count).await? > 0 {
        let existing = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<DemoCredentials>(&t).ok());
        return Ok(existing.map(|mut c| {
            // The address may differ from the first start's.
            c.base_url = base_url.to_owned();
            if let Some(id) = c.channels["api"]["account_id"].as_str().map(str::to_owned) {
                c.channels["api"]["inbound_url"] = serde_json::json!(format!("{base_url}/hooks/api/{id}"));
            }
            if let Some(token) = c.channels["widget"]["website_token"].as_str().map(str::to_owned) {
                c.channels["widget"]["page_url"] = serde_json::json!(format!("{base_url}/demo/widget/{token}"));
            }
            if c.segment.is_object() {
                c.segment["host"] = serde_json::json!(base_url);
            }
            c
        }));
    }
    let people: Vec<(DemoUser, String, &str)> = tokio::task::spawn_blocking(|| {
        PEOPLE
            .iter()
            .map(|(email, name, role)| {
                let password = credentials::random_password();
                let hash = credentials::hash_password(&password);
                (
                    DemoUser {
                        email: (*email).into(),
                        password,
                        role: role.as_str().into(),
                    },
                    hash,
                    *name,
                )
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let api_token = credentials::new_api_token();
    let api_secret = credentials::random_secret();
    let secrets_json = serde_json::json!({ "secret": api_secret }).to_string();
    let digest = credentials::secret_digest(&api_token);
    let widget_secret = credentials::random_secret();
    let widget_secrets = serde_json::json!({ "hmac_secret": widget_secret, "token_key": credentials::random_secret() });
    let widget_settings = serde_json::json!({
        "title": "Demo Shop",
        "welcome": "Hi! Questions about an order or a product? We are here.",
        "prechat": true,
    });
    let write_key = format!("wk_{}", credentials::random_secret());
    let write_key_digest = credentials::secret_digest(&write_key);
    let now = store.now();
    let rows = people.clone();
    let created = store
        .db
        .write(move |c| {
            // Re-check inside the write: two processes starting at once create one demo.
            if workspaces::count(c)? > 0 {
                return Ok(None);
            }
            let ws = workspaces::create(c, DEMO_WORKSPACE, now)?;
            let mut admin = None;
            for (i, (person, hash, name)) in rows.iter().enumerate() {
                let role = Role::parse(&person.role).unwrap_or(Role::Agent);
                let new = NewUser {
                    workspace_id: &ws.id,
                    email: &person.email,
                    name,
                    role,
                    password_hash: hash,
                    is_owner: i == 0,
                };
                let user = users::create(c, &new, now)?;
                admin.get_or_insert(user);
            }
            let admin = admin.ok_or(StoreError::Invalid("no demo users".into()))?;
            tokens::create(c, &admin, "demo", &digest, now)?;
            let api = channel_accounts::create(c, &ws.id, "api", "Demo API integration", "{}", &secrets_json, now)?;
            let widget = channel_accounts::create(
                c,
                &ws.id,
                "widget",
                "Website chat",
                &widget_settings.to_string(),
                &widget_secrets.to_string(),
                now,
            )?;
            crate::demo_shop::seed(c, &ws.id, now)?;
            sb_store::event_sources::create(c, &ws.id, "Demo web shop", &write_key_digest, 200_000, now)?;
            crate::demo_events::seed(c, &ws.id, now)?;
            // After the history: old events start nothing.
            crate::demo_journeys::seed(c, &ws.id, now)?;
            for (short_code, content) in CANNED_RESPONSES {
                sb_store::canned_responses::create(c, &ws.id, short_code, content, None, now)?;
            }
            Ok::<_, StoreError>(Some((api.id, widget.id)))
        })
        .await?;
    let Some((api_account, widget_account)) = created else {
        return Ok(None);
    };
    let creds = DemoCredentials {
        base_url: base_url.to_owned(),
        users: people.into_iter().map(|(u, _, _)| u).collect(),
        api_token,
        channels: serde_json::json!({
            "api": {
                "account_id": api_account,
                "inbound_url": format!("{base_url}/hooks/api/{api_account}"),
                "secret": api_secret,
            },
            "widget": {
                "page_url": format!("{base_url}/demo/widget/{widget_account}"),
                "website_token": widget_account,
                "hmac_secret": widget_secret,
            }
        }),
        segment: serde_json::json!({ "host": base_url, "write_key": write_key }),
    };
    save(&creds, data_dir)?;
    Ok(Some(creds))
}

/// Writes the credentials file (readable by its owner only).
pub fn save(creds: &DemoCredentials, data_dir: &Path) -> Result<(), StoreError> {
    let json = serde_json::to_string_pretty(creds).map_err(|e| StoreError::Invalid(e.to_string()))?;
    write_private(&data_dir.join(CREDENTIALS_FILE), &json)
        .map_err(|e| StoreError::Invalid(format!("cannot write {CREDENTIALS_FILE}: {e}")))
}

/// Writes a file readable only by its owner (it holds passwords).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}
