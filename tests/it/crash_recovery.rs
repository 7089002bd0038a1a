//! kill -9 of the real binary: every event that got its 200 survives and reaches the app after a restart.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tempfile::TempDir;

use crate::support::{eventually, free_addr, github_headers, github_source, post, GatewayProcess, TestSink};

/// A github source `name` delivering to `app` (which starts down), with fast retries.
fn sources(name: &str, app: SocketAddr) -> String {
    format!(
        "{}\n[sources.forward]\ninitial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 1000\n",
        github_source(name, &format!("http://{app}/app"))
    )
}

/// POSTs a signed event; `None` if the request failed (connection refused or reset: the gateway died).
async fn try_post(url: &str, id: &str, body: &str) -> Option<(u16, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method("POST").uri(url);
    for (k, v) in github_headers(id, body.as_bytes()) {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid request");
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Receives from `sink` until every id of `want` has arrived (at most `within`); returns every id
/// received, with repeats.
async fn collect_until(sink: &mut TestSink, want: &HashSet<String>, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut seen = HashSet::new();
    while !want.is_subset(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(r) = sink.next(left).await else {
            let missing: Vec<_> = want.difference(&seen).collect();
            panic!(
                "{} acknowledged events never reached the app: {missing:?}",
                missing.len()
            );
        };
        let id = r.header("x-hookgate-event-id").to_owned();
        seen.insert(id.clone());
        got.push(id);
    }
    got
}

#[tokio::test]
async fn kill9_under_load_loses_no_acknowledged_event() {
    const CLIENTS: usize = 8;
    const MAX_REQUESTS: usize = 400;
    let name = "crash_load";
    let dir = TempDir::new().expect("temp dir");
    let app = free_addr();
    let gw = GatewayProcess::start(dir.path(), &sources(name, app)).await;
    let url = gw.url(&format!("/hooks/{name}"));

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, acked, sent) = (url.clone(), acked.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: by the request budget, by time, and by the first failure (the gateway is gone).
            while started.elapsed() < Duration::from_secs(5) {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if n >= MAX_REQUESTS {
                    return;
                }
                let id = format!("load-{c}-{n}");
                match try_post(&url, &id, &format!("{{\"client\":{c},\"n\":{n}}}")).await {
                    Some((200, body)) => {
                        assert!(body.contains("accepted"), "{id}: {body}");
                        acked.lock().expect("lock").insert(id);
                    }
                    Some((status, body)) => panic!("{id}: unexpected {status} {body}"),
                    None => return,
                }
            }
        }));
    }
    // Kill while the load runs: after ~1 s, or earlier once plenty of events were acknowledged.
    eventually("the load is well under way", Duration::from_secs(10), || {
        let n = acked.lock().expect("lock").len();
        let elapsed = started.elapsed();
        async move { n >= 150 || (n >= 1 && elapsed >= Duration::from_secs(1)) }
    })
    .await;
    let in_flight_at_kill = sent.load(Ordering::SeqCst) < MAX_REQUESTS;
    let stopped = gw.kill9();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("client ended")
            .expect("client ok");
    }
    assert!(
        in_flight_at_kill,
        "the load had already ended when the gateway was killed"
    );
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty());

    let mut sink = TestSink::start_on(app).await;
    let _gw = stopped.restart().await;
    let got = collect_until(&mut sink, &acked, Duration::from_secs(9)).await;
    eprintln!(
        "{} acknowledged, {} deliveries after restart",
        acked.len(),
        got.len()
    );
}

#[tokio::test]
async fn kill9_right_after_one_200_keeps_the_event() {
    let name = "crash_single";
    let dir = TempDir::new().expect("temp dir");
    let app = free_addr();
    let gw = GatewayProcess::start(dir.path(), &sources(name, app)).await;
    let body = r#"{"only":"one"}"#;
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers("single-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stopped = gw.kill9();

    let mut sink = TestSink::start_on(app).await;
    let _gw = stopped.restart().await;
    let got = sink
        .next(Duration::from_secs(8))
        .await
        .expect("the acknowledged event after the restart");
    assert_eq!(got.header("x-hookgate-event-id"), "single-1");
    assert_eq!(got.header("x-hookgate-source"), name);
    assert_eq!(&got.body[..], body.as_bytes());
}

#[tokio::test]
async fn sender_retry_after_crash_is_a_duplicate_and_delivered_once() {
    let name = "crash_dup";
    let dir = TempDir::new().expect("temp dir");
    let app = free_addr();
    let gw = GatewayProcess::start(dir.path(), &sources(name, app)).await;
    let url = gw.url(&format!("/hooks/{name}"));
    let body = r#"{"retry":"me"}"#;
    let headers = github_headers("dup-after-crash", body.as_bytes());
    let r = post(&url, &headers, body).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, r#"{"status":"accepted"}"#)
    );
    // The app is down, so nothing was delivered before the crash.
    let stopped = gw.kill9();

    let mut sink = TestSink::start_on(app).await;
    let gw = stopped.restart().await;
    // The sender did not trust its 200 and retries.
    let r = post(&url, &headers, body).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, r#"{"status":"duplicate"}"#)
    );

    let got = sink
        .next(Duration::from_secs(8))
        .await
        .expect("the event after the restart");
    assert_eq!(got.header("x-hookgate-event-id"), "dup-after-crash");
    assert_eq!(&got.body[..], body.as_bytes());
    // Retries come within 200ms: a second delivery would show up here.
    sink.assert_quiet(Duration::from_millis(800)).await;
    drop(gw);
}
