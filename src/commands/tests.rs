use std::{collections::HashMap, io};

use super::*;

const GH_SECRET: &str = "commands-test-github-secret";

/// A config with a github source `gh` whose secret comes from `$GH_SECRET`, listening on `listen`.
fn config_text(dir: &Path, listen: &str) -> String {
    format!(
        r#"
[server]
listen = "{listen}"

[store]
path = {store:?}

[[sources]]
name = "gh"
path = "/hooks/gh"
provider = "github"
secrets = [{{ env = "GH_SECRET" }}]
upstream = "http://127.0.0.1:9/gh"
"#,
        store = dir.join("store").display().to_string()
    )
}

fn env() -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let vars: HashMap<&str, &str> = [("GH_SECRET", GH_SECRET)].into();
    move |name| vars.get(name).map(|v| (*v).to_owned())
}

/// The config file in `dir`, loaded.
fn loaded(dir: &Path, listen: &str) -> (PathBuf, Config) {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config_text(dir, listen)).expect("write config");
    let config = load(&path, env(), &mut Vec::new()).expect("valid");
    (path, config)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

#[test]
fn exit_codes_are_the_documented_ones() {
    let codes = [
        (Exit::Success, 0),
        (Exit::Failure, 1),
        (Exit::Usage, 2),
        (Exit::Unreachable, 3),
        (Exit::Config, 78),
    ];
    for (exit, code) in codes {
        assert_eq!(exit.code(), code, "{exit:?}");
        assert_eq!(ExitCode::from(exit), ExitCode::from(code), "{exit:?}");
    }
}

#[test]
fn load_uses_the_environment_and_prints_every_problem_with_exit_78() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (path, config) = loaded(dir.path(), "127.0.0.1:0");
    assert_eq!(&*config.sources[0].name, "gh");

    let mut err = Vec::new();
    assert_eq!(load(&path, |_| None, &mut err).map(|_| ()), Err(Exit::Config));
    let err = text(&err);
    assert!(
        err.starts_with(&format!("error: {} has 1 problem:\n", path.display())),
        "{err}"
    );
    assert!(err.contains("GH_SECRET"), "{err}");

    let missing = dir.path().join("missing.toml");
    let mut err = Vec::new();
    assert_eq!(load(&missing, env(), &mut err).map(|_| ()), Err(Exit::Config));
    assert!(
        text(&err).starts_with(&format!("error: cannot read config file {}: ", missing.display())),
        "{}",
        text(&err)
    );
}

#[test]
fn check_prints_the_path_and_the_summary_without_secrets() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (path, config) = loaded(dir.path(), "127.0.0.1:8080");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check(&config, &path, &mut out, &mut err), Exit::Success);
    assert_eq!(
        text(&out),
        format!("{}: ok\n{}", path.display(), config.summary())
    );
    assert!(text(&out).contains("source gh: /hooks/gh"), "{}", text(&out));
    assert!(!text(&out).contains(GH_SECRET));
    assert!(err.is_empty());
}

#[test]
fn sign_then_verify_round_trips_and_a_tampered_body_exits_1() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (_, config) = loaded(dir.path(), "127.0.0.1:8080");
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"zen":"Keep it logically awesome."}"#).expect("write body");
    let now = Some(1_700_000_000);

    let (mut raw, mut err) = (Vec::new(), Vec::new());
    assert_eq!(sign(&config, "gh", &body, now, &mut raw, &mut err), Exit::Success);
    assert!(err.is_empty(), "{}", text(&err));
    assert!(raw.starts_with(b"POST /hooks/gh HTTP/1.1\r\n"));
    let capture = dir.path().join("capture.http");
    std::fs::write(&capture, &raw).expect("write capture");

    let mut out = Vec::new();
    assert_eq!(
        verify(&config, "gh", &capture, now, &mut out, &mut err),
        Exit::Success
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    assert_eq!(verdict["verdict"], "valid", "{verdict}");
    assert!(text(&out).ends_with('\n'));

    let tampered = text(&raw).replace("awesome", "AWESOME");
    std::fs::write(&capture, tampered).expect("write capture");
    let mut out = Vec::new();
    assert_eq!(
        verify(&config, "gh", &capture, now, &mut out, &mut err),
        Exit::Failure
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
    assert_eq!(verdict["verdict"], "invalid", "{verdict}");
    assert!(err.is_empty(), "{}", text(&err));
}

/// A command run on `(out, err)`.
type Command<'a> = dyn Fn(&mut Vec<u8>, &mut Vec<u8>) -> Exit + 'a;

#[test]
fn usage_errors_exit_2_and_say_why() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let (_, config) = loaded(dir.path(), "127.0.0.1:8080");
    let body = dir.path().join("body.json");
    std::fs::write(&body, b"{}").expect("write body");
    let missing = dir.path().join("missing.http");
    let garbage = dir.path().join("garbage.http");
    std::fs::write(&garbage, b"\x00\x01 not a request").expect("write");

    let cases: [(&str, Box<Command<'_>>, String); 4] = [
        (
            "unreadable body",
            Box::new(|out, err| sign(&config, "gh", &missing, None, out, err)),
            format!("error: cannot read {}: ", missing.display()),
        ),
        (
            "unknown source",
            Box::new(|out, err| sign(&config, "nope", &body, None, out, err)),
            "error: no source named \"nope\" in the config\n".to_owned(),
        ),
        (
            "unreadable capture",
            Box::new(|out, err| verify(&config, "gh", &missing, None, out, err)),
            format!("error: cannot read {}: ", missing.display()),
        ),
        (
            "not a request",
            Box::new(|out, err| verify(&config, "gh", &garbage, None, out, err)),
            "error: not a raw HTTP/1.1 request".to_owned(),
        ),
    ];
    for (what, run, want) in cases {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&mut out, &mut err), Exit::Usage, "{what}");
        assert!(out.is_empty(), "{what}");
        assert!(text(&err).starts_with(&want), "{what}: {}", text(&err));
    }
}

/// A writer that fails every write with `kind`.
struct Failing(io::ErrorKind);

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(self.0, "write failed"))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_pipe_keeps_the_exit_code_and_any_other_write_error_is_a_failure() {
    for exit in [Exit::Success, Exit::Failure] {
        let mut err = Vec::new();
        let mut out = Failing(io::ErrorKind::BrokenPipe);
        assert_eq!(print(&mut out, &mut err, b"x\n", exit), exit);
        assert!(err.is_empty(), "{}", text(&err));
    }
    let mut err = Vec::new();
    let mut out = Failing(io::ErrorKind::Other);
    assert_eq!(print(&mut out, &mut err, b"x\n", Exit::Success), Exit::Failure);
    assert_eq!(text(&err), "error: cannot write to stdout: write failed\n");
}

#[test]
fn serve_names_the_listener_it_cannot_bind_and_exits_1() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let (path, config) = loaded(dir.path(), &addr.to_string());
    let mut err = Vec::new();
    assert_eq!(serve(config, &path, env(), &mut err), Exit::Failure);
    let err = text(&err);
    assert!(
        err.starts_with(&format!("error: cannot listen on server.listen = \"{addr}\": ")),
        "{err}"
    );
    assert!(err.ends_with('\n') && err.lines().count() == 1, "{err}");
    assert!(
        !dir.path().join("store").exists(),
        "nothing opened before both listeners are bound"
    );
}

#[tokio::test]
async fn bind_names_the_admin_listener_too() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let path = dir.path().join("gateway.toml");
    let text = format!(
        "{}\n[admin]\nlisten = \"{addr}\"\n",
        config_text(dir.path(), "127.0.0.1:0")
    );
    std::fs::write(&path, text).expect("write config");
    let config = load(&path, env(), &mut Vec::new()).expect("valid");
    match bind(&config).await {
        Err(ServeError::Bind { key, addr: at, .. }) => assert_eq!((key, at), ("admin.listen", addr)),
        other => panic!("expected a bind error, got {other:?}"),
    }
}
