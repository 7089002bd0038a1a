//! Deduplication: an event id is accepted once per source within the window, whatever the concurrency
//! and across restarts; a repeat is answered 200 `duplicate` and never delivered again.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::{github_headers, github_source, metric, post, Reply2, TestGateway, TestSink};

/// Bound of every wait for a delivery.
const WAIT: Duration = Duration::from_secs(15);
/// How long the app must stay quiet after the one expected delivery.
const QUIET: Duration = Duration::from_millis(500);

fn requests_total(metrics: &str, source: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"{outcome}\",reason=\"none\"}}"),
    )
}

/// `(accepted, duplicate)` counts of `source`.
async fn counts(gw: &TestGateway, source: &str) -> (f64, f64) {
    let text = gw.metrics().await;
    (
        requests_total(&text, source, "accepted"),
        requests_total(&text, source, "duplicate"),
    )
}

/// `"accepted"` or `"duplicate"`; panics on anything but a 200 with one of them.
fn status_of(reply: &Reply2) -> String {
    assert_eq!(
        reply.status,
        http::StatusCode::OK,
        "response body: {}",
        reply.body
    );
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON response");
    let status = json["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status in {json}"))
        .to_owned();
    assert!(
        status == "accepted" || status == "duplicate",
        "unexpected status {status}"
    );
    status
}

/// The headers of a signed GitHub delivery without `X-GitHub-Delivery`.
fn headers_without_delivery(body: &[u8]) -> Vec<(String, String)> {
    let mut headers = github_headers("unused", body);
    headers.retain(|(k, _)| k != "x-github-delivery");
    headers
}

#[tokio::test]
async fn same_delivery_id_twice_is_answered_duplicate_and_delivered_once() {
    let mut sink = TestSink::start().await;
    let source = "dd-twice";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app"))).await;
    let (acc0, dup0) = counts(&gw, source).await;
    let url = gw.url(&format!("/hooks/{source}"));

    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let headers = github_headers("dd-twice-1", &body);
    assert_eq!(status_of(&post(&url, &headers, body.clone()).await), "accepted");
    let second = post(&url, &headers, body.clone()).await;
    assert_eq!(status_of(&second), "duplicate");
    assert_eq!(second.body, r#"{"status":"duplicate"}"#);

    let r = sink.next(WAIT).await.expect("the first copy is delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "dd-twice-1");
    assert_eq!(r.body.as_ref(), body.as_slice());
    sink.assert_quiet(QUIET).await;

    let (acc1, dup1) = counts(&gw, source).await;
    assert_eq!(
        (acc1 - acc0, dup1 - dup0),
        (1.0, 1.0),
        "accepted and duplicate counters"
    );
}

#[tokio::test]
async fn same_delivery_id_with_another_body_is_still_a_duplicate() {
    let mut sink = TestSink::start().await;
    let source = "dd-samebody";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app"))).await;
    let url = gw.url(&format!("/hooks/{source}"));

    let first = b"{\"n\":1}".to_vec();
    let other = b"{\"n\":2}".to_vec();
    assert_eq!(
        status_of(&post(&url, &github_headers("dd-sb-1", &first), first.clone()).await),
        "accepted"
    );
    assert_eq!(
        status_of(&post(&url, &github_headers("dd-sb-1", &other), other).await),
        "duplicate"
    );

    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(
        r.body.as_ref(),
        first.as_slice(),
        "the first copy is the one delivered"
    );
    sink.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn twenty_concurrent_copies_give_one_accepted_nineteen_duplicates_and_one_delivery() {
    let mut sink = TestSink::start().await;
    let source = "dd-concurrent";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app"))).await;
    let (acc0, dup0) = counts(&gw, source).await;
    let url = gw.url(&format!("/hooks/{source}"));

    let body = br#"{"concurrent":true}"#.to_vec();
    let headers = github_headers("dd-concurrent-1", &body);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (url, headers, body, barrier) = (url.clone(), headers.clone(), body.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                post(&url, &headers, body).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(status_of(&task.await.expect("request task")));
    }
    let accepted = statuses.iter().filter(|s| *s == "accepted").count();
    let duplicates = statuses.iter().filter(|s| *s == "duplicate").count();
    assert_eq!((accepted, duplicates), (1, 19), "statuses: {statuses:?}");

    let r = sink.next(WAIT).await.expect("delivered once");
    assert_eq!(r.header("x-hookgate-event-id"), "dd-concurrent-1");
    sink.assert_quiet(QUIET).await;

    let (acc1, dup1) = counts(&gw, source).await;
    assert_eq!(
        (acc1 - acc0, dup1 - dup0),
        (1.0, 19.0),
        "accepted and duplicate counters"
    );
}

#[tokio::test]
async fn dedup_is_per_source_the_same_id_on_two_sources_is_accepted_twice() {
    let mut sink = TestSink::start().await;
    let (a, b) = ("dd-source-a", "dd-source-b");
    let toml = format!(
        "{}{}",
        github_source(a, &sink.url("/app/a")),
        github_source(b, &sink.url("/app/b"))
    );
    let gw = TestGateway::start(&toml).await;

    let body = br#"{"shared":"id"}"#.to_vec();
    let headers = github_headers("dd-shared-id", &body);
    for source in [a, b] {
        let reply = post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await;
        assert_eq!(status_of(&reply), "accepted", "first copy on {source}");
    }
    // And each source still deduplicates on its own.
    for source in [a, b] {
        let reply = post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await;
        assert_eq!(status_of(&reply), "duplicate", "second copy on {source}");
    }

    let mut got: Vec<_> = sink
        .take(2, WAIT)
        .await
        .into_iter()
        .map(|r| {
            (
                r.header("x-hookgate-source").to_owned(),
                r.target.clone(),
                r.header("x-hookgate-event-id").to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (a.to_owned(), "/app/a".to_owned(), "dd-shared-id".to_owned()),
            (b.to_owned(), "/app/b".to_owned(), "dd-shared-id".to_owned())
        ]
    );
    sink.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn a_duplicate_after_a_restart_on_the_same_store_is_still_a_duplicate() {
    let mut sink = TestSink::start().await;
    let source = "dd-restart";
    let toml = github_source(source, &sink.url("/app"));
    let gw = TestGateway::start(&toml).await;

    let body = br#"{"before":"restart"}"#.to_vec();
    let headers = github_headers("dd-restart-1", &body);
    let reply = post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await;
    assert_eq!(status_of(&reply), "accepted");
    let r = sink.next(WAIT).await.expect("delivered before the restart");
    assert_eq!(r.header("x-hookgate-event-id"), "dd-restart-1");

    let dir = gw.stop().await;
    let gw = TestGateway::start_in(&toml, dir).await;
    let (acc0, dup0) = counts(&gw, source).await;
    let reply = post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await;
    assert_eq!(
        status_of(&reply),
        "duplicate",
        "the dedup mark survived the restart"
    );
    sink.assert_quiet(QUIET).await;

    // A new id is still accepted after the restart.
    let other = br#"{"after":"restart"}"#.to_vec();
    let reply = post(
        &gw.url(&format!("/hooks/{source}")),
        &github_headers("dd-restart-2", &other),
        other,
    )
    .await;
    assert_eq!(status_of(&reply), "accepted");
    let r = sink.next(WAIT).await.expect("delivered after the restart");
    assert_eq!(r.header("x-hookgate-event-id"), "dd-restart-2");
    sink.assert_quiet(QUIET).await;

    let (acc1, dup1) = counts(&gw, source).await;
    assert_eq!((acc1 - acc0, dup1 - dup0), (1.0, 1.0));
    gw.stop().await;
}

#[tokio::test]
async fn without_a_delivery_id_the_body_digest_is_the_id() {
    let mut sink = TestSink::start().await;
    let source = "dd-digest";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app"))).await;
    let (acc0, dup0) = counts(&gw, source).await;
    let url = gw.url(&format!("/hooks/{source}"));

    let body = b"{\"no\":\"delivery header\"}\n".to_vec();
    let other = b"{\"no\":\"delivery header\"}".to_vec(); // differs by one trailing byte
    assert_eq!(
        status_of(&post(&url, &headers_without_delivery(&body), body.clone()).await),
        "accepted"
    );
    assert_eq!(
        status_of(&post(&url, &headers_without_delivery(&body), body.clone()).await),
        "duplicate"
    );
    assert_eq!(
        status_of(&post(&url, &headers_without_delivery(&other), other.clone()).await),
        "accepted"
    );

    let mut got: Vec<_> = sink
        .take(2, WAIT)
        .await
        .into_iter()
        .map(|r| (r.header("x-hookgate-event-id").to_owned(), r.body.to_vec()))
        .collect();
    got.sort();
    let mut want = vec![
        (format!("sha256:{}", hex::encode(Sha256::digest(&body))), body),
        (format!("sha256:{}", hex::encode(Sha256::digest(&other))), other),
    ];
    want.sort();
    assert_eq!(got, want, "event ids are the body digests");
    sink.assert_quiet(QUIET).await;

    let (acc1, dup1) = counts(&gw, source).await;
    assert_eq!((acc1 - acc0, dup1 - dup0), (2.0, 1.0));
}
