//! A fast loopback app for the load benchmark (`bench/load.py`): answers 204 to every request and
//! records the ids it receives, so the benchmark can check that every acknowledged event arrived.
//!
//! `cargo run --release --example sink -- 127.0.0.1:3900 [DELAY_MS]`. The id of a request is its
//! `X-Hookgate-Event-Id` header, else its `X-GitHub-Delivery` header. `GET /_sink/ids` answers every
//! distinct id received so far, one per line; `GET /_sink/count` their number; `POST /_sink/reset`
//! forgets them. With `DELAY_MS`, every request but `/_sink/` ones is answered (and its id recorded)
//! that many milliseconds after its body was read: a slow app (the benchmark's 20 ms app), which takes as many requests at once as
//! connections reach it.

use std::{collections::HashSet, convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Mutex;

type Ids = Arc<Mutex<HashSet<Box<str>>>>;

async fn handle(
    req: Request<Incoming>,
    ids: Ids,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let id = ["x-hookgate-event-id", "x-github-delivery"]
        .iter()
        .find_map(|h| req.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(Box::<str>::from);
    // Read the whole body, as an app would.
    let _ = req.into_body().collect().await;
    let text = |status: StatusCode, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        Ok(resp)
    };
    match path.as_str() {
        "/_sink/count" => {
            let n = ids.lock().unwrap_or_else(|e| e.into_inner()).len();
            text(StatusCode::OK, format!("{n}\n"))
        }
        "/_sink/ids" => {
            let all = ids.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = String::with_capacity(all.len() * 24);
            for id in all.iter() {
                out.push_str(id);
                out.push('\n');
            }
            text(StatusCode::OK, out)
        }
        "/_sink/reset" => {
            ids.lock().unwrap_or_else(|e| e.into_inner()).clear();
            text(StatusCode::OK, "reset\n".into())
        }
        _ => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(id) = id {
                ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
            }
            text(StatusCode::NO_CONTENT, String::new())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3900".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let delay = match std::env::args().nth(2) {
        Some(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ),
        None => Duration::ZERO,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let ids: Ids = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let ids = ids.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, ids.clone(), delay));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
