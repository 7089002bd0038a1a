//! Silence alerts: a source with `expect_within` gets a gauge of seconds since its last event, and
//! `hookgate_source_silent` goes to 1 when that exceeds `expect_within`, and back to 0 after an event.
//! `/readyz` ignores silence.

use std::time::Duration;

use http::StatusCode;

use crate::support::{eventually, github_headers, github_source, metric, post, send, TestGateway, TestSink};

/// Bound of every wait: silences are checked every second.
const WAIT: Duration = Duration::from_secs(15);

/// `(silence seconds, silent)` of `source`, from `/metrics`.
async fn silence(gw: &TestGateway, source: &str) -> (f64, f64) {
    let text = gw.metrics().await;
    (
        metric(
            &text,
            &format!("hookgate_source_silence_seconds{{source=\"{source}\"}}"),
        ),
        metric(&text, &format!("hookgate_source_silent{{source=\"{source}\"}}")),
    )
}

async fn deliver(gw: &TestGateway, source: &str, id: &str) -> StatusCode {
    let body = format!(r#"{{"id":"{id}"}}"#);
    post(
        &gw.url(&format!("/hooks/{source}")),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await
    .status
}

#[tokio::test]
async fn the_silence_gauge_moves_and_silent_flips_after_expect_within_and_back_after_an_event() {
    let sink = TestSink::start().await;
    let source = "sl-gauge";
    // 2s rather than 1s: after an event the source stays "not silent" for about 2s, a wide enough
    // window for the poll below on a busy machine.
    let toml = format!(
        "{}expect_within = \"2s\"\n",
        github_source(source, &sink.url("/app"))
    );
    let gw = TestGateway::start(&toml).await;

    eventually("the silence gauge counts from the start", WAIT, || async {
        silence(&gw, source).await.0 >= 1.0
    })
    .await;
    eventually("the source is silent after expect_within", WAIT, || async {
        silence(&gw, source).await.1 == 1.0
    })
    .await;
    let (seconds, _) = silence(&gw, source).await;
    assert!(seconds > 2.0, "silent only beyond expect_within: {seconds}");
    assert_eq!(
        send("GET", &gw.admin_url("/readyz"), &[], "").await.status,
        StatusCode::OK,
        "silence does not make the gateway unready"
    );

    assert_eq!(deliver(&gw, source, "sl-gauge-1").await, StatusCode::OK);
    eventually("an event ends the silence and resets the gauge", WAIT, || async {
        let (seconds, silent) = silence(&gw, source).await;
        silent == 0.0 && seconds < 2.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_source_without_expect_within_has_no_silence_gauges() {
    let sink = TestSink::start().await;
    let source = "sl-none";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app"))).await;
    // Once the other gateway's watched source has gauges, this gateway's check loop has run too.
    let watched = "sl-none-watched";
    let other = TestGateway::start(&format!(
        "{}expect_within = \"1h\"\n",
        github_source(watched, &sink.url("/app"))
    ))
    .await;
    eventually("the watched source has gauges", WAIT, || async {
        other
            .metrics()
            .await
            .contains(&format!("hookgate_source_silent{{source=\"{watched}\"}} 0"))
    })
    .await;
    let text = gw.metrics().await;
    for gauge in ["hookgate_source_silence_seconds", "hookgate_source_silent"] {
        assert!(
            !text.contains(&format!("{gauge}{{source=\"{source}\"}}")),
            "no {gauge} for an unwatched source"
        );
    }
    other.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_that_adds_expect_within_starts_watching() {
    let sink = TestSink::start().await;
    let source = "sl-reload";
    let plain = github_source(source, &sink.url("/app"));
    let gw = TestGateway::start_reloadable(&plain).await;
    let report = gw.reload_with(&format!("{plain}expect_within = \"1s\"\n")).await;
    assert!(report.applied, "{report:?}");
    eventually(
        "the source is silent after the new expect_within",
        WAIT,
        || async { silence(&gw, source).await.1 == 1.0 },
    )
    .await;
    let report = gw.reload_with(&plain).await;
    assert!(report.applied, "{report:?}");
    assert_eq!(
        silence(&gw, source).await,
        (0.0, 0.0),
        "unwatched: the alert is cleared"
    );
    gw.stop().await;
}
