//! The token schemes through a running gateway: `bearer`, `basic` and `token` accept their secret
//! (any of several), answer `missing_token` and `token_mismatch` with 401 and count them, take the event
//! id from `id_header`, and the secret, in a header or the query, never reaches the app or the store.

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
        (
            "bearer",
            h(&[("authorization", "Bearer bearer-old"), ("x-request-id", "req-1")]),
            "b1",
        ),
        (
            "bearer",
            h(&[("authorization", "bearer bearer-new"), ("x-request-id", "req-2")]),
            "b2",
        ),
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
    for r in &got {
        assert!(
            !r.headers.contains_key("authorization") && !r.headers.contains_key("x-webhook-token"),
            "the app got the sender's secret: {:?}",
            r.headers
        );
    }

    // Rejected: nothing reaches the app, each reason is counted.
    let rejections = [
        ("bearer", h(&[]), "missing_token"),
        (
            "bearer",
            h(&[("authorization", "Basic bearer-old")]),
            "missing_token",
        ),
        (
            "bearer",
            h(&[("authorization", "Bearer bearer-ol")]),
            "token_mismatch",
        ),
        (
            "basic",
            h(&[("x-webhook-token", "hooks:basic-pass")]),
            "missing_token",
        ),
        (
            "basic",
            h(&[("authorization", &basic("hooks:basic-pas"))]),
            "token_mismatch",
        ),
        (
            "header",
            h(&[("authorization", "Bearer header-tok")]),
            "missing_token",
        ),
        (
            "header",
            h(&[("x-webhook-token", "header-tok-and-more")]),
            "token_mismatch",
        ),
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
    let dir = gw.stop().await;
    let secrets = [
        "bearer-old",
        "bearer-new",
        "basic-pass",
        &BASE64.encode("hooks:basic-pass"),
        "header-tok",
    ];
    for (path, bytes) in files(&dir.path().join("store")) {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{path} holds a secret"
            );
        }
    }
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).expect("read file"),
            ));
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
        let verified = if body.starts_with("shadow") {
            "false"
        } else {
            "true"
        };
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
        let events = store.list(&EventQuery::default()).await.expect("list");
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

/// The real binary, logging at debug: neither a header secret nor a query token, accepted or rejected,
/// is in any line it writes, on stdout or stderr.
#[tokio::test]
async fn no_token_is_ever_logged() {
    use std::{
        io::Read,
        process::{Command, Stdio},
    };

    use crate::support::{eventually, free_addr, send};

    let mut sink = TestSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"{addr}\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{}",
        dir.path().join("store").display().to_string(),
        [
            source("lb", "bearer", r#"["log-bearer-9d1c"]"#, &sink.url("/app/lb"), ""),
            source(
                "lq",
                "token",
                &format!(r#"["{QUERY_SECRET}"]"#),
                &sink.url("/app/lq"),
                "[sources.token]\nquery = \"token\""
            ),
        ]
        .concat()
    );
    std::fs::write(&config, text).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookgate");
    eventually("the gateway is ready", WAIT, || async move {
        tokio::net::TcpStream::connect(admin).await.is_ok()
            && send("GET", &format!("http://{admin}/readyz"), &[], "")
                .await
                .status
                == StatusCode::OK
    })
    .await;

    let base = format!("http://{addr}");
    let bearer = |t: &str| h(&[("authorization", &format!("Bearer {t}"))]);
    let ok = post(&format!("{base}/hooks/lb"), &bearer("log-bearer-9d1c"), "a").await;
    assert_eq!(ok.status, StatusCode::OK);
    let near = post(&format!("{base}/hooks/lb"), &bearer("log-bearer-9d1c-near"), "b").await;
    assert_eq!(near.status, StatusCode::UNAUTHORIZED);
    let ok = post(&format!("{base}/hooks/lq?token={QUERY_SECRET}&x=1"), &[], "c").await;
    assert_eq!(ok.status, StatusCode::OK);
    let near = post(&format!("{base}/hooks/lq?token={QUERY_SECRET}-near"), &[], "d").await;
    assert_eq!(near.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sink.take(2, WAIT).await.len(), 2);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .expect("SIGTERM");
    let (mut stdout, mut stderr) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let err = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).expect("read stderr");
        err
    });
    let out = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).expect("read stdout");
        (child.wait().expect("wait"), out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits within 30 s")
        .expect("join");
    assert_eq!(status.code(), Some(0));
    let all = out + &err.join().expect("stderr reader");
    // Not vacuous: the four requests and the two deliveries were logged.
    assert_eq!(all.matches(r#""message":"request""#).count(), 4, "{all}");
    assert_eq!(all.matches(r#""message":"delivery""#).count(), 2, "{all}");
    for secret in ["log-bearer-9d1c", QUERY_SECRET] {
        assert!(!all.contains(secret), "the log contains {secret:?}:\n{all}");
    }
}
