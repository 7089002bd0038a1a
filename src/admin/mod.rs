//! The admin listener: health probes, metrics and the admin API, never on the webhook listener, and on
//! loopback by default.
//!
//! Every request, probes included, must be addressed to the listener (`Host`), and a change must not
//! come from a page of another origin (`Origin`): see `origin.rs`. Refusals are 403 `forbidden`.
//!
//! Open to anyone who can reach the listener (and names it in `Host`):
//!
//! - `/healthz` (alias `/livez`) answers 200 while the process runs.
//! - `/readyz` answers 200 once the store is open and the listeners serve and an event can be made
//!   durable now; 503, with the reason, during shutdown and while it cannot: a sync of the event
//!   log failed or has run for 5 s (a frozen filesystem), the store's files are gone or replaced,
//!   the volume has no room for the next records, or the index failed to write (sled out of space).
//! - `/metrics` renders the Prometheus text format; the event gauges are read from the store at scrape time.
//!
//! The admin API (JSON, see `api.rs`, the types in [`wire`] and the README's "Admin API" section) requires
//! `Authorization: Bearer <token>` when `[admin] token` is set, compared in constant time; it is open
//! without a token, which the config allows only on a loopback listener:
//!
//! | route                          | does                                              |
//! |--------------------------------|---------------------------------------------------|
//! | `GET /events`                  | lists events, newest first, filtered              |
//! | `GET /events/{id}`             | one event with its attempt history and headers    |
//! | `DELETE /events/{id}`          | deletes one event (its dedup mark stays)          |
//! | `POST /events/{id}/replay`     | queues one event again, due now                   |
//! | `POST /replay`                 | queues the matching events again (dead by default)|
//! | `DELETE /dlq`                  | deletes the matching dead letters                 |
//! | `GET /stats`                   | per-source counters and queue sizes               |
//! | `POST /reload`                 | re-reads the config through the [`Reloader`]      |
//!
//! It answers errors as JSON: 403 `forbidden` (with a `message` naming the header), 401 `unauthorized`
//! (with `WWW-Authenticate: Bearer`), 400 `bad_request`
//! (with a `message` naming the parameter), 404 `not_found`, 405 `method_not_allowed`, 503
//! `store_unavailable` or `reload_unavailable`.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};
use tower::Service;

use crate::{
    config::Config,
    layers::{
        facts::{LocalAddr, PeerAddr},
        ResBody,
    },
    stats::Stats,
    store::Store,
    telemetry,
};

mod allow;
mod api;
mod auth;
mod origin;
mod readiness;
pub mod wire;

pub use readiness::Readiness;

use self::{allow::Allow, api::ApiError, auth::TokenDigest, origin::AllowedHosts};

/// The outcome of a config reload, as `POST /reload` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Whether the new config is now in use (false: it was invalid and the old one stays).
    pub applied: bool,
    /// Every problem found in the new config, one message per problem (empty when applied).
    pub errors: Vec<String>,
    /// Keys whose change was not applied and needs a restart, e.g. `server.listen`.
    pub restart_required: Vec<String>,
}

/// Asks for a reload: send a oneshot sender, receive the report on it. `lib.rs` owns the receiving end.
pub type Reloader = mpsc::Sender<oneshot::Sender<ReloadReport>>;

/// Whether a source is currently silent (no accepted event within its `expect_within`), for `/stats`.
/// Supplied by the silence monitor; without one, every source reads as not silent.
pub type SilenceCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The configured source names, read on every `/stats` request so that a config reload shows.
pub type SourceNames = Arc<dyn Fn() -> Vec<Arc<str>> + Send + Sync>;

/// What the admin API needs beyond the store.
#[derive(Clone)]
pub(crate) struct AdminApi {
    /// The bearer token's digest, if a token is configured.
    token: Option<TokenDigest>,
    /// The names the listener answers to besides its address and `localhost`.
    hosts: AllowedHosts,
    /// Per-source request counters since start.
    stats: Stats,
    /// The configured sources, one `/stats` entry each.
    sources: SourceNames,
    /// The silence monitor's verdict per source; `None` reads as "not silent".
    silent: Option<SilenceCheck>,
    /// Where `POST /reload` sends its request; `None` answers 503 `reload_unavailable`.
    reloader: Option<Reloader>,
}

impl AdminApi {
    /// The API for `config`'s token and sources (fixed: a reload that changes them needs
    /// [`AdminApi::with_sources`] to show), with no silence monitor and no reloader.
    pub(crate) fn new(config: &Config, stats: Stats) -> Self {
        let names: Vec<Arc<str>> = config.sources.iter().map(|s| s.name.clone()).collect();
        Self {
            token: config.admin.token.as_ref().map(TokenDigest::new),
            hosts: AllowedHosts::new(&config.admin.allowed_hosts),
            stats,
            sources: Arc::new(move || names.clone()),
            silent: None,
            reloader: None,
        }
    }

    /// Reads the configured source names from `sources` on each `/stats` (for hot reload).
    pub(crate) fn with_sources(mut self, sources: SourceNames) -> Self {
        self.sources = sources;
        self
    }

    /// Reports `silent` per source in `/stats`.
    pub(crate) fn with_silence(mut self, silent: SilenceCheck) -> Self {
        self.silent = Some(silent);
        self
    }

    /// Serves `POST /reload` through `reloader`.
    pub(crate) fn with_reloader(mut self, reloader: Option<Reloader>) -> Self {
        self.reloader = reloader;
        self
    }
}

impl fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminApi")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("silence_monitor", &self.silent.is_some())
            .field("reloader", &self.reloader.is_some())
            .finish_non_exhaustive()
    }
}

/// Answers admin requests.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    store: Store,
    readiness: Readiness,
    api: Arc<AdminApi>,
}

impl Admin {
    pub(crate) fn new(store: Store, readiness: Readiness, api: AdminApi) -> Self {
        Self {
            store,
            readiness,
            api: Arc::new(api),
        }
    }

    /// `/healthz`, `/livez`, `/readyz` and `/metrics`: open, plain text.
    async fn probe(&self, method: &Method, path: &str) -> Response<ResBody> {
        if !Allow::GET_HEAD.permits(method) {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut().insert(header::ALLOW, Allow::GET_HEAD.header());
            return resp;
        }
        match path {
            "/readyz" if !self.readiness.is_ready() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready: not serving\n")
            }
            "/readyz" => match self.store.readiness().await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => {
                    let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, "");
                    *resp.body_mut() = ResBody::new(Bytes::from(format!("not ready: {why}\n")));
                    resp
                }
            },
            "/metrics" => {
                match self.store.counts_now().await {
                    Ok(counts) => {
                        for (state, n) in [
                            ("queued", counts.queued),
                            ("dead", counts.dead),
                            ("delivered", counts.delivered),
                        ] {
                            metrics::gauge!(telemetry::EVENTS, "state" => state).set(n as f64);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "counting events for /metrics failed"),
                }
                let mut resp = Response::new(ResBody::new(Bytes::from(telemetry::render())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => text(StatusCode::OK, "ok\n"),
        }
    }

    async fn handle(self, parts: http::request::Parts) -> Response<ResBody> {
        let path = parts.uri.path();
        let local = parts.extensions.get::<LocalAddr>().map(|l| l.0);
        if let Err(refused) = self.api.hosts.check(&parts, local) {
            let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0);
            // Host and Origin are not secrets, and say which name to allow if it was legitimate.
            let host = parts
                .headers
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let origin = parts
                .headers
                .get(header::ORIGIN)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            tracing::warn!(peer = ?peer, method = %parts.method, path, refused = ?refused, host = ?host, origin = ?origin, "admin request refused: not addressed to this listener or from another origin");
            return ApiError::Forbidden(refused.message()).into_response();
        }
        if matches!(path, "/healthz" | "/livez" | "/readyz" | "/metrics") {
            let method = parts.method.clone();
            let path = path.to_owned();
            return self.probe(&method, &path).await;
        }
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0);
        if let Some(token) = &self.api.token {
            if !token.admits(&parts.headers) {
                // Never log the header: a near-miss token is still a secret.
                tracing::warn!(peer = ?peer, method = %parts.method, path, "admin API request without a valid token");
                return ApiError::Unauthorized.into_response();
            }
        }
        let resp = match api::answer(&self.store, &self.api, &parts).await {
            Ok(resp) => resp,
            Err(e) => {
                if let ApiError::Store(cause) = &e {
                    metrics::counter!(telemetry::STORE_ERRORS, "operation" => "admin").increment(1);
                    tracing::error!(error = %cause, path, "admin API: the store failed");
                }
                e.into_response()
            }
        };
        // One line per API request; reads at debug, changes (an audit trail) at info.
        let status = resp.status().as_u16();
        if parts.method == Method::GET || parts.method == Method::HEAD {
            tracing::debug!(peer = ?peer, method = %parts.method, path, status, "admin API request");
        } else {
            tracing::info!(peer = ?peer, method = %parts.method, path, status, "admin API request");
        }
        resp
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut resp = Response::new(ResBody::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // No route reads a body: every parameter is in the path or the query.
        let (parts, _body) = req.into_parts();
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(parts).await) })
    }
}

#[cfg(test)]
mod tests;
