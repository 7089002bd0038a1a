//! kill -9 of the real binary under load while it publishes to a real broker (RabbitMQ, Redis,
//! NATS JetStream), then a restart on the same store: every id answered 2xx ends up in the broker.
//! JetStream drops a republish by its `Nats-Msg-Id`, so there each id is there exactly once.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    rabbitmq_output::{self, amqp_source, Rabbit},
    redis_output::{self, redis_source},
    support::{eventually, github_headers, post, unique, GatewayProcess, Stopped, GH_SECRET},
};

const CLIENTS: usize = 6;
const MAX_REQUESTS: usize = 300;
const WAIT: Duration = Duration::from_secs(60);

/// Runs a bounded load against source `name` of `gw`, kills the gateway -9 while it runs, and returns
/// the ids answered 2xx and the handle to restart it.
async fn load_then_kill9(gw: GatewayProcess, name: &str) -> (HashSet<String>, Stopped) {
    let url = gw.url(&format!("/hooks/{name}"));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, acked, sent) = (url.clone(), acked.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            // Bounded by the request budget, by time, and by the first failure (the gateway is gone).
            while started.elapsed() < Duration::from_secs(5) {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                if n >= MAX_REQUESTS {
                    return;
                }
                let id = format!("load-{c}-{n}");
                let body = format!("{{\"client\":{c},\"n\":{n}}}");
                let headers = github_headers(&id, body.as_bytes());
                let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                    // `post` panics on a failed request: the gateway being killed is one, so the
                    // request runs in a task of its own and a panic there is "no answer".
                    let url = url.clone();
                    tokio::spawn(async move { post(&url, &headers, body).await })
                        .await
                        .ok()
                })
                .await
                .ok()
                .flatten();
                match attempt {
                    Some(r) if r.status.is_success() => {
                        acked.lock().expect("lock").insert(id);
                    }
                    Some(r) => panic!("{id}: unexpected {} {}", r.status, r.body),
                    None => return,
                }
            }
        }));
    }
    eventually("the load is well under way", Duration::from_secs(20), || {
        let n = acked.lock().expect("lock").len();
        let elapsed = started.elapsed();
        async move { n >= 100 || (n >= 1 && elapsed >= Duration::from_secs(1)) }
    })
    .await;
    let in_flight_at_kill = sent.load(Ordering::SeqCst) < MAX_REQUESTS;
    let stopped = gw.kill9();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(15), c)
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
    (acked, stopped)
}

/// Polls `step` every 50 ms until it returns true; panics with `what` after [`WAIT`].
async fn until<F: AsyncFnMut() -> bool>(what: &str, mut step: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !step().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fast retries, so that the restart drains at once.
const FORWARD: &str = "max_attempts = 1000";

#[tokio::test]
async fn rabbitmq_kill9_under_load_then_restart_every_acknowledged_id_is_in_the_queue() {
    let name = "amqp_crash";
    let rabbit = Rabbit::connect(name).await;
    rabbit.declare_exchange().await;
    rabbit.bind_queue(name).await;
    let dir = TempDir::new().expect("temp dir");
    let config = amqp_source(name, rabbitmq_output::BROKER, &rabbit.exchange, false, FORWARD)
        .replace("concurrency = 1", "concurrency = 8");
    let gw = GatewayProcess::start(dir.path(), &config).await;
    let (acked, stopped) = load_then_kill9(gw, name).await;
    let _gw = stopped.restart().await;
    let mut seen = HashSet::new();
    until("every acknowledged id is in the queue", async || {
        for (props, _) in rabbit.take_all(1000).await {
            seen.insert(rabbitmq_output::event_id(&props));
        }
        acked.is_subset(&seen)
    })
    .await;
    rabbit.clean_up().await;
}

#[tokio::test]
async fn redis_kill9_under_load_then_restart_every_acknowledged_id_is_in_the_stream() {
    let name = "redis_crash";
    let stream = redis_output::stream_key(name);
    let mut conn = redis_output::connect().await;
    let dir = TempDir::new().expect("temp dir");
    let config = redis_source(name, redis_output::SERVER, &stream, "", FORWARD)
        .replace("concurrency = 1", "concurrency = 8");
    let gw = GatewayProcess::start(dir.path(), &config).await;
    let (acked, stopped) = load_then_kill9(gw, name).await;
    let _gw = stopped.restart().await;
    eventually("every acknowledged id is in the stream", WAIT, || {
        let mut conn = conn.clone();
        let (stream, acked) = (stream.clone(), &acked);
        async move {
            let ids: HashSet<String> = redis_output::entries(&mut conn, &stream)
                .await
                .iter()
                .map(|e| String::from_utf8_lossy(redis_output::field(e, "hookgate-event-id")).into_owned())
                .collect();
            acked.is_subset(&ids)
        }
    })
    .await;
    let _: () = redis::AsyncCommands::del(&mut conn, &stream).await.expect("DEL");
}

#[tokio::test]
async fn nats_kill9_under_load_then_restart_every_acknowledged_id_is_in_the_stream_exactly_once() {
    let name = "nats_crash";
    let subject = unique(name);
    let stream = subject.replace('.', "_");
    let js = async_nats::jetstream::new(
        async_nats::connect("nats://127.0.0.1:4222")
            .await
            .expect("the test connects to NATS"),
    );
    let dir = TempDir::new().expect("temp dir");
    let config = format!(
        r#"
[[sources]]
name = "{name}"
path = "/hooks/{name}"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "nats://127.0.0.1:4222"
[sources.output]
subject = "{subject}"
create_stream = true
[sources.forward]
timeout = "2s"
initial_backoff = "20ms"
max_backoff = "200ms"
concurrency = 8
{FORWARD}
"#
    );
    let gw = GatewayProcess::start(dir.path(), &config).await;
    let (acked, stopped) = load_then_kill9(gw, name).await;
    let _gw = stopped.restart().await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut next_seq = 1u64;
    until("every acknowledged id is in the stream", async || {
        let Ok(mut s) = js.get_stream(&stream).await else {
            return false;
        };
        let Ok(last) = s.info().await.map(|info| info.state.last_sequence) else {
            return false;
        };
        // Bounded by the stream's last sequence.
        while next_seq <= last {
            let Ok(m) = s.get_raw_message(next_seq).await else {
                return false;
            };
            let id = m
                .headers
                .get("hookgate-event-id")
                .expect("hookgate-event-id")
                .as_str()
                .to_owned();
            *counts.entry(id).or_default() += 1;
            next_seq += 1;
        }
        acked.iter().all(|id| counts.contains_key(id))
    })
    .await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "JetStream kept a republished id: {twice:?}");
    let _ = js.delete_stream(&stream).await;
}
