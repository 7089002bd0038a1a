//! Log set-up for the binary: `--log-format`, offered by the commands that log (`serve`, `check`,
//! `verify`, `sign`), not by the admin-API clients, which log nothing.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use hookgate::telemetry::{BatchedWriter, FlushGuard, JsonLines};

/// `--log-format`, flattened into each command that logs.
#[derive(Debug, Clone, Copy, Default, Args)]
pub(crate) struct LogArgs {
    /// Log format; by default JSON when the log stream (stdout for `serve`, else stderr) is not a
    /// terminal. The level comes from RUST_LOG (default info).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogTarget {
    /// `serve`: a service logs to stdout.
    Stdout,
    /// The other commands print their results on stdout.
    Stderr,
}

/// Installs the global subscriber. For `serve`, lines are formatted on the thread that logs them and
/// written by a thread of their own, batched into few writes ([`BatchedWriter`]): the request path
/// never makes a write call. The returned guard writes out every waiting line when dropped, so `main`
/// keeps it until it returns.
/// The other commands keep a direct stderr writer: they log little, and their lines must stay in
/// order with the `error: ...` messages they print there.
pub(crate) fn init(args: LogArgs, target: LogTarget) -> Option<FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match args.log_format {
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
