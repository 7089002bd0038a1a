//! The one place that builds a running gateway from a [`Config`]: the webhook router (every source's
//! stack), the connection limits, the listeners' TLS certificates, the forwarders and the source set
//! that `/stats` and the silence monitor watch.
//!
//! [`run`](crate::run) builds a [`Gateway`] at start with [`Gateway::start`] and a reload applies a new
//! config with [`Gateway::apply`]; both go through the same wiring, so what a reload changes is exactly
//! what start-up would have built from the new file. Wake-ups need no wiring: the store wakes a
//! source's forwarder itself when it queues one of its events (see [`Store::waker`]).
//!
//! What stays for the process's life is not here: the store, the per-source counters, the listeners,
//! the admin service and the background loops (see `lib.rs`).

use std::{sync::Arc, time::SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::{
    forward::Dispatchers,
    layers::{buffer_budget::BufferBudget, rate_limit::Buckets},
    server::{ConnLimits, Listener, Router, SharedLimits, SharedRouter, SharedTls},
    silence::Silence,
    stats::Stats,
    store::Store,
    Config,
};

/// The names of the sources in effect, read by the admin API's `/stats`.
pub(crate) type SourceNames = Arc<ArcSwap<Vec<Arc<str>>>>;

/// The parts of a running gateway that follow its config. Connections, the admin API and the
/// silence task hold clones of the shared handles, so that [`Gateway::apply`] reaches them.
#[derive(Debug)]
pub(crate) struct Gateway {
    store: Store,
    stats: Stats,
    /// The webhook listener's service: swapped, never rebuilt in place.
    pub(crate) router: SharedRouter,
    /// The webhook listener's limits.
    pub(crate) limits: SharedLimits,
    /// The listeners' TLS configs, `None` for a plain listener: whether a listener speaks TLS is
    /// fixed at start (a reload keeps it, see `reload.rs`), its certificate follows the config.
    pub(crate) webhook_tls: SharedTls,
    pub(crate) admin_tls: SharedTls,
    /// One forwarder per source.
    pub(crate) dispatchers: Dispatchers,
    /// The silence monitor's watched sources.
    pub(crate) silence: Silence,
    /// The sources in effect, for `/stats`.
    pub(crate) source_names: SourceNames,
    /// The bytes request bodies may hold at once, shared by every stack the router ever has.
    budget: BufferBudget,
    /// The sources' rate-limit buckets, taken again by every router: a reload does not refill them.
    buckets: Buckets,
}

impl Gateway {
    /// Builds the gateway for `config` on `store`: every source's stack behind the router, and one
    /// forwarder per source, which stop when `shutdown` is cancelled.
    pub(crate) fn start(config: &Config, store: &Store, stats: &Stats, shutdown: &CancellationToken) -> Self {
        let mut this = Self {
            store: store.clone(),
            stats: stats.clone(),
            router: SharedRouter::new(Router::default()),
            limits: Arc::new(ArcSwap::from_pointee(ConnLimits::from(&config.server))),
            webhook_tls: config
                .server
                .tls
                .as_ref()
                .map(|t| Arc::new(ArcSwap::new(t.rustls()))),
            admin_tls: config
                .admin
                .tls
                .as_ref()
                .map(|t| Arc::new(ArcSwap::new(t.rustls()))),
            dispatchers: Dispatchers::start(&[], store, shutdown),
            silence: Silence::default(),
            source_names: Arc::default(),
            budget: BufferBudget::new(config.server.max_buffered_bytes),
            buckets: Buckets::default(),
        };
        this.apply(config);
        this
    }

    /// Rebuilds what follows the config from `config`: the router is swapped (requests in flight
    /// finish on the old stacks), the limits replaced, the listeners' certificates swapped (for
    /// connections accepted from now on) and their expiry reported, every forwarder restarted
    /// gracefully, and the watched source set replaced.
    pub(crate) fn apply(&mut self, config: &Config) {
        self.source_names
            .store(Arc::new(config.sources.iter().map(|s| s.name.clone()).collect()));
        self.router.swap(Router::new(
            config,
            &self.store,
            &self.stats,
            &self.budget,
            &self.buckets,
        ));
        self.limits.store(Arc::new(ConnLimits::from(&config.server)));
        for (shared, tls, listener) in [
            (&self.webhook_tls, &config.server.tls, Listener::Webhook),
            (&self.admin_tls, &config.admin.tls, Listener::Admin),
        ] {
            if let (Some(shared), Some(tls)) = (shared, tls) {
                shared.store(tls.rustls());
                crate::tls::report_expiry(listener.name(), tls, SystemTime::now());
            }
        }
        self.dispatchers.restart(&config.targets());
        self.silence.set_sources(&config.sources, SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{Method, Request, StatusCode};
    use http_body_util::Full;
    use tower::ServiceExt as _;

    use super::*;
    use crate::layers::facts::PeerAddr;

    fn config(sources: &[&str]) -> Config {
        let mut toml = String::new();
        for name in sources {
            toml.push_str(&format!(
                "[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"github\"\n\
                 secrets = [\"s\"]\nupstream = \"http://127.0.0.1:9/{name}\"\n"
            ));
        }
        Config::from_toml(&toml, |_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The status the gateway's router answers an unsigned `POST` to `path` with.
    async fn status(gateway: &Gateway, path: &str) -> StatusCode {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .extension(PeerAddr(peer))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        gateway
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
    }

    fn names(gateway: &Gateway) -> Vec<String> {
        gateway
            .source_names
            .load()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[tokio::test]
    async fn apply_rebuilds_what_start_built_from_the_new_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let stop = CancellationToken::new();
        let mut gateway = Gateway::start(&config(&["a"]), &store, &Stats::default(), &stop);
        assert_eq!(names(&gateway), ["a"]);
        // A source's stack answers an unsigned request 401; a path without a source is 404.
        assert_eq!(status(&gateway, "/hooks/a").await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&gateway, "/hooks/b").await, StatusCode::NOT_FOUND);

        gateway.apply(&config(&["b"]));
        assert_eq!(names(&gateway), ["b"]);
        assert_eq!(status(&gateway, "/hooks/a").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&gateway, "/hooks/b").await, StatusCode::UNAUTHORIZED);

        stop.cancel();
        gateway.dispatchers.join().await;
    }
}
