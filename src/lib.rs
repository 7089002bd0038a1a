//! hookgate: a webhook gateway that sits in front of an app.
//!
//! It checks each webhook's sender (client IP, allowlist, body size, signature), remembers event ids to
//! drop duplicates, stores each accepted event durably before answering 200, and forwards the events
//! to the app with retries and dead letters.
//!
//! ```text
//! provider -> client IP -> IP allowlist -> body limit -> verify -> dedup + durable enqueue -> 200
//! forwarder: queue -> app over HTTP, retries with backoff, dead letters
//! ```
//!
//! # Layout
//!
//! - [`config`]: the TOML file, parsed then validated ([`Config::from_toml`]).
//! - `server`: the webhook listener and, in `server/stack.rs`, the one place where layers are composed.
//! - `layers`: the request path, one small layer per concern, and `rescue`, which maps errors to answers.
//! - [`providers`]: one file per signature scheme behind the [`providers::Provider`] trait.
//! - [`store`]: sled behind a narrow API; dedup and enqueue in one transaction, group commit.
//! - [`forward`]: the delivery workers, retries and dead letters.
//! - `admin`: `/healthz`, `/readyz`, `/metrics` and the admin API (events, replay, dead letters,
//!   stats, reload) on a listener of their own.
//! - [`capture`]: offline verification of a captured request, for `hookgate verify`.
//!
//! [`run`] takes listeners that are already bound and a shutdown future, so that tests can bind
//! `127.0.0.1:0` and run the real gateway.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, unreachable_pub)]
#![warn(missing_docs)]

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub mod admin;
pub mod capture;
pub mod config;
pub mod forward;
pub(crate) mod layers;
pub mod providers;
mod server;
pub mod stats;
pub mod store;
pub mod telemetry;

pub use config::{Config, ConfigError};

use server::{ConnLimits, Router};
use store::{Store, StoreError};

/// How often expired dedup marks are removed.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The admin listener's limits: few, short-lived connections from probes and scrapers.
const ADMIN_LIMITS: ConnLimits = ConnLimits {
    header_read_timeout: Duration::from_secs(5),
    max_connections: 64,
    shutdown_timeout: Duration::from_secs(1),
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
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    telemetry::prometheus();
    let store = Store::open(&config.store.path).map_err(|source| RunError::OpenStore {
        path: config.store.path.clone(),
        source,
    })?;
    // The store's wakers: the accept path, the forwarder and admin replays share one per source.
    let wakes: HashMap<Arc<str>, Arc<Notify>> = config
        .sources
        .iter()
        .map(|s| (s.name.clone(), store.waker(&s.name)))
        .collect();
    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    forward::spawn(&config.sources, &store, &wakes, &stop, &mut background);
    background.spawn(store::purge_loop(store.clone(), PURGE_EVERY, stop.clone()));
    background.spawn(store::retention_loop(
        store.clone(),
        config.store.retention,
        stop.clone(),
    ));

    let stats = stats::Stats::default();
    let readiness = admin::Readiness::default();
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn({
        // No reloader yet: `POST /reload` answers 503 until the reload loop is wired here.
        let api = admin::AdminApi::new(&config, stats.clone()).with_reloader(None);
        let svc = admin::Admin::new(store.clone(), readiness.clone(), api);
        let stop = admin_stop.clone();
        server::serve(listeners.admin, svc, ADMIN_LIMITS, async move {
            stop.cancelled().await
        })
    });

    let router = Router::new(&config, &store, &wakes, &stats);
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.admin.listen,
        sources = config.sources.len(),
        store = %config.store.path.display(),
        "hookgate is serving"
    );
    readiness.set(true);
    let drained = server::serve(listeners.webhook, router, (&config.server).into(), async {
        shutdown.await;
        readiness.set(false);
        tracing::info!("shutting down: no new connections, draining in-flight requests");
    })
    .await;

    stop.cancel();
    while background.join_next().await.is_some() {}
    let flushed = store.flush().await;
    admin_stop.cancel();
    let _ = admin_task.await;
    flushed.map_err(RunError::FinalFlush)?;
    tracing::info!(drained, "hookgate stopped");
    Ok(())
}
