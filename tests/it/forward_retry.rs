//! Delivery to the app: retries with backoff, `Retry-After`, dead letters, timeouts, signing,
//! per-source concurrency, and acceptance that never waits for the app.

use std::{
    collections::HashSet,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Sha256;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

use crate::support::{
    eventually, free_addr, github_headers, github_source, post, Received, Reply, TestGateway, TestSink,
};

/// A github source `name` delivering to `upstream`, with `[sources.forward]` keys `forward`.
fn source(name: &str, upstream: &str, forward: &str) -> String {
    format!(
        "{}\n[sources.forward]\n{forward}\n",
        github_source(name, upstream)
    )
}

/// Small backoffs so that retries come quickly.
const FAST: &str = "initial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 100\n";

/// POSTs event `id` with `body` to source `name`, asserting a 200 `accepted`.
async fn accept(gw: &TestGateway, name: &str, id: &str, body: &str) {
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body.as_bytes()),
        body.to_owned(),
    )
    .await;
    assert_eq!(r.status, 200, "event {id}: {}", r.body);
    assert!(r.body.contains("accepted"), "event {id}: {}", r.body);
}

/// The value of sample `name{labels}` in the Prometheus text, whatever the labels' order, or 0.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let inner = head.strip_prefix(name)?.strip_prefix('{')?.strip_suffix('}')?;
            let pairs: Vec<&str> = inner.split(',').collect();
            let all = pairs.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()));
            all.then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn deliveries(text: &str, source: &str, outcome: &str, error_source: &str) -> f64 {
    sample(
        text,
        "hookgate_deliveries_total",
        &[
            ("source", source),
            ("output", "http"),
            ("outcome", outcome),
            ("error_source", error_source),
        ],
    )
}

/// An app that accepts connections, reads each request head, reports its `x-hookgate-attempt` and
/// never answers (the sockets are held open until the app is dropped).
struct HangingApp {
    addr: SocketAddr,
    heads: mpsc::UnboundedReceiver<(String, Instant)>,
    task: JoinHandle<()>,
}

impl HangingApp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hanging app");
        let addr = listener.local_addr().expect("addr");
        let (tx, heads) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut held: Vec<JoinHandle<()>> = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                held.push(tokio::spawn(hold(stream, tx)));
            }
        });
        Self { addr, heads, task }
    }

    fn url(&self) -> String {
        format!("http://{}/app", self.addr)
    }

    /// The next request head's attempt number and arrival time.
    async fn next(&mut self, within: Duration) -> Option<(String, Instant)> {
        tokio::time::timeout(within, self.heads.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for HangingApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hold(mut stream: TcpStream, tx: mpsc::UnboundedSender<(String, Instant)>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let attempt = text
        .lines()
        .find_map(|l| l.strip_prefix("x-hookgate-attempt:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    let _ = tx.send((attempt, at));
    // Hold the socket open without answering until the peer gives up (or the test ends).
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn app_down_then_up_every_accepted_event_arrives() {
    let name = "fr_down_up";
    let app_addr = free_addr();
    let gw = TestGateway::start(&source(name, &format!("http://{app_addr}/app"), FAST)).await;
    let ids: Vec<String> = (0..20).map(|i| format!("down-up-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        accept(&gw, name, id, &format!("{{\"n\":{i}}}")).await;
    }
    // The app is down: the forwarder must have failed at least once on the network.
    eventually(
        "a delivery failed on the network",
        Duration::from_secs(5),
        || async { deliveries(&gw.metrics().await, name, "retry", "network") >= 1.0 },
    )
    .await;

    let mut sink = TestSink::start_on(app_addr).await;
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while seen.len() < ids.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(r) = sink.next(left).await else {
            let missing: Vec<_> = ids.iter().filter(|id| !seen.contains(*id)).collect();
            panic!("events never delivered after the app came up: {missing:?}");
        };
        assert_eq!(r.header("x-hookgate-source"), name);
        seen.insert(r.header("x-hookgate-event-id").to_owned());
    }
    assert_eq!(seen, ids.iter().cloned().collect::<HashSet<_>>());
    gw.stop().await;
}

#[tokio::test]
async fn a_500_is_retried_and_delivered_on_attempt_two() {
    let name = "fr_500_then_200";
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&source(name, &sink.url("/app"), FAST)).await;
    sink.script([500]);
    let body = r#"{"action":"opened","n":500}"#;
    accept(&gw, name, "retry-500", body).await;

    let got = sink.take(2, Duration::from_secs(5)).await;
    assert_eq!(got[0].header("x-hookgate-attempt"), "1");
    assert_eq!(got[1].header("x-hookgate-attempt"), "2");
    for r in &got {
        assert_eq!(r.header("x-hookgate-event-id"), "retry-500");
        assert_eq!(r.header("x-hookgate-source"), name);
        assert_eq!(r.target, "/app");
        assert_eq!(
            &r.body[..],
            body.as_bytes(),
            "the exact body is forwarded on every attempt"
        );
    }
    // Delivered on attempt 2: nothing more comes.
    sink.assert_quiet(Duration::from_millis(500)).await;
    let m = gw.metrics().await;
    assert_eq!(deliveries(&m, name, "retry", "app"), 1.0, "{m}");
    assert_eq!(deliveries(&m, name, "delivered", "none"), 1.0, "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn a_429_retry_after_is_honoured() {
    let name = "fr_429_retry_after";
    let mut sink = TestSink::start().await;
    // max_backoff above the hint, so that the hint is not capped; the jitter alone would retry within 20ms.
    let forward = "initial_backoff = \"20ms\"\nmax_backoff = \"5s\"\nmax_attempts = 5\n";
    let gw = TestGateway::start(&source(name, &sink.url("/app"), forward)).await;
    sink.script([Reply::Status(429, vec![("retry-after", "1".into())])]);
    accept(&gw, name, "retry-after-1", "{}").await;

    let first = sink.next(Duration::from_secs(5)).await.expect("first attempt");
    let first_at = Instant::now();
    assert_eq!(first.header("x-hookgate-attempt"), "1");
    let second = sink.next(Duration::from_secs(5)).await.expect("second attempt");
    let gap = first_at.elapsed();
    assert_eq!(second.header("x-hookgate-attempt"), "2");
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After: 1 not honoured: retried after {gap:?}"
    );
    sink.assert_quiet(Duration::from_millis(300)).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_400_is_dead_lettered_after_one_attempt() {
    let name = "fr_400_dead";
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&source(name, &sink.url("/app"), FAST)).await;
    sink.script([400, 400, 400]);
    accept(&gw, name, "bad-request", "{}").await;

    let got = sink.next(Duration::from_secs(5)).await.expect("one attempt");
    assert_eq!(got.header("x-hookgate-attempt"), "1");
    // A retry would come within the 20ms..200ms backoff.
    sink.assert_quiet(Duration::from_millis(600)).await;
    eventually("the event is a dead letter", Duration::from_secs(5), || async {
        let m = gw.metrics().await;
        // Read the gauge right after this gateway's own scrape refreshed it.
        sample(&m, "hookgate_events", &[("state", "dead")]) >= 1.0
            && deliveries(&m, name, "dead_letter", "app") == 1.0
    })
    .await;
    let m = gw.metrics().await;
    assert_eq!(deliveries(&m, name, "retry", "app"), 0.0, "{m}");
    assert_eq!(deliveries(&m, name, "delivered", "none"), 0.0, "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn always_503_stops_after_max_attempts() {
    let name = "fr_503_max_attempts";
    let mut sink = TestSink::start().await;
    let forward = "initial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\nmax_attempts = 3\n";
    let gw = TestGateway::start(&source(name, &sink.url("/app"), forward)).await;
    sink.script([503; 6]);
    accept(&gw, name, "always-503", "{\"x\":1}").await;

    let got = sink.take(3, Duration::from_secs(5)).await;
    let attempts: Vec<&str> = got.iter().map(|r| r.header("x-hookgate-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    sink.assert_quiet(Duration::from_millis(600)).await;
    eventually("the dead letter is counted", Duration::from_secs(5), || async {
        let m = gw.metrics().await;
        deliveries(&m, name, "dead_letter", "app") == 1.0
            && sample(&m, "hookgate_events", &[("state", "dead")]) >= 1.0
    })
    .await;
    assert_eq!(deliveries(&gw.metrics().await, name, "retry", "app"), 2.0);
    gw.stop().await;
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let name = "fr_timeout";
    let mut app = HangingApp::start().await;
    let forward =
        "timeout = \"200ms\"\ninitial_backoff = \"20ms\"\nmax_backoff = \"50ms\"\nmax_attempts = 100\n";
    let gw = TestGateway::start(&source(name, &app.url(), forward)).await;
    accept(&gw, name, "never-answered", "{}").await;

    let (a1, t1) = app.next(Duration::from_secs(5)).await.expect("first attempt");
    let (a2, t2) = app
        .next(Duration::from_secs(5))
        .await
        .expect("a retry after the timeout");
    assert_eq!((a1.as_str(), a2.as_str()), ("1", "2"));
    assert!(
        t2 - t1 >= Duration::from_millis(180),
        "the retry came before the 200ms timeout: {:?}",
        t2 - t1
    );
    eventually(
        "the timeout is counted as a network retry",
        Duration::from_secs(5),
        || async { deliveries(&gw.metrics().await, name, "retry", "network") >= 1.0 },
    )
    .await;
    // The app hangs: dropping the gateway aborts it instead of waiting for in-flight attempts.
    drop(gw);
}

#[tokio::test]
async fn signed_deliveries_verify_with_standard_webhooks() {
    let name = "fr_signed";
    let key = b"hookgate-integration-signing-key";
    let secret = format!("whsec_{}", B64.encode(key));
    let mut sink = TestSink::start().await;
    let forward = format!("{FAST}signing_secret = \"{secret}\"\n");
    let gw = TestGateway::start(&source(name, &sink.url("/app"), &forward)).await;
    let body = r#"{"signed":true,"text":"héllo"}"#;
    accept(&gw, name, "signed-1", body).await;

    let r: Received = sink.next(Duration::from_secs(5)).await.expect("delivery");
    assert_eq!(r.header("webhook-id"), "signed-1");
    let ts: i64 = r
        .header("webhook-timestamp")
        .parse()
        .expect("numeric webhook-timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now - ts).abs() <= 60,
        "webhook-timestamp {ts} is far from now {now}"
    );

    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("signed-1.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    let header = r.header("webhook-signature");
    assert!(
        header.split(' ').any(|s| s == expected),
        "webhook-signature {header:?} does not contain {expected:?}"
    );
    assert_eq!(&r.body[..], body.as_bytes());
    gw.stop().await;
}

/// An app that answers 200 after `delay`, counting requests in flight; reports each event id.
struct SlowApp {
    addr: SocketAddr,
    max_in_flight: Arc<AtomicUsize>,
    ids: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl SlowApp {
    async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind slow app");
        let addr = listener.local_addr().expect("addr");
        let (tx, ids) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let max_in_flight = max_in_flight.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (tx, in_flight, max_in_flight) =
                        (tx.clone(), in_flight.clone(), max_in_flight.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (tx, in_flight, max_in_flight) =
                                (tx.clone(), in_flight.clone(), max_in_flight.clone());
                            async move {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                max_in_flight.fetch_max(now, Ordering::SeqCst);
                                let id = req
                                    .headers()
                                    .get("x-hookgate-event-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned();
                                let _ = req.into_body().collect().await;
                                tokio::time::sleep(delay).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                let _ = tx.send(id);
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            max_in_flight,
            ids,
            task,
        }
    }
}

impl Drop for SlowApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn concurrency_one_keeps_one_delivery_in_flight() {
    let name = "fr_concurrency_one";
    let mut app = SlowApp::start(Duration::from_millis(100)).await;
    let forward = format!("{FAST}concurrency = 1\n");
    let gw = TestGateway::start(&source(name, &format!("http://{}/app", app.addr), &forward)).await;
    let ids: Vec<String> = (0..6).map(|i| format!("serial-{i}")).collect();
    // Accept them all at once, so that several are due together.
    let posts = ids.iter().map(|id| accept(&gw, name, id, "{}"));
    futures_util::future::join_all(posts).await;

    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while seen.len() < ids.len() {
        match tokio::time::timeout_at(deadline, app.ids.recv()).await {
            Ok(Some(id)) => {
                seen.insert(id);
            }
            _ => panic!("only {} of {} events delivered", seen.len(), ids.len()),
        }
    }
    let max = app.max_in_flight.load(Ordering::SeqCst);
    assert_eq!(
        max, 1,
        "{max} deliveries were in flight at once with concurrency = 1"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_hanging_app_never_blocks_acceptance() {
    let name = "fr_hanging_app";
    let mut app = HangingApp::start().await;
    let forward = "timeout = \"30s\"\nconcurrency = 2\n";
    let gw = TestGateway::start(&source(name, &app.url(), forward)).await;
    accept(&gw, name, "hang-0", "{}").await;
    // The forwarder is now stuck on the app.
    app.next(Duration::from_secs(5))
        .await
        .expect("the app got the first delivery");

    let started = Instant::now();
    let posts = tokio::time::timeout(Duration::from_secs(10), async {
        for i in 1..20 {
            accept(&gw, name, &format!("hang-{i}"), &format!("{{\"i\":{i}}}")).await;
        }
    });
    posts.await.expect("acceptance waited for the hanging app");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "19 posts took {took:?}");
    eventually("the 20 events are queued", Duration::from_secs(5), || async {
        sample(&gw.metrics().await, "hookgate_events", &[("state", "queued")]) >= 20.0
    })
    .await;
    drop(gw);
}

/// `hookgate_events{state}` and this source's delivered count, read from one scrape.
async fn states(gw: &TestGateway, name: &str) -> (f64, f64, f64) {
    let m = gw.metrics().await;
    (
        sample(&m, "hookgate_events", &[("state", "queued")]),
        sample(&m, "hookgate_events", &[("state", "dead")]),
        deliveries(&m, name, "delivered", "none"),
    )
}

#[tokio::test]
async fn an_outage_longer_than_a_dozen_attempts_dead_letters_nothing_under_the_defaults() {
    // The default policy (no attempt cap, a 72 h horizon) with its delays scaled down: the app
    // answers 503 to every event's first 14 attempts and more, which is longer than the 12 attempts
    // after which the old defaults gave up.
    let name = "fr_long_outage";
    let mut sink = TestSink::start().await;
    let forward = "initial_backoff = \"5ms\"\nmax_backoff = \"40ms\"\n";
    let gw = TestGateway::start(&source(name, &sink.url("/app"), forward)).await;
    let n = 10;
    let refusals = 14 * n;
    sink.script(vec![503; refusals]);
    let ids: Vec<String> = (0..n).map(|i| format!("long-outage-{i}")).collect();
    for id in &ids {
        accept(&gw, name, id, "{}").await;
    }
    let got = sink.take(refusals + n, Duration::from_secs(30)).await;
    let delivered: HashSet<&str> = got[refusals..]
        .iter()
        .map(|r| r.header("x-hookgate-event-id"))
        .collect();
    assert_eq!(
        delivered.len(),
        n,
        "each event once after the outage: {delivered:?}"
    );
    eventually("every event is delivered", Duration::from_secs(10), || async {
        states(&gw, name).await == (0.0, 0.0, n as f64)
    })
    .await;
    assert_eq!(deliveries(&gw.metrics().await, name, "dead_letter", "app"), 0.0);
    gw.stop().await;
}

#[tokio::test]
async fn after_an_outage_the_first_success_releases_the_waiting_events() {
    // Every retry waits 5 to 10 minutes (equal jitter under a 10 minute ceiling), far beyond this
    // test: an event that fails while the app is down arrives within the test only if the first
    // success after the outage brings it forward.
    let name = "fr_release";
    let app_addr = free_addr();
    let forward = "initial_backoff = \"10m\"\nmax_backoff = \"10m\"\nconcurrency = 3\n";
    let gw = TestGateway::start(&source(name, &format!("http://{app_addr}/app"), forward)).await;
    let ids: Vec<String> = (0..12).map(|i| format!("waiting-{i}")).collect();
    for id in &ids {
        accept(&gw, name, id, "{}").await;
    }
    // Nothing listens on the app's port: each event fails once and waits.
    eventually("every event failed once", Duration::from_secs(10), || async {
        deliveries(&gw.metrics().await, name, "retry", "network") == ids.len() as f64
    })
    .await;

    let mut sink = TestSink::start_on(app_addr).await;
    accept(&gw, name, "after-outage", "{}").await;
    let got = sink.take(ids.len() + 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].header("x-hookgate-event-id"), "after-outage");
    assert_eq!(got[0].header("x-hookgate-attempt"), "1");
    let released: HashSet<&str> = got[1..].iter().map(|r| r.header("x-hookgate-event-id")).collect();
    assert_eq!(released, ids.iter().map(String::as_str).collect::<HashSet<_>>());
    assert!(got[1..].iter().all(|r| r.header("x-hookgate-attempt") == "2"));
    eventually("all delivered, none dead", Duration::from_secs(10), || async {
        states(&gw, name).await == (0.0, 0.0, ids.len() as f64 + 1.0)
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn every_attempt_carries_the_requests_id_across_a_restart() {
    // The id is stored with the event: the attempts after a restart carry the one the first had,
    // whether the sender gave it or the gateway made it. The app refuses everything until the
    // gateway has restarted, so the events are delivered by the restarted gateway.
    let name = "fr_request_id";
    let mut refusing = TestSink::start().await;
    refusing.script(vec![503; 1000]);
    let toml = source(name, &refusing.url("/app"), FAST);
    let gw = TestGateway::start(&toml).await;
    let mut given = github_headers("rid-given", b"{}");
    given.push(("x-request-id".into(), "sender-req-1".into()));
    let r = post(&gw.url(&format!("/hooks/{name}")), &given, "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    accept(&gw, name, "rid-made", "{}").await;
    let mut ids = std::collections::HashMap::new();
    while ids.len() < 2 {
        let r = refusing
            .next(Duration::from_secs(5))
            .await
            .expect("first attempts");
        ids.insert(
            r.header("x-hookgate-event-id").to_owned(),
            r.header("x-request-id").to_owned(),
        );
    }
    assert_eq!(ids["rid-given"], "sender-req-1");
    assert_eq!(ids["rid-made"].len(), 36, "a UUID: {:?}", ids["rid-made"]);
    let dir = gw.stop().await;
    while let Some(r) = refusing.next(Duration::ZERO).await {
        assert_eq!(ids[r.header("x-hookgate-event-id")], r.header("x-request-id"));
    }
    let app_addr = refusing.shut();
    // The aborted app task drops its listener when it next runs.
    eventually("the app's port is free", Duration::from_secs(5), || async {
        std::net::TcpListener::bind(app_addr).is_ok()
    })
    .await;

    let gw = TestGateway::start_in(&toml, dir).await;
    let mut sink = TestSink::start_on(app_addr).await;
    let mut delivered = HashSet::new();
    while delivered.len() < 2 {
        let r = sink
            .next(Duration::from_secs(10))
            .await
            .expect("delivered after the restart");
        let event = r.header("x-hookgate-event-id").to_owned();
        assert_eq!(ids[&event], r.header("x-request-id"), "{event}");
        delivered.insert(event);
    }
    gw.stop().await;
}
