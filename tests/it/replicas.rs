//! Several real hookgate processes on one PostgreSQL database act as one gateway (issue 18): each
//! test creates a database of its own on the machine's PostgreSQL (`HOOKGATE_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`) and drops it afterwards.

use std::{collections::HashSet, net::SocketAddr, path::Path, time::Duration};

use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::support::{
    eventually, free_addr, github_headers, github_source, post, send, GatewayProcess, TcpProxy, TestSink,
};

fn base_url() -> String {
    std::env::var("HOOKGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of this test's own; dropped with its connections when this is.
struct Database {
    name: String,
}

impl Database {
    async fn create() -> Self {
        let name = format!("hg_it_{}_{:08x}", std::process::id(), rand::random::<u32>());
        let (client, connection) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (HOOKGATE_TEST_DATABASE_URL)");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        Self { name }
    }

    /// The database's URL, through `via` (host:port) instead of the server's own address if given.
    fn url(&self, via: Option<SocketAddr>) -> String {
        let server = match via {
            Some(addr) => format!("postgres://postgres@{addr}"),
            None => base_url()
                .rsplit_once('/')
                .expect("a postgres:// URL")
                .0
                .to_owned(),
        };
        format!("{server}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Starts a replica in `dir` on the database at `url`, with source `gh` delivering to `app`
/// (`forward` is extra `[forward]` settings).
async fn replica(dir: &Path, url: &str, app: SocketAddr, forward: &str) -> GatewayProcess {
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"{addr}\"\nshutdown_timeout = \"5s\"\n[admin]\nlisten = \"{admin}\"\n\
         [store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n\
         [forward]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 1000\n{forward}\n{}",
        github_source("gh", &format!("http://{app}/app"))
    );
    std::fs::write(&config, text).expect("write config");
    GatewayProcess::start_from(config, addr, admin).await
}

async fn send_event(gateway: &GatewayProcess, id: &str) -> u16 {
    let body = format!("{{\"id\":\"{id}\"}}");
    post(
        &gateway.url("/hooks/gh"),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await
    .status
    .as_u16()
}

/// The ids `sink` receives within `within` until it has every one of `want`; panics on a repeat.
async fn receive_once(sink: &mut TestSink, want: &HashSet<String>, within: Duration) {
    let got: Vec<String> = sink
        .take(want.len(), within)
        .await
        .iter()
        .map(|r| r.header("x-hookgate-event-id").to_owned())
        .collect();
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "each id forwarded once: {got:?}");
    assert_eq!(&unique, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_ids_sent_to_two_replicas_at_once_are_stored_and_forwarded_once() {
    let db = Database::create().await;
    let mut sink = TestSink::start().await;
    let (dir_a, dir_b) = (TempDir::new().expect("dir"), TempDir::new().expect("dir"));
    let a = replica(dir_a.path(), &db.url(None), sink.addr, "").await;
    let b = replica(dir_b.path(), &db.url(None), sink.addr, "").await;
    let ids: Vec<String> = (0..20).map(|i| format!("twice-{i}")).collect();
    let (a_ref, b_ref) = (&a, &b);
    let sends = ids.iter().map(|id| async move {
        let (a, b) = (a_ref, b_ref);
        let (sa, sb) = tokio::join!(send_event(a, id), send_event(b, id));
        assert_eq!((sa, sb), (200, 200), "{id}: each replica answers 2xx");
    });
    futures_util::future::join_all(sends).await;
    receive_once(&mut sink, &ids.iter().cloned().collect(), Duration::from_secs(30)).await;
    sink.assert_quiet(Duration::from_millis(500)).await;
    let listed = send("GET", &a.admin_url("/events?limit=1000"), &[], "").await;
    let listed: serde_json::Value = serde_json::from_str(&listed.body).expect("JSON");
    assert_eq!(
        listed["events"].as_array().expect("events").len(),
        ids.len(),
        "stored once each"
    );
}

/// A loopback "app" that accepts connections and never answers; tells when one arrives.
async fn hanging_app() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
            let _ = tx.send(());
        }
    });
    (addr, rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_delivery_loses_only_its_lease_and_another_delivers() {
    let db = Database::create().await;
    let (app, mut arrived, hang) = hanging_app().await;
    let (dir_a, dir_b) = (TempDir::new().expect("dir"), TempDir::new().expect("dir"));
    // A lease of 2 × 2 s plus the margin.
    let a = replica(dir_a.path(), &db.url(None), app, "timeout = \"2s\"").await;
    assert_eq!(send_event(&a, "leased-1").await, 200);
    tokio::time::timeout(Duration::from_secs(20), arrived.recv())
        .await
        .expect("a delivers")
        .expect("connection");
    let _stopped = a.kill9();
    hang.abort();
    let _ = hang.await;
    // The app is back on the same address; b starts only now, so a held the event when it died.
    let mut sink = TestSink::start_on(app).await;
    let _b = replica(dir_b.path(), &db.url(None), app, "timeout = \"2s\"").await;
    let got = sink
        .next(Duration::from_secs(60))
        .await
        .expect("b delivers once a's lease ends");
    assert_eq!(got.header("x-hookgate-event-id"), "leased-1");
    sink.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_accepted_nothing_delivers_at_once_and_its_admin_api_sees_the_others_events() {
    let db = Database::create().await;
    let (hang_addr, mut arrived, _hang) = hanging_app().await;
    let mut sink = TestSink::start().await;
    let (dir_a, dir_b) = (TempDir::new().expect("dir"), TempDir::new().expect("dir"));
    // a's one delivery slot hangs on its app for the whole test.
    let a = replica(
        dir_a.path(),
        &db.url(None),
        hang_addr,
        "timeout = \"60s\"\nconcurrency = 1",
    )
    .await;
    assert_eq!(send_event(&a, "held").await, 200);
    tokio::time::timeout(Duration::from_secs(20), arrived.recv())
        .await
        .expect("a delivers")
        .expect("connection");
    let b = replica(dir_b.path(), &db.url(None), sink.addr, "").await;
    // a accepts an event it cannot deliver now; b, which accepted nothing, is woken by a's NOTIFY
    // (its polling would wait for a's 2 min lease, or 30 s).
    assert_eq!(send_event(&a, "woken").await, 200);
    let got = sink
        .next(Duration::from_secs(10))
        .await
        .expect("b delivers at once");
    assert_eq!(got.header("x-hookgate-event-id"), "woken");
    // b's admin API lists a's events and replays one of them.
    let listed = send("GET", &b.admin_url("/events?limit=10"), &[], "").await;
    let listed: serde_json::Value = serde_json::from_str(&listed.body).expect("JSON");
    let ids: HashSet<&str> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    assert_eq!(ids, HashSet::from(["held", "woken"]));
    let id = crate::support::admin_event_id(b.admin, "woken").await;
    crate::support::replay(b.admin, id).await;
    let again = sink.next(Duration::from_secs(10)).await.expect("replayed");
    assert_eq!(again.header("x-hookgate-event-id"), "woken");
    assert_eq!(
        again.header("x-hookgate-attempt"),
        "2",
        "the attempt count continues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_503_and_not_ready_then_recovers_without_a_restart() {
    let db = Database::create().await;
    let pg: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = TcpProxy::start(pg).await;
    let mut sink = TestSink::start().await;
    let dir = TempDir::new().expect("dir");
    let gateway = replica(dir.path(), &db.url(Some(proxy.addr())), sink.addr, "").await;
    let mut answered_2xx: HashSet<String> = HashSet::new();
    for i in 0..5 {
        let id = format!("before-{i}");
        assert_eq!(send_event(&gateway, &id).await, 200);
        answered_2xx.insert(id);
    }

    proxy.close();
    let mut n = 0;
    eventually(
        "accepts are refused with 503 store_unavailable",
        Duration::from_secs(30),
        || {
            n += 1;
            let id = format!("down-{n}");
            let gateway = &gateway;
            async move {
                let body = format!("{{\"id\":\"{id}\"}}");
                let r = post(
                    &gateway.url("/hooks/gh"),
                    &github_headers(&id, body.as_bytes()),
                    body,
                )
                .await;
                assert_ne!(
                    r.status.as_u16(),
                    200,
                    "{id} answered 2xx while the database is unreachable"
                );
                r.status.as_u16() == 503 && r.body == r#"{"error":"store_unavailable"}"#
            }
        },
    )
    .await;
    let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.body);

    proxy.open();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut m = 0;
    loop {
        m += 1;
        let id = format!("after-{m}");
        if send_event(&gateway, &id).await == 200 {
            answered_2xx.insert(id);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "accepts succeed again within 30 s, without a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = send("GET", &gateway.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status.as_u16(), 200, "{}", ready.body);

    // Every id answered 2xx reaches the app.
    let mut seen = HashSet::new();
    while !answered_2xx.is_subset(&seen) {
        let r = sink.next(Duration::from_secs(30)).await.unwrap_or_else(|| {
            panic!(
                "missing: {:?}",
                answered_2xx.difference(&seen).collect::<Vec<_>>()
            )
        });
        seen.insert(r.header("x-hookgate-event-id").to_owned());
    }
}
