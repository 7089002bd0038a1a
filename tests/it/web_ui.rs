//! The admin web page end to end: headless Chromium, driven by Playwright (`tests/ui/`, run with
//! node), against the real binary and a real loopback app. This file sets the scene (two gateways,
//! one with a token and one open, dead letters, an XSS payload, a binary body), runs the browser
//! tests, then checks what the app received from the page's replays.
//!
//! Needs node and `/usr/bin/chromium` (`.ci/run` installs both); without node the test says so loudly
//! and passes. `npm ci` runs in `tests/ui` when its `node_modules` is missing.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::Value;

use crate::support::{
    eventually, free_addr, github_headers, github_source, post, send, GatewayProcess, Reply, TestSink,
    GH_SECRET,
};

const TOKEN: &str = "ui-test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
/// The browser tests' bound (they take about half a minute).
const BROWSER_TESTS_WITHIN: Duration = Duration::from_secs(240);

/// A body and a header that would run script if the page parsed them as HTML.
const XSS_BODY: &str =
    r#"{"note":"<img src=x onerror=\"window.__xss=1\">","html":"<script>window.__xss=2</script>"}"#;
const XSS_HEADER: &str = "<img src=x onerror=window.__xss=3><b>bold</b>";

fn config(
    dir: &Path,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    admin_extra: &str,
    sources: &str,
) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        "[server]\nlisten = \"{addr}\"\nshutdown_timeout = \"10s\"\n[admin]\nlisten = \"{admin}\"\n{admin_extra}\n\
         [store]\npath = {:?}\n{sources}",
        dir.join("store").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

async fn admin_get(gw: &GatewayProcess, path: &str, token: Option<&str>) -> Value {
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
        .unwrap_or_default();
    let r = send("GET", &gw.admin_url(path), &headers, "").await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

async fn deliver(gw: &GatewayProcess, source: &str, id: &str, body: &[u8], extra: &[(&str, &str)]) {
    let mut headers = github_headers(id, body);
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let r = post(&gw.url(&format!("/hooks/{source}")), &headers, body.to_vec()).await;
    assert_eq!(r.status, 200, "{source} {id}: {}", r.body);
}

async fn wait_state(gw: &GatewayProcess, token: Option<&str>, event_id: &str, state: &str) {
    eventually(&format!("{event_id} is {state}"), WAIT, || async {
        let list = admin_get(gw, "/events?limit=1000", token).await;
        list["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["event_id"] == event_id && e["state"] == state)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_in_a_real_browser() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let node_found = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_found {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED: the web page's browser tests need node (and /usr/bin/chromium); \
             install them (.ci/run does) to run tests/ui !!!!!!!!\n\n"
        );
        return;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium"
    );
    if !ui.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&ui)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .status()
            .expect("run npm ci");
        assert!(status.success(), "npm ci in tests/ui failed");
    }

    // The app: the first four deliveries fail, so that the one-shot source dead-letters four events.
    let mut app = TestSink::start().await;
    app.script([500u16, 500, 500, 500].map(Reply::from));
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, admin) = (free_addr(), free_addr());
    let sources = format!(
        "{}\n[sources.forward]\nmax_attempts = 1\n{}",
        github_source("billing", &app.url("/billing")),
        github_source("orders", &app.url("/orders")),
    );
    let path = config(dir.path(), addr, admin, &format!("token = \"{TOKEN}\""), &sources);
    let gw = GatewayProcess::start_from(path, addr, admin).await;
    let token = Some(TOKEN);
    for n in 1..=4 {
        let id = format!("dead-{n}");
        deliver(
            &gw,
            "billing",
            &id,
            format!(r#"{{"invoice":{n},"amount":12.5}}"#).as_bytes(),
            &[],
        )
        .await;
        wait_state(&gw, token, &id, "dead").await;
    }
    for n in 1..=3 {
        deliver(
            &gw,
            "orders",
            &format!("order-{n}"),
            format!(r#"{{"order":{n}}}"#).as_bytes(),
            &[],
        )
        .await;
    }
    deliver(
        &gw,
        "orders",
        "xss-1",
        XSS_BODY.as_bytes(),
        &[("x-note", XSS_HEADER)],
    )
    .await;
    deliver(&gw, "orders", "binary-1", &[0xff, 0xfe, 0x00, 0x01, 0x80], &[]).await;
    for id in ["order-1", "order-2", "order-3", "xss-1", "binary-1"] {
        wait_state(&gw, token, id, "delivered").await;
    }
    let received_before = app.take(9, WAIT).await;
    assert_eq!(received_before.len(), 9, "4 failed deliveries and 5 delivered");

    // The webhook listener never serves the page.
    for p in ["/ui", "/ui/app.js", "/ui/auth.json"] {
        let r = send("GET", &gw.url(p), &[], "").await;
        assert_eq!(r.status, 404, "the webhook listener answered {p}");
        assert!(!r.body.contains("hookgate"), "{p}: {}", r.body);
    }

    // A second gateway without a token: its API, and so its page, is open (loopback).
    let open_dir = tempfile::tempdir().expect("tempdir");
    let (open_addr, open_admin) = (free_addr(), free_addr());
    let open_path = config(
        open_dir.path(),
        open_addr,
        open_admin,
        "",
        &github_source("open", &app.url("/open")),
    );
    let open = GatewayProcess::start_from(open_path, open_addr, open_admin).await;
    deliver(&open, "open", "open-1", br#"{"open":true}"#, &[]).await;
    wait_state(&open, None, "open-1", "delivered").await;
    assert!(app.next(WAIT).await.is_some(), "the open gateway delivered");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    // The output goes to files (a full pipe would stall node while this test waits for it).
    let (out_path, err_path) = (dir.path().join("node.out"), dir.path().join("node.err"));
    let mut child = std::process::Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&ui)
        .env("HG_ADMIN", format!("http://{admin}"))
        .env("HG_OPEN_ADMIN", format!("http://{open_admin}"))
        .env("HG_WEBHOOK", format!("http://{addr}"))
        .env("HG_TOKEN", TOKEN)
        .env("HG_GITHUB_SECRET", GH_SECRET)
        .env("HG_XSS_HEADER", XSS_HEADER)
        .env("HG_SCREENSHOTS", &shots)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("node.out"))
        .stderr(std::fs::File::create(&err_path).expect("node.err"))
        .spawn()
        .expect("run node");
    let deadline = tokio::time::Instant::now() + BROWSER_TESTS_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    println!("{stdout}\n{stderr}");
    let status = status.unwrap_or_else(|| {
        panic!("the browser tests did not end within {BROWSER_TESTS_WITHIN:?}:\n{stdout}\n{stderr}")
    });
    assert!(status.success(), "the browser tests failed:\n{stdout}\n{stderr}");

    // What the page's replays delivered: dead-1 (from its event page) and dead-4 (a window replay);
    // dead-2 and dead-3 were deleted from the page, never delivered again.
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..12 {
        match app.next(Duration::from_secs(2)).await {
            Some(req) => ids.push(req.header("x-github-delivery").to_owned()),
            None => break,
        }
    }
    for id in ["dead-1", "dead-4"] {
        assert!(
            ids.iter().any(|i| i == id),
            "the app received the replayed {id}: {ids:?}"
        );
    }
    for id in ["dead-2", "dead-3"] {
        assert!(
            !ids.iter().any(|i| i == id),
            "{id} was deleted, not replayed: {ids:?}"
        );
    }
    let dead = admin_get(&gw, "/events?state=dead", token).await;
    assert_eq!(dead["events"].as_array().expect("events").len(), 0, "{dead}");
}
