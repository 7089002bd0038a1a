//! Every rejection: the right status and `{"error":"<reason>"}`, nothing reaches the app, the answer
//! never leaks a secret or the expected signature, and `hookgate_requests_total{outcome="rejected"}`
//! moves with that reason. Plus the cases that must pass: rotation, trusted proxies, the legacy header.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha1::Sha1;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    eventually, github_headers, github_signature, github_source, metric, post, send, Reply2, TestGateway,
    TestSink, GH_SECRET,
};

/// How long the app must stay quiet after a rejection.
const QUIET: Duration = Duration::from_millis(300);
/// Bound of every wait for a delivery.
const WAIT: Duration = Duration::from_secs(15);

const STRIPE_SECRET: &str = "whsec_verify_rejects_stripe_secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_STANDARD_SECRET: &str = "whsec_c29tZSBvdGhlciBrZXkgdGhhdCBkb2VzIG5vdCBtYXRjaA==";

// === helpers ===

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn source_toml(name: &str, provider: &str, secrets: &[&str], upstream: &str, extra: &str) -> String {
    let secrets = secrets
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"{provider}\"\nsecrets = [{secrets}]\nupstream = \"{upstream}\"\n{extra}"
    )
}

fn rejected_metric(source: &str, reason: &str) -> String {
    format!("hookgate_requests_total{{source=\"{source}\",outcome=\"rejected\",reason=\"{reason}\"}}")
}

/// A gateway with one source (and maybe a `[server]` table) and the app it forwards to.
struct Rig {
    gw: TestGateway,
    sink: TestSink,
    source: String,
}

impl Rig {
    /// `make` builds the `[[sources]]` text from the app's URL.
    async fn start(source: &str, server: &str, make: impl FnOnce(&str) -> String) -> Self {
        let sink = TestSink::start().await;
        let toml = format!("{server}\n{}", make(&sink.url("/app")));
        let gw = TestGateway::start(&toml).await;
        Self {
            gw,
            sink,
            source: source.to_owned(),
        }
    }

    async fn github(source: &str) -> Self {
        Self::start(source, "", |up| github_source(source, up)).await
    }

    fn url(&self) -> String {
        self.gw.url(&format!("/hooks/{}", self.source))
    }

    async fn post(&self, headers: &[(String, String)], body: impl Into<Bytes>) -> Reply2 {
        post(&self.url(), headers, body).await
    }

    async fn rejected(&self, reason: &str) -> f64 {
        metric(&self.gw.metrics().await, &rejected_metric(&self.source, reason))
    }

    /// Sends, then checks the rejection (see [`Rig::check`]).
    async fn expect_rejected(
        &mut self,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
        status: StatusCode,
        reason: &str,
        hidden: &[&str],
    ) {
        let before = self.rejected(reason).await;
        let reply = self.post(headers, body).await;
        self.check(&reply, before, status, reason, hidden).await;
    }

    /// The answer is `status` with `{"error":reason}` and none of `hidden`; the metric moved by one;
    /// the app got nothing.
    async fn check(
        &mut self,
        reply: &Reply2,
        before: f64,
        status: StatusCode,
        reason: &str,
        hidden: &[&str],
    ) {
        assert_error_reply(reply, status, reason, hidden);
        let after = self.rejected(reason).await;
        assert_eq!(
            after - before,
            1.0,
            "metric {} moved by one",
            rejected_metric(&self.source, reason)
        );
        self.sink.assert_quiet(QUIET).await;
    }
}

/// `reply` is `status` with exactly `{"error":reason}` as JSON, and neither its body nor any header
/// value contains one of `hidden` (secrets, expected signatures).
fn assert_error_reply(reply: &Reply2, status: StatusCode, reason: &str, hidden: &[&str]) {
    assert_eq!(reply.status, status, "response body: {}", reply.body);
    let json: serde_json::Value =
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.body));
    assert_eq!(json, serde_json::json!({ "error": reason }));
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"));
    assert_no_leak(&reply.body, &reply.headers, hidden);
}

fn assert_no_leak(body: &str, headers: &HeaderMap, hidden: &[&str]) {
    for secret in hidden.iter().filter(|s| s.len() >= 8) {
        assert!(
            !body.contains(secret),
            "the response body leaks {secret:?}: {body}"
        );
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(secret), "response header {name} leaks {secret:?}");
        }
    }
}

/// The hex HMAC-SHA256 of `body` under `secret`, without the `sha256=` prefix.
fn github_hex(secret: &str, body: &[u8]) -> String {
    github_signature(secret, body)
        .trim_start_matches("sha256=")
        .to_owned()
}

fn set(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_owned()));
    headers
}

fn without(mut headers: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers
}

/// Stripe's hex `v1` signature of `"{t}.{body}"`.
fn stripe_v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn stripe_headers(signature: &str) -> Vec<(String, String)> {
    vec![
        ("stripe-signature".to_owned(), signature.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

/// Standard Webhooks' base64 `v1` signature of `"{id}.{ts}.{body}"`.
fn standard_v1(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

fn standard_headers(id: &str, ts: &str, signature: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), ts.to_owned()),
        ("webhook-signature".to_owned(), signature.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

/// A response read off a raw socket: status, headers and body.
struct RawReply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

/// Writes `request` on a fresh connection, keeps the connection open (no half-close) and reads one
/// response, all within `within`.
async fn raw_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> RawReply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read response");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(reply) = parse_response(&buf) {
                return reply;
            }
            assert!(
                n > 0,
                "connection closed before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("no response within {within:?}"))
}

fn parse_response(buf: &[u8]) -> Option<RawReply> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut storage);
    let httparse::Status::Complete(head_len) = resp.parse(buf).expect("a valid response head") else {
        return None;
    };
    let mut headers = HeaderMap::new();
    for h in resp.headers.iter() {
        headers.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).expect("header name"),
            http::HeaderValue::from_bytes(h.value).expect("header value"),
        );
    }
    let len: usize = headers.get("content-length")?.to_str().ok()?.parse().ok()?;
    let body = buf.get(head_len..head_len + len)?;
    Some(RawReply {
        status: resp.code.expect("a status"),
        body: String::from_utf8_lossy(body).into_owned(),
        headers,
    })
}

impl RawReply {
    fn into_reply2(self) -> Reply2 {
        Reply2 {
            status: StatusCode::from_u16(self.status).expect("status"),
            headers: self.headers,
            body: self.body,
        }
    }
}

/// A raw HTTP/1.1 request head with `headers` and a blank line.
fn raw_head(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> String {
    let mut head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

// === GitHub ===

#[tokio::test]
async fn github_missing_signature_is_401_missing_signature() {
    let mut rig = Rig::github("vr-gh-missing").await;
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let headers = without(github_headers("gh-missing", body), "x-hub-signature-256");
    let expected = github_hex(GH_SECRET, body);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "missing_signature",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn github_signature_with_a_wrong_secret_is_401_signature_mismatch() {
    let mut rig = Rig::github("vr-gh-wrong-secret").await;
    let body = br#"{"action":"created"}"#;
    let headers = set(
        github_headers("gh-wrong", body),
        "x-hub-signature-256",
        &github_signature("not-the-secret", body),
    );
    let expected = github_hex(GH_SECRET, body);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn github_tampered_body_is_401_signature_mismatch() {
    let mut rig = Rig::github("vr-gh-tampered").await;
    let signed = br#"{"amount":100}"#;
    let sent = br#"{"amount":900}"#;
    let headers = github_headers("gh-tampered", signed);
    let expected = github_hex(GH_SECRET, sent);
    rig.expect_rejected(
        &headers,
        &sent[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[GH_SECRET, &expected],
    )
    .await;
    // A trailing newline added on the way is tampering too: signatures cover the exact bytes.
    let sent = b"{\"amount\":100}\n";
    let expected = github_hex(GH_SECRET, sent);
    rig.expect_rejected(
        &headers,
        &sent[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn github_malformed_signatures_are_401_malformed_signature() {
    let mut rig = Rig::github("vr-gh-malformed").await;
    let body = br#"{"malformed":true}"#;
    let hex = github_hex(GH_SECRET, body);
    for bad in [
        "sha256=not-hex-at-all".to_owned(),
        hex.clone(),                      // no prefix
        format!("sha1={hex}"),            // wrong prefix
        format!("sha256={}", &hex[..40]), // wrong length
        format!("sha256={hex}00"),        // one byte too many
    ] {
        let headers = set(github_headers("gh-malformed", body), "x-hub-signature-256", &bad);
        rig.expect_rejected(
            &headers,
            &body[..],
            StatusCode::UNAUTHORIZED,
            "malformed_signature",
            &[GH_SECRET, &hex],
        )
        .await;
    }
}

#[tokio::test]
async fn github_legacy_sha1_counts_only_without_the_sha256_header() {
    let mut rig = Rig::github("vr-gh-legacy").await;
    let body = br#"{"legacy":"sha1"}"#;
    let mut mac = Hmac::<Sha1>::new_from_slice(GH_SECRET.as_bytes()).expect("any key");
    mac.update(body);
    let sha1 = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));

    // A valid SHA-1 signature cannot rescue a wrong SHA-256 one (no downgrade).
    let headers = set(
        set(
            github_headers("gh-legacy-1", body),
            "x-hub-signature-256",
            &github_signature("wrong", body),
        ),
        "x-hub-signature",
        &sha1,
    );
    let expected = github_hex(GH_SECRET, body);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[GH_SECRET, &expected],
    )
    .await;

    // Alone, it is checked.
    let headers = set(
        without(github_headers("gh-legacy-2", body), "x-hub-signature-256"),
        "x-hub-signature",
        &sha1,
    );
    let reply = rig.post(&headers, &body[..]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "gh-legacy-2");
}

#[tokio::test]
async fn rotation_any_configured_secret_matches_including_the_second() {
    let source = "vr-rotation";
    let mut rig = Rig::start(source, "", |up| {
        source_toml(
            source,
            "github",
            &["old-github-secret-before-rotation", GH_SECRET],
            up,
            "",
        )
    })
    .await;
    let before = metric(
        &rig.gw.metrics().await,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"accepted\",reason=\"none\"}}"),
    );

    // Signed with the second secret.
    let body = br#"{"signed_with":"second"}"#;
    let reply = rig.post(&github_headers("rot-2", body), &body[..]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Signed with the first secret.
    let body1 = br#"{"signed_with":"first"}"#;
    let headers = set(
        github_headers("rot-1", body1),
        "x-hub-signature-256",
        &github_signature("old-github-secret-before-rotation", body1),
    );
    let reply = rig.post(&headers, &body1[..]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let mut ids: Vec<_> = rig
        .sink
        .take(2, WAIT)
        .await
        .iter()
        .map(|r| r.header("x-hookgate-event-id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["rot-1", "rot-2"]);
    let after = metric(
        &rig.gw.metrics().await,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"accepted\",reason=\"none\"}}"),
    );
    assert_eq!(after - before, 2.0);

    // A third, unknown secret still fails.
    let body3 = br#"{"signed_with":"neither"}"#;
    let headers = set(
        github_headers("rot-3", body3),
        "x-hub-signature-256",
        &github_signature("neither-secret", body3),
    );
    let hidden = [GH_SECRET, "old-github-secret-before-rotation"];
    rig.expect_rejected(
        &headers,
        &body3[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &hidden,
    )
    .await;
}

// === Stripe ===

async fn stripe_rig(source: &str) -> Rig {
    Rig::start(source, "", |up| {
        source_toml(source, "stripe", &[STRIPE_SECRET], up, "")
    })
    .await
}

#[tokio::test]
async fn stripe_missing_signature_is_401_missing_signature() {
    let mut rig = stripe_rig("vr-st-missing").await;
    let body = br#"{"id":"evt_missing","object":"event"}"#;
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let expected = stripe_v1(STRIPE_SECRET, unix_now(), body);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "missing_signature",
        &[STRIPE_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn stripe_wrong_secret_and_tampered_body_are_401_signature_mismatch() {
    let mut rig = stripe_rig("vr-st-mismatch").await;
    let t = unix_now();
    let body = br#"{"id":"evt_mismatch","object":"event"}"#;
    let expected = stripe_v1(STRIPE_SECRET, t, body);
    let hidden = [STRIPE_SECRET, expected.as_str()];

    let wrong = format!("t={t},v1={}", stripe_v1("whsec_someone_else", t, body));
    rig.expect_rejected(
        &stripe_headers(&wrong),
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &hidden,
    )
    .await;

    let signed = format!("t={t},v1={expected}");
    let tampered = br#"{"id":"evt_mismatch","object":"event","amount":1}"#;
    let hidden_tampered = stripe_v1(STRIPE_SECRET, t, tampered);
    rig.expect_rejected(
        &stripe_headers(&signed),
        &tampered[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[STRIPE_SECRET, &hidden_tampered],
    )
    .await;

    // The signature is bound to the timestamp: moving `t` breaks it.
    let moved = format!("t={},v1={expected}", t - 1);
    let hidden_moved = stripe_v1(STRIPE_SECRET, t - 1, body);
    rig.expect_rejected(
        &stripe_headers(&moved),
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[STRIPE_SECRET, &hidden_moved],
    )
    .await;
}

#[tokio::test]
async fn stripe_malformed_signature_header_is_401_malformed_signature() {
    let mut rig = stripe_rig("vr-st-malformed").await;
    let t = unix_now();
    let body = br#"{"id":"evt_malformed"}"#;
    let expected = stripe_v1(STRIPE_SECRET, t, body);
    for bad in [
        "garbage".to_owned(),
        format!("v1={expected}"),                 // no timestamp
        format!("t={t}"),                         // no v1
        format!("t={t},v1=zz{}", &expected[2..]), // not hex
        format!("t={t},t={t},v1={expected}"),     // two timestamps
    ] {
        rig.expect_rejected(
            &stripe_headers(&bad),
            &body[..],
            StatusCode::UNAUTHORIZED,
            "malformed_signature",
            &[STRIPE_SECRET, &expected],
        )
        .await;
    }
    // A timestamp that is not a number.
    let bad = format!("t=now,v1={expected}");
    rig.expect_rejected(
        &stripe_headers(&bad),
        &body[..],
        StatusCode::UNAUTHORIZED,
        "malformed_timestamp",
        &[STRIPE_SECRET],
    )
    .await;
}

#[tokio::test]
async fn stripe_stale_or_future_timestamp_is_401_timestamp_outside_tolerance_but_a_recent_one_passes() {
    let mut rig = stripe_rig("vr-st-stale").await;
    let body = br#"{"id":"evt_stale","object":"event"}"#;
    let t = unix_now() - 600;
    let signature = format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, body));
    rig.expect_rejected(
        &stripe_headers(&signature),
        &body[..],
        StatusCode::UNAUTHORIZED,
        "timestamp_outside_tolerance",
        &[STRIPE_SECRET],
    )
    .await;

    // Too far ahead, by 10 minutes or by 31 years (Stripe's own libraries accept both): rejected.
    for (ahead, id) in [(600, "evt_ahead"), (31 * 365 * 24 * 3600, "evt_31_years_ahead")] {
        let body = format!(r#"{{"id":"{id}","object":"event"}}"#);
        let t = unix_now() + ahead;
        let signature = format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, body.as_bytes()));
        rig.expect_rejected(
            &stripe_headers(&signature),
            body,
            StatusCode::UNAUTHORIZED,
            "timestamp_outside_tolerance",
            &[STRIPE_SECRET],
        )
        .await;
    }

    // Within the window, in the past or the future: accepted.
    for (t, id) in [(unix_now() - 240, "evt_recent"), (unix_now() + 240, "evt_future")] {
        let body = format!(r#"{{"id":"{id}","object":"event"}}"#);
        let signature = format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, body.as_bytes()));
        let reply = rig.post(&stripe_headers(&signature), body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
        let r = rig.sink.next(WAIT).await.expect("delivered");
        assert_eq!(r.header("x-hookgate-event-id"), id);
    }
}

// === Standard Webhooks ===

async fn standard_rig(source: &str) -> Rig {
    Rig::start(source, "", |up| {
        source_toml(source, "standard_webhooks", &[STANDARD_SECRET], up, "")
    })
    .await
}

#[tokio::test]
async fn standard_missing_signature_and_headers_are_401() {
    let mut rig = standard_rig("vr-sw-missing").await;
    let body = br#"{"type":"missing"}"#;
    let ts = unix_now();
    let sig = format!("v1,{}", standard_v1(STANDARD_SECRET, "msg_missing", ts, body));
    let full = standard_headers("msg_missing", &ts.to_string(), &sig);
    let hidden = [STANDARD_SECRET, sig.as_str(), &sig[3..]];

    let headers = without(full.clone(), "webhook-signature");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "missing_signature",
        &hidden,
    )
    .await;
    let headers = without(full.clone(), "webhook-timestamp");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "missing_header",
        &hidden,
    )
    .await;
    let headers = without(full.clone(), "webhook-id");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "missing_header",
        &hidden,
    )
    .await;
    // Header values that are not visible ASCII cannot be signed content.
    let headers = set(full.clone(), "webhook-signature", "v1,caf\u{e9}");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "malformed_signature",
        &hidden,
    )
    .await;
    let headers = set(full.clone(), "webhook-id", "msg_caf\u{e9}");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "malformed_signature",
        &hidden,
    )
    .await;
    let headers = set(full, "webhook-timestamp", "yesterday");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "malformed_timestamp",
        &hidden,
    )
    .await;
}

#[tokio::test]
async fn standard_wrong_secret_tampered_body_and_garbage_are_401_signature_mismatch() {
    let mut rig = standard_rig("vr-sw-mismatch").await;
    let body = br#"{"type":"invoice.paid"}"#;
    let ts = unix_now();
    let expected = standard_v1(STANDARD_SECRET, "msg_mm", ts, body);
    let hidden = [STANDARD_SECRET, &STANDARD_SECRET[6..], expected.as_str()];
    let ts_text = ts.to_string();

    let wrong = format!("v1,{}", standard_v1(OTHER_STANDARD_SECRET, "msg_mm", ts, body));
    let headers = standard_headers("msg_mm", &ts_text, &wrong);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &hidden,
    )
    .await;

    let right = format!("v1,{expected}");
    let tampered = br#"{"type":"invoice.paid","amount":1}"#;
    let headers = standard_headers("msg_mm", &ts_text, &right);
    let hidden_tampered = standard_v1(STANDARD_SECRET, "msg_mm", ts, tampered);
    rig.expect_rejected(
        &headers,
        &tampered[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[STANDARD_SECRET, &hidden_tampered],
    )
    .await;

    // The id is signed: the same signature under another id fails.
    let headers = standard_headers("msg_other", &ts_text, &right);
    let hidden_other = standard_v1(STANDARD_SECRET, "msg_other", ts, body);
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
        &[STANDARD_SECRET, &hidden_other],
    )
    .await;

    // No usable v1 entry is a mismatch, as in the reference libraries.
    for garbage in ["garbage", "v2,abc", "v1,!!!not-base64!!!"] {
        let headers = standard_headers("msg_mm", &ts_text, garbage);
        rig.expect_rejected(
            &headers,
            &body[..],
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
            &hidden,
        )
        .await;
    }
}

#[tokio::test]
async fn standard_stale_and_future_timestamps_are_401_timestamp_outside_tolerance() {
    let mut rig = standard_rig("vr-sw-time").await;
    let body = br#"{"type":"time"}"#;
    for (offset, id) in [(-600_i64, "msg_stale"), (600, "msg_future")] {
        let ts = unix_now() + offset;
        let sig = format!("v1,{}", standard_v1(STANDARD_SECRET, id, ts, body));
        let headers = standard_headers(id, &ts.to_string(), &sig);
        rig.expect_rejected(
            &headers,
            &body[..],
            StatusCode::UNAUTHORIZED,
            "timestamp_outside_tolerance",
            &[STANDARD_SECRET],
        )
        .await;
    }
    // Inside the window both ways: accepted.
    for (offset, id) in [(-240_i64, "msg_recent"), (240, "msg_soon")] {
        let ts = unix_now() + offset;
        let sig = format!("v1,{}", standard_v1(STANDARD_SECRET, id, ts, body));
        let reply = rig
            .post(&standard_headers(id, &ts.to_string(), &sig), &body[..])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
        let r = rig.sink.next(WAIT).await.expect("delivered");
        assert_eq!(r.header("x-hookgate-event-id"), id);
    }
}

#[tokio::test]
async fn standard_rotation_the_second_secret_matches() {
    let source = "vr-sw-rotation";
    let mut rig = Rig::start(source, "", |up| {
        source_toml(
            source,
            "standard_webhooks",
            &[OTHER_STANDARD_SECRET, STANDARD_SECRET],
            up,
            "",
        )
    })
    .await;
    let body = br#"{"rotated":true}"#;
    let ts = unix_now();
    let sig = format!("v1,{}", standard_v1(STANDARD_SECRET, "msg_rot", ts, body));
    // Several signatures in one header: any matching one is enough.
    let header = format!("v1,{} {sig}", BASE64.encode([7u8; 32]));
    let reply = rig
        .post(&standard_headers("msg_rot", &ts.to_string(), &header), &body[..])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "msg_rot");
}

// === IP allowlist and proxies ===

#[tokio::test]
async fn a_client_outside_allow_ips_is_403_even_with_a_valid_signature() {
    let source = "vr-ip-denied";
    let mut rig = Rig::start(source, "", |up| {
        source_toml(
            source,
            "github",
            &[GH_SECRET],
            up,
            "allow_ips = [\"10.0.0.0/8\"]\n",
        )
    })
    .await;
    let body = br#"{"from":"loopback"}"#;
    let expected = github_hex(GH_SECRET, body);
    rig.expect_rejected(
        &github_headers("ip-1", body),
        &body[..],
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn trusted_proxy_x_forwarded_for_decides_the_client_address() {
    let source = "vr-ip-proxy";
    let mut rig = Rig::start(source, "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]", |up| {
        source_toml(
            source,
            "github",
            &[GH_SECRET],
            up,
            "allow_ips = [\"10.0.0.0/8\"]\n",
        )
    })
    .await;
    let body = br#"{"via":"proxy"}"#;

    // An allowed client behind the trusted loopback proxy.
    let headers = set(github_headers("xff-allowed", body), "x-forwarded-for", "10.1.2.3");
    let reply = rig.post(&headers, &body[..]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "xff-allowed");

    // A disallowed one.
    let headers = set(
        github_headers("xff-denied", body),
        "x-forwarded-for",
        "203.0.113.5",
    );
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        &[GH_SECRET],
    )
    .await;

    // A forged allowed address on the left does not help: the rightmost untrusted hop is the client.
    let headers = set(
        github_headers("xff-forged", body),
        "x-forwarded-for",
        "10.9.9.9, 203.0.113.5",
    );
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        &[GH_SECRET],
    )
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_s_x_forwarded_for_that_does_not_parse_is_400_never_the_proxy() {
    // The proxy (loopback) is trusted and also in the allowlist: taking it as the client would let
    // any request with a broken header in.
    let source = "vr-ip-xff-bad";
    let mut rig = Rig::start(source, "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]", |up| {
        source_toml(
            source,
            "github",
            &[GH_SECRET],
            up,
            "allow_ips = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
        )
    })
    .await;
    let body = br#"{"via":"a broken proxy"}"#;
    for (i, value) in ["garbage", "203.0.113.5:1234", "10.1.2.3, not-an-ip, 127.0.0.9"]
        .into_iter()
        .enumerate()
    {
        let headers = set(
            github_headers(&format!("xff-bad-{i}"), body),
            "x-forwarded-for",
            value,
        );
        rig.expect_rejected(
            &headers,
            &body[..],
            StatusCode::BAD_REQUEST,
            "malformed_forwarded_for",
            &[GH_SECRET],
        )
        .await;
    }

    // A good list still decides the client.
    let headers = set(
        github_headers("xff-good", body),
        "x-forwarded-for",
        "10.1.2.3, 127.0.0.9",
    );
    let reply = rig.post(&headers, &body[..]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "xff-good");
}

#[tokio::test]
async fn an_untrusted_peer_s_x_forwarded_for_is_ignored() {
    // No trusted proxies: the TCP peer (127.0.0.1) is the client, whatever the header says.
    let denied = "vr-ip-untrusted";
    let mut rig = Rig::start(denied, "[server]\ntrusted_proxies = [\"192.0.2.0/24\"]", |up| {
        source_toml(
            denied,
            "github",
            &[GH_SECRET],
            up,
            "allow_ips = [\"10.0.0.0/8\"]\n",
        )
    })
    .await;
    let body = br#"{"spoofed":"xff"}"#;
    let headers = set(github_headers("untrusted-1", body), "x-forwarded-for", "10.1.2.3");
    rig.expect_rejected(
        &headers,
        &body[..],
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        &[GH_SECRET],
    )
    .await;

    let allowed = "vr-ip-untrusted-ok";
    let mut rig = Rig::start(allowed, "", |up| {
        source_toml(
            allowed,
            "github",
            &[GH_SECRET],
            up,
            "allow_ips = [\"127.0.0.0/8\"]\n",
        )
    })
    .await;
    let headers = set(
        github_headers("untrusted-2", body),
        "x-forwarded-for",
        "203.0.113.5",
    );
    let reply = rig.post(&headers, &body[..]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the header is ignored, the loopback peer is allowed: {}",
        reply.body
    );
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "untrusted-2");
}

// === routing ===

#[tokio::test]
async fn an_unknown_path_is_404_unknown_source() {
    let mut rig = Rig::github("vr-404").await;
    let body = br#"{"where":"nowhere"}"#;
    let metric_name = rejected_metric("_unknown", "unknown_source");
    for (method, path) in [
        ("POST", "/hooks/does-not-exist"),
        ("POST", "/hooks/vr-404/extra"),
        ("GET", "/"),
    ] {
        let before = metric(&rig.gw.metrics().await, &metric_name);
        let reply = send(
            method,
            &rig.gw.url(path),
            &github_headers("nowhere", body),
            &body[..],
        )
        .await;
        assert_error_reply(&reply, StatusCode::NOT_FOUND, "unknown_source", &[GH_SECRET]);
        // Other tests may hit unknown paths at the same time: this label is shared.
        let after = metric(&rig.gw.metrics().await, &metric_name);
        assert!(after >= before + 1.0, "{metric_name}: {before} -> {after}");
        let text = rig.gw.metrics().await;
        assert!(
            !text.contains("does-not-exist"),
            "the unknown path became a metric label"
        );
    }
    rig.sink.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn a_method_other_than_post_is_405_with_allow_post() {
    let mut rig = Rig::github("vr-405").await;
    let body = br#"{"method":"wrong"}"#;
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let before = rig.rejected("method_not_allowed").await;
        let reply = send(method, &rig.url(), &github_headers("m-1", body), &body[..]).await;
        assert_error_reply(
            &reply,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &[GH_SECRET],
        );
        let allow = reply.headers.get("allow").and_then(|v| v.to_str().ok());
        assert_eq!(allow, Some("POST"), "{method}: Allow header");
        assert_eq!(
            rig.rejected("method_not_allowed").await - before,
            1.0,
            "{method}: metric"
        );
    }
    rig.sink.assert_quiet(QUIET).await;
}

// === body size, timeouts, broken bodies ===

const SMALL_LIMIT: &str = "[server]\nmax_body_size = 1024\nrequest_timeout = \"20s\"";

#[tokio::test]
async fn a_body_over_max_body_size_by_content_length_is_413_and_one_at_the_limit_passes() {
    let source = "vr-413-length";
    let mut rig = Rig::start(source, SMALL_LIMIT, |up| github_source(source, up)).await;

    let big = vec![b'a'; 2048];
    let expected = github_hex(GH_SECRET, &big);
    rig.expect_rejected(
        &github_headers("big-1", &big),
        big.clone(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &[GH_SECRET, &expected],
    )
    .await;

    // Rejected from Content-Length alone, before a byte of the body is read (or sent).
    let before = rig.rejected("body_too_large").await;
    let head = raw_head(
        rig.gw.addr,
        &format!("/hooks/{source}"),
        &[
            ("content-length".to_owned(), "10000000".to_owned()),
            (
                "x-hub-signature-256".to_owned(),
                github_signature(GH_SECRET, b"whatever"),
            ),
            ("x-github-delivery".to_owned(), "big-2".to_owned()),
        ],
    );
    let reply = raw_exchange(rig.gw.addr, head.as_bytes(), Duration::from_secs(10))
        .await
        .into_reply2();
    rig.check(
        &reply,
        before,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &[GH_SECRET],
    )
    .await;

    // Exactly at the limit: accepted.
    let fits = vec![b'b'; 1024];
    let reply = rig.post(&github_headers("fits-1", &fits), fits.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.body.len(), 1024);
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_431_and_a_large_one_under_it_passes() {
    let source = "vr-431-head";
    let mut rig = Rig::start(source, "", |up| github_source(source, up)).await;
    let body = b"{\"head\":\"large\"}".to_vec();
    let addr = rig.gw.addr;
    // Sends event `id` with a header of `padding` bytes.
    let padded = |id: &str, padding: usize| {
        let mut headers = github_headers(id, &body);
        headers.push(("content-length".to_owned(), body.len().to_string()));
        headers.push(("x-padding".to_owned(), "p".repeat(padding)));
        let mut request = raw_head(addr, &format!("/hooks/{source}"), &headers).into_bytes();
        request.extend_from_slice(&body);
        async move {
            raw_exchange(addr, &request, Duration::from_secs(10))
                .await
                .into_reply2()
        }
    };

    // A 12 KiB head (a long header, as some proxies add) is read and the event accepted.
    let reply = padded("head-12k", 12 * 1024).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.body.as_ref(), body.as_slice());

    // Past 16 KiB, hyper refuses the head before any layer sees it: nothing is stored or sent, and the
    // refusal is counted under the unknown source.
    let counted = rejected_metric("_unknown", "head_too_large");
    assert_eq!(metric(&rig.gw.metrics().await, &counted), 0.0);
    let reply = padded("head-20k", 20 * 1024).await;
    assert_eq!(
        reply.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{}",
        reply.body
    );
    let gw = &rig.gw;
    eventually("the refused head is counted", WAIT, || async {
        metric(&gw.metrics().await, &counted) == 1.0
    })
    .await;
    rig.sink.assert_quiet(QUIET).await;
}

/// POSTs a chunked body (no Content-Length) whose chunks come from the returned sender; the stream stays
/// open until the sender is dropped.
fn chunked_post(
    url: &str,
    headers: &[(String, String)],
) -> (
    tokio::sync::mpsc::UnboundedSender<Bytes>,
    tokio::task::JoinHandle<Result<Reply2, String>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let body = StreamBody::new(Box::pin(stream));
    let mut req = Request::builder().method("POST").uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(body).expect("valid request");
    let task = tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e:?}"))?
            .to_bytes();
        Ok(Reply2 {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    });
    (tx, task)
}

#[tokio::test]
async fn a_chunked_body_passing_max_body_size_is_413_and_a_small_chunked_body_passes() {
    let source = "vr-413-chunked";
    let mut rig = Rig::start(source, SMALL_LIMIT, |up| github_source(source, up)).await;

    // Under the cap, chunked: accepted, and the app gets the exact bytes.
    let small = b"{\"chunked\":"
        .iter()
        .chain(b" true}\n")
        .copied()
        .collect::<Vec<u8>>();
    let (tx, task) = chunked_post(&rig.url(), &github_headers("chunk-ok", &small));
    tx.send(Bytes::from_static(b"{\"chunked\":")).expect("send");
    tx.send(Bytes::from_static(b" true}\n")).expect("send");
    drop(tx);
    let reply = tokio::time::timeout(WAIT, task)
        .await
        .expect("in time")
        .expect("task")
        .expect("ok");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let r = rig.sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.body.as_ref(), small.as_slice());

    // Over the cap: 600 + 600 bytes, and the stream is left open, so the 413 must come from the count.
    let big = vec![b'x'; 1200];
    let expected = github_hex(GH_SECRET, &big);
    let before = rig.rejected("body_too_large").await;
    let (tx, task) = chunked_post(&rig.url(), &github_headers("chunk-big", &big));
    tx.send(Bytes::from(vec![b'x'; 600])).expect("send");
    tx.send(Bytes::from(vec![b'x'; 600])).expect("send");
    let reply = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("413 before the body ends")
        .expect("task")
        .unwrap_or_else(|e| panic!("no response to an oversized chunked body: {e}"));
    drop(tx);
    rig.check(
        &reply,
        before,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn a_client_that_stalls_its_body_gets_408_request_timeout() {
    let source = "vr-408";
    let mut rig = Rig::start(source, "[server]\nrequest_timeout = \"1s\"", |up| {
        github_source(source, up)
    })
    .await;
    let body = br#"{"this body":"never finishes"}"#;
    let expected = github_hex(GH_SECRET, body);
    let mut headers = github_headers("stall-1", body);
    headers.push(("content-length".to_owned(), body.len().to_string()));
    let mut request = raw_head(rig.gw.addr, &format!("/hooks/{source}"), &headers).into_bytes();
    request.extend_from_slice(&body[..10]); // then nothing

    let before = rig.rejected("request_timeout").await;
    let started = std::time::Instant::now();
    let reply = raw_exchange(rig.gw.addr, &request, Duration::from_secs(10))
        .await
        .into_reply2();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before the timeout: {reply:?}"
    );
    rig.check(
        &reply,
        before,
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        &[GH_SECRET, &expected],
    )
    .await;
}

#[tokio::test]
async fn a_broken_chunked_body_is_400_malformed_request() {
    let source = "vr-400";
    let mut rig = Rig::github(source).await;
    let mut headers = github_headers("broken-1", b"hello");
    headers.push(("transfer-encoding".to_owned(), "chunked".to_owned()));
    let mut request = raw_head(rig.gw.addr, &format!("/hooks/{source}"), &headers).into_bytes();
    request.extend_from_slice(b"5\r\nhello\r\nzz\r\nnot a chunk size\r\n");

    let before = rig.rejected("malformed_request").await;
    let reply = raw_exchange(rig.gw.addr, &request, Duration::from_secs(10))
        .await
        .into_reply2();
    rig.check(
        &reply,
        before,
        StatusCode::BAD_REQUEST,
        "malformed_request",
        &[GH_SECRET],
    )
    .await;
}
