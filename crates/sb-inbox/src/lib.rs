//! The unified inbox's use cases: ingest (stored before acknowledged), processing into one
//! conversation per customer, replies through the durable outbox, and the sender.

mod ingest;
pub mod live;
mod media;
pub mod outbox;
pub mod process;
pub mod widget;

use std::collections::HashMap;
use std::sync::Arc;

use sb_channels::Channel;
use sb_engine::Engine;

pub use ingest::{IngestError, IngestOutcome, Intake, WebhookRequest, ingest, ingest_trusted};
pub use outbox::{ReplyError, ReplyRequest, reply, reply_options};
pub use process::Processor;

/// Jobs of this kind were how an earlier version queued inbound processing; still handled.
pub const PROCESS_KIND: &str = "inbox.process_inbound";
pub const SEND_KIND: &str = "inbox.send";
pub const WAKE_KIND: &str = "inbox.wake_snoozed";
pub const MEDIA_KIND: &str = "inbox.fetch_media";
pub const QUEUE: &str = "default";

/// The channels this build speaks, by kind.
#[derive(Clone)]
pub struct Channels(Arc<HashMap<&'static str, Arc<dyn Channel>>>);

impl Channels {
    pub fn new(list: Vec<Arc<dyn Channel>>) -> Self {
        Channels(Arc::new(list.into_iter().map(|c| (c.kind(), c)).collect()))
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Channel>> {
        self.0.get(kind)
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.0.keys().copied().collect();
        k.sort();
        k
    }
}

/// Registers the inbox's job handlers on the engine.
/// `public_url` is where providers reach this server (files handed to them are served there).
pub fn register(engine: &Engine, channels: &Channels, live: &live::Live, public_url: &str) {
    engine.register(
        PROCESS_KIND,
        process::ProcessInbound {
            channels: channels.clone(),
            live: live.clone(),
        },
    );
    engine.register(SEND_KIND, outbox::Send::new(channels.clone(), live.clone(), public_url));
    engine.register(WAKE_KIND, process::WakeSnoozed { live: live.clone() });
    engine.register(
        MEDIA_KIND,
        media::FetchMedia {
            channels: channels.clone(),
            live: live.clone(),
        },
    );
}

pub(crate) fn account_of(
    account: &sb_store::channel_accounts::ChannelAccount,
    secrets_json: &str,
) -> sb_channels::Account {
    sb_channels::Account {
        id: account.id.clone(),
        settings: serde_json::from_str(&account.settings_json).unwrap_or_default(),
        secrets: serde_json::from_str(secrets_json).unwrap_or_default(),
    }
}

/// Replaces an account's stored templates with what its provider listed (inside the caller's
/// transaction).
pub fn store_templates(
    c: &mut dyn sb_store::Conn,
    ws: &str,
    account_id: &str,
    list: &[sb_channels::ProviderTemplate],
    now: i64,
) -> Result<(), sb_store::StoreError> {
    let synced: Vec<sb_store::templates::SyncedTemplate<'_>> = list
        .iter()
        .map(|t| sb_store::templates::SyncedTemplate {
            name: &t.name,
            language: &t.language,
            category: &t.category,
            status: &t.status,
            body: &t.body,
            parameter_count: sb_channels::whatsapp::template_parameter_count(&t.body) as i64,
        })
        .collect();
    sb_store::templates::replace_all(c, ws, account_id, &synced, now)
}
