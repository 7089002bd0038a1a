//! A loopback app: records every request into a channel and answers as scripted; over plain HTTP,
//! or over TLS ([`TestSink::start_tls`]).

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

/// One request the app received.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header's value as text, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// What the app answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and these headers.
    Status(u16, Vec<(&'static str, String)>),
}

impl From<u16> for Reply {
    fn from(status: u16) -> Self {
        Reply::Status(status, Vec::new())
    }
}

/// The running app. Replies come from the script, then 200.
pub struct TestSink {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    task: JoinHandle<()>,
}

impl TestSink {
    /// Starts on an ephemeral 127.0.0.1 port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts on `addr` (to bring an app back up on the port it had).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::launch(addr, None).await
    }

    /// Starts on an ephemeral 127.0.0.1 port, speaking TLS with `config` (an https:// app).
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Self {
        Self::launch(
            "127.0.0.1:0".parse().expect("addr"),
            Some(TlsAcceptor::from(config)),
        )
        .await
    }

    async fn launch(addr: SocketAddr, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let task = tokio::spawn({
            let script = script.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (tx, script, tls) = (tx.clone(), script.clone(), tls.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (tx, script) = (tx.clone(), script.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                let target = parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let reply = script
                                    .lock()
                                    .expect("lock")
                                    .pop_front()
                                    .unwrap_or(Reply::from(200));
                                let _ = tx.send(Received {
                                    version: parts.version,
                                    method: parts.method,
                                    target,
                                    headers: parts.headers,
                                    body,
                                });
                                let Reply::Status(status, headers) = reply;
                                let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                                *resp.status_mut() = StatusCode::from_u16(status).expect("valid status");
                                for (k, v) in headers {
                                    resp.headers_mut().insert(k, v.parse().expect("valid header"));
                                }
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match tls {
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                            Some(tls) => {
                                // A refused handshake (the gateway's CA is another) just ends here.
                                if let Ok(stream) = tls.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                                }
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            rx,
            script,
            task,
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `https://127.0.0.1:port{path}`, for a sink started with [`TestSink::start_tls`].
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The next replies, in order; after them the app answers 200.
    pub fn script(&self, replies: impl IntoIterator<Item = impl Into<Reply>>) {
        self.script
            .lock()
            .expect("lock")
            .extend(replies.into_iter().map(Into::into));
    }

    /// The next request received, waiting at most `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.rx.recv()).await.ok().flatten()
    }

    /// Waits for `n` requests, at most `within` in all; panics if fewer arrive.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => got.push(r),
                _ => panic!("expected {n} requests within {within:?}, got {}", got.len()),
            }
        }
        got
    }

    /// Asserts that nothing more arrives within `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Some(r) = self.next(quiet).await {
            panic!(
                "unexpected request: {} {} id={}",
                r.method,
                r.target,
                r.header("x-hookgate-event-id")
            );
        }
    }

    /// Stops accepting (the app goes down); returns its address for [`TestSink::start_on`].
    pub fn shut(self) -> SocketAddr {
        self.task.abort();
        self.addr
    }
}

impl Drop for TestSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
