//! The `hookgate` binary: parses the command line, reads the config file and hands over to the library.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hookgate::{
    capture,
    telemetry::{BatchedWriter, FlushGuard, JsonLines},
    Config, Listeners,
};

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

/// sysexits' EX_CONFIG: the configuration is wrong.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    version,
    about = "A webhook gateway: verify, deduplicate, store durably, forward."
)]
struct Cli {
    /// Log format; by default JSON when the log stream (stdout for `serve`, else stderr) is not a terminal. The level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default, with ./gateway.toml).
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config file and print a summary.
    Check {
        /// The config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Verify a captured raw HTTP/1.1 request offline, as the gateway would.
    ///
    /// Prints one JSON line; exits 0 if valid, 1 if invalid, 2 on a usage or config error.
    Verify {
        /// The config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// The source whose scheme and secrets apply.
        #[arg(long)]
        source: String,
        /// The file holding the raw request (request line, headers, blank line, body).
        #[arg(long)]
        request: PathBuf,
        /// The time to verify at, in Unix seconds (default: now), for timestamped schemes.
        #[arg(long)]
        now: Option<u64>,
    },
    /// Print a raw HTTP/1.1 request carrying a body, signed as the source's provider would sign it.
    ///
    /// Exits 0, or 2 on a usage or config error or a provider that cannot sign (asymmetric schemes).
    Sign {
        /// The config file.
        #[arg(long, short, default_value = "gateway.toml")]
        config: PathBuf,
        /// The source whose scheme and first secret sign the request.
        #[arg(long)]
        source: String,
        /// The file holding the body, sent byte for byte.
        #[arg(long)]
        body: PathBuf,
        /// The signing time, in Unix seconds (default: now).
        #[arg(long)]
        now: Option<u64>,
    },
    /// `events`, `replay`, `dlq` and `stats`: clients of the admin API, defined in `hookgate::cli`.
    #[command(flatten)]
    Admin(hookgate::cli::Command),
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
    let command = cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("gateway.toml"),
    });
    // The gateway logs to stdout, as services do; the other commands print their results there.
    let target = if matches!(command, Command::Serve { .. }) {
        LogTarget::Stdout
    } else {
        LogTarget::Stderr
    };
    // Dropped when main returns, on every path (nothing calls `process::exit`): it writes out the log
    // lines still queued, waiting up to about a second (tracing-appender's bound) for a slow stdout.
    let _log_flush = init_tracing(cli.log_format, target);
    match command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Verify {
            config,
            source,
            request,
            now,
        } => verify(&config, &source, &request, now),
        Command::Sign {
            config,
            source,
            body,
            now,
        } => sign(&config, &source, &body, now),
        Command::Admin(command) => hookgate::cli::run(command, |name| std::env::var(name).ok()),
    }
}

/// Where log lines go.
#[derive(Clone, Copy)]
enum LogTarget {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. For `serve`, lines are formatted on the thread that logs them and
/// written by a thread of their own, batched into few writes (`hookgate::telemetry::BatchedWriter`):
/// the request path never makes a write call. The returned guard writes out every waiting line when
/// dropped, so `main` keeps it until it returns.
/// The other commands keep a direct stderr writer: they log little, and their lines must stay in
/// order with the `error: ...` messages they print there.
fn init_tracing(format: Option<LogFormat>, target: LogTarget) -> Option<FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => match target {
            LogTarget::Stdout => !std::io::stdout().is_terminal(),
            LogTarget::Stderr => !std::io::stderr().is_terminal(),
        },
    };
    match target {
        LogTarget::Stdout => match BatchedWriter::spawn(std::io::stdout(), "hookgate-log") {
            Ok((writer, guard)) => {
                install(filter, json, writer);
                Some(guard)
            }
            Err(e) => {
                eprintln!("warning: cannot start the log thread ({e}); writing log lines directly");
                install(filter, json, std::io::stdout);
                None
            }
        },
        LogTarget::Stderr => {
            install(filter, json, std::io::stderr);
            None
        }
    }
}

fn install<W>(filter: tracing_subscriber::EnvFilter, json: bool, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder.event_format(JsonLines).init();
    } else {
        builder.init();
    }
}

/// Reads and validates a config file, printing every problem.
fn load(path: &Path) -> Option<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read config file {}: {e}", path.display());
            return None;
        }
    };
    match Config::from_toml(&text, |name| std::env::var(name).ok()) {
        Ok(config) => Some(config),
        Err(err) => {
            let n = err.issues.len();
            eprintln!(
                "error: {} has {n} problem{}:",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            for issue in &err.issues {
                eprintln!("  {issue}");
            }
            None
        }
    }
}

fn serve(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(EX_CONFIG);
    };
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
    let reload = hookgate::ConfigSource::new({
        let path = path.to_owned();
        move || reread(&path)
    });
    #[cfg(unix)]
    reload_on_sighup(reload.reloader())?;
    hookgate::run(
        config,
        Listeners { webhook, admin },
        shutdown_signal(),
        Some(reload),
    )
    .await?;
    Ok(())
}

/// Reads and validates the config file again, for a reload; the gateway logs and reports the errors.
fn reread(path: &Path) -> Result<Config, hookgate::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| hookgate::ConfigError {
        issues: vec![hookgate::config::ConfigIssue {
            key: path.display().to_string(),
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    Config::from_toml(&text, |name| std::env::var(name).ok())
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

fn check(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(EX_CONFIG);
    };
    println!("{}: ok", path.display());
    println!(
        "  listen {}  admin {}  store {}",
        config.server.listen,
        config.admin.listen,
        config.store.path.display()
    );
    println!(
        "  dedup window {}  max body {} bytes",
        humantime::format_duration(config.store.dedup_window),
        config.server.max_body_size
    );
    for s in &config.sources {
        let allow = match &s.allow_ips {
            Some(nets) => nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            None => "any address".into(),
        };
        println!(
            "  source {}: {} -> {} (provider {}, allow {}, {} attempts, concurrency {}{})",
            s.name,
            s.path,
            s.upstream,
            s.kind.name(),
            allow,
            s.forward.max_attempts,
            s.forward.concurrency,
            if s.forward.is_signed() { ", signed" } else { "" },
        );
    }
    ExitCode::SUCCESS
}

/// Exit code of `verify` and `sign` for usage and config errors.
const USAGE: u8 = 2;

fn at(now: Option<u64>) -> SystemTime {
    now.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    })
}

fn sign(path: &Path, source: &str, body: &Path, now: Option<u64>) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(USAGE);
    };
    let body = match std::fs::read(body) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", body.display());
            return ExitCode::from(USAGE);
        }
    };
    match capture::sign_request(&config, source, &body, at(now)) {
        Ok(raw) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&raw).and_then(|()| out.flush()) {
                eprintln!("error: cannot write the request: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}

fn verify(path: &Path, source: &str, request: &Path, now: Option<u64>) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(USAGE);
    };
    let raw = match std::fs::read(request) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", request.display());
            return ExitCode::from(USAGE);
        }
    };
    let now = now.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    });
    match capture::verify_capture(&config, source, &raw, now) {
        Ok(verdict) => {
            println!("{}", verdict.to_json());
            match verdict {
                capture::Verdict::Valid { .. } => ExitCode::SUCCESS,
                capture::Verdict::Invalid { .. } => ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
    }
}
