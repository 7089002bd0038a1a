//! The Redis Streams output, against the real server on 127.0.0.1:6379, for the outage test through
//! a loopback proxy that the test opens and closes. Each test has a stream key of its own (named for
//! the test and the run), deleted at its end.

use std::{collections::HashMap, time::Duration};

use redis::{aio::MultiplexedConnection, streams::StreamRangeReply, AsyncCommands, Value};

use crate::support::{
    admin_event_id, deliveries, eventually, github_headers, post, replay, unique, TcpProxy, TestGateway,
    GH_SECRET,
};

pub const SERVER: &str = "redis://127.0.0.1:6379/0";
const WAIT: Duration = Duration::from_secs(30);

/// A GitHub source `name` appending to `stream` on `server`, with quick retries and `extra` keys
/// in `[sources.forward]`.
pub fn redis_source(name: &str, server: &str, stream: &str, output_extra: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
path = "/hooks/{name}"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "{server}"
[sources.output]
stream = "{stream}"
{output_extra}
[sources.forward]
timeout = "2s"
initial_backoff = "20ms"
max_backoff = "200ms"
concurrency = 1
{extra}
"#
    )
}

/// The test's connection.
pub async fn connect() -> MultiplexedConnection {
    redis::Client::open(SERVER)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test connects to Redis")
}

/// A stream key unique to this run.
pub fn stream_key(test: &str) -> String {
    unique(test).replace('.', ":")
}

/// Every entry of `stream`, oldest first, as field maps.
pub async fn entries(conn: &mut MultiplexedConnection, stream: &str) -> Vec<HashMap<String, Vec<u8>>> {
    let reply: StreamRangeReply = conn.xrange_all(stream).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::BulkString(bytes) => (k, bytes),
                    other => panic!("field {k}: {other:?}"),
                })
                .collect()
        })
        .collect()
}

pub async fn len(conn: &mut MultiplexedConnection, stream: &str) -> usize {
    conn.xlen(stream).await.expect("XLEN")
}

/// The text of field `name`.
pub fn field<'a>(entry: &'a HashMap<String, Vec<u8>>, name: &str) -> &'a [u8] {
    entry
        .get(name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .as_slice()
}

async fn send_event(gw: &TestGateway, name: &str, id: &str, body: &[u8]) {
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body),
        body.to_vec(),
    )
    .await;
    assert!(r.status.is_success(), "{id}: {} {}", r.status, r.body);
}

async fn count(gw: &TestGateway, name: &str, outcome: &str, error_source: &str) -> f64 {
    deliveries(&gw.metrics().await, name, "redis", outcome, error_source)
}

#[tokio::test]
async fn events_arrive_byte_for_byte_with_their_headers_and_a_duplicate_is_not_added_again() {
    let name = "redis_bytes";
    let stream = stream_key(name);
    let mut conn = connect().await;
    let gw = TestGateway::start(&redis_source(name, SERVER, &stream, "maxlen = 1000", "")).await;
    // Not UTF-8, with a NUL: the body must be the exact bytes.
    let body: &[u8] = b"{\"action\":\"opened\"}\xff\x00\xfe";
    send_event(&gw, name, "evt-1", body).await;
    eventually("evt-1 is in the stream", WAIT, || {
        let mut conn = conn.clone();
        let stream = stream.clone();
        async move { len(&mut conn, &stream).await == 1 }
    })
    .await;
    // The sender's retry: 2xx, and not added again; evt-2 goes after it through the single slot.
    send_event(&gw, name, "evt-1", body).await;
    send_event(&gw, name, "evt-2", b"{}").await;
    eventually("evt-2 is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 2.0
    })
    .await;
    let all = entries(&mut conn, &stream).await;
    assert_eq!(all.len(), 2, "one entry per event");
    let e = &all[0];
    assert_eq!(field(e, "body"), body);
    assert_eq!(field(e, "hookgate-source"), name.as_bytes());
    assert_eq!(field(e, "hookgate-event-id"), b"evt-1");
    assert_eq!(field(e, "hookgate-attempt"), b"1");
    assert_eq!(field(e, "hookgate-verified"), b"true");
    assert_eq!(field(e, "content-type"), b"application/json");
    assert_eq!(field(e, "x-github-event"), b"push");
    assert_eq!(field(e, "x-github-delivery"), b"evt-1");
    assert!(!e.contains_key("host"), "hop-by-hop headers are dropped");
    assert_eq!(field(&all[1], "hookgate-event-id"), b"evt-2");
    gw.stop().await;
    let _: () = conn.del(&stream).await.expect("DEL");
}

#[tokio::test]
async fn a_server_that_is_unreachable_makes_deliveries_retry_and_every_event_arrives_once_it_is_back() {
    let name = "redis_outage";
    let stream = stream_key(name);
    let mut conn = connect().await;
    let proxy = TcpProxy::start("127.0.0.1:6379".parse().expect("addr")).await;
    let url = format!("redis://{}/0", proxy.addr());
    let gw = TestGateway::start(&redis_source(name, &url, &stream, "", "")).await;
    // Connected and delivering first, so that the outage cuts a live connection.
    send_event(&gw, name, "o-0", b"o-0").await;
    eventually("o-0 is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 1.0
    })
    .await;

    proxy.close();
    for id in ["o-1", "o-2", "o-3"] {
        // Accepted at once although the server cannot be reached.
        send_event(&gw, name, id, id.as_bytes()).await;
    }
    eventually("failed attempts are retried", WAIT, || async {
        count(&gw, name, "retry", "network").await >= 2.0
    })
    .await;
    proxy.open();
    eventually("every event is delivered", WAIT, || async {
        count(&gw, name, "delivered", "none").await == 4.0
    })
    .await;
    let mut ids: Vec<Vec<u8>> = entries(&mut conn, &stream)
        .await
        .iter()
        .map(|e| field(e, "hookgate-event-id").to_vec())
        .collect();
    ids.sort();
    assert_eq!(ids, [b"o-0", b"o-1", b"o-2", b"o-3"]);
    assert_eq!(count(&gw, name, "dead_letter", "network").await, 0.0);
    gw.stop().await;
    let _: () = conn.del(&stream).await.expect("DEL");
}

#[tokio::test]
async fn a_dead_letter_after_max_attempts_is_added_by_its_replay() {
    let name = "redis_dead";
    let stream = stream_key(name);
    let mut conn = connect().await;
    // The key holds a string: every XADD fails with WRONGTYPE.
    let _: () = conn.set(&stream, "not a stream").await.expect("SET");
    let gw = TestGateway::start(&redis_source(name, SERVER, &stream, "", "max_attempts = 2")).await;
    send_event(&gw, name, "d-1", b"{\"dead\":true}").await;
    eventually("the event is a dead letter", WAIT, || async {
        count(&gw, name, "dead_letter", "network").await == 1.0
    })
    .await;
    assert_eq!(count(&gw, name, "retry", "network").await, 1.0);
    let events = crate::support::send("GET", &gw.admin_url("/events?limit=10"), &[], "").await;
    assert!(
        events.body.contains("WRONGTYPE"),
        "the reason says why: {}",
        events.body
    );

    let _: () = conn.del(&stream).await.expect("DEL");
    replay(gw.admin, admin_event_id(gw.admin, "d-1").await).await;
    eventually("the replay is in the stream", WAIT, || {
        let mut conn = conn.clone();
        let stream = stream.clone();
        async move { len(&mut conn, &stream).await == 1 }
    })
    .await;
    let all = entries(&mut conn, &stream).await;
    assert_eq!(field(&all[0], "body"), b"{\"dead\":true}");
    assert_eq!(
        field(&all[0], "hookgate-attempt"),
        b"3",
        "the attempt count continues"
    );
    gw.stop().await;
    let _: () = conn.del(&stream).await.expect("DEL");
}
