//! A source's `rate_limit`: past its burst a sender gets 429 with a `Retry-After` that is honest
//! (waiting that long gets a 200), the refusals are counted, and a reload does not refill the bucket.

use std::time::Duration;

use http::StatusCode;

use crate::support::{
    eventually, github_headers, github_source, metric, post, Reply2, TestGateway, TestSink,
};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(15);
/// Most requests sent while looking for the first 429: far more than any burst here.
const MAX_SENDS: usize = 50;

/// `source` with a `rate_limit` line added.
fn limited_source(name: &str, upstream: &str, rate: &str) -> String {
    format!("{}rate_limit = {rate}\n", github_source(name, upstream))
}

/// POSTs a signed event `id` to `/hooks/{source}`.
async fn deliver(gw: &TestGateway, source: &str, id: &str) -> Reply2 {
    let body = format!(r#"{{"id":"{id}"}}"#);
    post(
        &gw.url(&format!("/hooks/{source}")),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await
}

/// Sends new events until one is refused; returns how many were accepted first and the refusal.
async fn send_until_limited(gw: &TestGateway, source: &str, prefix: &str) -> (usize, Reply2) {
    for i in 0..MAX_SENDS {
        let reply = deliver(gw, source, &format!("{prefix}-{i}")).await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => return (i, reply),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    panic!("no 429 in {MAX_SENDS} requests");
}

fn retry_after(reply: &Reply2) -> u64 {
    let value = reply
        .headers
        .get("retry-after")
        .expect("a 429 has Retry-After")
        .to_str()
        .expect("ascii");
    value
        .parse()
        .unwrap_or_else(|_| panic!("whole seconds: {value:?}"))
}

fn rate_limited(metrics: &str, source: &str) -> f64 {
    metric(
        metrics,
        &format!(
            "hookgate_requests_total{{source=\"{source}\",outcome=\"rejected\",reason=\"rate_limited\"}}"
        ),
    )
}

#[tokio::test]
async fn past_the_burst_is_429_with_retry_after_and_waiting_that_long_is_enough() {
    let mut sink = TestSink::start().await;
    // One token every 2 s: the burst is what gets through at once.
    let gw = TestGateway::start(&limited_source(
        "rl-burst",
        &sink.url("/app"),
        "{ per_second = 0.5, burst = 3 }",
    ))
    .await;
    assert_eq!(
        rate_limited(&gw.metrics().await, "rl-burst"),
        0.0,
        "registered at 0"
    );

    let (accepted, refused) = send_until_limited(&gw, "rl-burst", "rl-burst").await;
    assert!(accepted >= 3, "the burst of 3 got through: {accepted}");
    assert_eq!(refused.body, r#"{"error":"rate_limited"}"#);
    let wait = retry_after(&refused);
    assert!(
        (1..=2).contains(&wait),
        "a token is at most 2 s away: Retry-After {wait}"
    );
    assert_eq!(rate_limited(&gw.metrics().await, "rl-burst"), 1.0, "counted");
    // The refused event was not stored; the accepted ones were delivered.
    assert_eq!(sink.take(accepted, WAIT).await.len(), accepted);

    // Waiting the advertised time is enough for the next request.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let reply = deliver(&gw, "rl-burst", "rl-burst-after").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "rl-burst-after");
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_bucket_and_a_new_rate_keeps_its_level() {
    let sink = TestSink::start().await;
    let app = sink.url("/app");
    // One token every 100 s: nothing refills during the test unless a reload does it.
    let slow = limited_source("rl-reload", &app, "{ per_second = 0.01, burst = 2 }");
    let gw = TestGateway::start_reloadable(&slow).await;
    let (accepted, _) = send_until_limited(&gw, "rl-reload", "rl-reload-a").await;
    assert_eq!(accepted, 2);

    // The same file again (SIGHUP and POST /reload take this path): no burst gets through.
    let report = gw.reload().await;
    assert!(report.applied, "{report:?}");
    let reply = deliver(&gw, "rl-reload", "rl-reload-b").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
    assert!(
        retry_after(&reply) > 50,
        "still the slow rate: {:?}",
        reply.headers
    );

    // A larger burst: the level is kept, not filled to the new burst.
    let bigger = limited_source("rl-reload", &app, "{ per_second = 0.01, burst = 50 }");
    assert!(gw.reload_with(&bigger).await.applied);
    let reply = deliver(&gw, "rl-reload", "rl-reload-c").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);

    // A faster rate applies from the reload on: the next token comes in about 10 ms.
    let fast = limited_source("rl-reload", &app, "{ per_second = 100, burst = 1 }");
    assert!(gw.reload_with(&fast).await.applied);
    let mut n = 0;
    eventually("the faster rate lets a request through", WAIT, || {
        n += 1;
        let id = format!("rl-reload-d-{n}");
        let gw = &gw;
        async move { deliver(gw, "rl-reload", &id).await.status == StatusCode::OK }
    })
    .await;
    assert!(rate_limited(&gw.metrics().await, "rl-reload") >= 3.0);

    // Without a rate_limit the source is not limited at all.
    let unlimited = github_source("rl-reload", &app);
    assert!(gw.reload_with(&unlimited).await.applied);
    for i in 0..5 {
        let reply = deliver(&gw, "rl-reload", &format!("rl-reload-e-{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    gw.stop().await;
}
