//! Configuration: flags, then environment variables, then an optional TOML file, then
//! defaults. Anything invalid ends the process with exit code 2 and one message saying what
//! to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Omnichannel inbox, customer data and unified commerce in one binary"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Default)]
pub struct GlobalArgs {
    /// TOML configuration file (keys: listen, smtp_listen, data_dir, database_url, nats_url, public_url, demo, max_body_bytes, request_timeout_secs, metrics_token, webhooks_allow_private_networks).
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Address of the SMTP listener that receives e-mail for the e-mail channels' addresses
    /// (MX delivery) [default: none; with the demo, a free port on 127.0.0.1].
    #[arg(long, env = "SWITCHBOARD_SMTP_LISTEN", global = true)]
    pub smtp_listen: Option<String>,
    /// Where the SQLite file and other local state live [default: ./switchboard-data].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` selects PostgreSQL; `sqlite://PATH` a SQLite file [default: SQLite in the data directory].
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Turns on the NATS bus for fan-out between processes, e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "SWITCHBOARD_NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// The URL people and providers reach this server at [default: http://<listen>].
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// The token a Prometheus scraper sends to read /metrics [default: none: /metrics is off].
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", global = true)]
    pub metrics_token: Option<String>,
    /// Lets outgoing webhooks reach loopback and private addresses (development only: it
    /// turns off the guard against requests into this machine's network).
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE_NETWORKS", global = true)]
    pub webhooks_allow_private_networks: bool,
    /// Do not create the demo workspace on first start.
    #[arg(long, env = "SWITCHBOARD_NO_DEMO", global = true)]
    pub no_demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Measure this machine and print figures with their ratio to the baselines.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable single-row inserts from many concurrent writers through the executor.
    Store(crate::bench::StoreBenchArgs),
    /// Signed inbound messages over HTTP: acknowledged/s, ack latency, push latency to agents' streams, memory.
    Ingest(crate::bench::IngestBenchArgs),
    /// Checkout holds through the inventory ledger, one hot SKU and spread SKUs, with the oversell count.
    Stock(crate::bench::StockBenchArgs),
    /// Segment batches to /v1/batch from concurrent clients: events durably stored per second.
    Events(crate::bench::EventsBenchArgs),
    /// Outgoing webhook deliveries per second to a local receiver, commits per delivery, ratio to `bench store`.
    Webhooks(crate::bench::WebhooksBenchArgs),
    /// The journey engine with a million carts waiting: events evaluated/s, timer lateness, memory.
    Journeys(crate::bench::JourneysBenchArgs),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    smtp_listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    nats_url: Option<String>,
    public_url: Option<String>,
    demo: Option<bool>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    metrics_token: Option<String>,
    webhooks_allow_private_networks: Option<bool>,
}

#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseConfig {
    /// For messages: never prints a password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite(p) => format!("SQLite at {}", p.display()),
            DatabaseConfig::Postgres(url) => format!("PostgreSQL at {}", redact(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The SMTP listener for inbound e-mail, when there is one.
    pub smtp_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub nats_url: Option<String>,
    pub public_url: Option<String>,
    pub demo: bool,
    pub http: sb_http::HttpConfig,
    /// Outgoing webhooks may go to loopback and private addresses (development).
    pub webhooks_allow_private_networks: bool,
}

/// A configuration problem, with the words to fix it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl Config {
    pub fn resolve(args: &GlobalArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .or_else(|e| err(format!("cannot read the configuration file {}: {e}", path.display())))?;
                toml::from_str(&text).or_else(|e: toml::de::Error| {
                    err(format!(
                        "the configuration file {} is invalid: {}",
                        path.display(),
                        e.message().trim()
                    ))
                })?
            }
        };
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().or_else(|_| {
            err(format!(
                "listen address `{listen_text}` is not an address like 127.0.0.1:8080 (set --listen or SWITCHBOARD_LISTEN)"
            ))
        })?;
        let smtp_listen = match args.smtp_listen.clone().or(file.smtp_listen) {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().or_else(|_| {
                err(format!(
                    "SMTP listen address `{text}` is not an address like 0.0.0.0:25 (set --smtp-listen or SWITCHBOARD_SMTP_LISTEN)"
                ))
            })?),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("switchboard-data"));
        let database = match args.database_url.clone().or(file.database_url) {
            None => DatabaseConfig::Sqlite(data_dir.join("switchboard.sqlite")),
            Some(url) => parse_database_url(&url)?,
        };
        let nats_url = args.nats_url.clone().or(file.nats_url).filter(|u| !u.is_empty());
        if let Some(url) = &nats_url
            && !(url.starts_with("nats://") || url.starts_with("tls://"))
        {
            return err(format!(
                "NATS URL `{url}` must start with nats:// (set --nats-url or SWITCHBOARD_NATS_URL)"
            ));
        }
        let public_url = args
            .public_url
            .clone()
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return err(format!(
                "public URL `{url}` must start with http:// or https:// (set --public-url or SWITCHBOARD_PUBLIC_URL)"
            ));
        }
        let mut http = sb_http::HttpConfig::default();
        if let Some(n) = file.max_body_bytes {
            if n < 1024 {
                return err("max_body_bytes must be at least 1024");
            }
            http.max_body_bytes = n;
        }
        if let Some(secs) = file.request_timeout_secs {
            if secs == 0 {
                return err("request_timeout_secs must be at least 1");
            }
            http.request_timeout = Duration::from_secs(secs);
        }
        http.metrics_token = args
            .metrics_token
            .clone()
            .or(file.metrics_token)
            .filter(|t| !t.is_empty());
        if http.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return err(
                "metrics_token must be at least 16 characters (set --metrics-token or SWITCHBOARD_METRICS_TOKEN)",
            );
        }
        http.secure_cookies = public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        let demo = !args.no_demo && file.demo.unwrap_or(true);
        // The demo's mail simulator delivers to a listener of its own when none is set.
        let smtp_listen = match (smtp_listen, demo) {
            (None, true) => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            (other, _) => other,
        };
        Ok(Config {
            listen,
            smtp_listen,
            data_dir,
            database,
            nats_url,
            public_url,
            demo,
            http,
            webhooks_allow_private_networks: args.webhooks_allow_private_networks
                || file.webhooks_allow_private_networks.unwrap_or(false),
        })
    }

    /// Creates the data directory and proves it is writable.
    pub fn prepare_data_dir(&self) -> Result<(), ConfigError> {
        prepare_dir(&self.data_dir)
    }
}

pub fn prepare_dir(dir: &Path) -> Result<(), ConfigError> {
    let fix = "set --data-dir or SWITCHBOARD_DATA_DIR to a writable directory";
    std::fs::create_dir_all(dir).or_else(|e| {
        err(format!(
            "cannot create the data directory {}: {e} ({fix})",
            dir.display()
        ))
    })?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").or_else(|e| {
        err(format!(
            "the data directory {} is not writable: {e} ({fix})",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

pub fn parse_database_url(url: &str) -> Result<DatabaseConfig, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseConfig::Postgres(url.to_owned()))
    } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            return err("the SQLite URL has no path: use sqlite://path/to/file.sqlite");
        }
        Ok(DatabaseConfig::Sqlite(PathBuf::from(path)))
    } else {
        err(format!(
            "database URL `{}` is not supported: use postgres://… or sqlite://path (set --database-url or SWITCHBOARD_DATABASE_URL)",
            redact(url)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> GlobalArgs {
        GlobalArgs::default()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::resolve(&args()).expect("defaults are valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(c.database, DatabaseConfig::Sqlite(ref p) if p.ends_with("switchboard.sqlite")));
        assert!(c.demo && c.nats_url.is_none());
    }

    #[test]
    fn invalid_values_say_what_to_fix() {
        let e = Config::resolve(&GlobalArgs {
            listen: Some("nowhere".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.0.contains("SWITCHBOARD_LISTEN"), "{e}");
        let e = Config::resolve(&GlobalArgs {
            database_url: Some("mysql://u:pw@h/db".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.0.contains("SWITCHBOARD_DATABASE_URL") && !e.0.contains("pw@"), "{e}");
        let e = Config::resolve(&GlobalArgs {
            nats_url: Some("http://x".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.0.contains("SWITCHBOARD_NATS_URL"), "{e}");
    }

    #[test]
    fn flags_beat_the_file_and_unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("switchboard.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndemo = false\n").expect("write");
        let c = Config::resolve(&GlobalArgs {
            config: Some(file.clone()),
            ..args()
        })
        .expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert!(!c.demo);
        let c = Config::resolve(&GlobalArgs {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:9100".into()),
            ..args()
        })
        .expect("valid");
        assert_eq!(c.listen.port(), 9100);
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").expect("write");
        let e = Config::resolve(&GlobalArgs {
            config: Some(file),
            ..args()
        })
        .unwrap_err();
        assert!(e.0.contains("lisen"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
