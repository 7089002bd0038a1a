//! TLS on both listeners and to the app, with certificates made at test time: HTTP/1.1 and HTTP/2
//! through ALPN, client certificates (mTLS) accepted and refused, a certificate reload that new
//! connections see while open ones keep theirs, handshakes bounded by `header_read_timeout`, an
//! `https://` app behind a private CA, and a wrong CA as a retried `tls` failure.

use std::{path::Path, time::Duration};

use http::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    eventually, github_headers, github_source, metric,
    pki::{client_config, tls_request, toml_path, Ca, Pair, TlsConn},
    send, TestGateway, TestSink,
};

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// `[server.tls]` (or `[admin.tls]`: `table`) with `pair` written into `dir`, and `client_ca`.
fn tls_table(table: &str, dir: &Path, pair: &Pair, client_ca: Option<&Ca>) -> String {
    let (cert, key) = pair.write(dir, table);
    let mut text = format!(
        "[{table}.tls]\ncert = {}\nkey = {}\n",
        toml_path(&cert),
        toml_path(&key)
    );
    if let Some(ca) = client_ca {
        let path = dir.join(format!("{table}-client-ca.pem"));
        std::fs::write(&path, ca.pem()).expect("write");
        text.push_str(&format!("client_ca = {}\n", toml_path(&path)));
    }
    text
}

#[tokio::test]
async fn the_webhook_listener_speaks_tls_only_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("webhook CA");
    let server = ca.issue();
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        tls_table("server", dir.path(), &server, None),
        github_source("tls-in", &sink.url("/app"))
    ))
    .await;

    for (alpn, version) in [(H1, Version::HTTP_11), (H2, Version::HTTP_2)] {
        let id = format!("tls-in-{version:?}");
        let body = format!(r#"{{"over":"{version:?}"}}"#);
        let (reply, negotiated) = tls_request(
            gw.addr,
            client_config(&ca, &[alpn], None),
            "POST",
            "/hooks/tls-in",
            &github_headers(&id, body.as_bytes()),
            body.clone(),
        )
        .await
        .expect("a TLS request");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(negotiated, version);
        let got = sink.next(Duration::from_secs(15)).await.expect("delivered");
        assert_eq!(got.header("x-github-delivery"), id);
        assert_eq!(got.body, body.as_bytes());
    }

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    tcp.write_all(b"GET /hooks/tls-in HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // A client that does not trust the gateway's CA refuses the handshake.
    let stranger = Ca::new("another CA");
    let refused = tls_request(
        gw.addr,
        client_config(&stranger, &[H1], None),
        "GET",
        "/",
        &[],
        "",
    )
    .await;
    assert!(refused.is_err());
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_listener_speaks_tls_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("admin CA");
    let admin = ca.issue();
    // `[admin.tls]` must follow `[admin]`'s keys, if any: here there are none.
    let gw = TestGateway::start(&format!(
        "{}{}",
        tls_table("admin", dir.path(), &admin, None),
        github_source("tls-admin", "http://127.0.0.1:9/")
    ))
    .await;
    for (alpn, version) in [(H1, Version::HTTP_11), (H2, Version::HTTP_2)] {
        let (reply, negotiated) = tls_request(
            gw.admin,
            client_config(&ca, &[alpn], None),
            "GET",
            "/readyz",
            &[],
            "",
        )
        .await
        .expect("a TLS request");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(negotiated, version);
        let (metrics, _) = tls_request(
            gw.admin,
            client_config(&ca, &[alpn], None),
            "GET",
            "/metrics",
            &[],
            "",
        )
        .await
        .expect("a TLS request");
        assert!(
            metrics
                .body
                .contains("hookgate_tls_certificate_expiry_seconds{listener=\"admin\"}"),
            "the admin certificate's expiry is exported"
        );
    }
    // The webhook listener is still plain HTTP.
    let plain = send("GET", &gw.url("/nope"), &[], "").await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_from_the_ca_and_refuses_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let stranger = Ca::new("stranger CA");
    let mut sink = TestSink::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        tls_table("server", dir.path(), &ca.issue(), Some(&clients)),
        github_source("mtls-in", &sink.url("/app"))
    ))
    .await;
    let body = r#"{"mtls":true}"#;
    let headers = github_headers("mtls-1", body.as_bytes());
    let good = clients.issue();
    for alpn in [H1, H2] {
        let (reply, _) = tls_request(
            gw.addr,
            client_config(&ca, &[alpn], Some(&good)),
            "POST",
            "/hooks/mtls-in",
            &headers,
            body,
        )
        .await
        .expect("a client certificate from client_ca is accepted");
        assert!(reply.status.is_success(), "{reply:?}");
    }
    assert_eq!(
        sink.next(Duration::from_secs(15)).await.expect("delivered").body,
        body
    );

    let failures_before = metric(
        &gw.metrics().await,
        "hookgate_tls_handshake_failures_total{listener=\"webhook\"}",
    );
    let unknown = stranger.issue();
    for client in [None, Some(&unknown)] {
        // With TLS 1.3 the client's side of the handshake ends before the server checks the client
        // certificate, so the refusal may come with the first request instead.
        let refused = tls_request(
            gw.addr,
            client_config(&ca, &[H1], client),
            "POST",
            "/hooks/mtls-in",
            &headers,
            body,
        )
        .await;
        assert!(refused.is_err(), "{:?}", refused.map(|r| r.0));
    }
    let metrics_ok = || async {
        let failures = metric(
            &gw.metrics().await,
            "hookgate_tls_handshake_failures_total{listener=\"webhook\"}",
        );
        failures >= failures_before + 2.0
    };
    eventually("both refusals are counted", Duration::from_secs(15), metrics_ok).await;
    gw.stop().await;
}

/// Posts event `id` to `tls-reload` on `conn`; its status.
async fn post(conn: &mut TlsConn, id: &str) -> StatusCode {
    let body = format!(r#"{{"id":"{id}"}}"#);
    let headers = github_headers(id, body.as_bytes());
    conn.send("POST", "/hooks/tls-reload", &headers, body)
        .await
        .expect("a request on the connection")
        .status
}

#[tokio::test]
async fn a_reloaded_certificate_goes_to_new_connections_and_open_ones_keep_theirs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("reload CA");
    let first = ca.issue();
    let mut sink = TestSink::start().await;
    let toml = format!(
        "{}{}",
        tls_table("server", dir.path(), &first, None),
        github_source("tls-reload", &sink.url("/app"))
    );
    let gw = TestGateway::start_reloadable(&toml).await;

    let mut old = TlsConn::open(gw.addr, client_config(&ca, &[H1], None))
        .await
        .expect("handshake");
    assert_eq!(old.peer_cert, first.der);
    assert_eq!(post(&mut old, "reload-1").await, StatusCode::OK);

    // New certificate and key at the same paths, then a reload.
    let second = ca.issue();
    second.write(dir.path(), "server");
    let report = gw.reload().await;
    assert!(report.applied, "{report:?}");

    let mut new = TlsConn::open(gw.addr, client_config(&ca, &[H2], None))
        .await
        .expect("handshake");
    assert_eq!(
        new.peer_cert, second.der,
        "a new connection gets the new certificate"
    );
    assert_eq!(post(&mut new, "reload-2").await, StatusCode::OK);
    // The connection opened before the reload is still up, on its certificate.
    assert_eq!(post(&mut old, "reload-3").await, StatusCode::OK);
    assert_eq!(old.peer_cert, first.der);

    // A broken certificate file is reported and the certificate in use stays.
    std::fs::write(dir.path().join("server.pem"), "not a certificate\n").expect("write");
    let report = gw.reload().await;
    assert!(!report.applied);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.starts_with("server.tls.cert: ") && e.contains("holds no certificate")),
        "{report:?}"
    );
    let mut after = TlsConn::open(gw.addr, client_config(&ca, &[H1], None))
        .await
        .expect("handshake");
    assert_eq!(after.peer_cert, second.der);
    assert_eq!(post(&mut after, "reload-4").await, StatusCode::OK);
    assert_eq!(post(&mut old, "reload-5").await, StatusCode::OK);

    let ids: Vec<String> = sink
        .take(5, Duration::from_secs(15))
        .await
        .iter()
        .map(|r| r.header("x-github-delivery").to_owned())
        .collect();
    for id in ["reload-1", "reload-2", "reload-3", "reload-4", "reload-5"] {
        assert!(ids.iter().any(|i| i == id), "{id} in {ids:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_or_stalled_handshake_is_closed_after_header_read_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("slow CA");
    let toml = format!(
        "[server]\nheader_read_timeout = \"1s\"\nmax_connections = 2\n{}{}",
        tls_table("server", dir.path(), &ca.issue(), None),
        github_source("tls-slow", "http://127.0.0.1:9/")
    );
    let gw = TestGateway::start(&toml).await;
    // Both connection slots: one silent socket, one that sent the start of a ClientHello record.
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let mut stalled = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    for socket in [&mut silent, &mut stalled] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf))
            .await
            .expect("the gateway closes the socket within 30 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // The slots are free again.
    let (reply, _) = tls_request(gw.addr, client_config(&ca, &[H1], None), "GET", "/nope", &[], "")
        .await
        .expect("a TLS request once the slots are free");
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn an_https_app_behind_a_private_ca_receives_the_exact_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app_ca = Ca::new("app CA");
    let gateway_clients = Ca::new("gateway client CA");
    let mut h2_app = TestSink::start_tls(app_ca.issue().server_config(&[H2, H1], None)).await;
    let mut h1_app = TestSink::start_tls(app_ca.issue().server_config(&[H1], None)).await;
    let mut mtls_app =
        TestSink::start_tls(app_ca.issue().server_config(&[H2, H1], Some(&gateway_clients))).await;
    let ca_file = dir.path().join("app-ca.pem");
    std::fs::write(&ca_file, app_ca.pem()).expect("write");
    let (client_cert, client_key) = gateway_clients.issue().write(dir.path(), "gateway-client");
    let toml = format!(
        "[forward]\nca_file = {}\n{}{}{}[sources.forward]\nclient_cert = {}\nclient_key = {}\n",
        toml_path(&ca_file),
        github_source("https-h2", &h2_app.https_url("/in")),
        github_source("https-h1", &h1_app.https_url("/in")),
        github_source("https-mtls", &mtls_app.https_url("/in")),
        toml_path(&client_cert),
        toml_path(&client_key),
    );
    let gw = TestGateway::start(&toml).await;
    // Bytes that a lossy conversion anywhere would change.
    let body: Vec<u8> = b"{\"payload\":\"\xc3\xa9\\u0000\"}\r\n\t "
        .iter()
        .copied()
        .chain((0u8..=255).filter(|b| b.is_ascii_graphic()))
        .collect();
    for (source, app, version) in [
        ("https-h2", &mut h2_app, Version::HTTP_2),
        ("https-h1", &mut h1_app, Version::HTTP_11),
        ("https-mtls", &mut mtls_app, Version::HTTP_2),
    ] {
        let id = format!("{source}-1");
        let reply = crate::support::post(
            &gw.url(&format!("/hooks/{source}")),
            &github_headers(&id, &body),
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let got = app
            .next(Duration::from_secs(15))
            .await
            .expect("delivered over TLS");
        assert_eq!(got.body, body, "{source}");
        assert_eq!(got.version, version, "{source}: ALPN picks the version");
        assert_eq!(got.header("x-github-delivery"), id);
    }
    // The app has the request before the gateway has its answer: the count follows.
    let delivered =
        "hookgate_deliveries_total{source=\"https-mtls\",output=\"http\",outcome=\"delivered\",error_source=\"none\"}";
    eventually("the delivery is counted", Duration::from_secs(15), || async {
        metric(&gw.metrics().await, delivered) == 1.0
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_is_a_retried_tls_failure_until_the_ca_is_fixed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app_ca = Ca::new("the app's CA");
    let other_ca = Ca::new("some other CA");
    let mut app = TestSink::start_tls(app_ca.issue().server_config(&[H1], None)).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, other_ca.pem()).expect("write");
    let toml = format!(
        "[forward]\nca_file = {}\ninitial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\n{}",
        toml_path(&ca_file),
        github_source("wrong-ca", &app.https_url("/in")),
    );
    let gw = TestGateway::start_reloadable(&toml).await;
    let body = r#"{"ca":"wrong"}"#;
    let reply = crate::support::post(
        &gw.url("/hooks/wrong-ca"),
        &github_headers("wrong-ca-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let tls_retries = "hookgate_deliveries_total{source=\"wrong-ca\",output=\"http\",outcome=\"retry\",error_source=\"tls\"}";
    eventually("two attempts failed as tls", Duration::from_secs(15), || async {
        metric(&gw.metrics().await, tls_retries) >= 2.0
    })
    .await;
    let metrics = gw.metrics().await;
    for other in ["network", "app"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("hookgate_deliveries_total{{source=\"wrong-ca\",output=\"http\",outcome=\"retry\",error_source=\"{other}\"}}")
            ),
            0.0
        );
    }
    let events = send("GET", &gw.admin_url("/events?source=wrong-ca"), &[], "").await;
    assert!(
        events
            .body
            .contains("tls: invalid peer certificate: UnknownIssuer"),
        "{}",
        events.body
    );

    // The right CA, a reload: the event that kept failing goes through.
    std::fs::write(&ca_file, app_ca.pem()).expect("write");
    let report = gw.reload().await;
    assert!(report.applied, "{report:?}");
    let got = app
        .next(Duration::from_secs(15))
        .await
        .expect("delivered after the fix");
    assert_eq!(got.body, body);
    gw.stop().await;
}

#[tokio::test]
async fn an_expiring_certificate_is_a_warn_line_and_a_gauge_at_start_and_reload() {
    use std::{
        io::Read,
        process::{Command, Stdio},
    };

    use crate::support::free_addr;

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("expiry CA");
    let in_three_days = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let soon = ca.issue_until(in_three_days);
    let (addr, admin) = (free_addr(), free_addr());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n{}[admin]\nlisten = \"{admin}\"\n[store]\npath = {}\n{}",
            tls_table("server", dir.path(), &soon, None),
            toml_path(&dir.path().join("store")),
            github_source("tls-expiry", "http://127.0.0.1:9/")
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hookgate");
    let gauge = "hookgate_tls_certificate_expiry_seconds{listener=\"webhook\"}";
    let scrape = || async move {
        if tokio::net::TcpStream::connect(admin).await.is_err() {
            return 0.0;
        }
        metric(
            &send("GET", &format!("http://{admin}/metrics"), &[], "")
                .await
                .body,
            gauge,
        )
    };
    eventually(
        "the gauge holds the notAfter",
        Duration::from_secs(20),
        || async { scrape().await == in_three_days.unix_timestamp() as f64 },
    )
    .await;

    // An expired certificate, then SIGHUP: the reload applies it (clients will refuse it) and says so.
    let a_day_ago = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    ca.issue_until(a_day_ago).write(dir.path(), "server");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGHUP).expect("SIGHUP");
    eventually(
        "the reload updates the gauge",
        Duration::from_secs(20),
        || async { scrape().await == a_day_ago.unix_timestamp() as f64 },
    )
    .await;

    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("SIGTERM");
    let out = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("read stdout");
        let _ = child.wait();
        out
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits within 30 s")
        .expect("join");
    let warns: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "WARN" && l.to_string().contains("TLS certificate"))
        .collect();
    assert_eq!(warns.len(), 2, "{out}");
    let text = |v: &serde_json::Value| v.to_string();
    assert!(text(&warns[0]).contains("expires soon"), "{}", text(&warns[0]));
    assert!(text(&warns[1]).contains("has expired"), "{}", text(&warns[1]));
    for line in &warns {
        assert!(text(line).contains("server.pem") && text(line).contains("webhook"));
    }
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}
