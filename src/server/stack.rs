//! The only place where the request path's layers are composed.
//!
//! Each source gets its own stack, built once at start-up, so that every layer knows its source without
//! looking it up per request. [`Router`] picks the stack by exact path. [`SharedRouter`] holds the
//! current `Router` behind an [`ArcSwap`]: a config reload builds a new one and swaps it in, each
//! request is routed by the router current when it arrives, and in-flight requests finish on the old.

use std::{collections::HashMap, convert::Infallible, future::Future, pin::Pin, sync::Arc, task::Poll};

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tower::{util::BoxCloneSyncService, Service, ServiceBuilder, ServiceExt};

use crate::{
    config::{Config, Source},
    layers::{
        accept::Accept,
        body_limit::BodyLimitLayer,
        buffer_budget::BufferBudget,
        client_ip::ClientIpLayer,
        facts::{ClientIp, PeerAddr, RequestId},
        ip_allow::IpAllowLayer,
        rescue::{self, MethodNotAllowed, RescueLayer, UnknownSource},
        verify::VerifyLayer,
        BoxError, ReqBody, ResBody,
    },
    stats::{SourceStats, Stats},
    store::Store,
    telemetry,
};

type SourceService = BoxCloneSyncService<Request<ReqBody>, Response<ResBody>, Infallible>;

/// Builds the stack of one source. Order matters: the first layer sees the request first.
fn source_stack(
    config: &Config,
    source: &Source,
    store: Store,
    stats: Arc<SourceStats>,
    budget: &BufferBudget,
) -> SourceService {
    let trusted: Arc<[_]> = config.server.trusted_proxies.clone().into();
    let allow = source.allow_ips.clone().map(Arc::from);
    let accept = Accept::new(store, source.name.clone(), config.store.dedup_window);
    let stack = ServiceBuilder::new()
        // Outside rescue, so that rescue's log line names the client.
        .layer(ClientIpLayer::new(trusted))
        // Everything inside may fail; rescue answers every error and counts every outcome.
        .layer(RescueLayer::new(source.name.clone(), stats))
        // Bounds the whole request, body and durable commit included, against slow clients.
        .timeout(config.server.request_timeout)
        // Cheap checks first: the allowlist needs only the head.
        .layer(IpAllowLayer::new(allow))
        // Must be outside verify, which reads the body.
        .layer(BodyLimitLayer::new(config.server.max_body_size))
        // Buffers the body within the process-wide budget, and holds it until the answer is ready.
        .layer(VerifyLayer::new(
            source.provider.clone(),
            source.enforcement,
            budget.clone(),
        ))
        .service(accept);
    BoxCloneSyncService::new(stack)
}

#[derive(Clone)]
struct Route {
    source: Arc<str>,
    stats: Arc<SourceStats>,
    service: SourceService,
}

/// Routes requests to their source's stack by exact path; unknown paths get a 404. The default routes
/// nothing.
#[derive(Clone, Default)]
pub(crate) struct Router {
    routes: Arc<HashMap<String, Route>>,
    trusted: Arc<[ipnet::IpNet]>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("paths", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// Builds every source's stack; `stats` holds the per-source counters.
    pub(crate) fn new(config: &Config, store: &Store, stats: &Stats, budget: &BufferBudget) -> Self {
        let routes = config
            .sources
            .iter()
            .map(|s| {
                let source_stats = stats.source(&s.name);
                let service = source_stack(config, s, store.clone(), source_stats.clone(), budget);
                (
                    s.path.clone(),
                    Route {
                        source: s.name.clone(),
                        stats: source_stats,
                        service,
                    },
                )
            })
            .collect();
        Self {
            routes: Arc::new(routes),
            trusted: config.server.trusted_proxies.clone().into(),
        }
    }
}

impl<B> Service<Request<B>> for Router
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let request_id = req.extensions().get::<RequestId>();
        let Some(route) = self.routes.get(req.uri().path()) else {
            let client = client_of(&req, &self.trusted);
            let source: Arc<str> = Arc::from(telemetry::UNKNOWN_SOURCE);
            return Box::pin(std::future::ready(Ok(rescue::respond(
                &source,
                None,
                &UnknownSource,
                client,
                request_id,
                started,
            ))));
        };
        if req.method() != Method::POST {
            let client = client_of(&req, &self.trusted);
            // Its source is known, but the method is not: counted under the source.
            return Box::pin(std::future::ready(Ok(rescue::respond(
                &route.source,
                Some(&route.stats),
                &MethodNotAllowed,
                client,
                request_id,
                started,
            ))));
        }
        let req = req.map(|b| b.map_err(Into::into).boxed());
        Box::pin(route.service.clone().oneshot(req))
    }
}

/// The current [`Router`], swapped on config reload. Cheap to clone; connections hold clones.
#[derive(Clone, Debug)]
pub(crate) struct SharedRouter {
    current: Arc<ArcSwap<Router>>,
}

impl SharedRouter {
    pub(crate) fn new(router: Router) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(router)),
        }
    }

    /// Routes requests that arrive from now on with `router`.
    pub(crate) fn swap(&self, router: Router) {
        self.current.store(Arc::new(router));
    }
}

impl<B> Service<Request<B>> for SharedRouter
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = <Router as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The returned future owns clones of the chosen stack, not the router: a swap during the
        // request does not affect it.
        let mut router = Router::clone(&self.current.load());
        router.call(req)
    }
}

/// The client to name in the log line of a request answered before any source's stack; `None` when a
/// trusted proxy's `X-Forwarded-For` does not parse (the proxy is not the client).
fn client_of<B>(req: &Request<B>, trusted: &[ipnet::IpNet]) -> Option<ClientIp> {
    if let Some(ip) = req.extensions().get::<ClientIp>() {
        return Some(*ip);
    }
    let peer = req.extensions().get::<PeerAddr>()?;
    crate::layers::client_ip::client_ip(peer.0.ip(), req.headers(), trusted)
        .ok()
        .map(ClientIp)
}
