//! The `hookgate` binary: parses the command line, loads the config file and hands over to the library.
//!
//! Exit codes: 0 success; 1 a runtime failure (or, for `verify`, an invalid request); 2 a usage error;
//! 78 (`EX_CONFIG`) a config file that is missing, unreadable or invalid, for every command that
//! reads one. The admin-API commands have their own codes (see `cli`).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookgate::{capture, Config, Listeners};

mod cli;

use cli::logging::{LogArgs, LogTarget};

/// jemalloc rather than the system allocator: sled allocates and frees a node copy for most writes,
/// and glibc's malloc took about a sixth of the commit thread's time under load. (mimalloc was as fast
/// but kept 40 MiB resident at idle; jemalloc keeps about 11.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment still overrides
/// them). Freed pages go back to the system after about a second instead of ten, and straight away
/// rather than through `MADV_FREE`, whose pages count as resident until the kernel wants them. Under a
/// 64 KiB load, whose request buffers churn through the allocator, this keeps about 8 MiB less
/// resident. One arena rather than eight (four per core) for the dozen threads: memory freed by one
/// thread serves the others instead of staying in its arena; under the 64 KiB load that kept another
/// 3 MiB less resident, with no CPU cost seen (the threads' caches take most allocations).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 47] = b"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

/// sysexits' EX_CONFIG: the configuration is missing or wrong.
const EX_CONFIG: u8 = 78;
/// A usage error: an unknown source, an unreadable input file, a provider that cannot sign.
const USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    version,
    about = "A webhook gateway: verify, deduplicate, store durably, forward."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The config file, the same flag for every command that reads one.
#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, default_value = "gateway.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default, with ./gateway.toml).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Validate a config file and print a summary.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Verify a captured raw HTTP/1.1 request offline, as the gateway would.
    ///
    /// Prints one JSON line; exits 0 if valid, 1 if invalid, 2 on a usage error, 78 on a config error.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The source whose scheme and secrets apply.
        #[arg(long)]
        source: String,
        /// The file holding the raw request (request line, headers, blank line, body).
        #[arg(long)]
        request: PathBuf,
        /// The time to verify at, in Unix seconds (default: now), for timestamped schemes.
        #[arg(long)]
        now: Option<u64>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Print a raw HTTP/1.1 request carrying a body, signed as the source's provider would sign it.
    ///
    /// Exits 0; 2 on a usage error or a provider that cannot sign (asymmetric schemes); 78 on a config error.
    Sign {
        #[command(flatten)]
        config: ConfigArg,
        /// The source whose scheme and first secret sign the request.
        #[arg(long)]
        source: String,
        /// The file holding the body, sent byte for byte.
        #[arg(long)]
        body: PathBuf,
        /// The signing time, in Unix seconds (default: now).
        #[arg(long)]
        now: Option<u64>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// `events`, `replay`, `dlq` and `stats`: clients of the admin API, defined in `cli`.
    #[command(flatten)]
    Admin(cli::Command),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap uses 2 for usage errors and 0 for --help and --version.
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let command = cli.command.unwrap_or_else(|| {
        let config = PathBuf::from("gateway.toml");
        Command::Serve {
            config: ConfigArg { config },
            log: LogArgs::default(),
        }
    });
    // Dropped when main returns, on every path (nothing calls `process::exit`): it writes out the log
    // lines still queued, waiting up to about a second (tracing-appender's bound) for a slow stdout.
    let _log_flush;
    match command {
        Command::Serve { config, log } => {
            _log_flush = cli::logging::init(log, LogTarget::Stdout);
            load(&config.config).map_or(ExitCode::from(EX_CONFIG), |c| serve(c, &config.config))
        }
        Command::Check { config, log } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            load(&config.config).map_or(ExitCode::from(EX_CONFIG), |c| check(&c, &config.config))
        }
        Command::Verify {
            config,
            source,
            request,
            now,
            log,
        } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            let Some(config) = load(&config.config) else {
                return ExitCode::from(EX_CONFIG);
            };
            verify(&config, &source, &request, now)
        }
        Command::Sign {
            config,
            source,
            body,
            now,
            log,
        } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            let Some(config) = load(&config.config) else {
                return ExitCode::from(EX_CONFIG);
            };
            sign(&config, &source, &body, now)
        }
        Command::Admin(command) => cli::run(command, |name| std::env::var(name).ok()),
    }
}

/// Loads a config file with the process environment, printing every problem.
fn load(path: &Path) -> Option<Config> {
    Config::load(path, |name| std::env::var(name).ok())
        .map_err(|e| eprintln!("error: {e}"))
        .ok()
}

fn serve(config: Config, path: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_async(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_async(config: Config, path: &Path) -> anyhow::Result<()> {
    let webhook = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen = \"{}\"", config.server.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen = \"{}\"", config.admin.listen))?;
    let path = path.to_owned();
    let reload = hookgate::ConfigSource::new(move || Ok(Config::load(&path, |n| std::env::var(n).ok())?));
    #[cfg(unix)]
    reload_on_sighup(reload.reloader())?;
    let listeners = Listeners { webhook, admin };
    hookgate::run(config, listeners, shutdown_signal(), Some(reload)).await?;
    Ok(())
}

/// Reloads the config on every SIGHUP. The handler is installed before returning, so that a SIGHUP
/// never kills the gateway once it serves.
#[cfg(unix)]
fn reload_on_sighup(reloader: hookgate::admin::Reloader) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            // The gateway logs the outcome; `None` means it has stopped.
            if hookgate::request_reload(&reloader).await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the gateway");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn check(config: &Config, path: &Path) -> ExitCode {
    let text = format!("{}: ok\n{}", path.display(), config.summary());
    cli::print(text.as_bytes(), ExitCode::SUCCESS)
}

fn at(now: Option<u64>) -> SystemTime {
    now.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    })
}

fn sign(config: &Config, source: &str, body: &Path, now: Option<u64>) -> ExitCode {
    let body = match std::fs::read(body) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", body.display());
            return ExitCode::from(USAGE);
        }
    };
    match capture::sign_request(config, source, &body, at(now)) {
        Ok(raw) => cli::print(&raw, ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

fn verify(config: &Config, source: &str, request: &Path, now: Option<u64>) -> ExitCode {
    let raw = match std::fs::read(request) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", request.display());
            return ExitCode::from(USAGE);
        }
    };
    match capture::verify_capture(config, source, &raw, at(now)) {
        Ok(verdict) => {
            let code = match verdict {
                capture::Verdict::Valid { .. } => ExitCode::SUCCESS,
                capture::Verdict::Invalid { .. } => ExitCode::from(1),
            };
            cli::print(format!("{}\n", verdict.to_json()).as_bytes(), code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
