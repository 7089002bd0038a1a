//! Shadow mode (`enforce = false`): requests that fail verification are still accepted and forwarded,
//! marked `X-Hookgate-Verified: false`, and counted with their reason; verified ones are marked `true`.
//! With the default (`enforce = true`) nothing unverified is forwarded.

use std::time::Duration;

use http::StatusCode;

use crate::support::{github_headers, github_source, metric, post, TestGateway, TestSink};

const WAIT: Duration = Duration::from_secs(15);

fn shadow_source(name: &str, upstream: &str) -> String {
    format!("{}enforce = false\n", github_source(name, upstream))
}

#[tokio::test]
async fn failing_requests_are_forwarded_marked_unverified_and_counted_with_their_reason() {
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&shadow_source("shadow-a", &sink.url("/app"))).await;
    let unverified = r#"{"tampered":true}"#;
    let mut headers = github_headers("shadow-1", br#"{"tampered":false}"#);
    headers.retain(|(k, _)| k != "x-github-delivery");

    let reply = post(&gw.url("/hooks/shadow-a"), &headers, unverified).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, r#"{"status":"accepted"}"#);
    let got = sink.next(WAIT).await.expect("the unverified event is forwarded");
    assert_eq!(got.header("x-hookgate-verified"), "false");
    assert_eq!(got.body, unverified.as_bytes());
    // An unverified request's id is never taken from its (unauthenticated) headers.
    assert!(
        got.header("x-hookgate-event-id").starts_with("sha256:"),
        "{}",
        got.header("x-hookgate-event-id")
    );

    let valid = r#"{"valid":true}"#;
    let reply = post(
        &gw.url("/hooks/shadow-a"),
        &github_headers("shadow-2", valid.as_bytes()),
        valid,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let got = sink.next(WAIT).await.expect("the verified event is forwarded");
    assert_eq!(got.header("x-hookgate-verified"), "true");
    assert_eq!(got.header("x-hookgate-event-id"), "shadow-2");

    let text = gw.metrics().await;
    let line = r#"hookgate_requests_total{source="shadow-a",outcome="accepted_unverified",reason="signature_mismatch"}"#;
    assert_eq!(metric(&text, line), 1.0, "{text}");
    let line = r#"hookgate_requests_total{source="shadow-a",outcome="accepted",reason="none"}"#;
    assert_eq!(metric(&text, line), 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_missing_signature_in_shadow_mode_is_accepted_and_deduplicated_by_body() {
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&shadow_source("shadow-b", &sink.url("/app"))).await;
    let body = r#"{"unsigned":1}"#;
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let first = post(&gw.url("/hooks/shadow-b"), &headers, body).await;
    assert_eq!(first.body, r#"{"status":"accepted"}"#);
    let again = post(&gw.url("/hooks/shadow-b"), &headers, body).await;
    assert_eq!(again.body, r#"{"status":"duplicate"}"#);
    assert_eq!(
        sink.next(WAIT)
            .await
            .expect("forwarded")
            .header("x-hookgate-verified"),
        "false"
    );
    sink.assert_quiet(Duration::from_millis(400)).await;
    let text = gw.metrics().await;
    let line = r#"hookgate_requests_total{source="shadow-b",outcome="accepted_unverified",reason="missing_signature"}"#;
    assert_eq!(metric(&text, line), 1.0, "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn enforcing_sources_forward_verified_events_marked_true_and_nothing_else() {
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&github_source("shadow-off", &sink.url("/app"))).await;
    let reply = post(
        &gw.url("/hooks/shadow-off"),
        &github_headers("x", b"signed"),
        "not signed",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = post(&gw.url("/hooks/shadow-off"), &github_headers("y", b"ok"), "ok").await;
    assert_eq!(reply.status, StatusCode::OK);
    let got = sink.next(WAIT).await.expect("forwarded");
    assert_eq!(got.header("x-hookgate-event-id"), "y");
    assert_eq!(got.header("x-hookgate-verified"), "true");
    sink.assert_quiet(Duration::from_millis(300)).await;
    gw.stop().await;
}
