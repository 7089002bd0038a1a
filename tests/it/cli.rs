//! The command line: `check`, `verify`, `--help` and usage errors, on the real binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tempfile::TempDir;

use crate::support::{github_signature, GH_SECRET};

/// The Stripe endpoint secret, timestamp, payload and header of `tests/fixtures/stripe.json`.
const STRIPE_SECRET: &str = "whsec_plKRpyWmhU0wexrn2oeAs0sUbIzpuGeM";
const STRIPE_T: u64 = 1492774577;
const STRIPE_PAYLOAD: &str =
    r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded"}"#;
const STRIPE_SIGNATURE: &str = "t=1492774577,v1=d4e8fc590ee13327ad9d62bf5fe8b5299c05b6a60517b885d7239ccd4e75c591,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39";

/// GitHub's documented test vector (tests/fixtures/github.json).
const DOCS_SECRET: &str = "It's a Secret to Everybody";
const DOCS_PAYLOAD: &str = "Hello, World!";
const DOCS_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn hookgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("HOOKGATE_CLI_TEST_UNSET_SECRET")
        .output()
        .expect("run hookgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config with a github source `gh`, a stripe source `stripe` and a github source `docs` keyed with
/// GitHub's documented secret.
fn verify_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[store]
path = {store:?}

[[sources]]
name = "gh"
path = "/hooks/gh"
provider = "github"
secrets = ["{GH_SECRET}"]
upstream = "http://127.0.0.1:9/gh"

[[sources]]
name = "stripe"
path = "/hooks/stripe"
provider = "stripe"
secrets = ["{STRIPE_SECRET}"]
upstream = "http://127.0.0.1:9/stripe"

[[sources]]
name = "docs"
path = "/hooks/docs"
provider = "github"
secrets = ["{DOCS_SECRET}"]
upstream = "http://127.0.0.1:9/docs"
"#,
        store = dir.join("store").display().to_string()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A raw request: `POST path`, `headers`, a blank line and `body`, lines ending with `eol`.
fn capture(path: &str, headers: &[(&str, String)], body: &[u8], eol: &str) -> Vec<u8> {
    let mut raw = format!("POST {path} HTTP/1.1{eol}Host: gateway.example{eol}");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}{eol}"));
    }
    raw.push_str(eol);
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn github_capture(id: &str, body: &[u8], eol: &str, content_length: bool) -> Vec<u8> {
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Event", "push".to_owned()),
        ("X-GitHub-Delivery", id.to_owned()),
        ("X-Hub-Signature-256", github_signature(GH_SECRET, body)),
    ];
    if content_length {
        headers.push(("Content-Length", body.len().to_string()));
    }
    capture("/hooks/gh", &headers, body, eol)
}

/// Runs `hookgate verify` on `raw` for `source`; returns (exit code, stdout as JSON, stderr).
fn verify(
    dir: &Path,
    source: &str,
    raw: &[u8],
    now: Option<u64>,
) -> (Option<i32>, serde_json::Value, String) {
    let config = verify_config(dir);
    let request = dir.join(format!("capture-{}.http", rand_suffix(raw)));
    std::fs::write(&request, raw).expect("write capture");
    let now = now.map(|n| n.to_string());
    let mut args = vec![
        "verify",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--source",
        source,
        "--request",
        request.to_str().expect("utf-8 path"),
    ];
    if let Some(now) = &now {
        args.extend(["--now", now]);
    }
    let o = hookgate(&args);
    let out = stdout(&o);
    let json = if out.trim().is_empty() {
        serde_json::Value::Null
    } else {
        assert_eq!(out.lines().count(), 1, "verify prints one JSON line: {out:?}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
    };
    (o.status.code(), json, stderr(&o))
}

/// A file-name suffix that differs between captures.
fn rand_suffix(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(raw)[..6])
}

fn valid(event_id: &str) -> serde_json::Value {
    serde_json::json!({ "verdict": "valid", "event_id": event_id })
}

fn invalid(reason: &str) -> serde_json::Value {
    serde_json::json!({ "verdict": "invalid", "reason": reason })
}

#[test]
fn check_accepts_the_example_config_and_lists_every_source() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let o = hookgate(&["check", "--config", path]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(": ok"), "{out}");
    for (name, path) in [
        ("github", "/hooks/github"),
        ("stripe", "/hooks/stripe"),
        ("billing", "/hooks/billing"),
        ("acme", "/hooks/acme"),
        ("whatsapp", "/hooks/whatsapp"),
        ("ci", "/hooks/ci"),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("source {name}:")));
        let line = line.unwrap_or_else(|| panic!("source {name} not listed:\n{out}"));
        assert!(line.contains(path), "{line}");
    }
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with("source "))
            .count(),
        6,
        "{out}"
    );
}

#[test]
fn check_reports_every_error_at_once_with_exit_78() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("broken.toml");
    let text = format!(
        r#"
[server]
lisen = "127.0.0.1:8080"

[store]
path = {store:?}

[forward]
timeout = "soon"

[[sources]]
name = "gh"
path = "/hooks/gh"
provider = "github"
secrets = [{{ env = "HOOKGATE_CLI_TEST_UNSET_SECRET" }}]
upstream = "http://127.0.0.1:3000/gh"
"#,
        store = dir.path().join("store").display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    let o = hookgate(&["check", "--config", path.to_str().expect("utf-8 path")]);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(78),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(&o)
    );
    for key in ["server.lisen", "forward.timeout", "sources.gh.secrets[0]"] {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("  {key}: "))),
            "no `  {key}: ...` line in stderr:\n{err}"
        );
    }
    assert!(
        err.contains("HOOKGATE_CLI_TEST_UNSET_SECRET"),
        "the missing variable is named:\n{err}"
    );
    assert!(
        stdout(&o).is_empty(),
        "no summary for a broken config: {}",
        stdout(&o)
    );
}

#[test]
fn check_prints_the_problems_of_every_table() {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().join("broken.toml");
    let text = r#"
[server]
max_connections = 0

[store]
path = ""
retention = "0s"
cache_size = 1

[forward]
max_attempts = "many"

[[sources]]
name = "a"
path = "/same"
provider = "github"
secrets = ["s"]
upstream = "http://127.0.0.1:3000/a"

[[sources]]
name = "b"
path = "/same"
secrets = ["s"]
upstream = "http://127.0.0.1:3000/b"
"#;
    std::fs::write(&path, text).expect("write config");
    let o = hookgate(&["check", "--config", path.to_str().expect("utf-8 path")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(78), "stderr:\n{err}");
    assert!(err.contains("has 7 problems:"), "{err}");
    for key in [
        "server.max_connections",
        "store.path",
        "store.retention",
        "store.cache_size",
        "forward.max_attempts",
        "sources.b.provider",
        "sources.b.path",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("  {key}: "))),
            "no `  {key}: ...` line in stderr:\n{err}"
        );
    }
}

#[test]
fn verify_a_github_capture_with_crlf_and_lf() {
    let dir = TempDir::new().expect("temp dir");
    let body = br#"{"ref":"refs/heads/main","commits":[]}"#;
    // CRLF with a Content-Length that cuts an editor's trailing newline.
    let mut crlf = github_capture("crlf-delivery", body, "\r\n", true);
    crlf.push(b'\n');
    let (code, json, err) = verify(dir.path(), "gh", &crlf, None);
    assert_eq!((code, &json), (Some(0), &valid("crlf-delivery")), "{err}");
    // LF line endings, no Content-Length: the body is everything after the blank line.
    let lf = github_capture("lf-delivery", body, "\n", false);
    let (code, json, err) = verify(dir.path(), "gh", &lf, None);
    assert_eq!((code, &json), (Some(0), &valid("lf-delivery")), "{err}");
}

#[test]
fn verify_a_tampered_capture_is_a_signature_mismatch() {
    let dir = TempDir::new().expect("temp dir");
    let body = br#"{"amount":100}"#;
    let mut raw = github_capture("tampered", body, "\r\n", true);
    let at = raw.len() - 2;
    raw[at] = b'9'; // {"amount":109}
    let (code, json, err) = verify(dir.path(), "gh", &raw, None);
    assert_eq!((code, &json), (Some(1), &invalid("signature_mismatch")), "{err}");
}

/// `Verdict::to_json` documents the exact line (`verdict` first), which scripts may match as text.
#[test]
fn verify_prints_the_documented_json_line() {
    let dir = TempDir::new().expect("temp dir");
    let config = verify_config(dir.path());
    let good = github_capture("exact", b"{}", "\r\n", true);
    let mut bad = good.clone();
    *bad.last_mut().expect("body") = b']';
    let mut lines = Vec::new();
    for (i, raw) in [good, bad].iter().enumerate() {
        let file = dir.path().join(format!("exact-{i}.http"));
        std::fs::write(&file, raw).expect("write capture");
        let o = hookgate(&[
            "verify",
            "--config",
            config.to_str().expect("utf-8"),
            "--source",
            "gh",
            "--request",
            file.to_str().expect("utf-8"),
        ]);
        lines.push((o.status.code(), stdout(&o)));
    }
    assert_eq!(
        lines,
        [
            (
                Some(0),
                "{\"verdict\":\"valid\",\"event_id\":\"exact\"}\n".to_owned()
            ),
            (
                Some(1),
                "{\"verdict\":\"invalid\",\"reason\":\"signature_mismatch\"}\n".to_owned()
            ),
        ]
    );
}

#[test]
fn verify_a_stripe_capture_inside_and_outside_the_window() {
    let dir = TempDir::new().expect("temp dir");
    let headers = [
        ("Content-Type", "application/json".to_owned()),
        ("Stripe-Signature", STRIPE_SIGNATURE.to_owned()),
        ("Content-Length", STRIPE_PAYLOAD.len().to_string()),
    ];
    let raw = capture("/hooks/stripe", &headers, STRIPE_PAYLOAD.as_bytes(), "\r\n");
    for age in [0, 120, 300] {
        let (code, json, err) = verify(dir.path(), "stripe", &raw, Some(STRIPE_T + age));
        assert_eq!(
            (code, &json),
            (Some(0), &valid("evt_1NG8Du2eZvKYlo2CUI79vXWy")),
            "age {age}: {err}"
        );
    }
    for age in [301, 3600] {
        let (code, json, err) = verify(dir.path(), "stripe", &raw, Some(STRIPE_T + age));
        assert_eq!(
            (code, &json),
            (Some(1), &invalid("timestamp_outside_tolerance")),
            "age {age}: {err}"
        );
    }
}

#[test]
fn verify_githubs_documented_test_vector() {
    let dir = TempDir::new().expect("temp dir");
    let headers = [
        ("X-GitHub-Delivery", "docs-vector".to_owned()),
        ("X-Hub-Signature-256", DOCS_SIGNATURE.to_owned()),
        ("Content-Length", DOCS_PAYLOAD.len().to_string()),
    ];
    let raw = capture("/hooks/docs", &headers, DOCS_PAYLOAD.as_bytes(), "\r\n");
    let (code, json, err) = verify(dir.path(), "docs", &raw, None);
    assert_eq!((code, &json), (Some(0), &valid("docs-vector")), "{err}");
    // The same capture under another secret does not verify.
    let (code, json, err) = verify(dir.path(), "gh", &raw, None);
    assert_eq!((code, &json), (Some(1), &invalid("signature_mismatch")), "{err}");
}

#[test]
fn verify_usage_errors_exit_2_and_config_errors_78() {
    let dir = TempDir::new().expect("temp dir");
    let raw = github_capture("usage", b"{}", "\r\n", true);

    let (code, json, err) = verify(dir.path(), "no-such-source", &raw, None);
    assert_eq!(
        (code, &json),
        (Some(2), &serde_json::Value::Null),
        "unknown source: {err}"
    );
    assert!(err.contains("no-such-source"), "{err}");

    let head_only = b"POST /hooks/gh HTTP/1.1\r\nHost: gateway.example\r\nContent-Length: 2\r\n";
    let (code, json, err) = verify(dir.path(), "gh", head_only, None);
    assert_eq!(
        (code, &json),
        (Some(2), &serde_json::Value::Null),
        "no blank line: {err}"
    );

    let mut truncated = github_capture("truncated", b"{\"a\":1}", "\r\n", true);
    truncated.truncate(truncated.len() - 3);
    let (code, json, err) = verify(dir.path(), "gh", &truncated, None);
    assert_eq!(
        (code, &json),
        (Some(2), &serde_json::Value::Null),
        "body shorter than Content-Length: {err}"
    );

    let config = verify_config(dir.path());
    let missing = dir.path().join("missing.http");
    let o = hookgate(&[
        "verify",
        "--config",
        config.to_str().expect("utf-8"),
        "--source",
        "gh",
        "--request",
        missing.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "unreadable capture: {}", stderr(&o));

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[server]\nlisen = 1\n").expect("write config");
    let file = dir.path().join("ok.http");
    std::fs::write(&file, &raw).expect("write capture");
    let o = hookgate(&[
        "verify",
        "--config",
        broken.to_str().expect("utf-8"),
        "--source",
        "gh",
        "--request",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(78), "broken config: {}", stderr(&o));

    let o = hookgate(&["verify", "--source", "gh"]);
    assert_eq!(o.status.code(), Some(2), "missing --request: {}", stderr(&o));
}

#[test]
fn help_exits_0_and_an_unknown_flag_exits_2() {
    let o = hookgate(&["--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for sub in ["serve", "check", "verify"] {
        assert!(out.contains(sub), "--help does not mention {sub}:\n{out}");
    }
    let o = hookgate(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
}

#[test]
fn no_subcommand_serves_gateway_toml_in_the_working_directory() {
    let dir = TempDir::new().expect("temp dir");
    // A config with an error: `serve` must load ./gateway.toml and refuse it with EX_CONFIG.
    std::fs::write(dir.path().join("gateway.toml"), "[forward]\ntimeout = \"soon\"\n").expect("write config");
    let o = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hookgate");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("gateway.toml") && err.contains("forward.timeout"),
        "{err}"
    );
}

/// Runs `hookgate sign` for `source` on `body` at `now`; returns (exit code, stdout bytes, stderr).
fn sign(dir: &Path, source: &str, body: &[u8], now: u64) -> (Option<i32>, Vec<u8>, String) {
    let config = verify_config(dir);
    let body_file = dir.join(format!("body-{}.bin", rand_suffix(body)));
    std::fs::write(&body_file, body).expect("write body");
    let now = now.to_string();
    let o = hookgate(&[
        "sign",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--source",
        source,
        "--body",
        body_file.to_str().expect("utf-8 path"),
        "--now",
        &now,
    ]);
    (o.status.code(), o.stdout.clone(), stderr(&o))
}

#[test]
fn sign_then_verify_round_trips_for_github_and_stripe() {
    let dir = TempDir::new().expect("temp dir");
    let now = 1_700_000_000;
    let body = br#"{"id":"evt_signed","object":"event"}"#;

    let (code, raw, err) = sign(dir.path(), "gh", body, now);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        raw.starts_with(b"POST /hooks/gh HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(raw.ends_with(body), "the body is sent byte for byte");
    let (code, json, err) = verify(dir.path(), "gh", &raw, Some(now));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json["verdict"], "valid");
    assert!(
        json["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("hg_1700000000_")),
        "{json}"
    );

    let (code, raw, err) = sign(dir.path(), "stripe", body, now);
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("stripe-signature: t=1700000000,v1="), "{text}");
    assert_eq!(
        verify(dir.path(), "stripe", &raw, Some(now + 10)).1,
        valid("evt_signed")
    );
    // Signed at `now`, checked 10 minutes later: outside Stripe's 5-minute window.
    assert_eq!(
        verify(dir.path(), "stripe", &raw, Some(now + 600)).1,
        invalid("timestamp_outside_tolerance")
    );
    // A GitHub source does not take Stripe's header for its own.
    assert_eq!(
        verify(dir.path(), "docs", &raw, Some(now)).1,
        invalid("missing_signature")
    );
}

#[test]
fn sign_usage_errors_exit_2() {
    let dir = TempDir::new().expect("temp dir");
    let (code, out, err) = sign(dir.path(), "nope", b"{}", 1);
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(err.contains("no source named \"nope\""), "{err}");
    let config = verify_config(dir.path());
    let o = hookgate(&[
        "sign",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--source",
        "gh",
        "--body",
        "/nonexistent/body.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read /nonexistent/body.json"),
        "{}",
        stderr(&o)
    );
}

/// Runs hookgate with stdout on a pipe whose reader is already closed, as `hookgate check | head`
/// once `head` has exited: every write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    // The pipe into a child that has exited: the child held its only read end (`std::io::pipe`
    // is newer than the crate's MSRV).
    let mut sink = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let writer = sink.stdin.take().expect("piped stdin");
    sink.wait().expect("true exits");
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run hookgate")
}

#[test]
fn a_closed_stdout_ends_check_verify_and_sign_quietly() {
    let dir = TempDir::new().expect("temp dir");
    let config = verify_config(dir.path());
    let config = config.to_str().expect("utf-8");
    let o = with_closed_stdout(&["check", "--config", config]);
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()), "check");

    let body = dir.path().join("body.json");
    std::fs::write(&body, b"{}").expect("write body");
    let o = with_closed_stdout(&[
        "sign",
        "--config",
        config,
        "--source",
        "gh",
        "--body",
        body.to_str().expect("utf-8"),
    ]);
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()), "sign");

    let request = dir.path().join("capture.http");
    std::fs::write(&request, github_capture("pipe", b"{}", "\r\n", true)).expect("write capture");
    let request = request.to_str().expect("utf-8");
    let o = with_closed_stdout(&[
        "verify",
        "--config",
        config,
        "--source",
        "gh",
        "--request",
        request,
    ]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (Some(0), String::new()),
        "verify, valid"
    );
    // The verdict still decides the exit code when nobody reads it.
    let o = with_closed_stdout(&[
        "verify",
        "--config",
        config,
        "--source",
        "docs",
        "--request",
        request,
    ]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (Some(1), String::new()),
        "verify, invalid"
    );
}

#[test]
fn a_missing_config_file_exits_78_for_every_command() {
    let dir = TempDir::new().expect("temp dir");
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().expect("utf-8");
    let file = dir.path().join("input");
    std::fs::write(&file, b"{}").expect("write input");
    let file = file.to_str().expect("utf-8");
    let commands: &[&[&str]] = &[
        &["serve", "--config", missing],
        &["check", "--config", missing],
        &["verify", "--config", missing, "--source", "gh", "--request", file],
        &["sign", "--config", missing, "--source", "gh", "--body", file],
    ];
    for args in commands {
        let o = hookgate(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(78), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: cannot read config file {missing}: ")),
            "{args:?}: {err}"
        );
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn log_format_is_offered_only_by_the_commands_that_log() {
    let dir = TempDir::new().expect("temp dir");
    let config = verify_config(dir.path());
    let config = config.to_str().expect("utf-8");
    let o = hookgate(&["check", "--log-format", "json", "--config", config]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for command in ["serve", "check", "verify", "sign"] {
        let o = hookgate(&[command, "--help"]);
        assert!(
            stdout(&o).contains("--log-format"),
            "{command} --help:\n{}",
            stdout(&o)
        );
    }
    for args in [
        &["events", "list"][..],
        &["replay", "--id", "1"],
        &["dlq", "list"],
        &["stats"],
    ] {
        let help = hookgate(&[args, &["--help"]].concat());
        assert!(
            !stdout(&help).contains("--log-format"),
            "{args:?} --help:\n{}",
            stdout(&help)
        );
        let o = hookgate(&[args, &["--log-format", "json"]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--log-format"), "{args:?}: {}", stderr(&o));
    }
    // Nor before the command, where it used to be global.
    let o = hookgate(&["--log-format", "json", "stats"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `hookgate providers` lists every provider, one line each, reads no config, and `--json` gives the
/// same providers with their scheme, window and event-id source; `--markdown` is the README's table.
#[test]
fn providers_lists_every_provider_as_text_json_and_markdown() {
    let names = hookgate::providers::ProviderKind::NAMES;
    let text = hookgate(&["providers"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let lines: Vec<String> = stdout(&text).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), names.len(), "one line per provider");
    for (line, name) in lines.iter().zip(names) {
        let mut fields = line.split('\t');
        assert_eq!(fields.next(), Some(*name));
        assert!(matches!(fields.next(), Some("code" | "catalogue")), "{line}");
        assert!(fields.next().is_some_and(|w| w.starts_with("window: ")), "{line}");
        assert!(
            fields.next().is_some_and(|e| e.starts_with("event id: ")),
            "{line}"
        );
        assert!(fields.next().is_some_and(|s| !s.is_empty()), "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("gitea\tcatalogue\twindow: none\tevent id: `X-Gitea-Delivery`\t")));

    let json = hookgate(&["providers", "--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout(&json)).expect("a JSON array");
    assert_eq!(list.len(), names.len());
    let workos = list
        .iter()
        .find(|p| p["name"] == "workos")
        .expect("workos is listed");
    assert_eq!(workos["origin"], "catalogue");
    assert_eq!(workos["window_secs"], 180);
    assert_eq!(workos["event_id_source"], serde_json::json!({"body": "/id"}));
    let github = list
        .iter()
        .find(|p| p["name"] == "github")
        .expect("github is listed");
    assert_eq!(github["origin"], "code");

    let markdown = hookgate(&["providers", "--markdown"]);
    assert_eq!(markdown.status.code(), Some(0), "{}", stderr(&markdown));
    assert_eq!(stdout(&markdown), hookgate::providers::listing::readme_table());
}
