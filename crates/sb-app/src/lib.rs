//! The application layer: every use case that the JSON API (`sb-http`) and the web app
//! (`sb-web`) share, written once. Each takes the acting [`Principal`] and its input, asks for
//! the one permission of the kind of data it touches (`sb_core::access`, the matrix), runs its
//! transaction, enqueues follow-up work and live events, writes its audit entry, and returns a
//! typed result or an [`AppError`] with a stable code. Reads that return protected data
//! (threads, timelines, exports, look-ups) come through here too.
//!
//! Arrows: `sb-core` → `sb-store`/`sb-engine`/`sb-inbox`/`sb-commerce`/`sb-cdp` → `sb-app` →
//! `sb-http` and `sb-web` → `sb-server`. Nothing here knows routes, pages or cookies.

pub mod access;
pub mod attachments;
pub mod auth;
pub mod canned;
pub mod channel_accounts;
pub mod commerce;
pub mod conversations;
pub mod customers;
pub mod error;
pub mod jobs;
pub mod journeys;
pub mod limits;
pub mod presence;
pub mod principal;
pub mod profiles;
pub mod storefront;
pub mod system;
pub mod tokens;
pub mod users;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use sb_engine::Engine;
use sb_store::Store;

pub use error::{AppError, AppResult, ErrorBody};
pub use principal::{Principal, Via};

/// What the use cases work with: the store, the job engine, the channels, the live stream,
/// inbound intake and customer-data ingestion. Cloned per request, so it is one pointer.
#[derive(Clone)]
pub struct App(Arc<Services>);

impl std::ops::Deref for App {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub store: Store,
    pub engine: Engine,
    pub channels: sb_inbox::Channels,
    pub live: sb_inbox::live::Live,
    /// Wakes inbound processing when a webhook was stored.
    pub intake: sb_inbox::Intake,
    /// Customer-data ingestion: write keys, rate limits, and the processor's wake-up.
    pub cdp: sb_cdp::Ingest,
    /// Where providers and people reach this server (webhook URLs are built from it).
    pub base_url: Arc<str>,
    /// Outgoing webhooks: the guard's setting and the delivery workers' wake-up.
    pub webhooks: sb_webhooks::Webhooks,
    pub sessions: auth::SessionPolicy,
    login_limiter: limits::LoginLimiter,
}

/// How the application is built; `sb-server` wires it.
pub struct AppParts {
    pub store: Store,
    pub engine: Engine,
    pub channels: sb_inbox::Channels,
    pub live: sb_inbox::live::Live,
    pub intake: sb_inbox::Intake,
    pub cdp: sb_cdp::Ingest,
    pub base_url: String,
    pub webhooks: sb_webhooks::Webhooks,
    pub session_ttl: Duration,
    pub secure_cookies: bool,
    pub login_limits: limits::LoginLimits,
}

impl App {
    pub fn new(parts: AppParts) -> App {
        App(Arc::new(Services {
            store: parts.store,
            engine: parts.engine,
            channels: parts.channels,
            live: parts.live,
            intake: parts.intake,
            cdp: parts.cdp,
            base_url: parts.base_url.into(),
            webhooks: parts.webhooks,
            sessions: auth::SessionPolicy {
                ttl: parts.session_ttl,
                secure_cookies: parts.secure_cookies,
            },
            login_limiter: limits::LoginLimiter::new(&parts.login_limits),
        }))
    }
}

impl App {
    /// The store's clock (a test's manual clock included).
    pub fn now(&self) -> i64 {
        self.store.now()
    }
}

/// A read of the principal's workspace that a page composes of its own store queries (the
/// web app's lists and panels), after the permission for the kind of data it returns. The
/// closure gets the connection and the workspace id; it may read nothing else.
pub async fn read_as<T, F>(app: &App, principal: &Principal, permission: sb_core::Permission, f: F) -> AppResult<T>
where
    F: FnOnce(&mut dyn sb_store::Conn, &str) -> Result<T, sb_store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    principal.require(permission)?;
    let ws = principal.workspace_id().to_owned();
    Ok(app.store.db.read(move |c| f(c, &ws)).await?)
}
