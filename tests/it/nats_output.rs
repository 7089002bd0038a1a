//! The NATS JetStream output, against the real server on 127.0.0.1:4222 (and, for the outage test,
//! a second real `nats-server` that the test starts late). Each test has a subject and a stream of
//! its own, so that the tests run in parallel.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use async_nats::jetstream::{self, stream::Stream};
use serde_json::Value;

use crate::support::{eventually, free_addr, github_headers, post, send, TestGateway, GH_SECRET};

const BROKER: &str = "nats://127.0.0.1:4222";
const WAIT: Duration = Duration::from_secs(30);

/// A subject and its stream name (as `create_stream` names it), unique to this run.
fn subject(test: &str) -> (String, String) {
    let subject = format!("hgtest.{test}.{:08x}", rand::random::<u32>());
    let stream = subject.replace('.', "_");
    (subject, stream)
}

/// A GitHub source `name` publishing to `subject` on `broker`, with quick retries and `extra` keys in
/// `[sources.forward]`.
fn nats_source(name: &str, broker: &str, subject: &str, create_stream: bool, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
path = "/hooks/{name}"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "{broker}"
[sources.output]
subject = "{subject}"
create_stream = {create_stream}
[sources.forward]
timeout = "1s"
initial_backoff = "20ms"
max_backoff = "200ms"
concurrency = 1
{extra}
"#
    )
}

async fn jetstream_at(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("the test connects to NATS");
    jetstream::new(client)
}

/// The stream's message count, or `None` while it does not exist.
async fn messages(js: &jetstream::Context, stream: &str) -> Option<u64> {
    let mut s: Stream = js.get_stream(stream).await.ok()?;
    Some(s.info().await.ok()?.state.messages)
}

/// Sends GitHub delivery `id` with `body` to source `name`; asserts a 2xx and returns the answer.
async fn send_event(gw: &TestGateway, name: &str, id: &str, body: &[u8]) -> String {
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body),
        body.to_vec(),
    )
    .await;
    assert!(r.status.is_success(), "{id}: {} {}", r.status, r.body);
    r.body
}

/// `hookgate_deliveries_total` of `source` on the NATS output for one outcome and error source.
async fn deliveries(gw: &TestGateway, source: &str, outcome: &str, error_source: &str) -> f64 {
    let prefix = format!(
        "hookgate_deliveries_total{{source=\"{source}\",output=\"nats\",outcome=\"{outcome}\",error_source=\"{error_source}\"}} "
    );
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The admin id of the event with sender id `event_id`.
async fn admin_id(gw: &TestGateway, event_id: &str) -> u64 {
    let r = send("GET", &gw.admin_url("/events?limit=1000"), &[], "").await;
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is listed"))["id"]
        .as_u64()
        .expect("numeric id")
}

/// A header of a stored message, as text.
fn header<'a>(m: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn events_arrive_byte_for_byte_with_their_headers_and_a_duplicate_is_not_published_again() {
    let name = "nats_bytes";
    let (subject, stream) = subject(name);
    let js = jetstream_at(BROKER).await;
    let gw = TestGateway::start(&nats_source(name, BROKER, &subject, true, "")).await;
    // Not UTF-8, with a NUL: the payload must be the exact bytes.
    let body: &[u8] = b"{\"action\":\"opened\"}\xff\x00\xfe";
    send_event(&gw, name, "evt-1", body).await;
    eventually("evt-1 is in the stream", WAIT, || async {
        messages(&js, &stream).await == Some(1)
    })
    .await;
    let s = js.get_stream(&stream).await.expect("the stream was created");
    let m = s.get_raw_message(1).await.expect("message 1");
    assert_eq!(m.subject.as_str(), subject);
    assert_eq!(&m.payload[..], body);
    assert_eq!(header(&m, "Nats-Msg-Id"), format!("{name}:evt-1"));
    assert_eq!(header(&m, "hookgate-source"), name);
    assert_eq!(header(&m, "hookgate-event-id"), "evt-1");
    assert_eq!(header(&m, "hookgate-attempt"), "1");
    assert_eq!(header(&m, "hookgate-verified"), "true");
    assert_eq!(header(&m, "content-type"), "application/json");
    assert_eq!(header(&m, "x-github-event"), "push");
    assert_eq!(header(&m, "x-github-delivery"), "evt-1");
    assert!(m.headers.get("host").is_none(), "hop-by-hop headers are dropped");

    // The sender's retry: 2xx, and not delivered again. evt-2 goes after it through the single slot,
    // so once evt-2 is in, a forwarded duplicate would have been counted.
    send_event(&gw, name, "evt-1", body).await;
    send_event(&gw, name, "evt-2", b"{}").await;
    eventually("evt-2 is in the stream", WAIT, || async {
        messages(&js, &stream).await == Some(2)
    })
    .await;
    eventually("evt-2 is counted", WAIT, || async {
        deliveries(&gw, name, "delivered", "none").await == 2.0
    })
    .await;
    let m2 = s.get_raw_message(2).await.expect("message 2");
    assert_eq!(header(&m2, "hookgate-event-id"), "evt-2");

    // A republish of evt-1 (a replay, as after a crash between the ack and its record) is delivered
    // as far as the gateway knows, and JetStream drops it by its Nats-Msg-Id.
    let id = admin_id(&gw, "evt-1").await;
    let r = send("POST", &gw.admin_url(&format!("/events/{id}/replay")), &[], "").await;
    assert!(r.status.is_success(), "replay: {} {}", r.status, r.body);
    eventually("the republish is acked", WAIT, || async {
        deliveries(&gw, name, "delivered", "none").await == 3.0
    })
    .await;
    assert_eq!(messages(&js, &stream).await, Some(2), "the republish is dropped");
    gw.stop().await;
    let _ = js.delete_stream(&stream).await;
}

/// A `nats-server` with JetStream on `port`, storing in `dir`; killed on drop.
struct Broker(Child);

impl Broker {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (it is installed with the CI's NATS)");
        Self(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_broker_that_is_down_makes_deliveries_retry_and_every_event_arrives_once_it_is_up() {
    let name = "nats_outage";
    let (subject, stream) = subject(name);
    // Nothing listens here until the broker starts.
    let port = free_addr().port();
    let url = format!("nats://127.0.0.1:{port}");
    let gw = TestGateway::start(&nats_source(name, &url, &subject, true, "")).await;
    for id in ["o-1", "o-2", "o-3"] {
        // Accepted at once although the broker is down.
        send_event(&gw, name, id, id.as_bytes()).await;
    }
    eventually("failed attempts are retried", WAIT, || async {
        deliveries(&gw, name, "retry", "network").await >= 2.0
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _broker = Broker::start(port, dir.path());
    eventually("every event is delivered", WAIT, || async {
        deliveries(&gw, name, "delivered", "none").await == 3.0
    })
    .await;
    let js = jetstream_at(&url).await;
    assert_eq!(messages(&js, &stream).await, Some(3));
    assert_eq!(deliveries(&gw, name, "dead_letter", "network").await, 0.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_letter_after_max_attempts_is_published_by_its_replay() {
    let name = "nats_dead";
    let (subject, stream) = subject(name);
    let js = jetstream_at(BROKER).await;
    // No stream holds the subject, and none is created: every publish fails.
    let gw = TestGateway::start(&nats_source(name, BROKER, &subject, false, "max_attempts = 2")).await;
    send_event(&gw, name, "d-1", b"{\"dead\":true}").await;
    eventually("the event is a dead letter", WAIT, || async {
        deliveries(&gw, name, "dead_letter", "network").await == 1.0
    })
    .await;
    assert_eq!(deliveries(&gw, name, "retry", "network").await, 1.0);

    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .expect("the test creates the stream");
    let id = admin_id(&gw, "d-1").await;
    let r = send("POST", &gw.admin_url(&format!("/events/{id}/replay")), &[], "").await;
    assert!(r.status.is_success(), "replay: {} {}", r.status, r.body);
    eventually("the replay is in the stream", WAIT, || async {
        messages(&js, &stream).await == Some(1)
    })
    .await;
    let m = js
        .get_stream(&stream)
        .await
        .expect("stream")
        .get_raw_message(1)
        .await
        .expect("message 1");
    assert_eq!(&m.payload[..], b"{\"dead\":true}");
    assert_eq!(header(&m, "hookgate-attempt"), "3", "the attempt count continues");
    gw.stop().await;
    let _ = js.delete_stream(&stream).await;
}
