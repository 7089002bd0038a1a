//! hookgate: a webhook gateway that sits in front of an app.
//!
//! It checks each webhook's sender (client IP, allowlist, body size, signature), remembers event ids to
//! drop duplicates, stores each accepted event durably before answering 200, and forwards the events
//! to the app with retries and dead letters.
//!
//! ```text
//! provider -> client IP -> IP allowlist -> body limit -> verify -> dedup + durable enqueue -> 200
//! forwarder: queue -> app over HTTP (or NATS JetStream), retries with backoff, dead letters
//! ```
//!
//! # Layout
//!
//! - [`config`]: the TOML file, parsed then validated ([`Config::from_toml`], [`Config::load`]).
//! - `server`: the webhook listener and, in `server/stack.rs`, the one place where layers are composed.
//! - `layers`: the request path, one small layer per concern, and `rescue`, which maps errors to answers.
//! - [`providers`]: one file per signature scheme behind the [`providers::Provider`] trait.
//! - [`store`]: a narrow API over an event log (bodies) and sled (the rest); dedup and enqueue in one
//!   atomic batch, group commit on one thread.
//! - [`forward`]: the delivery workers, retries and dead letters.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` and the admin API (events, replay, dead letters,
//!   stats, reload) on a listener of their own, and the web page at `/ui` (static files in
//!   `src/admin/ui/`, a browser client of that API); its JSON types, shared with the binary's admin
//!   client, are [`admin::wire`].
//! - `gateway`: the one place that builds a running gateway from a config (router, connection limits,
//!   forwarders, watched sources), used by start-up and by every reload.
//! - `reload`: hot reload ([`ConfigSource`]): re-read, validate, apply the new config to the gateway.
//! - `silence`: silence alerts for sources with `expect_within`.
//! - [`capture`]: offline verification of a captured request, for `hookgate verify`.
//! - [`tls`]: rustls on both sides: the listeners' certificates (checked at load, swapped on
//!   reload) and how the forwarder verifies `https://` upstreams.
//! - [`commands`]: what each command of the binary does once its arguments are parsed, and the
//!   exit-code rule ([`commands::Exit`]).
//!
//! - [`secret`]: the [`secret::Secret`] newtype, at the bottom so that providers and the admin API
//!   need no config type.
//!
//! Dependencies point down this list, never up, and there are no cycles:
//!
//! ```text
//! commands                                        the binary's commands: load, check, sign, verify, serve
//! run, gateway, reload, server, admin,           wiring: build the running gateway from a Config
//! silence, capture
//! config                                          the compiler: raw TOML -> providers, forward targets
//! layers (sharing layers/facts.rs)                the request path
//! forward, providers, store, stats, telemetry,   no config types: forward::Target, Enforcement,
//! tls                                             (ServerTls, ClientTls) are theirs, built by config
//! secret                                          Secret is below them all
//! ```
//!
//! `layering.rs` (a unit test) fails if a module below `config` names a config type, or a layer
//! imports another layer's facts.
//!
//! The binary (`src/main.rs` and its own `src/cli/`, the admin API's client) parses the command line
//! and calls [`commands`]; the library exports no CLI (no clap types).
//!
//! [`run`] takes listeners that are already bound and a shutdown future, so that tests can bind
//! `127.0.0.1:0` and run the real gateway, and optionally a [`ConfigSource`] to reload from.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, unreachable_pub)]
#![warn(missing_docs)]

use std::{future::Future, sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub mod admin;
pub mod capture;
pub mod commands;
pub mod config;
pub mod forward;
mod gateway;
pub(crate) mod layers;
pub mod providers;
mod reload;
pub mod secret;
mod server;
pub(crate) mod silence;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tls;

#[cfg(test)]
mod layering;

pub use config::{Config, ConfigError};
pub use reload::{request_reload, ConfigSource};

use gateway::Gateway;
use server::{ConnLimits, SharedLimits};
use store::{Store, StoreError};

/// How often expired dedup marks are removed.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The admin listener's limits: few, short-lived connections from probes and scrapers.
const ADMIN_LIMITS: ConnLimits = ConnLimits {
    header_read_timeout: Duration::from_secs(5),
    max_connections: 64,
    shutdown_timeout: Duration::from_secs(1),
    proxy_protocol: None,
};

/// The listeners [`run`] serves, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Webhooks from senders.
    pub webhook: TcpListener,
    /// Health, readiness and metrics.
    pub admin: TcpListener,
}

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error("cannot open the store at {path:?}")]
    OpenStore {
        /// The configured path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The final flush on shutdown failed.
    #[error("the final flush failed")]
    FinalFlush(#[source] StoreError),
}

/// Runs the gateway until `shutdown` completes, then stops accepting, lets in-flight requests and
/// deliveries finish, flushes the store and returns.
///
/// With a [`ConfigSource`], the gateway reloads its config whenever asked through the source's
/// [`reloader`](ConfigSource::reloader) (SIGHUP in `main.rs`, `POST /reload` on the admin API).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    reload: Option<ConfigSource>,
) -> Result<(), RunError> {
    telemetry::prometheus();
    let store = Store::open_with_cache(&config.store.path, config.store.cache_size).map_err(|source| {
        RunError::OpenStore {
            path: config.store.path.clone(),
            source,
        }
    })?;
    let stop = CancellationToken::new();
    let stats = stats::Stats::default();
    // The router, the forwarders and the watched sources: what a reload rebuilds.
    let gateway = Gateway::start(&config, &store, &stats, &stop);
    let mut background = JoinSet::new();
    background.spawn(telemetry::upkeep_loop(telemetry::UPKEEP_EVERY, stop.clone()));
    background.spawn(store::purge_loop(store.clone(), PURGE_EVERY, stop.clone()));
    background.spawn(store::retention_loop(
        store.clone(),
        config.store.retention,
        stop.clone(),
    ));
    background.spawn(silence::watch(
        gateway.silence.clone(),
        stats.clone(),
        silence::CHECK_EVERY,
        stop.clone(),
    ));

    let readiness = admin::Readiness::default();
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn({
        let names = gateway.source_names.clone();
        let silent = gateway.silence.clone();
        let api = admin::AdminApi::new(&config, stats.clone())
            .with_reloader(reload.as_ref().map(ConfigSource::reloader))
            .with_silence(Arc::new(move |source: &str| silent.is_silent(source)))
            .with_sources(Arc::new(move || names.load().as_ref().clone()));
        let svc = admin::Admin::new(store.clone(), readiness.clone(), api);
        let stop = admin_stop.clone();
        server::serve(
            server::Listener::Admin,
            listeners.admin,
            svc,
            fixed(ADMIN_LIMITS),
            gateway.admin_tls.clone(),
            async move { stop.cancelled().await },
        )
    });

    let (router, limits, webhook_tls) = (
        gateway.router.clone(),
        gateway.limits.clone(),
        gateway.webhook_tls.clone(),
    );
    tracing::info!(
        listen = %config.server.listen,
        tls = config.server.tls.is_some(),
        admin = %config.admin.listen,
        admin_tls = config.admin.tls.is_some(),
        sources = config.sources.len(),
        store = %config.store.path.display(),
        "hookgate is serving"
    );
    let live = reload::Live { config, gateway };
    let reloads = tokio::spawn(reload::serve(reload, live, stop.clone()));
    readiness.set(true);
    let drained = server::serve(
        server::Listener::Webhook,
        listeners.webhook,
        router,
        limits,
        webhook_tls,
        async {
            shutdown.await;
            readiness.set(false);
            tracing::info!("shutting down: no new connections, draining in-flight requests");
        },
    )
    .await;

    stop.cancel();
    match reloads.await {
        Ok(live) => live.gateway.dispatchers.join().await,
        // The dispatchers were dropped with the task, which aborted them: whatever they had in flight
        // is delivered again after the restart.
        Err(e) => tracing::error!(error = %e, "the reload task failed"),
    }
    while background.join_next().await.is_some() {}
    let flushed = store.flush().await;
    admin_stop.cancel();
    let _ = admin_task.await;
    match flushed {
        // What is not in the index is in the event log, which the next start applies again.
        Err(e) if e.is_index_only() => tracing::warn!(
            error = %telemetry::ErrorChain(&e),
            "the index could not be flushed on shutdown; every accepted event is in the event log and \
             reaches the index at the next start, and the deliveries recorded since the index's last \
             flush are made again"
        ),
        flushed => flushed.map_err(RunError::FinalFlush)?,
    }
    tracing::info!(drained, "hookgate stopped");
    Ok(())
}

fn fixed(limits: ConnLimits) -> SharedLimits {
    Arc::new(ArcSwap::from_pointee(limits))
}
