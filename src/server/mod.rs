//! The webhook listener: accept loop, HTTP/1.1 and HTTP/2 connections, graceful drain.
//!
//! Connections are served by hyper-util's auto builder with bounded header sizes; a semaphore caps
//! concurrent connections. Every connection must deliver its first complete request head within
//! `header_read_timeout` of being accepted, whatever its protocol, or it is closed: hyper's own
//! HTTP/1.1 header timeout only starts once the auto builder has chosen HTTP/1.1, and the choice
//! waits for bytes, so a silent socket (or one that sent `P`, a prefix of the HTTP/2 preface) would
//! otherwise hold a connection slot forever. Later heads on a kept-alive HTTP/1.1 connection are
//! bounded by hyper's timer, which restarts for each head. On shutdown the listener is closed first, then
//! in-flight requests get `shutdown_timeout` to finish.
//!
//! With TLS (`[server.tls]`, `[admin.tls]`) a listener speaks TLS only: TLS 1.2 and 1.3, ALPN `h2`
//! and `http/1.1`. The handshake runs in the connection's task, between accept and the first request
//! head, so it counts against `header_read_timeout` like everything else before the head: a slow or
//! abandoned handshake holds one connection slot for that long at most, never the accept loop. Each
//! connection is accepted with the TLS config current when it was accepted: a reload that swaps the
//! certificate applies to new connections, and open ones keep theirs.
//!
//! With `[server] proxy_protocol`, each connection's PROXY header is read first, before the TLS
//! handshake and within the same deadline (see [`proxy_protocol`]).
//!
//! The limits are read through an [`ArcSwap`] so that a config reload applies to what can change
//! safely: a new `header_read_timeout` applies to connections accepted afterwards, a new
//! `shutdown_timeout` to the next drain. `max_connections` sizes the semaphore once, at start.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use ipnet::IpNet;
use proxy_protocol::{Refused, Rewind, Start};
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::{
    config::ServerConfig,
    layers::{
        facts::{LocalAddr, PeerAddr, ProxiedClient, RequestId},
        rescue, ResBody,
    },
    telemetry,
};

/// Per-listener limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Time a client has to send a request head.
    pub(crate) header_read_timeout: Duration,
    /// Most concurrent connections.
    pub(crate) max_connections: usize,
    /// Drain time on shutdown.
    pub(crate) shutdown_timeout: Duration,
    /// With `[server] proxy_protocol`, the peers whose connections start with a PROXY header (it is
    /// refused from the others); `None`: no PROXY header is read.
    pub(crate) proxy_protocol: Option<Arc<[IpNet]>>,
}

impl From<&ServerConfig> for ConnLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            max_connections: c.max_connections,
            shutdown_timeout: c.shutdown_timeout,
            proxy_protocol: c.proxy_protocol.then(|| c.trusted_proxies.clone().into()),
        }
    }
}

/// A listener's limits, swapped on config reload.
pub(crate) type SharedLimits = Arc<ArcSwap<ConnLimits>>;

/// A listener's TLS config, swapped on config reload; `None` for a plain-HTTP listener (whether a
/// listener speaks TLS is fixed at start).
pub(crate) type SharedTls = Option<Arc<ArcSwap<rustls::ServerConfig>>>;

pub(crate) mod proxy_protocol;
pub(crate) mod stack;

pub(crate) use stack::{Router, SharedRouter};

/// Most request headers accepted on HTTP/1.1.
const MAX_HEADERS: usize = 100;
/// Largest request head (HTTP/1.1 buffer) and header list (HTTP/2), in bytes: Node.js's default, and
/// many times a webhook's head. On HTTP/1.1 it also bounds each connection's read buffer, which hyper
/// grows to about twice this size while it reads a large body: with 64 KiB here, 64 connections
/// sending 64 KiB bodies held 8 MiB of read buffers; with 16 KiB, hookgate's peak RSS under that load
/// is about 7 MiB lower (`bench/load.py`).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Which listener [`serve`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The senders': a request hyper refuses before the layers see it is counted and logged as a
    /// rejection, as the layers' own are.
    Webhook,
    /// The admin API's.
    Admin,
}

impl Listener {
    /// Its `listener` label in metrics and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Admin => "admin",
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then drains for at most
/// `limits.shutdown_timeout` (as it is then). Returns whether the drain finished in time.
pub(crate) async fn serve<S>(
    kind: Listener,
    listener: TcpListener,
    service: S,
    limits: SharedLimits,
    tls: SharedTls,
    shutdown: impl Future<Output = ()>,
) -> bool
where
    S: Service<Request<Incoming>, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut current = limits.load_full();
    let mut builder = Arc::new(conn_builder(&current));
    let graceful = GracefulShutdown::new();
    // Sized once: shrinking a semaphore under held permits is not safe, so a new max_connections
    // needs a restart (the reload says so).
    let connections = Arc::new(Semaphore::new(current.max_connections));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE or ECONNABORTED: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let accepted_at = Instant::now();
        let latest = limits.load_full();
        if latest.header_read_timeout != current.header_read_timeout {
            // Connections already open keep the builder (and timeout) they were served with.
            builder = Arc::new(conn_builder(&latest));
        }
        current = latest;
        // Everything a connection does before its first request head counts against this deadline,
        // the TLS handshake included.
        let head_deadline = accepted_at + current.header_read_timeout;
        // The config current now: a reload's new certificate is for connections accepted after it.
        let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.load_full()));
        let _ = stream.set_nodelay(true);
        // `None` only if the socket is already gone; the admin listener then refuses the request.
        let local = stream.local_addr().ok().map(LocalAddr);
        let proxy = current.proxy_protocol.clone();
        let service = service.clone();
        // Taken now, before a shutdown can begin: the drain waits for this connection too, handshake
        // included, and a connection watched after the shutdown began is told at once.
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let (stream, client) = match proxy {
                None => (Rewind::plain(stream), None),
                Some(trusted) => {
                    let start = proxy_protocol::read_start(stream, peer.ip(), &trusted);
                    match tokio::time::timeout_at(head_deadline, start).await {
                        Ok(Start::Serve { stream, client }) => (stream, client),
                        Ok(Start::Refuse(refused)) => return refuse_proxied(kind, peer, refused),
                        Err(_) => return refuse_proxied(kind, peer, Refused::Timeout),
                        Ok(Start::Gone) => return,
                    }
                }
            };
            // The address the layers see, and a refusal by hyper is logged with.
            let client_addr = client.unwrap_or(peer);
            let head_seen = Arc::new(Notify::new());
            let svc = service.map_request({
                let head_seen = head_seen.clone();
                move |mut req: Request<Incoming>| {
                    // hyper calls the service once a head is complete: the deadline is met.
                    head_seen.notify_one();
                    let id = RequestId::from_headers(req.headers());
                    req.extensions_mut().insert(PeerAddr(peer));
                    if let Some(client) = client {
                        req.extensions_mut().insert(ProxiedClient(client));
                    }
                    if let Some(local) = local {
                        req.extensions_mut().insert(local);
                    }
                    req.extensions_mut().insert(id);
                    req
                }
            });
            let served = match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                    first_head_by(watcher.watch(conn.into_owned()), &head_seen, head_deadline).await
                }
                Some(acceptor) => match tokio::time::timeout_at(head_deadline, acceptor.accept(stream)).await
                {
                    Ok(Ok(stream)) => {
                        let conn =
                            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                        first_head_by(watcher.watch(conn.into_owned()), &head_seen, head_deadline).await
                    }
                    Ok(Err(e)) => {
                        // A client that does not trust the certificate, a missing or refused client
                        // certificate, or plain HTTP sent to a TLS listener.
                        metrics::counter!(telemetry::TLS_HANDSHAKE_FAILURES, "listener" => kind.name())
                            .increment(1);
                        tracing::debug!(error = %e, %peer, client = %client_addr, listener = kind.name(), "TLS handshake failed");
                        drop(permit);
                        return;
                    }
                    Err(_) => {
                        metrics::counter!(telemetry::TLS_HANDSHAKE_FAILURES, "listener" => kind.name())
                            .increment(1);
                        tracing::debug!(%peer, client = %client_addr, listener = kind.name(), "no TLS handshake within header_read_timeout; connection closed");
                        drop(permit);
                        return;
                    }
                },
            };
            let Some(result) = served else {
                tracing::debug!(%peer, "no request head within header_read_timeout; connection closed");
                drop(permit);
                return;
            };
            if let Err(e) = result {
                let head_too_large = e
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_parse_too_large);
                if head_too_large && kind == Listener::Webhook {
                    rescue::refused_by_http(
                        "head_too_large",
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        client_addr.ip(),
                    );
                } else {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let shutdown_timeout = limits.load().shutdown_timeout;
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(shutdown_timeout) => {
            tracing::warn!(timeout = ?shutdown_timeout, "in-flight requests did not finish in time");
            false
        }
    }
}

/// Counts and logs a connection refused for its PROXY header (never its bytes); returning drops the
/// connection, which closes it.
fn refuse_proxied(kind: Listener, peer: std::net::SocketAddr, refused: Refused) {
    let reason = refused.reason();
    metrics::counter!(telemetry::PROXY_PROTOCOL_REFUSED, "listener" => kind.name(), "reason" => reason)
        .increment(1);
    match refused {
        // A slow or silent client of the balancer, as without the PROXY protocol.
        Refused::Timeout => {
            tracing::debug!(%peer, reason, "no PROXY header within header_read_timeout; connection closed")
        }
        _ => tracing::warn!(%peer, reason, "PROXY protocol header refused; connection closed"),
    }
}

/// Runs `conn` to its end, unless no request head has arrived (`head_seen` notified) by `deadline`:
/// then it is dropped, which closes the socket, and the result is `None`.
async fn first_head_by<F: Future>(conn: F, head_seen: &Notify, deadline: Instant) -> Option<F::Output> {
    tokio::pin!(conn);
    tokio::select! {
        biased;
        out = &mut conn => return Some(out),
        () = head_seen.notified() => {}
        () = tokio::time::sleep_until(deadline) => return None,
    }
    Some(conn.await)
}

/// The connection builder: HTTP/1.1 and HTTP/2 with bounded heads.
fn conn_builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}
