//! Promise 4: bad config stops start-up with every problem, each naming the key, the value and what was
//! expected; exit code 78. (Exact messages for many more inputs are unit tests in `src/config/tests.rs`.)

use std::process::{Command, Output};

fn serve(config_text: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config_text).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("GH_SECRET_NEXT")
        .output()
        .expect("run hookgate");
    (output, dir)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn serve_refuses_a_bad_config_with_every_problem_and_exit_78() {
    let (out, _dir) = serve(
        r#"
[server]
listen = "127.0.0.1:1"

[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["hunter2", { env = "GH_SECRET_NEXT" }]
upstream = "http://127.0.0.1:3000/github"

[[sources]]
name = "stripe"
path = "/hooks/stripe"
provider = "stripe"
secrets = ["whsec_x"]
tolerance = "-5s"
upstream = "http://127.0.0.1:3000/stripe"
"#,
    );
    assert_eq!(out.status.code(), Some(78), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("has 2 problems:"), "{err}");
    assert!(
        err.contains("  sources.stripe.tolerance: \"-5s\" is not a duration (expected e.g. \"30s\", \"5m\" or \"72h\")\n"),
        "{err}"
    );
    assert!(
        err.contains("  sources.github.secrets[1]: environment variable \"GH_SECRET_NEXT\" is not set\n"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "a secret was printed: {err}");
}

#[test]
fn a_source_with_an_unknown_provider_never_starts() {
    let (out, _dir) = serve(
        r#"
[[sources]]
name = "x"
path = "/x"
provider = "anything"
secrets = ["s"]
upstream = "http://127.0.0.1:3000/x"
"#,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("  sources.x.provider: \"anything\" is not valid (expected one of `github`,")
    );
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--config", "/nonexistent/hookgate.toml"])
        .output()
        .expect("run hookgate");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("cannot read config file /nonexistent/hookgate.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unusable_store_path_fails_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where the store directory should be").expect("write");
    let (listen, admin) = (crate::support::free_addr(), crate::support::free_addr());
    let text = format!(
        "[server]\nlisten = \"{listen}\"\n[admin]\nlisten = \"{admin}\"\n[store]\npath = {:?}\n{}",
        blocker.join("store").display().to_string(),
        crate::support::github_source("gh", "http://127.0.0.1:9/x")
    );
    let (out, _dir) = serve(&text);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot open the store at"),
        "{}",
        stderr(&out)
    );
}
