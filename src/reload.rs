//! Hot reload: re-read the config on request (SIGHUP, `POST /reload`) and swap it in without a restart.
//!
//! A reload re-reads and validates the config through the [`ConfigSource`] that `main.rs` (or a test)
//! gave to [`run`](crate::run). If it is invalid, the gateway keeps running on the old config; every
//! problem is logged, counted (`hookgate_config_reloads_total{result="rejected"}`) and reported. If it
//! is valid, the new config is applied:
//!
//! - the webhook router is rebuilt and swapped atomically: requests already in flight finish on the
//!   old stacks, connections stay open, new requests see the new sources, paths, secrets and limits;
//! - every source's forwarder is restarted gracefully (in-flight deliveries end first); the queue and
//!   the dedup marks live in the store and are not touched, so a duplicate stays a duplicate;
//! - the silence monitor watches the new source set;
//! - `header_read_timeout`, `proxy_protocol` and the `trusted_proxies` it believes apply to new
//!   connections, and `shutdown_timeout` to the next drain;
//! - the listeners' TLS certificates, keys and client CAs (read again by the config's validation, so
//!   a bad file rejects the reload and the old certificate stays) apply to new connections, open
//!   ones keep theirs; their expiry is reported again.
//!
//! Settings bound at start keep their old value and are listed in the report's `restart_required`:
//! `server.listen`, `server.max_connections`, `server.max_buffered_bytes`, `server.tls` (turning TLS
//! on or off), `store.path`, `store.retention`, `store.cache_size`, `admin.listen`, `admin.token`,
//! `admin.allowed_hosts` and `admin.tls` (on or off).
//!
//! Reloads are handled one at a time, in order, by one task that owns the running state ([`Live`]).

use std::{fmt, sync::Arc};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::{ReloadReport, Reloader},
    gateway::Gateway,
    telemetry, Config, ConfigError,
};

/// Reload requests waiting to be handled; more wait in their senders.
const QUEUED_RELOADS: usize = 8;

type Load = dyn Fn() -> Result<Config, ConfigError> + Send + Sync;

/// Where [`run`](crate::run) re-reads its config from on reload, and the channel that asks it to.
///
/// ```no_run
/// # async fn example(config: hookgate::Config, listeners: hookgate::Listeners) {
/// let path = std::path::PathBuf::from("gateway.toml");
/// let source = hookgate::ConfigSource::new(move || {
///     let text = std::fs::read_to_string(&path).map_err(|e| hookgate::ConfigError {
///         issues: vec![hookgate::config::ConfigIssue {
///             key: path.display().to_string(),
///             message: format!("cannot read the file: {e}"),
///         }],
///     })?;
///     hookgate::Config::from_toml(&text, |name| std::env::var(name).ok())
/// });
/// let reloader = source.reloader();
/// tokio::spawn(async move {
///     // Later, e.g. on SIGHUP:
///     let report = hookgate::request_reload(&reloader).await;
///     println!("{report:?}");
/// });
/// hookgate::run(config, listeners, std::future::pending(), Some(source)).await.unwrap();
/// # }
/// ```
pub struct ConfigSource {
    load: Arc<Load>,
    requests: mpsc::Receiver<oneshot::Sender<ReloadReport>>,
    reloader: Reloader,
}

impl ConfigSource {
    /// A source that re-reads and validates the config with `load`. `load` runs on a blocking thread.
    pub fn new(load: impl Fn() -> Result<Config, ConfigError> + Send + Sync + 'static) -> Self {
        let (reloader, requests) = mpsc::channel(QUEUED_RELOADS);
        Self {
            load: Arc::new(load),
            requests,
            reloader,
        }
    }

    /// A handle that asks the gateway to reload (see [`request_reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }
}

impl fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSource").finish_non_exhaustive()
    }
}

/// Asks the gateway behind `reloader` to reload its config and waits for the report; `None` if the
/// gateway has stopped.
pub async fn request_reload(reloader: &Reloader) -> Option<ReloadReport> {
    let (tx, rx) = oneshot::channel();
    reloader.send(tx).await.ok()?;
    rx.await.ok()
}

/// What a reload replaces: the config in effect and the running gateway built from it.
#[derive(Debug)]
pub(crate) struct Live {
    /// The config in effect (with the start-only settings of the first one).
    pub(crate) config: Config,
    /// The router, forwarders and watched sources, built from `config`.
    pub(crate) gateway: Gateway,
}

impl Live {
    /// Applies a valid config; returns the report.
    fn apply(&mut self, new: Config) -> ReloadReport {
        let restart_required = restart_required(&self.config, &new);
        let new = keep_start_only(&self.config, new);
        self.gateway.apply(&new);
        self.config = new;
        metrics::counter!(telemetry::CONFIG_RELOADS, "result" => "applied").increment(1);
        tracing::info!(
            sources = self.config.sources.len(),
            restart_required = %telemetry::List(&restart_required),
            "config reloaded"
        );
        ReloadReport {
            applied: true,
            errors: Vec::new(),
            restart_required,
        }
    }
}

/// Handles reload requests until `stop` is cancelled; returns the running state for the shutdown.
/// Without a config source it only waits.
pub(crate) async fn serve(source: Option<ConfigSource>, mut live: Live, stop: CancellationToken) -> Live {
    let Some(ConfigSource {
        load, mut requests, ..
    }) = source
    else {
        stop.cancelled().await;
        return live;
    };
    loop {
        let reply = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(reply) = requests.recv() => reply,
        };
        let report = reload(&load, &mut live).await;
        // The asker may have gone away; the reload happened anyway.
        let _ = reply.send(report);
    }
    live
}

async fn reload(load: &Arc<Load>, live: &mut Live) -> ReloadReport {
    tracing::info!("reloading the config");
    let load = load.clone();
    let loaded = match tokio::task::spawn_blocking(move || load()).await {
        Ok(loaded) => loaded.map_err(|e| e.issues.iter().map(ToString::to_string).collect()),
        Err(e) => Err(vec![format!("reading the config failed: {e}")]),
    };
    match loaded {
        Ok(config) => live.apply(config),
        Err(errors) => reject(errors),
    }
}

fn reject(errors: Vec<String>) -> ReloadReport {
    metrics::counter!(telemetry::CONFIG_RELOADS, "result" => "rejected").increment(1);
    // Config messages name keys and values, never secrets.
    for error in &errors {
        tracing::error!(%error, "config reload: invalid config");
    }
    tracing::warn!(
        errors = errors.len(),
        "config reload rejected; still running on the previous config"
    );
    ReloadReport {
        applied: false,
        errors,
        restart_required: Vec::new(),
    }
}

/// The start-only settings that differ between `old` and `new`, by key path, in file order.
fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        (
            "server.max_connections",
            old.server.max_connections != new.server.max_connections,
        ),
        // The budget is shared by every stack and sized once.
        (
            "server.max_buffered_bytes",
            old.server.max_buffered_bytes != new.server.max_buffered_bytes,
        ),
        // The listener was started plain or with TLS; its certificate itself is reloaded.
        ("server.tls", old.server.tls.is_some() != new.server.tls.is_some()),
        ("store.path", old.store.path != new.store.path),
        // Held by the retention purge loop and the admin service, both set up at start.
        ("store.retention", old.store.retention != new.store.retention),
        // The index's cache is sized when the store opens.
        ("store.cache_size", old.store.cache_size != new.store.cache_size),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("admin.token", old.admin.token != new.admin.token),
        // Held by the admin service, set up at start.
        (
            "admin.allowed_hosts",
            old.admin.allowed_hosts != new.admin.allowed_hosts,
        ),
        ("admin.tls", old.admin.tls.is_some() != new.admin.tls.is_some()),
    ];
    changed
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// `new` with the start-only settings of `old`, so that the config in effect says what is in effect.
fn keep_start_only(old: &Config, mut new: Config) -> Config {
    new.server.listen = old.server.listen;
    new.server.max_connections = old.server.max_connections;
    new.server.max_buffered_bytes = old.server.max_buffered_bytes;
    new.store.path = old.store.path.clone();
    new.store.retention = old.store.retention;
    new.store.cache_size = old.store.cache_size;
    new.admin.listen = old.admin.listen;
    new.admin.token = old.admin.token.clone();
    new.admin.allowed_hosts = old.admin.allowed_hosts.clone();
    if old.server.tls.is_some() != new.server.tls.is_some() {
        new.server.tls = old.server.tls.clone();
    }
    if old.admin.tls.is_some() != new.admin.tls.is_some() {
        new.admin.tls = old.admin.tls.clone();
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "[[sources]]\nname = \"github\"\npath = \"/hooks/github\"\nprovider = \"github\"\nsecrets = [\"s3cret-s3cret\"]\nupstream = \"http://127.0.0.1:1/\"\n";

    fn config(head: &str) -> Config {
        Config::from_toml(&format!("{head}\n{SOURCE}"), |_| {
            Some("a-token-of-sixteen-chars".into())
        })
        .expect("valid")
    }

    #[test]
    fn nothing_to_restart_for_the_same_file() {
        let old = config("");
        assert_eq!(restart_required(&old, &config("")), Vec::<String>::new());
    }

    #[test]
    fn start_only_settings_are_reported_and_kept() {
        let old = config("");
        let new = config(
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 7\nrequest_timeout = \"3s\"\n\
             max_buffered_bytes = 99999999\n\
             [store]\npath = \"elsewhere\"\nretention = \"1h\"\ncache_size = 8388608\n\
             [admin]\nlisten = \"127.0.0.1:2\"\ntoken = { env = \"T\" }\n\
             allowed_hosts = [\"hookgate.internal\"]\n",
        );
        assert_eq!(
            restart_required(&old, &new),
            [
                "server.listen",
                "server.max_connections",
                "server.max_buffered_bytes",
                "store.path",
                "store.retention",
                "store.cache_size",
                "admin.listen",
                "admin.token",
                "admin.allowed_hosts"
            ]
        );
        let kept = keep_start_only(&old, new);
        assert_eq!(kept.server.listen, old.server.listen);
        assert_eq!(kept.server.max_connections, old.server.max_connections);
        assert_eq!(kept.server.max_buffered_bytes, old.server.max_buffered_bytes);
        assert_eq!(kept.store.path, old.store.path);
        assert_eq!(kept.store.retention, old.store.retention);
        assert_eq!(kept.store.cache_size, old.store.cache_size);
        assert_eq!(kept.admin.listen, old.admin.listen);
        assert!(kept.admin.token.is_none());
        assert!(kept.admin.allowed_hosts.is_empty());
        assert_eq!(
            kept.server.request_timeout,
            std::time::Duration::from_secs(3),
            "everything else is applied"
        );
        assert_eq!(restart_required(&old, &kept), Vec::<String>::new());
    }

    #[test]
    fn turning_tls_on_or_off_needs_a_restart_and_a_new_certificate_does_not() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let write_pair = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            let (c, k) = (
                dir.path().join(format!("{name}.pem")),
                dir.path().join(format!("{name}.key")),
            );
            std::fs::write(&c, cert.pem()).expect("write");
            std::fs::write(&k, key.serialize_pem()).expect("write");
            format!(
                "cert = {:?}\nkey = {:?}\n",
                c.display().to_string(),
                k.display().to_string()
            )
        };
        let (a, b) = (write_pair("a"), write_pair("b"));
        let plain = config("");
        let tls_a = config(&format!("[server.tls]\n{a}[admin.tls]\n{a}"));
        let tls_b = config(&format!("[server.tls]\n{b}[admin.tls]\n{b}"));
        assert_eq!(restart_required(&plain, &tls_a), ["server.tls", "admin.tls"]);
        assert!(keep_start_only(&plain, tls_a.clone()).server.tls.is_none());
        assert!(keep_start_only(&tls_a, plain.clone()).admin.tls.is_some());
        assert_eq!(restart_required(&tls_a, &tls_b), Vec::<String>::new());
        let kept = keep_start_only(&tls_a, tls_b);
        let cert = &kept.server.tls.as_ref().expect("tls").files().cert;
        assert!(
            cert.ends_with("b.pem"),
            "the new certificate is applied: {cert:?}"
        );
    }
}
