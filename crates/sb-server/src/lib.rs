//! Wiring: configuration → database → bus → engine → HTTP. The binary and the end-to-end
//! tests start the product through [`start`], so they run the same code.

pub mod bench;
pub mod config;
pub mod demo;
mod demo_events;
mod demo_journeys;
mod demo_shop;
mod maintenance;
pub mod simulators;

use std::future::Future;
use std::sync::Arc;

use sb_bus::{Bus, InProcessBus, NatsBus};
use sb_engine::{Engine, EngineConfig, Time};
use sb_sql::Db;
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_store::Store;
use tokio::net::TcpListener;

pub use config::{Config, ConfigError, DatabaseConfig};

/// Opens the configured database; a failure says what to fix.
pub async fn open_database(database: &DatabaseConfig) -> Result<Db, ConfigError> {
    let fix = "check --database-url / SWITCHBOARD_DATABASE_URL";
    let executor: Arc<dyn sb_sql::Executor> = match database {
        DatabaseConfig::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                config::prepare_dir(parent)?;
            }
            Arc::new(
                SqliteExecutor::open(&SqliteOptions::new(path))
                    .map_err(|e| ConfigError(format!("cannot open the {}: {e} ({fix})", database.describe())))?,
            )
        }
        DatabaseConfig::Postgres(url) => Arc::new(
            PgExecutor::connect(&PgOptions::new(url))
                .await
                .map_err(|e| ConfigError(format!("cannot reach the {}: {e} ({fix})", database.describe())))?,
        ),
    };
    Ok(Db::new(executor))
}

/// Opens the database and applies migrations; a changed migration stops here.
pub async fn open_store(config: &Config, time: &Time) -> Result<Store, ConfigError> {
    let db = open_database(&config.database).await?;
    let store = Store::new(db, time.clock());
    store
        .migrate()
        .await
        .map_err(|e| ConfigError(format!("cannot migrate the {}: {e}", config.database.describe())))?;
    Ok(store)
}

pub async fn open_bus(config: &Config) -> Result<Arc<dyn Bus>, ConfigError> {
    Ok(match &config.nats_url {
        None => Arc::new(InProcessBus::new()),
        Some(url) => Arc::new(NatsBus::connect(url).await.map_err(|e| {
            ConfigError(format!(
                "cannot reach NATS: {e} (check --nats-url / SWITCHBOARD_NATS_URL)"
            ))
        })?),
    })
}

/// How long a drain waits for in-flight requests before closing them.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A started server.
pub struct Server {
    pub addr: std::net::SocketAddr,
    /// Where the SMTP listener receives e-mail, when it runs.
    pub smtp_addr: Option<std::net::SocketAddr>,
    pub base_url: String,
    pub store: Store,
    pub engine: Engine,
    pub demo: Option<demo::DemoCredentials>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Drains: stops accepting, lets in-flight requests finish, stops the engine (running
    /// jobs finish or are released), closes the database.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    /// Resolves when the server stops by itself (it does not, unless it fails).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Starts everything on `listener` and returns once the server accepts requests.
pub async fn start(config: Config, listener: TcpListener, time: Time) -> Result<Server, ConfigError> {
    config.prepare_data_dir()?;
    let store = open_store(&config, &time).await?;
    let bus = open_bus(&config).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConfigError(format!("cannot read the listening address: {e}")))?;
    let base_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));

    let engine = Engine::new(store.clone(), time.clone(), EngineConfig::default());
    let channels = sb_inbox::Channels::new(sb_channels::registry());
    maintenance::register(&engine);
    let live = sb_inbox::live::Live::new(bus);
    sb_commerce::sweeper::register(&engine, &live);
    sb_inbox::register(&engine, &channels, &live, &base_url);
    engine.start();
    let intake = sb_inbox::Intake::default();
    let (stop_processing, processing_stopped) = tokio::sync::watch::channel(false);
    let processor = sb_inbox::Processor::new(engine.clone(), channels.clone(), live.clone(), intake.clone());
    let processing = tokio::spawn(processor.run(processing_stopped.clone()));
    let cdp = sb_cdp::Ingest::default();
    let cdp_processing = tokio::spawn(sb_cdp::processor::run(store.clone(), cdp.clone(), processing_stopped));
    maintenance::schedule(&engine)
        .await
        .map_err(|e| ConfigError(format!("cannot schedule maintenance: {e}")))?;
    sb_commerce::sweeper::schedule(&engine)
        .await
        .map_err(|e| ConfigError(format!("cannot schedule the hold sweeper: {e}")))?;

    // The SMTP listener is bound before anything is announced, so a taken port is a clear
    // start-up error.
    let smtp_listener = match config.smtp_listen {
        Some(at) => Some(TcpListener::bind(at).await.map_err(|e| {
            ConfigError(format!(
                "cannot listen for SMTP on {at}: {e} (set --smtp-listen or SWITCHBOARD_SMTP_LISTEN)"
            ))
        })?),
        None => None,
    };
    let smtp_addr = smtp_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut demo = if config.demo {
        demo::ensure(&store, &config.data_dir, &base_url)
            .await
            .map_err(|e| ConfigError(format!("cannot create the demo workspace: {e}")))?
    } else {
        None
    };
    let simulators = match demo.as_mut() {
        Some(creds) => simulators::start(&store, &channels, creds, &config.data_dir, smtp_addr)
            .await
            .map_err(|e| ConfigError(format!("cannot start the demo's simulators: {e}")))?,
        None => simulators::Simulators::default(),
    };

    let (stop_mail, mail_stopped) = tokio::sync::watch::channel(false);
    let ingress = sb_mail::smtp::Ingress {
        store: store.clone(),
        channels: channels.clone(),
        intake: intake.clone(),
    };
    // Connected mailboxes (accounts with `imap_host`) are read by one task each.
    let imap = sb_mail::imap::spawn(store.clone(), channels.clone(), intake.clone(), mail_stopped.clone());
    let smtp = smtp_listener.map(|listener| {
        let mail_config = sb_mail::smtp::SmtpConfig::default();
        tokio::spawn(sb_mail::smtp::serve(
            listener,
            ingress,
            mail_config,
            mail_stopped.clone(),
        ))
    });
    // Outgoing webhooks: fan-out from the event log and signed deliveries.
    let webhooks = sb_webhooks::Webhooks::new(store.clone(), config.webhooks_allow_private_networks);
    let (stop_webhooks, webhooks_stopped) = tokio::sync::watch::channel(false);
    let webhook_workers = tokio::spawn(webhooks.clone().run(webhooks_stopped));
    // Journeys: steps and timers, and the one delivery path of automated messages.
    let journeys = sb_journeys::Journeys::new(
        store.clone(),
        engine.clone(),
        channels.clone(),
        live.clone(),
        time.clone(),
        sb_journeys::Settings {
            public_url: base_url.clone(),
            ..sb_journeys::Settings::default()
        },
    );
    let (stop_journeys, journeys_stopped) = tokio::sync::watch::channel(false);
    let journey_runner = tokio::spawn(journeys.clone().run(journeys_stopped));
    // The use cases, under both the JSON API and the web app.
    let app = sb_app::App::new(sb_app::AppParts {
        store: store.clone(),
        engine: engine.clone(),
        channels,
        live,
        intake,
        cdp,
        base_url: base_url.clone(),
        webhooks,
        session_ttl: config.http.session_ttl,
        secure_cookies: config.http.secure_cookies,
        login_limits: config.http.login_limits.clone(),
    });
    let state = sb_http::AppState::new(app, config.http.clone());
    let drain_handle = state.clone();
    // The web app's pages sit beside the API, on the same state and sessions.
    let app = sb_http::app_with(state, sb_web::router()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stop_signal = stopped.clone();
    let shutdown_signal = async move {
        let _ = stop_signal.wait_for(|s| *s).await;
        drain_handle.begin_drain();
    };
    let (task_engine, task_store) = (engine.clone(), store.clone());
    let mut drain_deadline = stopped;
    let task = tokio::spawn(async move {
        // No Nagle: a live event is a small write that must leave now, not after the
        // client's delayed ACK (up to 40 ms on Linux).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY was refused");
            }
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal);
        // In-flight requests get a bounded time to finish once draining starts.
        let limit = async move {
            let _ = drain_deadline.wait_for(|s| *s).await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        };
        tokio::select! {
            result = serve => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            }
            _ = limit => tracing::warn!("requests still running after the drain limit were cut off"),
        }
        stop_mail.send_replace(true);
        if let Some(smtp) = smtp {
            let _ = smtp.await;
        }
        let _ = imap.await;
        stop_processing.send_replace(true);
        let _ = processing.await;
        stop_webhooks.send_replace(true);
        let _ = webhook_workers.await;
        stop_journeys.send_replace(true);
        let _ = journey_runner.await;
        let _ = cdp_processing.await;
        simulators.shutdown().await;
        task_engine.shutdown().await;
        task_store.db.close().await;
        tracing::info!("stopped");
    });
    Ok(Server {
        addr,
        smtp_addr,
        base_url,
        store,
        engine,
        demo,
        task,
        stop,
    })
}

/// Runs until `signal` resolves, then drains.
pub async fn serve(config: Config, signal: impl Future<Output = ()>) -> Result<(), ConfigError> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        ConfigError(format!(
            "cannot listen on {}: {e} (set --listen or SWITCHBOARD_LISTEN)",
            config.listen
        ))
    })?;
    let server = start(config.clone(), listener, Time::System).await?;
    println!("Switchboard is listening on http://{}", server.addr);
    println!("  database: {}", config.database.describe());
    if let Some(smtp) = server.smtp_addr {
        println!("  SMTP (inbound e-mail): {smtp}");
    }
    println!(
        "  API: {}/api/v1 (OpenAPI document at {}/api/openapi.json)",
        server.base_url, server.base_url
    );
    if let Some(demo) = &server.demo {
        demo.print(&config.data_dir);
    }
    signal.await;
    println!("Shutting down: finishing in-flight requests and running jobs");
    server.shutdown().await;
    Ok(())
}
