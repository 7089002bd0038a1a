//! Forwarding: the time the real dispatcher takes to deliver a batch of queued events (1 KiB and
//! 64 KiB bodies) to a loopback app that answers 200. Run: `cargo bench --bench forward`.
//!
//! The gateway runs through `hookgate::run` on a runtime of its own (as it would in its own process),
//! with its store in a temp dir and `concurrency = 64`; the app and the benchmark's client share a
//! second runtime. Each iteration, untimed, closes the app's gate (it takes requests but holds the
//! answers) and posts a batch of signed events, so that the dispatcher fills its 64 slots and the rest
//! of the batch waits in the queue. The timed part opens the gate and ends when the app has received
//! the whole batch. The batch is then left to settle (every attempt recorded) before the next one.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use hookgate::{Config, Listeners};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use sha2::Sha256;
use tokio::{
    net::TcpListener,
    runtime::Runtime,
    sync::{mpsc, watch},
};

/// Events per batch.
const BATCH: usize = 512;
/// The dispatcher's slots (`[forward] concurrency`).
const CONCURRENCY: usize = 64;
/// Body sizes, one source each.
const SIZES: [(&str, usize); 2] = [("fwd_1k", 1024), ("fwd_64k", 64 * 1024)];
/// Posts in flight at once while a batch is queued.
const POSTS_AT_ONCE: usize = 64;
const SECRET: &str = "bench-secret";
/// The longest any wait may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(60);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn body(len: usize) -> Bytes {
    let mut b = br#"{"action":"opened","payload":""#.to_vec();
    b.resize(len - 2, b'x');
    b.extend_from_slice(br#""}"#);
    Bytes::from(b)
}

/// The loopback app: reports each request as it arrives, then answers 200 once its gate is open.
struct App {
    addr: SocketAddr,
    arrivals: mpsc::UnboundedReceiver<()>,
    gate: watch::Sender<bool>,
}

impl App {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("app addr");
        let (tx, arrivals) = mpsc::unbounded_channel();
        let (gate, open) = watch::channel(false);
        tokio::spawn(async move {
            // Ends with the runtime.
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, open) = (tx.clone(), open.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (tx, mut open) = (tx.clone(), open.clone());
                        async move {
                            let _ = req.into_body().collect().await;
                            let _ = tx.send(());
                            let _ = open.wait_for(|open| *open).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, arrivals, gate }
    }

    /// Waits until `n` more requests have arrived.
    async fn arrived(&mut self, n: usize) {
        tokio::time::timeout(LIMIT, async {
            for _ in 0..n {
                self.arrivals.recv().await.expect("the app is running");
            }
        })
        .await
        .expect("the app got every request in time");
    }
}

fn config(store: &Path, app: SocketAddr) -> Config {
    // A long attempt timeout: the first deliveries wait at the closed gate while the batch is posted.
    let mut toml = format!(
        "[store]\npath = {:?}\n[forward]\nconcurrency = {CONCURRENCY}\ntimeout = \"120s\"\n",
        store.display().to_string()
    );
    for (name, _) in SIZES {
        toml.push_str(&format!(
            "[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"github\"\n\
             secrets = [\"{SECRET}\"]\nupstream = \"http://{app}/app\"\n"
        ));
    }
    Config::from_toml(&toml, |_| None).expect("valid config")
}

/// Sends `req`; the answer's status and body.
async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> (http::StatusCode, Bytes) {
    let resp = tokio::time::timeout(LIMIT, client.request(req))
        .await
        .expect("answered in time")
        .expect("request sent");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("answer body").to_bytes();
    (status, body)
}

/// Posts event `id` to `source`, signed as GitHub signs it.
async fn post(client: &HttpClient, gateway: SocketAddr, source: &str, id: String, body: Bytes) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let req = Request::post(format!("http://{gateway}/hooks/{source}"))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/bench")
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", signature)
        .body(Full::new(body))
        .expect("valid request");
    let (status, answer) = send(client, req).await;
    assert!(status.is_success(), "post: {status} {answer:?}");
}

/// Waits until the store has no queued event of `source` and `delivered` delivered ones, so that
/// every attempt of the last batch is recorded.
async fn settled(client: &HttpClient, admin: SocketAddr, source: &str, delivered: usize) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let req = Request::get(format!("http://{admin}/stats"))
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let (status, body) = send(client, req).await;
        assert!(status.is_success(), "/stats: {status}");
        let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        let sources = stats["sources"].as_array().expect("sources");
        let s = sources
            .iter()
            .find(|s| s["name"] == source)
            .expect("source listed");
        if s["queued"] == 0 && s["delivered"] == delivered {
            return;
        }
        assert!(Instant::now() < deadline, "{source} never settled: {s}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    // Two runtimes, so that the benchmark's own timeouts still fire if the gateway's workers block.
    let gateway_rt = runtime(2);
    let rt = runtime(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = rt.block_on(App::start());
    let (webhook, admin) = gateway_rt.block_on(async {
        (
            TcpListener::bind("127.0.0.1:0").await.expect("bind webhook"),
            TcpListener::bind("127.0.0.1:0").await.expect("bind admin"),
        )
    });
    let gateway = webhook.local_addr().expect("webhook addr");
    let admin_addr = admin.local_addr().expect("admin addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = gateway_rt.spawn(hookgate::run(
        config(&dir.path().join("store"), app.addr),
        Listeners { webhook, admin },
        async move {
            let _ = stopped.await;
        },
        None,
    ));
    let client: HttpClient = rt.block_on(async { Client::builder(TokioExecutor::new()).build_http() });

    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut next_id = 0u64;
    for (source, size) in SIZES {
        let body = body(size);
        let mut delivered = 0;
        let id = BenchmarkId::new(format!("{}KiB", size / 1024), BATCH);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        // Queue a batch behind a closed gate.
                        app.gate.send_replace(false);
                        let ids: Vec<String> = (0..BATCH)
                            .map(|i| format!("{source}-{}", next_id + i as u64))
                            .collect();
                        next_id += BATCH as u64;
                        for chunk in ids.chunks(POSTS_AT_ONCE) {
                            let posts = chunk
                                .iter()
                                .map(|id| post(&client, gateway, source, id.clone(), body.clone()));
                            futures_util::future::join_all(posts).await;
                        }
                        app.arrived(CONCURRENCY).await;

                        let start = Instant::now();
                        app.gate.send_replace(true);
                        app.arrived(BATCH - CONCURRENCY).await;
                        timed += start.elapsed();

                        delivered += BATCH;
                        settled(&client, admin_addr, source, delivered).await;
                    }
                    timed
                })
            });
        });
    }
    group.finish();

    let _ = stop.send(());
    gateway_rt
        .block_on(async { tokio::time::timeout(LIMIT, running).await })
        .expect("the gateway stopped in time")
        .expect("the gateway task")
        .expect("the gateway ran");
}

criterion_group!(benches, bench);
criterion_main!(benches);
