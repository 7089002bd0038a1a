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
    let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
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

    let out = stop_and_read(child).await;

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

/// Starts `hookgate serve` on `config` with JSON logs on a pipe; waits until `admin` is ready.
async fn serve_json(config: &std::path::Path, admin: std::net::SocketAddr) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hookgate");
    eventually("the gateway is ready", Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(admin).await.is_ok()
            && send("GET", &format!("http://{admin}/readyz"), &[], "")
                .await
                .status
                == StatusCode::OK
    })
    .await;
    child
}

/// SIGTERMs `child` and returns its stdout, checking that it exited 0.
async fn stop_and_read(mut child: std::process::Child) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .expect("SIGTERM");
    let done = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("read stdout");
        (child.wait().expect("wait"), out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("exits within 30 s")
        .expect("join");
    assert_eq!(status.code(), Some(0), "{out}");
    out
}

#[tokio::test]
async fn request_ids_join_the_apps_logs_latency_is_in_microseconds_and_lists_are_arrays() {
    let mut sink = TestSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    let app = sink.url("/app");
    let text = |listen: std::net::SocketAddr| {
        format!(
            "[server]\nlisten = \"{listen}\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{}",
            dir.path().join("store").display().to_string(),
            github_source("ids", &app)
        )
    };
    std::fs::write(&config, text(addr)).expect("write config");
    let child = serve_json(&config, admin).await;
    let url = format!("http://{addr}/hooks/ids");

    // No id from the sender, a sane one, and one too long to keep.
    let long = "r".repeat(129);
    let cases = [
        ("ids-none", None),
        ("ids-sane", Some("sender-req-42")),
        ("ids-long", Some(long.as_str())),
    ];
    let mut forwarded = std::collections::HashMap::new();
    for (event, sender_id) in cases {
        let body = format!("{{\"event\":\"{event}\"}}");
        let mut headers = github_headers(event, body.as_bytes());
        if let Some(id) = sender_id {
            headers.push(("x-request-id".into(), id.into()));
        }
        assert_eq!(post(&url, &headers, body).await.status, StatusCode::OK);
        let got = sink.next(Duration::from_secs(15)).await.expect("delivered");
        assert_eq!(got.header("x-hookgate-event-id"), event);
        assert_eq!(
            got.headers.get_all("x-request-id").iter().count(),
            1,
            "one id per forward"
        );
        forwarded.insert(event, got.header("x-request-id").to_owned());
    }
    assert_eq!(forwarded["ids-sane"], "sender-req-42");
    for event in ["ids-none", "ids-long"] {
        let id = &forwarded[event];
        assert!(
            id.len() == 36 && id.matches('-').count() == 4 && id.chars().nth(14) == Some('4'),
            "{event}: {id:?} is not a UUID v4"
        );
    }
    assert_ne!(forwarded["ids-none"], forwarded["ids-long"]);
    // A rejection has an id too.
    let forged = vec![
        (
            "x-hub-signature-256".to_string(),
            github_signature("wrong-secret", b"{}"),
        ),
        ("x-request-id".to_string(), "rejected-req-7".to_string()),
    ];
    assert_eq!(post(&url, &forged, "{}").await.status, StatusCode::UNAUTHORIZED);

    // A reload that changes a setting bound at start lists it.
    std::fs::write(&config, text(free_addr())).expect("rewrite config");
    let reload = send("POST", &format!("http://{admin}/reload"), &[], "").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.body);

    let out = stop_and_read(child).await;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let find = |message: &str, key: &str, value: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l[key] == value)
            .unwrap_or_else(|| panic!("no {message} line with {key} = {value} in:\n{out}"))
    };
    for (event, _) in cases {
        let request = find("request", "event_id", event);
        assert_eq!(request["request_id"], *forwarded[event], "{request}");
        let delivery = find("delivery", "event_id", event);
        assert_eq!(delivery["request_id"], *forwarded[event], "{delivery}");
    }
    assert_eq!(
        find("request", "outcome", "rejected")["request_id"],
        "rejected-req-7"
    );
    assert!(
        !out.contains(&long),
        "an id that was not kept is not logged either"
    );

    let reloaded = find("config reloaded", "level", "INFO");
    assert_eq!(
        reloaded["restart_required"],
        serde_json::json!(["server.listen"]),
        "{reloaded}"
    );

    // Every latency is written with at most three decimals: microseconds.
    let latencies: Vec<&str> = out
        .split("\"latency_ms\":")
        .skip(1)
        .map(|rest| rest.split([',', '}']).next().unwrap_or(""))
        .collect();
    assert!(latencies.len() >= 7, "{out}");
    for l in latencies {
        let decimals = l.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(
            decimals <= 3 && l.parse::<f64>().is_ok(),
            "latency_ms {l} in:\n{out}"
        );
    }
}

#[tokio::test]
async fn a_challenge_is_logged_as_a_handshake_without_its_token() {
    let sink = TestSink::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"{addr}\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n\
         [[sources]]\nname = \"wa\"\npath = \"/hooks/wa\"\nprovider = \"meta\"\n\
         secrets = [\"logs-meta-app-secret\"]\nupstream = \"{}\"\n\
         [sources.challenge]\nverify_token = \"logs-meta-verify-token\"\n",
        dir.path().join("store").display().to_string(),
        sink.url("/app"),
    );
    std::fs::write(&config, text).expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hookgate");
    eventually("the gateway is ready", Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(admin).await.is_ok()
            && send("GET", &format!("http://{admin}/readyz"), &[], "")
                .await
                .status
                == StatusCode::OK
    })
    .await;

    let base = format!("http://{addr}/hooks/wa?hub.mode=subscribe&hub.challenge=4242");
    let ok = send(
        "GET",
        &format!("{base}&hub.verify_token=logs-meta-verify-token"),
        &[],
        "",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let wrong = send(
        "GET",
        &format!("{base}&hub.verify_token=logs-guessed-token"),
        &[],
        "",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let out = stop_and_read(child).await;
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
    let answered = request("handshake");
    assert_eq!(answered["source"], "wa");
    assert_eq!(answered["status"], 200);
    assert_eq!(answered["event_id"], "meta-challenge");
    let refused = request("rejected");
    assert_eq!(refused["reason"], "token_mismatch");
    assert_eq!(refused["status"], 401);
    for secret in [
        "logs-meta-verify-token",
        "logs-guessed-token",
        "logs-meta-app-secret",
    ] {
        assert!(!out.contains(secret), "{secret} in the log:\n{out}");
    }
}
