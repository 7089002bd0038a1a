//! The dispatcher against a real store (in a temp dir) and a loopback app: slots, wake-ups, retries.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{dispatch, output::Outputs, Target};
use crate::{
    config::Config,
    store::{EventQuery, EventState, NewEvent, Store},
};

/// Far below `MAX_IDLE` (30 s): a delivery that takes this long waited for the safety-net timer.
const PROMPT: Duration = Duration::from_secs(3);

/// What the app answers to attempt `attempt` of event `id`: a status, after a delay.
type Script = dyn Fn(&str, u32) -> (u16, Duration) + Send + Sync;

/// One request the app received.
#[derive(Debug)]
struct Hit {
    id: String,
    attempt: u32,
}

/// A loopback app that answers as scripted and counts requests in flight.
struct App {
    addr: SocketAddr,
    hits: mpsc::UnboundedReceiver<Hit>,
    max_in_flight: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl App {
    async fn start(script: impl Fn(&str, u32) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        let script: Arc<Script> = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("app addr");
        let (tx, hits) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let max = max_in_flight.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, script, in_flight, max) =
                    (tx.clone(), script.clone(), in_flight.clone(), max.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (tx, script, in_flight, max) =
                            (tx.clone(), script.clone(), in_flight.clone(), max.clone());
                        async move {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(now, Ordering::SeqCst);
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let id = header("x-hookgate-event-id");
                            let attempt = header("x-hookgate-attempt").parse().unwrap_or(0);
                            let _ = req.into_body().collect().await;
                            let _ = tx.send(Hit {
                                id: id.clone(),
                                attempt,
                            });
                            let (status, delay) = script(&id, attempt);
                            tokio::time::sleep(delay).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *resp.status_mut() = StatusCode::from_u16(status).expect("valid status");
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            max_in_flight,
            task,
        }
    }

    /// The next request, within `within`.
    async fn next(&mut self, within: Duration) -> Option<Hit> {
        tokio::time::timeout(within, self.hits.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One source's dispatcher on a store of its own.
struct Harness {
    store: Store,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Harness {
    /// A store for source `t` delivering to `app` with `[forward]` keys `forward`; the dispatcher is
    /// not started yet.
    fn new(app: SocketAddr, forward: &str) -> (Self, Arc<Target>) {
        let dir = TempDir::new().expect("temp dir");
        let store = Store::open(&dir.path().join("store")).expect("open store");
        let toml = format!(
            "[forward]\n{forward}\n[[sources]]\nname = \"t\"\npath = \"/hooks/t\"\nprovider = \"github\"\n\
             secrets = [\"s\"]\nupstream = \"http://{app}/app\"\n"
        );
        let config = Config::from_toml(&toml, |_| None).unwrap_or_else(|e| panic!("{e}"));
        let source = config.sources[0].forward.clone();
        let this = Self {
            store,
            stop: CancellationToken::new(),
            task: None,
            _dir: dir,
        };
        (this, source)
    }

    fn start(&mut self, source: Arc<Target>) {
        self.task = Some(tokio::spawn(dispatch(
            source.clone(),
            self.store.clone(),
            Outputs::default()
                .for_sources(std::slice::from_ref(&source))
                .remove(0),
            self.stop.clone(),
        )));
    }

    /// Queues event `id`; the store wakes the dispatcher, as it does on the accept path.
    async fn enqueue(&self, id: &str) {
        let event = NewEvent {
            source: "t",
            event_id: id,
            method: "POST",
            query: None,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: bytes::Bytes::from_static(b"{}"),
            verified: true,
        };
        self.store
            .accept(&event, SystemTime::now(), Duration::from_secs(3600))
            .await
            .expect("accepted");
    }

    /// How many attempts event `id` has recorded, and whether it is still queued.
    async fn attempts(&self, id: &str) -> (usize, bool) {
        let events = self.store.list(&EventQuery::default()).await.expect("list");
        let (_, record) = events
            .iter()
            .find(|(_, r)| r.event_id == id)
            .unwrap_or_else(|| panic!("{id} is stored"));
        let queued = matches!(record.state, EventState::Queued { .. });
        (record.attempts.len(), queued)
    }

    /// Waits (polling, at most 10 s) until every event of `ids` has recorded `n` attempts.
    async fn until_attempts(&self, ids: &[String], n: usize) {
        for _ in 0..1000 {
            let mut all = true;
            for id in ids {
                all &= self.attempts(id).await.0 == n;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not every one of {ids:?} recorded {n} attempts within 10 s");
    }

    /// Stops the dispatcher and waits for it (it drains its in-flight deliveries first).
    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the dispatcher stopped")
                .expect("the dispatcher did not panic");
        }
    }
}

#[tokio::test]
async fn an_event_queued_while_idle_is_dispatched_at_once() {
    let mut app = App::start(|_, _| (200, Duration::ZERO)).await;
    let (mut h, source) = Harness::new(app.addr, "");
    h.start(source);
    // Let the dispatcher find the queue empty and go to sleep (the test runtime has one thread).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    h.enqueue("idle-1").await;
    let hit = app.next(PROMPT).await.expect("dispatched at once");
    assert_eq!(hit.id, "idle-1");
    h.stop().await;
}

#[tokio::test]
async fn a_backlog_larger_than_concurrency_is_delivered_once_each_using_every_slot() {
    let mut app = App::start(|_, _| (200, Duration::from_millis(5))).await;
    let (mut h, source) = Harness::new(app.addr, "concurrency = 4");
    let ids: Vec<String> = (0..60).map(|i| format!("backlog-{i}")).collect();
    for id in &ids {
        h.enqueue(id).await;
    }
    h.start(source);
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..ids.len() {
        let hit = app
            .next(Duration::from_secs(10))
            .await
            .expect("every event delivered");
        *seen.entry(hit.id).or_default() += 1;
    }
    assert!(
        app.next(Duration::from_millis(200)).await.is_none(),
        "an event came twice"
    );
    assert_eq!(seen.len(), ids.len());
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(
        app.max_in_flight.load(Ordering::SeqCst),
        4,
        "slots unused or exceeded"
    );
    h.stop().await;
    let counts = h.store.counts().await.expect("counts");
    assert_eq!((counts.delivered, counts.queued), (ids.len() as u64, 0));
}

#[tokio::test]
async fn a_wake_while_every_slot_is_busy_is_kept() {
    let mut app = App::start(|id, _| {
        let delay = if id == "busy" {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        };
        (200, delay)
    })
    .await;
    let (mut h, source) = Harness::new(app.addr, "concurrency = 1");
    h.start(source);
    h.enqueue("busy").await;
    assert_eq!(app.next(PROMPT).await.expect("first delivery").id, "busy");
    // The only slot is taken: this wake-up must wait for it, not be lost.
    h.enqueue("waiting").await;
    let hit = app.next(PROMPT).await.expect("dispatched once the slot was free");
    assert_eq!(hit.id, "waiting");
    h.stop().await;
}

#[tokio::test]
async fn a_retry_falls_due_while_another_delivery_is_in_flight() {
    let mut app = App::start(|id, attempt| match (id, attempt) {
        ("slow", _) => (200, Duration::from_secs(2)),
        (_, 1) => (503, Duration::ZERO),
        _ => (200, Duration::ZERO),
    })
    .await;
    let forward = "concurrency = 4\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"";
    let (mut h, source) = Harness::new(app.addr, forward);
    h.start(source);
    h.enqueue("slow").await;
    assert_eq!(app.next(PROMPT).await.expect("slow delivery").id, "slow");
    h.enqueue("flaky").await;
    let first = app.next(PROMPT).await.expect("first attempt");
    assert_eq!((first.id.as_str(), first.attempt), ("flaky", 1));
    // Nothing else is queued or accepted: only the retry's due time (at most 100 ms away) can bring
    // this about while "slow" is still in flight, for another 2 s.
    let second = app
        .next(Duration::from_secs(1))
        .await
        .expect("the retry came on time");
    assert_eq!((second.id.as_str(), second.attempt), ("flaky", 2));
    h.stop().await;
}

/// Retries far beyond any test: 5 to 10 minutes (equal jitter under a 10 minute ceiling).
const FAR_RETRIES: &str = "initial_backoff = \"10m\"\nmax_backoff = \"10m\"";

#[tokio::test]
async fn the_first_success_after_failures_releases_the_waiting_events_within_concurrency() {
    let mut app = App::start(|id, attempt| match (id, attempt) {
        (id, 1) if id.starts_with("waiting-") => (503, Duration::ZERO),
        _ => (200, Duration::from_millis(20)),
    })
    .await;
    let (mut h, source) = Harness::new(app.addr, &format!("concurrency = 2\n{FAR_RETRIES}"));
    h.start(source);
    let ids: Vec<String> = (0..8).map(|i| format!("waiting-{i}")).collect();
    for id in &ids {
        h.enqueue(id).await;
    }
    for _ in &ids {
        assert_eq!(app.next(PROMPT).await.expect("first attempts").attempt, 1);
    }
    h.until_attempts(&ids, 1).await;
    for id in &ids {
        assert!(h.attempts(id).await.1, "the failed events wait");
    }

    h.enqueue("after").await;
    let first = app.next(PROMPT).await.expect("the new event");
    assert_eq!((first.id.as_str(), first.attempt), ("after", 1));
    let mut released = Vec::new();
    for _ in &ids {
        let hit = app.next(PROMPT).await.expect("a waiting event released");
        assert_eq!(hit.attempt, 2, "{hit:?}");
        released.push(hit.id);
    }
    released.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(released, expected);
    assert!(
        app.max_in_flight.load(Ordering::SeqCst) <= 2,
        "the catch-up went past the source's concurrency"
    );
    h.until_attempts(&ids, 2).await;
    h.stop().await;
    assert_eq!(h.store.counts().await.expect("counts").queued, 0);
}

#[tokio::test]
async fn an_event_the_app_keeps_refusing_is_released_once_not_at_every_success() {
    let mut app = App::start(|id, _| match id {
        "poison" => (500, Duration::ZERO),
        _ => (200, Duration::ZERO),
    })
    .await;
    let (mut h, source) = Harness::new(app.addr, &format!("concurrency = 4\n{FAR_RETRIES}"));
    h.start(source);
    h.enqueue("poison").await;
    assert_eq!(app.next(PROMPT).await.expect("first attempt").attempt, 1);
    let poison = ["poison".to_owned()];
    h.until_attempts(&poison, 1).await;

    // The first success releases the waiting event once; the ones after it do not again.
    let mut poison_hits = 1;
    for i in 0..6 {
        let id = format!("good-{i}");
        h.enqueue(&id).await;
        loop {
            let hit = app.next(PROMPT).await.expect("a delivery");
            if hit.id == "poison" {
                poison_hits += 1;
                continue;
            }
            assert_eq!(hit.id, id);
            break;
        }
        h.until_attempts(&[id], 1).await;
        if i == 0 {
            h.until_attempts(&poison, 2).await;
        }
    }
    while let Some(hit) = app.next(Duration::from_millis(100)).await {
        assert_eq!(hit.id, "poison", "{hit:?}");
        poison_hits += 1;
    }
    assert_eq!(
        poison_hits, 2,
        "released once by the first success, then left to its backoff"
    );
    assert_eq!(h.attempts("poison").await, (2, true));
    h.stop().await;
}
