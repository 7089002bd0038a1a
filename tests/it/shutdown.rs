//! Signals on the real binary: SIGTERM drains in-flight requests and exits 0; SIGINT exits 0.

use std::{net::SocketAddr, time::Duration};

use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{
    eventually, free_addr, github_headers, github_source, send, GatewayProcess, Stopped, TestSink,
};

/// `/readyz` on `admin`: its status, or `None` if the listener does not answer.
async fn readyz(admin: SocketAddr) -> Option<u16> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{admin}/readyz").parse().expect("uri");
    let resp = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()?;
    Some(resp.status().as_u16())
}

/// Reads from `stream` into `buf` until `done(buf)` holds; panics on EOF or after `within`.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
    done: impl Fn(&[u8]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!("connection closed; got {:?}", String::from_utf8_lossy(buf)),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read failed: {e}; got {:?}", String::from_utf8_lossy(buf)),
            Err(_) => panic!(
                "no complete answer within {within:?}; got {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

/// Whether `buf` holds a complete HTTP/1.1 response with a `Content-Length` body.
fn complete_response(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    buf.len() >= head_end + 4 + len
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits_0() {
    let name = "shutdown_term";
    let dir = TempDir::new().expect("temp dir");
    let app = free_addr();
    let gw = GatewayProcess::start(dir.path(), &github_source(name, &format!("http://{app}/app"))).await;
    assert_eq!(readyz(gw.admin).await, Some(200), "/readyz while running");

    let body = br#"{"in_flight":true,"padding":"0123456789abcdef0123456789abcdef"}"#;
    let mut head = format!("POST /hooks/{name} HTTP/1.1\r\nHost: {}\r\n", gw.addr);
    for (k, v) in github_headers("in-flight-1", body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // `Expect: 100-continue` makes the gateway say when it has read the head and waits for the body.
    head.push_str(&format!(
        "Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    ));
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("send head");
    let mut buf = Vec::new();
    read_until(&mut conn, &mut buf, Duration::from_secs(5), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    assert!(
        buf.starts_with(b"HTTP/1.1 100"),
        "expected 100 Continue, got {:?}",
        String::from_utf8_lossy(&buf)
    );
    buf.clear();
    let half = body.len() / 2;
    conn.write_all(&body[..half]).await.expect("send half the body");
    conn.flush().await.expect("flush");

    gw.sigterm();
    // Draining: the listener is closed and the gateway is not ready, while our request is still open.
    let addr = gw.addr;
    eventually(
        "new connections are refused",
        Duration::from_secs(5),
        || async move { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    let admin = gw.admin;
    eventually(
        "/readyz answers 503 while draining",
        Duration::from_secs(5),
        || async move { readyz(admin).await == Some(503) },
    )
    .await;

    conn.write_all(&body[half..])
        .await
        .expect("send the rest of the body");
    read_until(&mut conn, &mut buf, Duration::from_secs(8), complete_response).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request not answered 200: {text:?}"
    );
    assert!(text.ends_with(r#"{"status":"accepted"}"#), "{text:?}");

    let (config, addr, admin) = (gw.config.clone(), gw.addr, gw.admin);
    assert_eq!(
        gw.wait(Duration::from_secs(15)).await,
        Some(0),
        "exit code after SIGTERM"
    );

    // The drained event was stored: it is delivered after a restart.
    let mut sink = TestSink::start_on(app).await;
    let _gw = Stopped { config, addr, admin }.restart().await;
    let got = sink
        .next(Duration::from_secs(8))
        .await
        .expect("the drained event after the restart");
    assert_eq!(got.header("x-hookgate-event-id"), "in-flight-1");
    assert_eq!(&got.body[..], &body[..]);
}

#[tokio::test]
async fn sigint_exits_0() {
    let name = "shutdown_int";
    let dir = TempDir::new().expect("temp dir");
    let mut sink = TestSink::start().await;
    let gw = GatewayProcess::start(dir.path(), &github_source(name, &sink.url("/app"))).await;
    assert_eq!(readyz(gw.admin).await, Some(200), "/readyz while running");
    // It serves before the signal.
    let body = b"{}";
    let r = send(
        "POST",
        &gw.url(&format!("/hooks/{name}")),
        &github_headers("int-1", body),
        &body[..],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    sink.next(Duration::from_secs(5)).await.expect("delivered");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .expect("send SIGINT");
    assert_eq!(
        gw.wait(Duration::from_secs(15)).await,
        Some(0),
        "exit code after SIGINT"
    );
}
