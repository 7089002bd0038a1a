//! Endpoint challenges that senders send before (and between) events, several of them as a `GET`,
//! are answered by a running gateway on the source's path, as each sender expects, after checking
//! what the sender gives to check; they are neither stored nor forwarded, and they are counted as
//! handshakes. A refused challenge is a 401; a `GET` to a source whose sender has no `GET` challenge
//! is still 405 with `Allow: POST`. Expected answers are computed here from each sender's documented
//! scheme, independently of the gateway's code.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::Sha256;

use crate::support::{github_source, metric, send, TestGateway, TestSink};

const META_VERIFY_TOKEN: &str = "it-meta-verify-token";
const X_CONSUMER_SECRET: &str = "it-x-consumer-secret";
const OKTA_AUTHORIZATION: &str = "Basic aXQtb2t0YTpob29rLXBhc3N3b3Jk";

fn source(name: &str, provider: &str, secret: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"{provider}\"\nsecrets = [\"{secret}\"]\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

struct Rig {
    gw: TestGateway,
    sink: TestSink,
}

async fn rig() -> Rig {
    let sink = TestSink::start().await;
    let toml = [
        source(
            "ch-meta",
            "meta",
            "it-meta-app-secret",
            &sink.url("/meta"),
            &format!("[sources.challenge]\nverify_token = \"{META_VERIFY_TOKEN}\""),
        ),
        source("ch-x", "x", X_CONSUMER_SECRET, &sink.url("/x"), ""),
        source("ch-okta", "okta", OKTA_AUTHORIZATION, &sink.url("/okta"), ""),
        source(
            "ch-dropbox",
            "dropbox",
            "it-dropbox-app-secret",
            &sink.url("/dropbox"),
            "",
        ),
        source(
            "ch-nylas",
            "nylas",
            "it-nylas-webhook-secret",
            &sink.url("/nylas"),
            "",
        ),
        // Challenges come after the allowlist: nobody on 127.0.0.1 may ask this one.
        source(
            "ch-walled",
            "dropbox",
            "it-dropbox-app-secret",
            &sink.url("/walled"),
            "allow_ips = [\"203.0.113.0/24\"]",
        ),
        github_source("ch-github", &sink.url("/github")),
    ]
    .concat();
    Rig {
        gw: TestGateway::start(&toml).await,
        sink,
    }
}

fn handshakes(metrics: &str, source: &str) -> f64 {
    metric(
        metrics,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"handshake\",reason=\"none\"}}"),
    )
}

fn rejected(metrics: &str, source: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"rejected\",reason=\"{reason}\"}}"),
    )
}

async fn get(r: &Rig, target: &str, headers: &[(&str, &str)]) -> crate::support::Reply2 {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    send("GET", &r.gw.url(target), &headers, "").await
}

#[tokio::test]
async fn meta_verification_echoes_the_challenge_only_for_the_verify_token() {
    let mut r = rig().await;
    let ok = format!(
        "/hooks/ch-meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={META_VERIFY_TOKEN}"
    );
    let reply = get(&r, &ok, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "1158201444");
    assert_eq!(reply.headers["content-type"], "text/plain");

    let wrong = "/hooks/ch-meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess";
    let reply = get(&r, wrong, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"token_mismatch"}"#);
    let reply = get(&r, "/hooks/ch-meta?hub.mode=subscribe&hub.challenge=1", &[]).await;
    assert_eq!(reply.body, r#"{"error":"missing_token"}"#);

    r.sink.assert_quiet(Duration::from_millis(300)).await;
    let metrics = r.gw.metrics().await;
    assert_eq!(handshakes(&metrics, "ch-meta"), 1.0);
    assert_eq!(rejected(&metrics, "ch-meta", "token_mismatch"), 1.0);
    r.gw.stop().await;
}

#[tokio::test]
async fn x_crc_is_answered_with_the_hmac_of_the_token() {
    let r = rig().await;
    let token = "9b4507b3-9040-4669-9ca3-6b94edb50553";
    let reply = get(&r, &format!("/hooks/ch-x?crc_token={token}"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let mut mac = Hmac::<Sha256>::new_from_slice(X_CONSUMER_SECRET.as_bytes()).expect("any key");
    mac.update(token.as_bytes());
    let expected = format!("sha256={}", BASE64.encode(mac.finalize().into_bytes()));
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(json, serde_json::json!({ "response_token": expected }));

    // A token shaped like an event body would make the answer a signature of that body: refused.
    let reply = get(&r, "/hooks/ch-x?crc_token=%7B%22a%22%3A1%7D", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"malformed_parameter"}"#);
    let reply = get(&r, "/hooks/ch-x", &[]).await;
    assert_eq!(reply.body, r#"{"error":"missing_parameter"}"#);
    assert_eq!(handshakes(&r.gw.metrics().await, "ch-x"), 1.0);
    r.gw.stop().await;
}

#[tokio::test]
async fn okta_verification_is_answered_in_json_and_refused_with_another_authorization() {
    let r = rig().await;
    let challenge = "X_UpJgAXIoG9Jeq0-o2KXkTYs_pZvT7GPW0gzbaU";
    let reply = get(
        &r,
        "/hooks/ch-okta",
        &[
            ("X-Okta-Verification-Challenge", challenge),
            ("Authorization", OKTA_AUTHORIZATION),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(json, serde_json::json!({ "verification": challenge }));

    let reply = get(
        &r,
        "/hooks/ch-okta",
        &[
            ("X-Okta-Verification-Challenge", challenge),
            ("Authorization", "Basic Z3Vlc3M6Z3Vlc3M="),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"token_mismatch"}"#);
    let reply = get(&r, "/hooks/ch-okta", &[]).await;
    assert_eq!(reply.body, r#"{"error":"missing_header"}"#);
    r.gw.stop().await;
}

#[tokio::test]
async fn dropbox_and_nylas_challenges_are_echoed_as_plain_text() {
    let mut r = rig().await;
    for source in ["ch-dropbox", "ch-nylas"] {
        let reply = get(&r, &format!("/hooks/{source}?challenge=e5f3fa9d2a5d4b0f"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{source}: {}", reply.body);
        assert_eq!(reply.body, "e5f3fa9d2a5d4b0f", "{source}");
        assert_eq!(reply.headers["content-type"], "text/plain", "{source}");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff", "{source}");
        let reply = get(&r, &format!("/hooks/{source}"), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{source}");
        assert_eq!(reply.body, r#"{"error":"missing_parameter"}"#, "{source}");
    }
    r.sink.assert_quiet(Duration::from_millis(300)).await;
    let metrics = r.gw.metrics().await;
    assert_eq!(handshakes(&metrics, "ch-dropbox"), 1.0);
    assert_eq!(handshakes(&metrics, "ch-nylas"), 1.0);
    r.gw.stop().await;
}

#[tokio::test]
async fn methods_stay_closed_where_no_challenge_needs_them() {
    let r = rig().await;
    // A sender without a GET challenge: 405, Allow: POST, as before.
    let reply = get(&r, "/hooks/ch-github?challenge=x", &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "POST");
    assert_eq!(reply.body, r#"{"error":"method_not_allowed"}"#);
    // A sender with one takes GET and POST only.
    for method in ["PUT", "DELETE", "PATCH"] {
        let reply = send(method, &r.gw.url("/hooks/ch-meta"), &[], "").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.headers["allow"], "GET, POST", "{method}");
    }
    // The allowlist holds for challenges too.
    let reply = get(&r, "/hooks/ch-walled?challenge=abc", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!reply.body.contains("abc"));
    r.gw.stop().await;
}
