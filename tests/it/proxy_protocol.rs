//! PROXY protocol v1 and v2 on the webhook listener (`[server] proxy_protocol`): the header of a trusted
//! peer (here 127.0.0.1) makes its source address the client that `allow_ips` sees; a v2 `LOCAL`
//! means the peer itself; a header from an untrusted peer (a socket bound to 127.0.0.2) is refused;
//! a trusted peer without a header is refused; a slow header times out; and the header precedes a
//! TLS handshake.

use std::{net::SocketAddr, time::Duration};

use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::support::{
    eventually, github_headers, github_source,
    pki::{client_config, Ca, TlsConn},
    TestGateway, TestSink,
};

/// The only client `allow_ips` admits: the PROXY header's source, never the TCP peer.
const CLIENT: &str = "203.0.113.7";

/// A gateway that requires PROXY headers from 127.0.0.1 and admits only [`CLIENT`] to `/hooks/{name}`.
fn config(name: &str, upstream: &str, extra_server: &str) -> String {
    format!(
        "[server]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n{extra_server}{}allow_ips = [\"{CLIENT}/32\"]\n",
        github_source(name, upstream)
    )
}

/// A v1 header from `source` (IPv4) to `gw`.
fn v1(source: &str, gw: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {source} {} 40000 {}\r\n", gw.ip(), gw.port()).into_bytes()
}

/// A v2 header (`PROXY`, or `LOCAL` when `local`) from `source`:40001 over TCP/IPv4.
fn v2(source: [u8; 4], gw: SocketAddr, local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.extend([0x11, 0, 12]);
    h.extend(source);
    h.extend([127, 0, 0, 1]);
    h.extend(40001u16.to_be_bytes());
    h.extend(gw.port().to_be_bytes());
    h
}

/// Connects to `gw` from `from` (127.0.0.1 is trusted, another loopback address is not).
async fn connect_from(from: &str, gw: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("addr"))
        .expect("bind a loopback address");
    socket.connect(gw).await.expect("connect")
}

/// A signed GitHub delivery `id` to `/hooks/{name}` as HTTP/1.1 bytes, closing the connection after.
fn delivery(name: &str, id: &str) -> Vec<u8> {
    let body = format!(r#"{{"id":"{id}"}}"#);
    let mut head = format!(
        "POST /hooks/{name} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in github_headers(id, body.as_bytes()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend(body.as_bytes());
    bytes
}

/// Sends `opening` then `request` on `stream`; the HTTP status, or `None` if the gateway closed the
/// connection without an HTTP answer.
async fn exchange(mut stream: TcpStream, opening: &[u8], request: &[u8]) -> Option<u16> {
    let mut bytes = opening.to_vec();
    bytes.extend(request);
    // A refused connection may be closed before all is written: that is an answer too.
    let _ = stream.write_all(&bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answers or closes within 20 s");
    let text = String::from_utf8_lossy(&answer);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    Some(status.parse().expect("a status code"))
}

/// `hookgate_proxy_protocol_refused_total{listener="webhook",reason=...}` now.
async fn refused(gw: &TestGateway, reason: &str) -> f64 {
    crate::support::metric(
        &gw.metrics().await,
        &format!("hookgate_proxy_protocol_refused_total{{listener=\"webhook\",reason=\"{reason}\"}}"),
    )
}

/// Waits until the refusals for `reason` exceed `before` (the counters are process-wide, shared by
/// the tests running at once, so only an increase is asserted).
async fn refused_more(gw: &TestGateway, reason: &str, before: f64) {
    eventually(
        &format!("a {reason} refusal is counted"),
        Duration::from_secs(10),
        || async { refused(gw, reason).await > before },
    )
    .await;
}

#[tokio::test]
async fn v1_and_v2_headers_from_a_trusted_peer_give_the_client_that_allow_ips_sees() {
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&config("pp-trusted", &sink.url("/app"), "")).await;

    // v1 and v2, each from the one address the allowlist admits: accepted and delivered.
    for (id, header) in [
        ("pp-v1", v1(CLIENT, gw.addr)),
        ("pp-v2", v2([203, 0, 113, 7], gw.addr, false)),
    ] {
        let stream = connect_from("127.0.0.1", gw.addr).await;
        assert_eq!(
            exchange(stream, &header, &delivery("pp-trusted", id)).await,
            Some(200),
            "{id}"
        );
        let got = sink.next(Duration::from_secs(15)).await.expect("delivered");
        assert_eq!(got.header("x-github-delivery"), id);
    }

    // Another source address in the header is another client: refused by the allowlist.
    for header in [v1("198.51.100.1", gw.addr), v2([198, 51, 100, 1], gw.addr, false)] {
        let stream = connect_from("127.0.0.1", gw.addr).await;
        assert_eq!(
            exchange(stream, &header, &delivery("pp-trusted", "pp-other")).await,
            Some(StatusCode::FORBIDDEN.as_u16())
        );
    }

    // v2 LOCAL (the balancer's own health check): the peer, 127.0.0.1, is the client, and it is
    // not on the allowlist; the connection is served all the same.
    let stream = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(
        exchange(
            stream,
            &v2([203, 0, 113, 7], gw.addr, true),
            &delivery("pp-trusted", "pp-local")
        )
        .await,
        Some(StatusCode::FORBIDDEN.as_u16())
    );
    let stream = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(
        exchange(
            stream,
            &v2([0, 0, 0, 0], gw.addr, true),
            b"GET /nope HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n"
        )
        .await,
        Some(StatusCode::NOT_FOUND.as_u16())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_refused_and_its_plain_requests_served() {
    let gw = TestGateway::start(&config("pp-untrusted", "http://127.0.0.1:9/app", "")).await;
    let before = refused(&gw, "untrusted_peer").await;
    for header in [v1(CLIENT, gw.addr), v2([203, 0, 113, 7], gw.addr, false)] {
        let stream = connect_from("127.0.0.2", gw.addr).await;
        assert_eq!(
            exchange(stream, &header, &delivery("pp-untrusted", "pp-spoof")).await,
            None,
            "a spoofed header gets no answer"
        );
    }
    refused_more(&gw, "untrusted_peer", before + 1.0).await;

    // Without a header the untrusted peer is an ordinary client: itself, not on the allowlist.
    let stream = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(
        exchange(stream, b"", &delivery("pp-untrusted", "pp-plain")).await,
        Some(StatusCode::FORBIDDEN.as_u16())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_trusted_peer_without_a_valid_header_is_refused() {
    let gw = TestGateway::start(&config("pp-missing", "http://127.0.0.1:9/app", "")).await;
    let before = refused(&gw, "missing_header").await;
    let stream = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(
        exchange(stream, b"", &delivery("pp-missing", "pp-no-header")).await,
        None
    );
    refused_more(&gw, "missing_header", before).await;

    let before = refused(&gw, "invalid_header").await;
    let stream = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(
        exchange(
            stream,
            b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n",
            &delivery("pp-missing", "pp-bad-header")
        )
        .await,
        None
    );
    refused_more(&gw, "invalid_header", before).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_header_times_out_with_header_read_timeout() {
    let gw = TestGateway::start(&config(
        "pp-slow",
        "http://127.0.0.1:9/app",
        "header_read_timeout = \"300ms\"\n",
    ))
    .await;
    let before = refused(&gw, "timeout").await;
    // Half a header, then nothing: closed once header_read_timeout has passed.
    let mut stream = connect_from("127.0.0.1", gw.addr).await;
    stream.write_all(b"PROXY TCP4 203.0").await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("closed within 20 s (far above the 300 ms timeout: a bound on a hang)")
        .ok();
    assert!(answer.is_empty(), "{answer:?}");
    refused_more(&gw, "timeout", before).await;
    gw.stop().await;
}

#[tokio::test]
async fn the_header_precedes_the_tls_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("proxy protocol CA");
    let (cert, key) = ca.issue().write(dir.path(), "server");
    let tls = format!(
        "[server.tls]\ncert = {}\nkey = {}\n",
        crate::support::pki::toml_path(&cert),
        crate::support::pki::toml_path(&key)
    );
    let mut sink = TestSink::start().await;
    // `[server.tls]` follows `[server]`'s own keys.
    let gw = TestGateway::start(&config("pp-tls", &sink.url("/app"), &tls)).await;

    let mut stream = connect_from("127.0.0.1", gw.addr).await;
    stream
        .write_all(&v2([203, 0, 113, 7], gw.addr, false))
        .await
        .expect("write");
    let mut conn = TlsConn::open_on(stream, gw.addr, client_config(&ca, &[b"http/1.1"], None))
        .await
        .expect("a TLS handshake after the header");
    let body = r#"{"id":"pp-tls"}"#;
    let reply = conn
        .send(
            "POST",
            "/hooks/pp-tls",
            &github_headers("pp-tls", body.as_bytes()),
            body,
        )
        .await
        .expect("a TLS request");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let got = sink.next(Duration::from_secs(15)).await.expect("delivered");
    assert_eq!(got.header("x-github-delivery"), "pp-tls");

    // TLS straight away, no header: refused before the handshake.
    let stream = connect_from("127.0.0.1", gw.addr).await;
    assert!(
        TlsConn::open_on(stream, gw.addr, client_config(&ca, &[b"http/1.1"], None))
            .await
            .is_err()
    );
    gw.stop().await;
}
