//! The webhook listener: accept loop, HTTP/1.1 and HTTP/2 connections, graceful drain.
//!
//! Connections are served by hyper-util's auto builder with a header-read timeout and bounded header
//! sizes; a semaphore caps concurrent connections. On shutdown the listener is closed first, then
//! in-flight requests get `shutdown_timeout` to finish.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http::Request;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::{Service, ServiceExt};

use crate::{config::ServerConfig, layers::client_ip::PeerAddr, layers::ResBody};

/// Per-listener limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time a client has to send a request head.
    pub(crate) header_read_timeout: Duration,
    /// Most concurrent connections.
    pub(crate) max_connections: usize,
    /// Drain time on shutdown.
    pub(crate) shutdown_timeout: Duration,
}

impl From<&ServerConfig> for ConnLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            max_connections: c.max_connections,
            shutdown_timeout: c.shutdown_timeout,
        }
    }
}

pub(crate) mod stack;

pub(crate) use stack::Router;

/// Most request headers accepted on HTTP/1.1.
const MAX_HEADERS: usize = 100;
/// Largest request head (HTTP/1.1 buffer) and header list (HTTP/2), in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `service` on `listener` until `shutdown` completes, then drains for at most
/// `limits.shutdown_timeout`. Returns whether the drain finished in time.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    config: ConnLimits,
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.max_connections));
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
        let _ = stream.set_nodelay(true);
        let svc = service.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            req
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(config.shutdown_timeout) => {
            tracing::warn!(timeout = ?config.shutdown_timeout, "in-flight requests did not finish in time");
            false
        }
    }
}
