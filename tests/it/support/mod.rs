//! Test harness: an in-process gateway, a loopback app, the real binary, and helpers.

#![allow(dead_code)]

use std::{future::Future, net::SocketAddr, time::Duration};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::Sha256;

mod gateway;
pub mod pki;
mod process;
mod proxy;
mod sink;

pub use gateway::TestGateway;
pub use process::{GatewayProcess, Stopped};
pub use proxy::TcpProxy;
pub use sink::{Received, Reply, TestSink};

/// The GitHub secret used by most tests.
pub const GH_SECRET: &str = "test-github-secret";

/// A source of provider `github` at `/hooks/github` with [`GH_SECRET`], delivering to `upstream`.
pub fn github_source(name: &str, upstream: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
path = "/hooks/{name}"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "{upstream}"
"#
    )
}

/// `sha256=<hex>` as GitHub signs `body` with `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Headers of a GitHub delivery `id` of `body`, signed with [`GH_SECRET`].
pub fn github_headers(id: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("x-hub-signature-256".into(), github_signature(GH_SECRET, body)),
        ("x-github-delivery".into(), id.into()),
        ("x-github-event".into(), "push".into()),
        ("content-type".into(), "application/json".into()),
    ]
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Reply2 {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request over HTTP/1.1 and reads the whole response (bounded by 30 s).
pub async fn send(method: &str, url: &str, headers: &[(String, String)], body: impl Into<Bytes>) -> Reply2 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(body.into())).expect("valid request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("response within 30 s")
        .expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body read").to_bytes();
    Reply2 {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// POSTs `body` with `headers`.
pub async fn post(url: &str, headers: &[(String, String)], body: impl Into<Bytes>) -> Reply2 {
    send("POST", url, headers, body).await
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released: for configs of the real binary, and for an app
/// that comes up later on a known address).
///
/// Ports come from below the kernel's ephemeral range (32768 and up by default), so that the many
/// outgoing connections of a load test cannot take the port between its release and its reuse.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread test binaries running at once over the range, then walk it.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 4_000) as u16 * 3;
    for _ in 0..12_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20_000 + (base - 20_000 + offset) % 12_000;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free port in 20000..32000 on 127.0.0.1");
}

/// The value of a Prometheus sample line `name{labels}` in `text`, or 0.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `hookgate_deliveries_total` of `source` on output `output`, for one outcome and error source, in
/// the metrics text `text` (0 if absent).
pub fn deliveries(text: &str, source: &str, output: &str, outcome: &str, error_source: &str) -> f64 {
    metric(
        text,
        &format!(
            "hookgate_deliveries_total{{source=\"{source}\",output=\"{output}\",outcome=\"{outcome}\",error_source=\"{error_source}\"}} "
        ),
    )
}

/// The admin id of the event with sender id `event_id`, from the admin API at `admin` (`host:port`).
pub async fn admin_event_id(admin: SocketAddr, event_id: &str) -> u64 {
    let r = send("GET", &format!("http://{admin}/events?limit=1000"), &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is listed"))["id"]
        .as_u64()
        .expect("numeric id")
}

/// Replays event `id` through the admin API at `admin`; asserts a 2xx.
pub async fn replay(admin: SocketAddr, id: u64) {
    let r = send("POST", &format!("http://{admin}/events/{id}/replay"), &[], "").await;
    assert!(r.status.is_success(), "replay: {} {}", r.status, r.body);
}

/// A name unique to this test run, for brokers' exchanges, queues, streams and subjects.
pub fn unique(test: &str) -> String {
    format!("hgtest.{test}.{:08x}", rand::random::<u32>())
}
