//! The token schemes through a running gateway: `bearer`, `basic` and `token` accept their secret
//! (any of several), answer `missing_token` and `token_mismatch` with 401 and count them, take the event
//! id from `id_header`, and a query token never reaches the app or the store.

use std::{path::Path, time::Duration};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hookgate::store::{EventQuery, Store};
use http::StatusCode;

use crate::support::{metric, post, TestGateway, TestSink};

const WAIT: Duration = Duration::from_secs(15);

/// The query secret: distinctive, so that finding its bytes anywhere in the store is not chance.
const QUERY_SECRET: &str = "q-secret-7f3a9c1e";
/// The second query secret (rotation).
const QUERY_NEXT: &str = "q-next-52b8d04a";

fn source(name: &str, provider: &str, secrets: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"{provider}\"\n\
         secrets = {secrets}\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn rejected(text: &str, source: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"rejected\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn each_token_scheme_accepts_its_secrets_and_rejects_with_its_reasons() {
    let mut sink = TestSink::start().await;
    let toml = [
        source(
            "bearer",
            "bearer",
            r#"["bearer-old", "bearer-new"]"#,
            &sink.url("/app/bearer"),
            "id_header = \"X-Request-Id\"",
        ),
        source(
            "basic",
            "basic",
            r#"["hooks:basic-pass"]"#,
            &sink.url("/app/basic"),
            "",
        ),
        source(
            "header",
            "token",
            r#"["header-tok"]"#,
            &sink.url("/app/header"),
            "[sources.token]\nheader = \"X-Webhook-Token\"",
        ),
    ]
    .concat();
    let gw = TestGateway::start(&toml).await;
    let basic = |creds: &str| format!("Basic {}", BASE64.encode(creds));

    // Accepted: both bearer secrets (rotation), with the id from X-Request-Id; basic and header tokens
    // with the body digest as id.
    let cases = [
        ("bearer", h(&[("authorization", "Bearer bearer-old"), ("x-request-id", "req-1")]), "b1"),
        ("bearer", h(&[("authorization", "bearer bearer-new"), ("x-request-id", "req-2")]), "b2"),
        ("basic", h(&[("authorization", &basic("hooks:basic-pass"))]), "c1"),
        ("header", h(&[("x-webhook-token", "header-tok")]), "d1"),
    ];
    for (name, headers, body) in &cases {
        let reply = post(&gw.url(&format!("/hooks/{name}")), headers, *body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
        assert_eq!(reply.body, r#"{"status":"accepted"}"#, "{name}");
    }
    let mut got = sink.take(cases.len(), WAIT).await;
    got.sort_by(|a, b| a.body.cmp(&b.body));
    let ids: Vec<&str> = got.iter().map(|r| r.header("x-hookgate-event-id")).collect();
    let digest = |b: &str| hookgate::providers::body_digest_id(b.as_bytes());
    assert_eq!(ids, ["req-1", "req-2", &digest("c1"), &digest("d1")]);
    assert!(got.iter().all(|r| r.header("x-hookgate-verified") == "true"));

    // Rejected: nothing reaches the app, each reason is counted.
    let rejections = [
        ("bearer", h(&[]), "missing_token"),
        ("bearer", h(&[("authorization", "Basic bearer-old")]), "missing_token"),
        ("bearer", h(&[("authorization", "Bearer bearer-ol")]), "token_mismatch"),
        ("basic", h(&[("x-webhook-token", "hooks:basic-pass")]), "missing_token"),
        ("basic", h(&[("authorization", &basic("hooks:basic-pas"))]), "token_mismatch"),
        ("header", h(&[("authorization", "Bearer header-tok")]), "missing_token"),
        ("header", h(&[("x-webhook-token", "header-tok-and-more")]), "token_mismatch"),
    ];
    for (name, headers, reason) in &rejections {
        let reply = post(&gw.url(&format!("/hooks/{name}")), headers, "rejected").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name} {reason}");
        assert_eq!(reply.body, format!(r#"{{"error":"{reason}"}}"#), "{name}");
    }
    let text = gw.metrics().await;
    for (name, missing, mismatch) in [("bearer", 2.0, 1.0), ("basic", 1.0, 1.0), ("header", 1.0, 1.0)] {
        assert_eq!(rejected(&text, name, "missing_token"), missing, "{name}\n{text}");
        assert_eq!(rejected(&text, name, "token_mismatch"), mismatch, "{name}");
    }
    sink.assert_quiet(Duration::from_millis(200)).await;
    gw.stop().await;
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).expect("read file")));
        }
    }
    out
}

#[tokio::test]
async fn a_query_token_is_stripped_before_the_app_and_the_store_see_the_request() {
    let mut sink = TestSink::start().await;
    let secrets = format!(r#"["{QUERY_SECRET}", "{QUERY_NEXT}"]"#);
    let query = "[sources.token]\nquery = \"token\"";
    let toml = [
        source("q", "token", &secrets, &sink.url("/app/q"), query),
        // Shadow mode stores what fails verification too: its token must go as well.
        source(
            "qshadow",
            "token",
            &secrets,
            &sink.url("/app/qshadow"),
            &format!("enforce = false\n{query}"),
        ),
    ]
    .concat();
    let gw = TestGateway::start(&toml).await;

    let sends = [
        (format!("/hooks/q?token={QUERY_SECRET}"), "only-token", "/app/q"),
        (
            format!("/hooks/q?a=1&token={QUERY_NEXT}&b=x%20y"),
            "with-others",
            "/app/q?a=1&b=x%20y",
        ),
        (
            format!("/hooks/qshadow?token={QUERY_SECRET}x&keep=1"),
            "shadow-wrong-token",
            "/app/qshadow?keep=1",
        ),
    ];
    for (target, body, _) in &sends {
        let reply = post(&gw.url(target), &[], *body).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {}", reply.body);
    }
    let mut got = sink.take(sends.len(), WAIT).await;
    for (_, body, expected) in &sends {
        let i = got
            .iter()
            .position(|r| r.body == body.as_bytes())
            .unwrap_or_else(|| panic!("{body} not delivered"));
        let r = got.swap_remove(i);
        assert_eq!(r.target, *expected, "{body}");
        let verified = if body.starts_with("shadow") { "false" } else { "true" };
        assert_eq!(r.header("x-hookgate-verified"), verified, "{body}");
    }

    // Rejected: missing and wrong query tokens are 401 and reach nobody.
    for (target, reason) in [
        ("/hooks/q?a=1".to_owned(), "missing_token"),
        (format!("/hooks/q?token={QUERY_SECRET}-no"), "token_mismatch"),
    ] {
        let reply = post(&gw.url(&target), &[], "rejected").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{target}");
        assert_eq!(reply.body, format!(r#"{{"error":"{reason}"}}"#));
    }
    sink.assert_quiet(Duration::from_millis(200)).await;

    let dir = gw.stop().await;
    let store_dir = dir.path().join("store");
    {
        let store = Store::open(&store_dir).expect("open the store");
        let events = store.list(&EventQuery::default()).expect("list");
        assert_eq!(events.len(), sends.len());
        let mut queries: Vec<Option<String>> = events.into_iter().map(|(_, e)| e.query).collect();
        queries.sort();
        assert_eq!(
            queries,
            [None, Some("a=1&b=x%20y".to_owned()), Some("keep=1".to_owned())]
        );
    }
    for (path, bytes) in files(&store_dir) {
        for secret in [QUERY_SECRET, QUERY_NEXT] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{path} holds a query secret"
            );
        }
    }
}
