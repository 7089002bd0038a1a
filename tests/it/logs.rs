//! The gateway logs one JSON line per request on stdout (by default when stdout is not a terminal),
//! with source, outcome, reason, status, event id, latency and client IP, and one per delivery
//! attempt; never a body, a secret or a signature.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use http::StatusCode;

use crate::support::{
    eventually, free_addr, github_headers, github_signature, github_source, post, send, TestSink, GH_SECRET,
};

#[tokio::test]
async fn serve_logs_one_json_line_per_request_and_per_attempt_without_secrets() {
    let mut sink = TestSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"{addr}\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{}",
        dir.path().join("store").display().to_string(),
        github_source("logs", &sink.url("/app"))
    );
    std::fs::write(&config, text).expect("write config");
    // No --log-format: stdout is a pipe, so JSON is the default.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hookgate");
    eventually("the gateway is ready", Duration::from_secs(20), || async move {
        // `send` expects a listener: probe the port first.
        tokio::net::TcpStream::connect(admin).await.is_ok()
            && send("GET", &format!("http://{admin}/readyz"), &[], "")
                .await
                .status
                == StatusCode::OK
    })
    .await;

    let url = format!("http://{addr}/hooks/logs");
    let body = r#"{"secret_looking_body":"do-not-log-me"}"#;
    let accepted = post(&url, &github_headers("log-evt-1", body.as_bytes()), body).await;
    assert_eq!(accepted.status, StatusCode::OK);
    sink.next(Duration::from_secs(15)).await.expect("delivered");
    let forged = vec![(
        "x-hub-signature-256".to_string(),
        github_signature("wrong-secret", body.as_bytes()),
    )];
    assert_eq!(post(&url, &forged, body).await.status, StatusCode::UNAUTHORIZED);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("read stdout");
        (child.wait().expect("wait"), out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .expect("exits within 30 s")
        .expect("join");
    assert_eq!(status.code(), Some(0));

    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let request = |outcome: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request" && l["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} request line in:\n{out}"))
    };
    let ok = request("accepted");
    assert_eq!(ok["source"], "logs");
    assert_eq!(ok["reason"], "none");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["event_id"], "log-evt-1");
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert!(ok["latency_ms"].as_f64().is_some(), "{ok}");
    let rejected = request("rejected");
    assert_eq!(rejected["reason"], "signature_mismatch");
    assert_eq!(rejected["status"], 401);
    let delivery = lines
        .iter()
        .find(|l| l["message"] == "delivery")
        .unwrap_or_else(|| panic!("no delivery line in:\n{out}"));
    assert_eq!(delivery["event_id"], "log-evt-1");
    assert_eq!(delivery["attempt"], 1);
    assert_eq!(delivery["status"], 200);

    for needle in ["do-not-log-me", GH_SECRET, "sha256="] {
        assert!(!out.contains(needle), "the log contains {needle:?}:\n{out}");
    }
}
