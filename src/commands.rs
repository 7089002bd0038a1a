//! What the `hookgate` commands do once their arguments are parsed.
//!
//! `main.rs` parses the command line (clap), calls one function here and exits with the [`Exit`] it
//! returns. Each function writes its output and its `error: ...` lines to the writers it is given,
//! so that tests run it without a process.
//!
//! # Exit codes
//!
//! One rule for every command:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success; for `verify`, the request is valid |
//! | 1    | a runtime failure; for `verify`, an invalid request; for an admin command, an error answer |
//! | 2    | a usage error: bad arguments, an unknown source, an unreadable input file, a provider that cannot sign |
//! | 3    | an admin command could not reach the admin API |
//! | 78   | `EX_CONFIG`: the config file is missing, unreadable or invalid, for every command that reads one |

use std::{
    future::Future,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use tokio::net::TcpListener;

use crate::{
    capture::{self, CaptureError, Verdict},
    config::ConfigFileError,
    telemetry::ErrorChain,
    Config, ConfigSource, Listeners, RunError,
};

/// How a command ended, as the process's exit code (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success,
    /// 1: a runtime failure, an invalid request (`verify`), an error answer (admin commands).
    Failure,
    /// 2: bad arguments or input.
    Usage,
    /// 3: the admin API could not be reached.
    Unreachable,
    /// 78 (`EX_CONFIG`): the config file is missing, unreadable or invalid.
    Config,
}

impl Exit {
    /// The code the process exits with.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
            Exit::Config => 78,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

impl From<&ConfigFileError> for Exit {
    fn from(_: &ConfigFileError) -> Self {
        Exit::Config
    }
}

impl From<&CaptureError> for Exit {
    /// An unknown source, a file that is not a request, a provider that cannot sign: the input is wrong.
    fn from(_: &CaptureError) -> Self {
        Exit::Usage
    }
}

impl From<&Verdict> for Exit {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Valid { .. } => Exit::Success,
            Verdict::Invalid { .. } => Exit::Failure,
        }
    }
}

/// The process environment, as [`Config::load`] takes it: `main.rs` passes this, tests a map.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Writes `bytes` to `out` and flushes, then returns `exit`. A reader that closed the pipe
/// (`hookgate check | head`) had enough: that is no failure, and the rest is dropped. Any other
/// write error is printed to `err` and ends in [`Exit::Failure`].
pub fn print(out: &mut dyn Write, err: &mut dyn Write, bytes: &[u8], exit: Exit) -> Exit {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit,
        Err(e) => {
            let _ = writeln!(err, "error: cannot write to stdout: {e}");
            Exit::Failure
        }
    }
}

/// Loads the config file at `path` with `env` for its `{ env = "NAME" }` secrets. On failure, prints
/// every problem to `err` and returns the exit code ([`Exit::Config`]).
pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>, err: &mut dyn Write) -> Result<Config, Exit> {
    Config::load(path, env).map_err(|e| {
        let _ = writeln!(err, "error: {e}");
        Exit::from(&e)
    })
}

/// `hookgate check`: `PATH: ok` and the config's [summary](Config::summary).
pub fn check(config: &Config, path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let text = format!("{}: ok\n{}", path.display(), config.summary());
    print(out, err, text.as_bytes(), Exit::Success)
}

/// How `hookgate providers` prints the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvidersFormat {
    /// One line per provider: name, origin, window, event id and scheme, tab-separated (so that
    /// `hookgate providers | wc -l` counts them).
    Text,
    /// One JSON array of [`ProviderInfo`](crate::providers::ProviderInfo) objects.
    Json,
    /// The README's provider table.
    Markdown,
}

/// `hookgate providers`: every provider, code and catalogue, with its scheme, window and event-id
/// source. Reads no config.
pub fn providers(format: ProvidersFormat, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let infos = crate::providers::listing::all();
    let text = match format {
        ProvidersFormat::Text => {
            let mut text = String::new();
            for i in &infos {
                let origin = match i.origin {
                    crate::providers::listing::Origin::Code => "code",
                    crate::providers::listing::Origin::Catalogue => "catalogue",
                };
                text.push_str(&format!(
                    "{}\t{origin}\twindow: {}\tevent id: {}\t{}\n",
                    i.name, i.window, i.event_id, i.scheme
                ));
            }
            text
        }
        ProvidersFormat::Json => {
            let mut json = serde_json::to_string_pretty(&infos).expect("the listing serializes");
            json.push('\n');
            json
        }
        ProvidersFormat::Markdown => crate::providers::listing::readme_table(),
    };
    print(out, err, text.as_bytes(), Exit::Success)
}

/// `hookgate sign`: the raw request carrying the file `body`, signed at `now` (Unix seconds, default
/// the clock) as source `source`'s provider signs.
pub fn sign(
    config: &Config,
    source: &str,
    body: &Path,
    now: Option<u64>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let Some(body) = read_input(body, err) else {
        return Exit::Usage;
    };
    match capture::sign_request(config, source, &body, at(now)) {
        Ok(raw) => print(out, err, &raw, Exit::Success),
        Err(e) => usage_error(&e, err),
    }
}

/// `hookgate verify`: checks the raw request in the file `request` as source `source` at `now` (Unix
/// seconds, default the clock) and prints the verdict as one JSON line; valid is
/// [`Exit::Success`], invalid [`Exit::Failure`], even when nobody reads the line.
pub fn verify(
    config: &Config,
    source: &str,
    request: &Path,
    now: Option<u64>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let Some(raw) = read_input(request, err) else {
        return Exit::Usage;
    };
    match capture::verify_capture(config, source, &raw, at(now)) {
        Ok(verdict) => print(
            out,
            err,
            format!("{}\n", verdict.to_json()).as_bytes(),
            Exit::from(&verdict),
        ),
        Err(e) => usage_error(&e, err),
    }
}

fn usage_error(e: &CaptureError, err: &mut dyn Write) -> Exit {
    let _ = writeln!(err, "error: {e}");
    Exit::from(e)
}

/// An input file's bytes, or `None` after printing why not.
fn read_input(path: &Path, err: &mut dyn Write) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| {
            let _ = writeln!(err, "error: cannot read {}: {e}", path.display());
        })
        .ok()
}

/// `now` in Unix seconds, or the clock.
fn at(now: Option<u64>) -> SystemTime {
    now.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    })
}

// === serve ===

/// Why `hookgate serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
    /// A listener could not be bound; names the key and the address.
    #[error("cannot listen on {key} = \"{addr}\"")]
    Bind {
        /// `server.listen` or `admin.listen`.
        key: &'static str,
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP")]
    Hangup(#[source] io::Error),
    /// The gateway failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// `hookgate serve`: binds the listeners `config` names, reloads from `path` (with `env`) on SIGHUP
/// and `POST /reload`, and runs the gateway until SIGTERM or SIGINT. Call it outside any runtime: it
/// starts its own.
pub fn serve(
    config: Config,
    path: &Path,
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    err: &mut dyn Write,
) -> Exit {
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)
        .and_then(|runtime| runtime.block_on(serve_until(config, path.to_owned(), env, shutdown_signal())));
    match served {
        Ok(()) => Exit::Success,
        Err(e) => {
            let _ = writeln!(err, "error: {}", ErrorChain(&e));
            Exit::Failure
        }
    }
}

/// Binds the listeners, installs the SIGHUP handler and runs the gateway until `shutdown`.
async fn serve_until(
    config: Config,
    path: PathBuf,
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listeners = bind(&config).await?;
    let reload = ConfigSource::new(move || Ok(Config::load(&path, &env)?));
    #[cfg(unix)]
    reload_on_sighup(reload.reloader())?;
    crate::run(config, listeners, shutdown, Some(reload)).await?;
    Ok(())
}

/// Binds `server.listen` and `admin.listen`.
pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
    let bind = |key, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { key, addr, source })
    };
    Ok(Listeners {
        webhook: bind("server.listen", config.server.listen).await?,
        admin: bind("admin.listen", config.admin.listen).await?,
    })
}

/// Reloads the config on every SIGHUP. The handler is installed before this returns, so that a
/// SIGHUP never kills the gateway once it serves.
#[cfg(unix)]
fn reload_on_sighup(reloader: crate::admin::Reloader) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(ServeError::Hangup)?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            // The gateway logs the outcome; `None` means it has stopped.
            if crate::request_reload(&reloader).await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests;
