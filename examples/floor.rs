//! The load benchmark's "floor" (`bench/load.py`): the least a verifying, forwarding gateway does, with
//! nothing stored. It checks each request's GitHub signature (HMAC-SHA256 of the raw body), answers 200
//! at once and forwards the event to the app in the background, on what hookgate is built on: hyper's
//! server and pooled client, tokio's multi-threaded runtime, and jemalloc with hookgate's options. An
//! event is lost if the app is down or the process stops: this is a measuring stick, not a gateway.
//!
//! `cargo run --release --example floor -- <listen addr> <upstream url> <secret>`
//!
//! What hookgate costs above it is its own work: dedup, the fsynced log, the index, retries and the
//! bookkeeping of every delivery, its logs and its metrics.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use sha2::Sha256;
use tokio::{net::TcpListener, sync::Semaphore};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// hookgate's jemalloc options (see `src/main.rs`).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 47] = b"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

/// Forwards in flight at most, as hookgate's default `forward.concurrency`; a request waits for one.
const IN_FLIGHT: usize = 64;

/// Request headers not passed on: hop-by-hop ones, and those the client sets itself.
const DROPPED: [header::HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

struct Floor {
    upstream: Uri,
    secret: Vec<u8>,
    client: Client<HttpConnector, Full<Bytes>>,
    in_flight: Arc<Semaphore>,
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

impl Floor {
    /// Whether `X-Hub-Signature-256` is the HMAC-SHA256 of `body` (compared in constant time).
    fn signed(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(hex_mac) = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
        else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_mac) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }

    /// POSTs the event to the app and reads its whole answer; a failure is dropped.
    async fn forward(&self, mut headers: HeaderMap, body: Bytes) {
        for name in &DROPPED {
            headers.remove(name);
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.upstream.clone();
        *req.headers_mut() = headers;
        if let Ok(resp) = self.client.request(req).await {
            let _ = resp.into_body().collect().await;
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Answer, Infallible> {
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return Ok(answer(StatusCode::BAD_REQUEST));
        };
        if !self.signed(&parts.headers, &body) {
            return Ok(answer(StatusCode::UNAUTHORIZED));
        }
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tokio::spawn(async move {
            self.forward(parts.headers, body).await;
            drop(permit);
        });
        Ok(answer(StatusCode::OK))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, secret] = args.as_slice() else {
        eprintln!("usage: floor <listen addr> <upstream url> <secret>");
        std::process::exit(2);
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let floor = Arc::new(Floor {
        upstream: upstream.parse().expect("the upstream must be a URL"),
        secret: secret.as_bytes().to_vec(),
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector),
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
    });
    let listener = TcpListener::bind(listen).await.expect("cannot listen there");
    let server = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (floor, server) = (floor.clone(), server.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| floor.clone().handle(req));
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
