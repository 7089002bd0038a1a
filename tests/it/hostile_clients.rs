//! Clients that hold resources without finishing a request: idle and half-open connections.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{eventually, github_source, send, TestGateway};

/// Reads and discards what `stream` sends until it is closed (EOF or reset); panics after `within`.
async fn wait_closed(stream: &mut TcpStream, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {} // an HTTP/2 server's SETTINGS, say: not the end yet
            Err(_) => panic!("the gateway kept an idle connection open for {within:?}"),
        }
    }
}

/// 23.1: every slot taken by a connection that never completes a head (silent, a prefix of the HTTP/2
/// preface, the whole preface and no request, half an HTTP/1.1 head) is freed by `header_read_timeout`
/// counted from accept, and intake goes on.
#[tokio::test]
async fn idle_connections_are_closed_after_header_read_timeout_and_intake_resumes() {
    let toml = format!(
        "[server]\nmax_connections = 4\nheader_read_timeout = \"300ms\"\n{}",
        github_source("idle", "http://127.0.0.1:9/app")
    );
    let gw = TestGateway::start(&toml).await;
    let openings: [&[u8]; 4] = [
        b"",
        b"P",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST /hooks/idle HTTP/1.1\r\n",
    ];
    let mut idle = Vec::new();
    for opening in openings {
        let mut s = TcpStream::connect(gw.addr).await.expect("connect");
        s.write_all(opening).await.expect("write opening");
        idle.push(s);
    }
    for (i, s) in idle.iter_mut().enumerate() {
        // Far above the 300 ms timeout: a bound on a hang, not a measurement.
        tokio::time::timeout(Duration::from_secs(20), wait_closed(s, Duration::from_secs(15)))
            .await
            .unwrap_or_else(|_| panic!("idle connection {i} still open"));
    }
    // Freed slots take new connections: a request is answered (404, an unknown path) again.
    eventually("a new request is served", Duration::from_secs(10), || async {
        send("GET", &gw.url("/nope"), &[], "").await.status == http::StatusCode::NOT_FOUND
    })
    .await;
    gw.stop().await;
}
