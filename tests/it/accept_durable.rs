//! An accepted event reaches the app byte for byte, with the sender's headers (minus hop-by-hop ones)
//! and the gateway's own, over HTTP/1.1 or HTTP/2, for every provider; and the 200 is only sent once
//! the event is stored: a restart while the app is down loses nothing.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::Sha256;

use crate::support::{
    free_addr, github_headers, github_source, metric, post, Received, Reply2, TestGateway, TestSink,
};

/// Bound of every wait for a delivery.
const WAIT: Duration = Duration::from_secs(15);

const STRIPE_SECRET: &str = "whsec_accept_durable_stripe_secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn accepted_total(metrics: &str, source: &str) -> f64 {
    metric(
        metrics,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"accepted\",reason=\"none\"}}"),
    )
}

fn assert_accepted(reply: &Reply2) {
    assert_eq!(reply.status, StatusCode::OK, "response body: {}", reply.body);
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON response");
    assert_eq!(json, serde_json::json!({"status": "accepted"}));
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"));
}

/// `headers` with `name` set to `value` (replacing any earlier value).
fn with_header(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_owned()));
    headers
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn by_event_id(received: Vec<Received>) -> HashMap<String, Received> {
    let mut map = HashMap::new();
    for r in received {
        let id = r.header("x-hookgate-event-id").to_owned();
        assert!(map.insert(id.clone(), r).is_none(), "event {id} delivered twice");
    }
    map
}

/// Bodies a JSON-reserializing gateway would break: exact bytes matter for signatures.
fn tricky_bodies() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "body-json",
            "application/json",
            b"{ \"zeta\": 1,\n  \"alpha\" : [1.0, 2e3, \"\\u00e9\"],\t\"dup\":1, \"dup\":2 }\n  \n".to_vec(),
        ),
        (
            "body-form",
            "application/x-www-form-urlencoded",
            b"payload=%7B%22action%22%3A%22opened%22%7D&x=a+b%20c&empty=&x=2".to_vec(),
        ),
        (
            "body-xml",
            "application/xml; charset=utf-8",
            "<?xml version=\"1.0\"?>\r\n<event id=\"1\">caf\u{e9} &amp; \u{1F600}</event>\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "body-binary",
            "application/octet-stream",
            vec![
                0xff, 0xfe, 0x00, 0x80, b'\n', 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x00, b' ', b'\r', b'\n',
            ],
        ),
        ("body-empty", "application/json", Vec::new()),
    ]
}

#[tokio::test]
async fn exact_body_bytes_of_every_content_type_reach_the_app() {
    let mut sink = TestSink::start().await;
    let source = "acc-bodies";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app/bodies"))).await;
    let before = accepted_total(&gw.metrics().await, source);

    let bodies = tricky_bodies();
    assert!(
        std::str::from_utf8(&bodies[3].2).is_err(),
        "the binary body is not UTF-8"
    );
    for (id, content_type, body) in &bodies {
        let headers = with_header(github_headers(id, body), "content-type", content_type);
        let reply = post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await;
        assert_accepted(&reply);
    }

    let got = by_event_id(sink.take(bodies.len(), WAIT).await);
    for (id, content_type, body) in &bodies {
        let r = got.get(*id).unwrap_or_else(|| panic!("event {id} not delivered"));
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.target, "/app/bodies");
        assert_eq!(
            r.body.as_ref(),
            body.as_slice(),
            "body of {id} changed on the way"
        );
        assert_eq!(r.header("content-type"), *content_type, "content-type of {id}");
        assert_eq!(
            r.header("content-length"),
            body.len().to_string(),
            "content-length of {id}"
        );
    }
    sink.assert_quiet(Duration::from_millis(300)).await;

    let after = accepted_total(&gw.metrics().await, source);
    assert_eq!(
        after - before,
        bodies.len() as f64,
        "one accepted count per accepted request"
    );
}

#[tokio::test]
async fn original_headers_are_kept_hop_by_hop_dropped_hookgate_headers_set_and_query_forwarded() {
    let mut sink = TestSink::start().await;
    let source = "acc-headers";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app/hdr"))).await;
    let before = accepted_total(&gw.metrics().await, source);

    let body = br#"{"action":"opened","number":7}"#.to_vec();
    let mut headers = github_headers("hdr-1", &body);
    for (k, v) in [
        ("user-agent", "GitHub-Hookshot/0a1b2c3"),
        ("x-custom-trace", "trace value; with=semicolons, commas"),
        ("x-multi", "first"),
        ("x-multi", "second"),
        ("connection", "keep-alive, x-conn-only"),
        ("x-conn-only", "meant for the first hop"),
        ("keep-alive", "timeout=5, max=100"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("x-hookgate-source", "forged-source"),
        ("x-hookgate-event-id", "forged-id"),
        ("x-hookgate-attempt", "99"),
    ] {
        headers.push((k.to_owned(), v.to_owned()));
    }
    let url = gw.url(&format!("/hooks/{source}?installation=42&q=a%20b&flag"));
    assert_accepted(&post(&url, &headers, body.clone()).await);

    let r = sink.next(WAIT).await.expect("the event is delivered");
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(
        r.target, "/app/hdr?installation=42&q=a%20b&flag",
        "query string forwarded"
    );
    assert_eq!(r.body.as_ref(), body.as_slice());

    // The sender's own headers are kept as they were.
    assert_eq!(r.header("user-agent"), "GitHub-Hookshot/0a1b2c3");
    assert_eq!(r.header("x-custom-trace"), "trace value; with=semicolons, commas");
    assert_eq!(r.header("x-github-event"), "push");
    assert_eq!(r.header("x-github-delivery"), "hdr-1");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-hub-signature-256"), support_signature(&body));
    let multi: Vec<_> = r
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    assert_eq!(multi, ["first", "second"], "repeated headers kept, in order");

    // Hop-by-hop headers, and those named in Connection, are not forwarded.
    for hop in ["keep-alive", "te", "x-conn-only", "proxy-authorization"] {
        assert!(
            r.headers.get(hop).is_none(),
            "hop-by-hop header {hop} was forwarded: {:?}",
            r.headers
        );
    }
    if let Some(conn) = r.headers.get("connection") {
        let conn = conn.to_str().unwrap_or("").to_ascii_lowercase();
        assert!(
            !conn.contains("x-conn-only"),
            "the sender's Connection header was forwarded: {conn}"
        );
    }

    // The gateway's headers are set once each, whatever the sender sent.
    for (name, want) in [
        ("x-hookgate-source", source),
        ("x-hookgate-event-id", "hdr-1"),
        ("x-hookgate-attempt", "1"),
    ] {
        let values: Vec<_> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        assert_eq!(values, [want], "header {name}");
    }
    sink.assert_quiet(Duration::from_millis(300)).await;

    let after = accepted_total(&gw.metrics().await, source);
    assert_eq!(after - before, 1.0);
}

fn support_signature(body: &[u8]) -> String {
    crate::support::github_signature(crate::support::GH_SECRET, body)
}

#[tokio::test]
async fn a_200_means_stored_events_survive_a_restart_while_the_app_is_down() {
    // The app is down: its port was bound, then released.
    let app = free_addr();
    let source = "acc-durable";
    let toml = format!(
        "[forward]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"\n{}",
        github_source(source, &format!("http://{app}/app/durable"))
    );
    let gw = TestGateway::start(&toml).await;
    let before = accepted_total(&gw.metrics().await, source);

    let mut sent = Vec::new();
    for (i, (_, content_type, body)) in tricky_bodies().into_iter().enumerate() {
        let id = format!("durable-{i}");
        let headers = with_header(github_headers(&id, &body), "content-type", content_type);
        assert_accepted(&post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await);
        sent.push((id, body));
    }
    let after = accepted_total(&gw.metrics().await, source);
    assert_eq!(after - before, sent.len() as f64);

    // Right after the 200s: stop, bring the app up on its old address, restart on the same store.
    let dir = gw.stop().await;
    let mut sink = TestSink::start_on(app).await;
    let gw = TestGateway::start_in(&toml, dir).await;

    let got = by_event_id(sink.take(sent.len(), WAIT).await);
    for (id, body) in &sent {
        let r = got
            .get(id)
            .unwrap_or_else(|| panic!("accepted event {id} was lost across the restart"));
        assert_eq!(r.body.as_ref(), body.as_slice(), "body of {id}");
        assert_eq!(r.target, "/app/durable");
        assert_eq!(r.header("x-hookgate-source"), source);
        let attempt: u32 = r.header("x-hookgate-attempt").parse().expect("a numeric attempt");
        assert!(attempt >= 1, "attempts are 1-based");
    }
    sink.assert_quiet(Duration::from_millis(500)).await;
    gw.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_request_is_accepted_and_forwarded() {
    let mut sink = TestSink::start().await;
    let source = "acc-h2";
    let gw = TestGateway::start(&github_source(source, &sink.url("/app/h2"))).await;
    let before = accepted_total(&gw.metrics().await, source);

    let body = b"{\"over\":\"h2\"}\n".to_vec();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut req = Request::builder()
        .method("POST")
        .uri(gw.url(&format!("/hooks/{source}?via=h2")));
    for (k, v) in github_headers("h2-1", &body) {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.clone())))
        .expect("valid request");
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("answer in time")
        .expect("h2 request");
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status();
    let text = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
    let json: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
    assert_eq!(json, serde_json::json!({"status": "accepted"}));

    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.body.as_ref(), body.as_slice());
    assert_eq!(r.target, "/app/h2?via=h2");
    assert_eq!(r.header("x-hookgate-event-id"), "h2-1");
    assert_eq!(r.header("x-github-event"), "push");
    sink.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(accepted_total(&gw.metrics().await, source) - before, 1.0);
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, as Stripe documents it.
fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `v1,<base64 HMAC-SHA256(base64decode(secret minus whsec_), "{id}.{ts}.{body}")>`.
fn standard_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn source_toml(name: &str, provider: &str, secret: &str, upstream: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"{provider}\"\nsecrets = [\"{secret}\"]\nupstream = \"{upstream}\"\n"
    )
}

#[tokio::test]
async fn stripe_signed_request_is_accepted_end_to_end_with_its_event_id() {
    let mut sink = TestSink::start().await;
    let source = "acc-stripe";
    let gw = TestGateway::start(&source_toml(
        source,
        "stripe",
        STRIPE_SECRET,
        &sink.url("/app/stripe"),
    ))
    .await;
    let before = accepted_total(&gw.metrics().await, source);

    let body = b"{\n  \"id\": \"evt_1NG8Du2eZvKYlo2CUI79vXWy\",\n  \"object\": \"event\",\n  \"type\": \"charge.succeeded\"\n}\n".to_vec();
    let headers = vec![
        (
            "stripe-signature".to_owned(),
            stripe_signature(STRIPE_SECRET, unix_now(), &body),
        ),
        (
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        (
            "user-agent".to_owned(),
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_owned(),
        ),
    ];
    assert_accepted(&post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await);

    let r = sink.next(WAIT).await.expect("delivered");
    assert_eq!(r.header("x-hookgate-event-id"), "evt_1NG8Du2eZvKYlo2CUI79vXWy");
    assert_eq!(r.header("x-hookgate-source"), source);
    assert_eq!(
        r.header("stripe-signature"),
        headers[0].1,
        "the sender's signature is kept"
    );
    assert_eq!(r.body.as_ref(), body.as_slice());
    sink.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(accepted_total(&gw.metrics().await, source) - before, 1.0);
}

#[tokio::test]
async fn standard_webhooks_and_svix_signed_requests_are_accepted_end_to_end_with_their_ids() {
    let mut sink = TestSink::start().await;
    let (standard, svix) = ("acc-standard", "acc-svix");
    let toml = format!(
        "{}{}",
        source_toml(
            standard,
            "standard_webhooks",
            STANDARD_SECRET,
            &sink.url("/app/standard")
        ),
        source_toml(svix, "svix", STANDARD_SECRET, &sink.url("/app/svix")),
    );
    let gw = TestGateway::start(&toml).await;
    let metrics = gw.metrics().await;
    let (before_standard, before_svix) = (accepted_total(&metrics, standard), accepted_total(&metrics, svix));

    let body = br#"{"type":"invoice.paid","data":{"amount":1200}}"#.to_vec();
    let ts = unix_now();
    for (source, prefix, id) in [
        (standard, "webhook", "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W"),
        (svix, "svix", "msg_svix_1"),
    ] {
        let headers = vec![
            (format!("{prefix}-id"), id.to_owned()),
            (format!("{prefix}-timestamp"), ts.to_string()),
            (
                format!("{prefix}-signature"),
                standard_signature(STANDARD_SECRET, id, ts, &body),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        assert_accepted(&post(&gw.url(&format!("/hooks/{source}")), &headers, body.clone()).await);
    }

    let got = by_event_id(sink.take(2, WAIT).await);
    let r = got
        .get("msg_2KWPBgLlAfxdpx2AI54pPJ85f1W")
        .expect("standard webhooks event delivered");
    assert_eq!(r.target, "/app/standard");
    assert_eq!(r.header("x-hookgate-source"), standard);
    assert_eq!(r.header("webhook-id"), "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W");
    assert_eq!(r.body.as_ref(), body.as_slice());
    let r = got.get("msg_svix_1").expect("svix event delivered");
    assert_eq!(r.target, "/app/svix");
    assert_eq!(r.header("x-hookgate-source"), svix);
    assert_eq!(r.body.as_ref(), body.as_slice());
    sink.assert_quiet(Duration::from_millis(300)).await;

    let metrics = gw.metrics().await;
    assert_eq!(accepted_total(&metrics, standard) - before_standard, 1.0);
    assert_eq!(accepted_total(&metrics, svix) - before_svix, 1.0);
}
