//! `[store] max_queued`: with the app down, the queue fills to the bound; past it a new event is 503
//! `queue_full` (with `Retry-After`) while a retry of a stored one is still 200, and the gateway stays
//! ready; once the app is back and the queue drains, new events are accepted again.

use std::time::Duration;

use http::StatusCode;

use crate::support::{
    eventually, free_addr, github_headers, github_source, metric, post, send, Reply2, TestGateway, TestSink,
};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(15);

async fn deliver(gw: &TestGateway, source: &str, id: &str) -> Reply2 {
    let body = format!(r#"{{"id":"{id}"}}"#);
    post(
        &gw.url(&format!("/hooks/{source}")),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await
}

#[tokio::test]
async fn past_max_queued_new_events_are_503_duplicates_200_and_the_queue_drains_when_the_app_is_back() {
    let name = "qf";
    let app = free_addr();
    // The first lines land in the `[store]` table that the test gateway starts the file with.
    let toml = format!(
        "max_queued = 3\n{}\n[sources.forward]\ninitial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\n",
        github_source(name, &format!("http://{app}/app"))
    );
    let gw = TestGateway::start(&toml).await;
    let metric_name =
        format!("hookgate_requests_total{{source=\"{name}\",outcome=\"error\",reason=\"queue_full\"}}");
    assert_eq!(metric(&gw.metrics().await, &metric_name), 0.0, "registered at 0");
    for i in 0..3 {
        let reply = deliver(&gw, name, &format!("qf-{i}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body, r#"{"status":"accepted"}"#);
    }

    // The app is down, so the three stay queued: a fourth is refused, and not stored.
    let full = deliver(&gw, name, "qf-3").await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE, "{}", full.body);
    assert_eq!(full.body, r#"{"error":"queue_full"}"#);
    assert_eq!(full.headers["retry-after"], "30");
    assert_eq!(metric(&gw.metrics().await, &metric_name), 1.0, "counted");
    // A sender's retry of a stored event is still a duplicate.
    let dup = deliver(&gw, name, "qf-0").await;
    assert_eq!(dup.status, StatusCode::OK, "{}", dup.body);
    assert_eq!(dup.body, r#"{"status":"duplicate"}"#);
    // The gateway is healthy; the app is not.
    let ready = send("GET", &gw.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);

    // The app comes up: the three are delivered, and the queue takes new events again.
    let mut sink = TestSink::start_on(app).await;
    let mut ids: Vec<String> = sink
        .take(3, WAIT)
        .await
        .iter()
        .map(|r| r.header("x-hookgate-event-id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["qf-0", "qf-1", "qf-2"]);
    eventually("the drained queue takes the refused event", WAIT, || async {
        deliver(&gw, name, "qf-3").await.status == StatusCode::OK
    })
    .await;
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(
        r.header("x-hookgate-event-id"),
        "qf-3",
        "the refused event was not stored then"
    );
    gw.stop().await;
}
