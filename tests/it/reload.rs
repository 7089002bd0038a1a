//! Hot reload: a bad file changes nothing and is reported; a good one is swapped in without a restart,
//! on open connections too, keeping the queue and the dedup state; start-only keys are reported.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;

use crate::support::{
    eventually, github_headers, github_source, metric, post, send, GatewayProcess, TestGateway, TestSink,
};

/// Bound of every wait for a delivery or a state change.
const WAIT: Duration = Duration::from_secs(15);
/// How long the app must stay quiet after the expected deliveries.
const QUIET: Duration = Duration::from_millis(500);

/// POSTs a signed GitHub event `id` to `/hooks/{source}` on `gw`; returns status and body.
async fn deliver(gw: &TestGateway, source: &str, id: &str) -> (StatusCode, String) {
    let body = format!(r#"{{"id":"{id}"}}"#);
    let reply = post(
        &gw.url(&format!("/hooks/{source}")),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await;
    (reply.status, reply.body)
}

fn rejected_reloads(metrics: &str) -> f64 {
    metric(metrics, "hookgate_config_reloads_total{result=\"rejected\"}")
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_config_and_reports_every_error() {
    let mut sink = TestSink::start().await;
    let good = github_source("rl-bad", &sink.url("/app"));
    let gw = TestGateway::start_reloadable(&good).await;
    let rejected_before = rejected_reloads(&gw.metrics().await);

    let bad = format!(
        "{good}{}",
        r#"
[[sources]]
name = "rl-bad-2"
path = "/hooks/rl-bad-2"
provider = "github"
secrets = []
upstream = "ftp://127.0.0.1/"
"#
    );
    let report = gw.reload_with(&bad).await;
    assert!(!report.applied, "{report:?}");
    assert!(report.restart_required.is_empty(), "{report:?}");
    assert_eq!(
        report.errors.len(),
        2,
        "every problem is reported: {:?}",
        report.errors
    );
    for key in ["sources.rl-bad-2.secrets", "sources.rl-bad-2.upstream"] {
        assert!(
            report.errors.iter().any(|e| e.starts_with(key)),
            "no error for {key} in {:?}",
            report.errors
        );
    }
    assert!(
        rejected_reloads(&gw.metrics().await) >= rejected_before + 1.0,
        "the rejection is counted"
    );

    // Still running on the old config.
    assert_eq!(deliver(&gw, "rl-bad", "rl-bad-1").await.0, StatusCode::OK);
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "rl-bad-1");

    // A file that does not parse at all is rejected the same way.
    let report = gw.reload_with("[server\nlisten = 1").await;
    assert!(!report.applied);
    assert!(!report.errors.is_empty());
    assert_eq!(deliver(&gw, "rl-bad", "rl-bad-2").await.0, StatusCode::OK);
    gw.stop().await;
}

/// A client on one HTTP/1.1 connection to `gw`'s webhook listener.
async fn connect(gw: &TestGateway) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

/// POSTs a signed event on the connection `send`.
async fn deliver_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    gw: &TestGateway,
    source: &str,
    id: &str,
) -> StatusCode {
    let body = format!(r#"{{"id":"{id}"}}"#);
    let mut req = Request::post(format!("/hooks/{source}")).header("host", gw.addr.to_string());
    for (k, v) in github_headers(id, body.as_bytes()) {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    send.ready().await.expect("the connection is still open");
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered in time")
        .expect("answered on the same connection");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test]
async fn a_new_source_is_served_without_a_restart_even_on_an_open_connection() {
    let mut sink = TestSink::start().await;
    let old = github_source("rl-new-a", &sink.url("/a"));
    let gw = TestGateway::start_reloadable(&old).await;
    let mut conn = connect(&gw).await;
    assert_eq!(
        deliver_on(&mut conn, &gw, "rl-new-b", "rl-new-0").await,
        StatusCode::NOT_FOUND
    );

    let report = gw
        .reload_with(&format!("{old}{}", github_source("rl-new-b", &sink.url("/b"))))
        .await;
    assert!(report.applied, "{report:?}");
    assert!(
        report.errors.is_empty() && report.restart_required.is_empty(),
        "{report:?}"
    );

    assert_eq!(
        deliver_on(&mut conn, &gw, "rl-new-b", "rl-new-1").await,
        StatusCode::OK,
        "the connection opened before the reload sees the new source"
    );
    let r = sink
        .next(WAIT)
        .await
        .expect("the new source's forwarder delivers");
    assert_eq!(
        (r.target.as_str(), r.header("x-hookgate-event-id")),
        ("/b", "rl-new-1")
    );
    assert_eq!(deliver(&gw, "rl-new-a", "rl-new-2").await.0, StatusCode::OK);
    let r = sink.next(WAIT).await.expect("the old source still delivers");
    assert_eq!(
        (r.target.as_str(), r.header("x-hookgate-event-id")),
        ("/a", "rl-new-2")
    );
    sink.assert_quiet(QUIET).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_duplicate_stays_a_duplicate_and_the_queue_survives_a_reload() {
    let sink = TestSink::start().await;
    let app = sink.shut();
    // The app is down: the first event stays queued across the reload, retried quickly.
    let toml = format!(
        "[forward]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n{}",
        github_source("rl-dup", &format!("http://{app}/app"))
    );
    let gw = TestGateway::start_reloadable(&toml).await;
    let (status, body) = deliver(&gw, "rl-dup", "rl-dup-1").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"accepted"}"#)
    );

    let report = gw
        .reload_with(&format!(
            "{toml}{}",
            github_source("rl-dup-other", "http://127.0.0.1:1/")
        ))
        .await;
    assert!(report.applied, "{report:?}");

    let (status, body) = deliver(&gw, "rl-dup", "rl-dup-1").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"duplicate"}"#),
        "the dedup state is kept"
    );
    let mut sink = TestSink::start_on(app).await;
    let r = sink
        .next(WAIT)
        .await
        .expect("the queued event is delivered after the reload");
    assert_eq!(r.header("x-hookgate-event-id"), "rl-dup-1");
    sink.assert_quiet(QUIET).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_removed_source_answers_404_after_a_reload() {
    let mut sink = TestSink::start().await;
    let keep = github_source("rl-rm-keep", &sink.url("/keep"));
    let gone = github_source("rl-rm-gone", &sink.url("/gone"));
    let gw = TestGateway::start_reloadable(&format!("{keep}{gone}")).await;
    assert_eq!(deliver(&gw, "rl-rm-gone", "rl-rm-1").await.0, StatusCode::OK);
    sink.next(WAIT).await.expect("delivered before the reload");

    let report = gw.reload_with(&keep).await;
    assert!(report.applied, "{report:?}");
    assert_eq!(
        deliver(&gw, "rl-rm-gone", "rl-rm-2").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(deliver(&gw, "rl-rm-keep", "rl-rm-3").await.0, StatusCode::OK);
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.target, "/keep");
    sink.assert_quiet(QUIET).await;
    gw.stop().await;
}

#[tokio::test]
async fn changed_listeners_need_a_restart_and_keep_serving() {
    let mut sink = TestSink::start().await;
    let source = github_source("rl-listen", &sink.url("/app"));
    let gw = TestGateway::start_reloadable(&source).await;
    let report = gw
        .reload_with(&format!(
            "[server]\nlisten = \"127.0.0.1:1\"\nrequest_timeout = \"20s\"\n[admin]\nlisten = \"127.0.0.1:2\"\n{source}"
        ))
        .await;
    assert!(report.applied, "{report:?}");
    assert_eq!(report.restart_required, ["server.listen", "admin.listen"]);

    // Still on the listeners it was started with.
    assert_eq!(deliver(&gw, "rl-listen", "rl-listen-1").await.0, StatusCode::OK);
    sink.next(WAIT).await.expect("delivered");
    assert_eq!(
        send("GET", &gw.admin_url("/readyz"), &[], "").await.status,
        StatusCode::OK
    );
    // The same file again: nothing more to restart for than before.
    assert_eq!(
        gw.reload().await.restart_required,
        ["server.listen", "admin.listen"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let dir = TempDir::new().expect("temp dir");
    let mut sink = TestSink::start().await;
    let a = github_source("rl-hup-a", &sink.url("/a"));
    let b = github_source("rl-hup-b", &sink.url("/b"));
    let mut gw = GatewayProcess::start(dir.path(), &a).await;
    let url_b = gw.url("/hooks/rl-hup-b");
    let post_b = |id: &'static str| {
        let url = url_b.clone();
        async move {
            let body = format!(r#"{{"id":"{id}"}}"#);
            post(&url, &github_headers(id, body.as_bytes()), body)
                .await
                .status
        }
    };
    assert_eq!(post_b("hup-0").await, StatusCode::NOT_FOUND);

    gw.rewrite(&format!("{a}{b}"));
    gw.sighup();
    eventually("the new source is served", WAIT, || async {
        post_b("hup-1").await == StatusCode::OK
    })
    .await;
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(
        (r.target.as_str(), r.header("x-hookgate-event-id")),
        ("/b", "hup-1")
    );

    gw.rewrite("[[sources]]\nname = \"Not A Name\"\n");
    gw.sighup();
    let metrics_url = gw.admin_url("/metrics");
    eventually("the bad file is rejected", WAIT, || async {
        rejected_reloads(&send("GET", &metrics_url, &[], "").await.body) == 1.0
    })
    .await;
    let text = send("GET", &metrics_url, &[], "").await.body;
    assert_eq!(
        metric(&text, "hookgate_config_reloads_total{result=\"applied\"}"),
        1.0
    );
    assert!(gw.is_running(), "a bad file never stops the gateway");
    assert_eq!(
        post_b("hup-2").await,
        StatusCode::OK,
        "still on the last good config"
    );
    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "hup-2");

    gw.sigterm();
    assert_eq!(gw.wait(WAIT).await, Some(0));
}
