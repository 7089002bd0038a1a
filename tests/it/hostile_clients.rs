//! Clients that hold resources without finishing a request: idle and half-open connections.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{
    eventually, free_addr, github_headers, github_source, metric, post, send, GatewayProcess, TestGateway,
};

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

/// One connection that declares `declared` body bytes and sends `sent` of them, then stalls.
async fn stalled_body(gw: &GatewayProcess, path: &str, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: stalled\r\nContent-Length: {declared}\r\n\r\n",
        gw.addr
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&vec![b'x'; sent])
        .await
        .expect("write part of the body");
    s
}

/// 23.6: the bytes buffered across every in-flight request are bounded by `max_buffered_bytes`: with
/// two stalled bodies holding it, a third request is answered 503 with `Retry-After` and counted; once
/// they go away, requests are accepted again.
#[tokio::test]
async fn past_max_buffered_bytes_requests_are_refused_503_until_bodies_drain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    // Two stalled bodies of 65,535 bytes hold at least 131,070 of the 131,072: whatever the chunks
    // they arrive in, a buffer grows to hold what arrived and no more than the declared 65,536.
    let toml = format!(
        "[server]\nlisten = \"{addr}\"\nmax_body_size = 65536\nmax_buffered_bytes = 131072\n\
         request_timeout = \"120s\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{}",
        dir.path().join("store").display().to_string(),
        github_source("budget", "http://127.0.0.1:9/app")
    );
    std::fs::write(&config, toml).expect("write config");
    let gw = GatewayProcess::start_from(config, addr, admin).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_body(&gw, "/hooks/budget", 65_536, 65_535).await);
    }
    let body = br#"{"zen":"small"}"#;
    // Bounded: the stalled bodies are read within moments; until then a request may still get in.
    // One that gets in while a stalled body is still being read can leave that body short of the
    // budget, which then answers it 503 (on a loaded machine, it happens): a stalled connection that
    // got an answer (or was closed) is replaced, so that two of them come to hold the budget.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let refused = loop {
        for slot in stalled.iter_mut() {
            let mut byte = [0u8; 1];
            match slot.try_read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => *slot = stalled_body(&gw, "/hooks/budget", 65_536, 65_535).await,
            }
        }
        n += 1;
        let reply = post(
            &gw.url("/hooks/budget"),
            &github_headers(&format!("budget-{n}"), body),
            &body[..],
        )
        .await;
        if reply.status == http::StatusCode::SERVICE_UNAVAILABLE {
            break reply;
        }
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request refused within 20 s ({n} accepted)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.body, r#"{"error":"buffer_budget_exhausted"}"#);
    assert_eq!(refused.headers["retry-after"], "5");
    let metrics = send("GET", &gw.admin_url("/metrics"), &[], "").await.body;
    assert!(
        metric(
            &metrics,
            "hookgate_requests_total{source=\"budget\",outcome=\"error\",reason=\"buffer_budget_exhausted\"}"
        ) >= 1.0,
        "counted: {metrics}"
    );

    // The stalled clients give up: their bytes go back to the budget, and intake resumes.
    drop(stalled);
    let mut m = 0;
    eventually("a request is accepted again", Duration::from_secs(20), || {
        m += 1;
        let headers = github_headers(&format!("after-{m}"), body);
        let url = gw.url("/hooks/budget");
        async move { post(&url, &headers, &body[..]).await.status == http::StatusCode::OK }
    })
    .await;
}
