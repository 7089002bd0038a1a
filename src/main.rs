//! The `hookgate` binary: parses the command line and calls the library's [`hookgate::commands`],
//! which do the work and choose the exit code (one rule for every command, documented there).
//! The admin-API clients (`events`, `replay`, `dlq`, `stats`) are the binary's own `cli` module.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hookgate::commands::{self, process_env};

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
    /// List every provider (code and catalogue) with its scheme, window and event-id source.
    ///
    /// One line per provider; `--json` prints a JSON array, `--markdown` the README's table.
    Providers {
        /// Print a JSON array of objects instead of lines.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the README's provider table (Markdown).
        #[arg(long)]
        markdown: bool,
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
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    // Dropped when main returns, on every path (nothing calls `process::exit`): it writes out the log
    // lines still queued, waiting up to about a second (tracing-appender's bound) for a slow stdout.
    let _log_flush;
    let exit = match command {
        Command::Serve { config, log } => {
            _log_flush = cli::logging::init(log, LogTarget::Stdout);
            match commands::load(&config.config, process_env, &mut err) {
                Ok(c) => commands::serve(c, &config.config, process_env, &mut err),
                Err(exit) => exit,
            }
        }
        Command::Check { config, log } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            match commands::load(&config.config, process_env, &mut err) {
                Ok(c) => commands::check(&c, &config.config, &mut out, &mut err),
                Err(exit) => exit,
            }
        }
        Command::Verify {
            config,
            source,
            request,
            now,
            log,
        } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            match commands::load(&config.config, process_env, &mut err) {
                Ok(c) => commands::verify(&c, &source, &request, now, &mut out, &mut err),
                Err(exit) => exit,
            }
        }
        Command::Sign {
            config,
            source,
            body,
            now,
            log,
        } => {
            _log_flush = cli::logging::init(log, LogTarget::Stderr);
            match commands::load(&config.config, process_env, &mut err) {
                Ok(c) => commands::sign(&c, &source, &body, now, &mut out, &mut err),
                Err(exit) => exit,
            }
        }
        Command::Providers { json, markdown } => {
            let format = match (json, markdown) {
                (true, _) => commands::ProvidersFormat::Json,
                (_, true) => commands::ProvidersFormat::Markdown,
                _ => commands::ProvidersFormat::Text,
            };
            commands::providers(format, &mut out, &mut err)
        }
        Command::Admin(command) => cli::run(command, process_env, &mut out, &mut err),
    };
    exit.into()
}
