//! The `switchboard` binary: parses the command line and hands over to the library.

use clap::Parser;
use sb_server::config::{BenchCommand, Cli, Command, Config};

/// mimalloc instead of glibc's malloc: allocation was a fifth of the SQLite writer's and the
/// HTTP workers' time under ingest (perf, session 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let config = Config::resolve(&cli.global)?;
                tokio::spawn(return_freed_memory());
                sb_server::serve(config, shutdown_signal()).await
            }
            Command::Migrate => {
                let config = Config::resolve(&cli.global)?;
                config.prepare_data_dir()?;
                let store = sb_server::open_store(&config, &sb_engine::Time::System).await?;
                println!("database is up to date ({})", config.database.describe());
                store.db.close().await;
                Ok(())
            }
            Command::Bench {
                what: BenchCommand::Store(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::store(&config, &args).await
            }
            Command::Bench {
                what: BenchCommand::Ingest(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::ingest(&config, &args).await
            }
            Command::Bench {
                what: BenchCommand::Stock(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::stock(&config, &args).await
            }
            Command::Bench {
                what: BenchCommand::Events(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::events(&config, &args).await
            }
            Command::Bench {
                what: BenchCommand::Webhooks(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::webhooks(&config, &args).await
            }
            Command::Bench {
                what: BenchCommand::Journeys(args),
            } => {
                let config = Config::resolve(&cli.global)?;
                sb_server::bench::journeys(&config, &args).await
            }
        }
    });
    if let Err(e) = result {
        fail(&e.0);
    }
}

/// mimalloc returns freed pages to the system only from inside its own calls, a second
/// after they were freed; a server that goes quiet after a burst (start-up, a spike of
/// traffic) would keep that burst's freed pages resident for good. Once a second, one
/// collection on a worker returns whatever has expired: the idle memory is what is in use.
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        collect_allocator();
    }
}

#[allow(unsafe_code)]
fn collect_allocator() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // without `force` it only frees empty pages and purges memory whose delay has expired.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

fn fail(message: &str) -> ! {
    eprintln!("switchboard: {message}");
    std::process::exit(2);
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Ctrl-C or SIGTERM. The handlers are installed now, before the server announces itself,
/// so a SIGTERM sent right after start-up drains instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        let term = async {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
}
