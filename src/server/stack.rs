//! The only place where the request path's layers are composed.
//!
//! Each source gets its own stack, built once at start-up, so that every layer knows its source without
//! looking it up per request. [`Router`] works out the client IP once, then picks the stack by exact
//! path; a path that names no source has a stack too (rescue over a 404), so every answer, every
//! rejection included, comes out of one rescue. [`SharedRouter`] holds the
//! current `Router` behind an [`ArcSwap`]: a config reload builds a new one and swaps it in, each
//! request is routed by the router current when it arrives, and in-flight requests finish on the old.

use std::{collections::HashMap, convert::Infallible, sync::Arc, task::Poll};

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
        ip_allow::IpAllowLayer,
        rate_limit::{Buckets, RateLimitLayer},
        rescue::{MethodNotAllowed, RescueLayer, UnknownSource},
        verify::VerifyLayer,
        BoxError, ReqBody, ResBody,
    },
    providers::Provider,
    stats::{SourceStats, Stats},
    store::Store,
};

type SourceService = BoxCloneSyncService<Request<ReqBody>, Response<ResBody>, Infallible>;

/// Builds the stack of one source. Order matters: the first layer sees the request first. The client
/// IP is already set: [`Router`] works it out once, before routing.
fn source_stack(
    config: &Config,
    source: &Source,
    store: Store,
    stats: Arc<SourceStats>,
    budget: &BufferBudget,
    buckets: &Buckets,
) -> SourceService {
    let allow = source.allow_ips.clone().map(Arc::from);
    // The bucket outlives this stack: a reload takes the same one again, unrefilled.
    let bucket = source.rate_limit.map(|rate| buckets.bucket(&source.name, rate));
    let accept = Accept::new(
        store,
        source.name.clone(),
        config.store.dedup_window,
        config.store.max_queued,
    );
    let stack = ServiceBuilder::new()
        // Everything inside may fail; rescue answers every error and counts every outcome.
        .layer(RescueLayer::new(source.name.clone(), stats))
        // Before anything that reads the request: a source takes POST, and GET when its sender checks
        // the endpoint with one (the challenge is answered in verify, after the allowlist).
        .filter(Methods::of(&*source.provider))
        // Bounds the whole request, body and durable commit included, against slow clients.
        .timeout(config.server.request_timeout)
        // Cheap checks first: the allowlist needs only the head.
        .layer(IpAllowLayer::new(allow))
        // After ip_allow, so that an address it refuses spends none of the sender's tokens; before
        // body_limit and verify, so that a flood is shed on its head alone (one mutex, no body read).
        .layer(RateLimitLayer::new(bucket))
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

/// The stack of a request whose path names no source: rescue answers it 404, counted under
/// [`crate::telemetry::UNKNOWN_SOURCE`].
fn unknown_source_stack() -> SourceService {
    let stack = ServiceBuilder::new()
        .layer(RescueLayer::unknown_source())
        .service_fn(|_req: Request<ReqBody>| {
            std::future::ready(Err::<Response<ResBody>, BoxError>(UnknownSource.into()))
        });
    BoxCloneSyncService::new(stack)
}

/// The methods a source takes: `POST`, and `GET` when its provider answers a `GET` challenge. Any
/// other method fails with [`MethodNotAllowed`] (405, with `Allow`).
#[derive(Debug, Clone, Copy)]
enum Methods {
    Post,
    GetPost,
}

impl Methods {
    fn of(provider: &dyn Provider) -> Self {
        if provider.answers_get() {
            Self::GetPost
        } else {
            Self::Post
        }
    }
}

impl<B> tower::filter::Predicate<Request<B>> for Methods {
    type Request = Request<B>;

    fn check(&mut self, req: Request<B>) -> Result<Request<B>, BoxError> {
        match (self, req.method()) {
            (_, &Method::POST) | (Self::GetPost, &Method::GET) => Ok(req),
            (Self::Post, _) => Err(MethodNotAllowed::POST.into()),
            (Self::GetPost, _) => Err(MethodNotAllowed::GET_POST.into()),
        }
    }
}

/// Picks a request's stack by exact path.
#[derive(Clone)]
struct Routes {
    by_path: Arc<HashMap<String, SourceService>>,
    unknown: SourceService,
}

impl Service<Request<ReqBody>> for Routes {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<SourceService, Request<ReqBody>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let stack = self.by_path.get(req.uri().path()).unwrap_or(&self.unknown);
        stack.clone().oneshot(req)
    }
}

/// The webhook listener's service: works out the client IP once, then routes the request to its
/// source's stack by exact path, or to the unknown-source stack (404). The default routes nothing.
#[derive(Clone)]
pub(crate) struct Router {
    service: SourceService,
    paths: Arc<[String]>,
}

impl Default for Router {
    fn default() -> Self {
        Self::with_routes(HashMap::new(), Arc::from([]))
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("paths", &self.paths).finish()
    }
}

impl Router {
    /// Builds every source's stack; `stats` holds the per-source counters, `buckets` the rate
    /// limits' state, both kept across rebuilds.
    pub(crate) fn new(
        config: &Config,
        store: &Store,
        stats: &Stats,
        budget: &BufferBudget,
        buckets: &Buckets,
    ) -> Self {
        let limited: Vec<Arc<str>> = config
            .sources
            .iter()
            .filter(|s| s.rate_limit.is_some())
            .map(|s| s.name.clone())
            .collect();
        buckets.retain(&limited);
        let by_path = config
            .sources
            .iter()
            .map(|s| {
                let stats = stats.source(&s.name);
                let stack = source_stack(config, s, store.clone(), stats, budget, buckets);
                (s.path.clone(), stack)
            })
            .collect();
        Self::with_routes(by_path, config.server.trusted_proxies.clone().into())
    }

    fn with_routes(by_path: HashMap<String, SourceService>, trusted: Arc<[ipnet::IpNet]>) -> Self {
        let paths = by_path.keys().cloned().collect();
        let routes = Routes {
            by_path: Arc::new(by_path),
            unknown: unknown_source_stack(),
        };
        let service = ServiceBuilder::new()
            // Once per request, before routing: every answer's log line names the client, an unknown
            // path's too, and an `X-Forwarded-For` that cannot be believed is refused whatever the path.
            .layer(ClientIpLayer::new(trusted))
            .service(routes);
        Self {
            service: BoxCloneSyncService::new(service),
            paths,
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
    type Future = tower::util::Oneshot<SourceService, Request<ReqBody>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = req.map(|b| b.map_err(Into::into).boxed());
        self.service.clone().oneshot(req)
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{header, StatusCode};
    use http_body_util::Full;

    use super::*;
    use crate::layers::facts::PeerAddr;

    const CONFIG: &str = r#"
[server]
trusted_proxies = ["10.0.0.0/8"]

[[sources]]
name = "gh"
path = "/hooks/gh"
provider = "github"
secrets = ["s"]
allow_ips = ["203.0.113.0/24"]
upstream = "http://127.0.0.1:9/gh"
"#;

    struct Rig {
        router: Router,
        stats: Stats,
        _dir: tempfile::TempDir,
        _store: Store,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let config = Config::from_toml(CONFIG, |_| None).unwrap_or_else(|e| panic!("{e}"));
        let stats = Stats::default();
        Rig {
            router: Router::new(
                &config,
                &store,
                &stats,
                &BufferBudget::new(config.server.max_buffered_bytes),
                &Buckets::default(),
            ),
            stats,
            _dir: dir,
            _store: store,
        }
    }

    /// Sends a request from TCP peer `peer` with an optional `X-Forwarded-For`; returns the status,
    /// the `Allow` header and the body.
    async fn send(
        rig: &Rig,
        method: Method,
        path: &str,
        peer: &str,
        forwarded_for: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let peer: SocketAddr = peer.parse().expect("addr");
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .extension(PeerAddr(peer));
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let req = req.body(Full::new(Bytes::from_static(b"{}"))).expect("request");
        let resp = rig.router.clone().oneshot(req).await.expect("infallible");
        let allow = resp
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, allow, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    fn rejected(rig: &Rig, reason: &str) -> u64 {
        let gh: Arc<str> = Arc::from("gh");
        rig.stats
            .source(&gh)
            .snapshot()
            .rejected
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_wrong_method_is_answered_by_the_sources_rescue() {
        let rig = rig();
        let (status, allow, body) = send(&rig, Method::GET, "/hooks/gh", "203.0.113.5:1", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("POST"));
        assert_eq!(body, r#"{"error":"method_not_allowed"}"#);
        assert_eq!(
            rejected(&rig, "method_not_allowed"),
            1,
            "counted under the source"
        );
        // Before the allowlist: a wrong method from anywhere is 405, not 403.
        let (status, _, _) = send(&rig, Method::PUT, "/hooks/gh", "198.51.100.1:1", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(rejected(&rig, "ip_not_allowed"), 0);
    }

    #[tokio::test]
    async fn an_unknown_path_is_answered_by_a_rescue_and_counts_under_no_source() {
        let rig = rig();
        for method in [Method::POST, Method::GET] {
            let (status, allow, body) = send(&rig, method, "/hooks/nope", "203.0.113.5:1", None).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(allow, None);
            assert_eq!(body, r#"{"error":"unknown_source"}"#);
        }
        let names: Vec<_> = rig.stats.snapshot().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [Arc::from("gh")],
            "no /stats entry for a path without a source"
        );
    }

    #[tokio::test]
    async fn the_client_ip_worked_out_before_routing_is_the_one_the_allowlist_checks() {
        let rig = rig();
        // From a trusted proxy, the client is the forwarded address: allowed, then refused by verify.
        let (status, _, body) =
            send(&rig, Method::POST, "/hooks/gh", "10.0.0.1:1", Some("203.0.113.9")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _, _) = send(
            &rig,
            Method::POST,
            "/hooks/gh",
            "10.0.0.1:1",
            Some("198.51.100.1"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // From an untrusted peer, the header is ignored.
        let (status, _, _) = send(
            &rig,
            Method::POST,
            "/hooks/gh",
            "198.51.100.1:1",
            Some("203.0.113.9"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A trusted proxy's header that does not parse is refused whatever the path.
        for path in ["/hooks/gh", "/hooks/nope"] {
            let (status, _, body) = send(&rig, Method::POST, path, "10.0.0.1:1", Some("garbage")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(body, r#"{"error":"malformed_forwarded_for"}"#);
        }
    }
}
