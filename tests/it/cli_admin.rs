//! `hookgate events|replay|dlq|stats`: the real binary against a fake admin API that serves the
//! contract's JSON and records what it was asked (method, path and query, `Authorization`), and, end to
//! end, against a real gateway.

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::{Command, Output},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::{eventually, free_addr, github_headers, github_source, post, TestGateway, TestSink};

const TOKEN: &str = "cli-admin-test-token-0123456789";

/// One request the fake API received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    authorization: Option<String>,
}

/// A canned answer to `method target`.
struct Route {
    method: &'static str,
    target: &'static str,
    status: u16,
    body: &'static str,
}

fn route(method: &'static str, target: &'static str, status: u16, body: &'static str) -> Route {
    Route {
        method,
        target,
        status,
        body,
    }
}

/// An admin API on 127.0.0.1 that answers from its routes (a text 404 to anything else) and, with a token,
/// answers 401 as the contract says to requests without `Authorization: Bearer <token>`.
struct FakeAdmin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FakeAdmin {
    async fn start(routes: Vec<Route>, token: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake admin");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let routes = Arc::new(routes);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (seen, routes) = (seen.clone(), routes.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let answer = answer(&req, &routes, token);
                            seen.lock().expect("lock").push(Seen {
                                method: req.method().to_string(),
                                target: req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                authorization: req
                                    .headers()
                                    .get(header::AUTHORIZATION)
                                    .map(|v| v.to_str().expect("ascii").to_owned()),
                            });
                            async move { Ok::<_, Infallible>(answer) }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        });
        Self { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, and forgets them.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(req: &Request<Incoming>, routes: &[Route], token: Option<&str>) -> Response<Full<Bytes>> {
    let json = |status: u16, body: &'static str| {
        Response::builder()
            .status(StatusCode::from_u16(status).expect("valid status"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid response")
    };
    if let Some(token) = token {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {token}")) {
            let mut resp = json(401, r#"{"error":"unauthorized"}"#);
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            return resp;
        }
    }
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    routes
        .iter()
        .find(|r| r.method == req.method().as_str() && r.target == target)
        .map_or_else(
            // What a gateway without the admin API answers.
            || {
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Full::new(Bytes::from_static(b"not found\n")))
                    .expect("valid response")
            },
            |r| json(r.status, r.body),
        )
}

/// Runs the binary with `args` and only the `env` given of the admin variables, off the runtime so
/// that the fake API (or the gateway) keeps serving.
async fn hookgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("HOOKGATE_ADMIN_URL")
        .env_remove("HOOKGATE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run hookgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code `code`; the message shows both streams.
#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn get(target: &str) -> Seen {
    seen("GET", target, None)
}

fn seen(method: &str, target: &str, authorization: Option<&str>) -> Seen {
    Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        authorization: authorization.map(str::to_owned),
    }
}

// === the contract's answers ===

const EVENTS: &str = r#"{"events":[{"id":12,"source":"github","event_id":"abc","received_at":"2026-11-23T21:30:00.123Z","state":"dead","attempts":3,"last_status":503,"last_error":"retry in 1.2s: status 503","next_attempt_at":null,"delivered_at":null,"dead_reason":"max attempts (3) reached"},{"id":9,"source":"github","event_id":"def","received_at":"2026-11-23T21:29:00.000Z","state":"queued","attempts":1,"last_status":null,"last_error":"connect: connection refused","next_attempt_at":"2026-11-23T21:31:00.000Z","delivered_at":null,"dead_reason":null}]}"#;

const EVENTS_TABLE: &str = "\
ID  SOURCE  EVENT ID  STATE   RECEIVED                  ATTEMPTS  LAST STATUS  LAST ERROR
12  github  abc       dead    2026-11-23T21:30:00.123Z  3         503          max attempts (3) reached
9   github  def       queued  2026-11-23T21:29:00.000Z  1         -            connect: connection refused
";

const EVENT: &str = r#"{"event":{"id":12,"source":"github","event_id":"abc","received_at":"2026-11-23T21:30:00.123Z","state":"dead","attempts":2,"last_status":400,"last_error":"dead: status 400","next_attempt_at":null,"delivered_at":null,"dead_reason":"status 400","history":[{"at":"2026-11-23T21:30:00.200Z","status":503,"outcome":"retry in 1.2s: status 503"},{"at":"2026-11-23T21:30:01.500Z","status":400,"outcome":"dead: status 400"}],"headers":[["content-type","application/json"],["x-hub-signature-256","[redacted]"]],"body":"{\"zen\":\"ok\"}"}}"#;

const EVENT_TEXT: &str = "\
id            12
source        github
event id      abc
state         dead
received      2026-11-23T21:30:00.123Z
attempts      2
last status   400
last error    dead: status 400
next attempt  -
delivered     -
dead reason   status 400

headers
  content-type:         application/json
  x-hub-signature-256:  [redacted]

history
  AT                        STATUS  OUTCOME
  2026-11-23T21:30:00.200Z  503     retry in 1.2s: status 503
  2026-11-23T21:30:01.500Z  400     dead: status 400

body (12 bytes):
{\"zen\":\"ok\"}
";

const STATS: &str = r#"{"sources":[{"name":"github","accepted":10,"duplicates":2,"rejected":{"signature_mismatch":1},"queued":3,"dead":1,"delivered":6,"last_event_at":"2026-11-23T21:30:00.123Z","silent":false},{"name":"stripe","accepted":0,"duplicates":0,"rejected":{},"queued":0,"dead":0,"delivered":0,"last_event_at":null,"silent":true}]}"#;

const STATS_TABLE: &str = "\
SOURCE  ACCEPTED  DUPLICATES  REJECTED                  QUEUED  DEAD  DELIVERED  LAST EVENT                SILENT
github  10        2           1 (signature_mismatch 1)  3       1     6          2026-11-23T21:30:00.123Z  no
stripe  0         0           0                         0       0     0          -                         yes
";

// === against the fake API ===

#[tokio::test]
async fn events_list_prints_a_table_or_the_json_unchanged() {
    let api = FakeAdmin::start(
        vec![
            route(
                "GET",
                "/events?source=github&state=dead&since=2h&limit=5",
                200,
                EVENTS,
            ),
            route("GET", "/events", 200, r#"{"events":[]}"#),
        ],
        None,
    )
    .await;
    let url = api.url();
    let args = [
        "events", "list", "--admin", &url, "--source", "github", "--state", "dead", "--since", "2h",
        "--limit", "5",
    ];
    let o = hookgate(&args, &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), EVENTS_TABLE);
    assert_eq!(stderr(&o), "");

    let o = hookgate(&[&args[..], &["--json"]].concat(), &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{EVENTS}\n"), "the API's document, unchanged");

    let o = hookgate(&["events", "list", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "no events\n");

    let want = get("/events?source=github&state=dead&since=2h&limit=5");
    assert_eq!(api.take(), [want.clone(), want, get("/events")]);
}

#[tokio::test]
async fn events_list_with_bodies_and_an_rfc3339_since() {
    let api = FakeAdmin::start(
        vec![route(
            "GET",
            "/events?since=2026-11-23T21%3A00%3A00.000Z&include=body",
            200,
            r#"{"events":[{"id":3,"source":"gh","event_id":"x","received_at":"2026-11-23T21:30:00.000Z","state":"queued","attempts":0,"last_status":null,"last_error":null,"next_attempt_at":"2026-11-23T21:30:00.000Z","delivered_at":null,"dead_reason":null,"body":"{}"}]}"#,
        )],
        None,
    )
    .await;
    let url = api.url();
    let o = hookgate(
        &[
            "events",
            "list",
            "--admin",
            &url,
            "--since",
            "2026-11-23T21:00:00Z",
            "--body",
        ],
        &[],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
ID  SOURCE  EVENT ID  STATE   RECEIVED                  ATTEMPTS  LAST STATUS  LAST ERROR
3   gh      x         queued  2026-11-23T21:30:00.000Z  0         -            -

event 3 (gh x) body (2 bytes):
{}
"
    );
    assert_eq!(
        api.take(),
        [get("/events?since=2026-11-23T21%3A00%3A00.000Z&include=body")]
    );
}

#[tokio::test]
async fn events_show_prints_fields_headers_history_and_body() {
    let api = FakeAdmin::start(vec![route("GET", "/events/12?include=body", 200, EVENT)], None).await;
    let url = api.url();
    let o = hookgate(&["events", "show", "12", "--body", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), EVENT_TEXT);

    let o = hookgate(
        &["events", "--json", "show", "12", "--body", "--admin", &url],
        &[],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{EVENT}\n"));
    assert_eq!(
        api.take(),
        [get("/events/12?include=body"), get("/events/12?include=body")]
    );
}

#[tokio::test]
async fn replay_by_id_and_in_bulk() {
    let api = FakeAdmin::start(
        vec![
            route("POST", "/events/12/replay", 200, r#"{"replayed":1}"#),
            route(
                "POST",
                "/replay?source=github&state=dead&since=2h",
                200,
                r#"{"replayed":4}"#,
            ),
            route(
                "POST",
                "/replay?source=github&state=dead",
                200,
                r#"{"replayed":0}"#,
            ),
            route(
                "POST",
                "/replay?source=github&state=delivered",
                200,
                r#"{"replayed":1}"#,
            ),
        ],
        None,
    )
    .await;
    let url = api.url();
    let cases: &[(&[&str], &str)] = &[
        (
            &["replay", "--id", "12"],
            "replayed event 12: queued for delivery now\n",
        ),
        (
            &["replay", "--source", "github", "--since", "2h", "--dead"],
            "replayed 4 events\n",
        ),
        (&["replay", "--source", "github"], "replayed 0 events\n"),
        (
            &["replay", "--source", "github", "--delivered"],
            "replayed 1 event\n",
        ),
    ];
    for (args, want) in cases {
        let o = hookgate(&[args, &["--admin", &url][..]].concat(), &[]).await;
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), *want, "{args:?}");
    }
    let o = hookgate(&["replay", "--id", "12", "--json", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "{\"replayed\":1}\n");

    let post = |t| seen("POST", t, None);
    assert_eq!(
        api.take(),
        [
            post("/events/12/replay"),
            post("/replay?source=github&state=dead&since=2h"),
            post("/replay?source=github&state=dead"),
            post("/replay?source=github&state=delivered"),
            post("/events/12/replay"),
        ]
    );
}

#[tokio::test]
async fn dlq_list_and_purge() {
    let api = FakeAdmin::start(
        vec![
            route("GET", "/events?source=github&state=dead", 200, EVENTS),
            route("DELETE", "/dlq?source=github&since=1h", 200, r#"{"purged":2}"#),
            route("DELETE", "/dlq", 200, r#"{"purged":1}"#),
        ],
        None,
    )
    .await;
    let url = api.url();
    let o = hookgate(&["dlq", "list", "--source", "github", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), EVENTS_TABLE);

    let o = hookgate(
        &["dlq", "list", "--source", "github", "--admin", &url, "--json"],
        &[],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{EVENTS}\n"));

    // Without --yes nothing is sent.
    let o = hookgate(&["dlq", "purge", "--source", "github", "--admin", &url], &[]).await;
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "error: dlq purge deletes dead letters for good; add --yes to confirm\n"
    );

    let o = hookgate(
        &[
            "dlq", "purge", "--source", "github", "--since", "1h", "--yes", "--admin", &url,
        ],
        &[],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "purged 2 dead letters\n");

    let o = hookgate(&["dlq", "purge", "--yes", "--json", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "{\"purged\":1}\n");

    let want = get("/events?source=github&state=dead");
    assert_eq!(
        api.take(),
        [
            want.clone(),
            want,
            seen("DELETE", "/dlq?source=github&since=1h", None),
            seen("DELETE", "/dlq", None),
        ]
    );
}

#[tokio::test]
async fn stats_table_and_json() {
    let api = FakeAdmin::start(vec![route("GET", "/stats", 200, STATS)], None).await;
    let url = api.url();
    let o = hookgate(&["stats", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), STATS_TABLE);

    let o = hookgate(&["stats", "--json", "--admin", &url], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{STATS}\n"));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(json["sources"][0]["name"], "github");
    assert_eq!(api.take(), [get("/stats"), get("/stats")]);
}

#[tokio::test]
async fn the_url_can_come_from_the_environment() {
    let api = FakeAdmin::start(vec![route("GET", "/stats", 200, STATS)], None).await;
    let url = api.url();
    let o = hookgate(&["stats"], &[("HOOKGATE_ADMIN_URL", &url)]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), STATS_TABLE);
    // The flag wins over the environment.
    let closed = format!("http://{}", free_addr());
    let o = hookgate(&["stats", "--admin", &url], &[("HOOKGATE_ADMIN_URL", &closed)]).await;
    assert_exit(&o, 0);
    assert_eq!(api.take(), [get("/stats"), get("/stats")]);
}

#[tokio::test]
async fn the_token_comes_from_the_environment_and_is_never_printed() {
    let api = FakeAdmin::start(vec![route("GET", "/stats", 200, STATS)], Some(TOKEN)).await;
    let url = api.url();

    let o = hookgate(&["stats", "--admin", &url], &[]).await;
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "error: unauthorized (set HOOKGATE_ADMIN_TOKEN)\n");
    assert_eq!(stdout(&o), "");

    let wrong = "wrong-token-but-long-enough";
    let o = hookgate(
        &["stats", "--json", "--admin", &url],
        &[("HOOKGATE_ADMIN_TOKEN", wrong)],
    )
    .await;
    assert_exit(&o, 1);
    assert_eq!(
        stderr(&o),
        "error: unauthorized (the token in HOOKGATE_ADMIN_TOKEN was refused)\n"
    );
    assert_eq!(stdout(&o), "", "--json prints nothing on an error");

    let o = hookgate(&["stats", "--admin", &url], &[("HOOKGATE_ADMIN_TOKEN", TOKEN)]).await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), STATS_TABLE);

    // There is no flag for it.
    let o = hookgate(&["stats", "--admin", &url, "--token", TOKEN], &[]).await;
    assert_exit(&o, 2);

    let bearer = |t: &str| seen("GET", "/stats", Some(&format!("Bearer {t}")));
    assert_eq!(
        api.take(),
        [seen("GET", "/stats", None), bearer(wrong), bearer(TOKEN)]
    );
}

#[tokio::test]
async fn api_errors_exit_1_with_the_apis_message() {
    let api = FakeAdmin::start(
        vec![
            route("GET", "/events/99", 404, r#"{"error":"not_found"}"#),
            route("POST", "/events/99/replay", 404, r#"{"error":"not_found"}"#),
            route(
                "GET",
                "/events?source=nope",
                400,
                r#"{"error":"bad_request","message":"source: \"nope\" is not a configured source"}"#,
            ),
            route("GET", "/stats", 503, r#"{"error":"store_unavailable"}"#),
        ],
        None,
    )
    .await;
    let url = api.url();
    let cases: &[(&[&str], &str)] = &[
        (&["events", "show", "99"], "error: not_found: no event 99\n"),
        (&["replay", "--id", "99"], "error: not_found: no event 99\n"),
        (
            &["events", "list", "--source", "nope"],
            "error: bad_request: source: \"nope\" is not a configured source\n",
        ),
        (&["stats"], "error: store_unavailable\n"),
        (
            &["dlq", "purge", "--yes"],
            "error: the admin API answered 404 Not Found: not found\n",
        ),
    ];
    for (args, want) in cases {
        for json in [false, true] {
            let mut all = [args, &["--admin", &url][..]].concat();
            if json {
                all.push("--json");
            }
            let o = hookgate(&all, &[]).await;
            assert_exit(&o, 1);
            assert_eq!(stderr(&o), *want, "{all:?}");
            assert_eq!(stdout(&o), "", "{all:?}");
        }
    }
    assert_eq!(api.take().len(), 2 * cases.len());
}

#[tokio::test]
async fn usage_errors_exit_2_without_a_request() {
    let api = FakeAdmin::start(Vec::new(), None).await;
    let url = api.url();
    let cases: &[&[&str]] = &[
        &["events", "list", "--state", "lost"],
        &["events", "list", "--limit", "0"],
        &["events", "list", "--since", "last tuesday"],
        &["events", "show", "not-a-number"],
        &["replay"],
        &["replay", "--id", "1", "--source", "github"],
        &["replay", "--source", "github", "--dead", "--delivered"],
        &["dlq", "purge"],
        &["stats", "--admin", "https://127.0.0.1:9090"],
    ];
    for args in cases {
        let mut all = args.to_vec();
        if !all.contains(&"--admin") {
            all.extend(["--admin", &url]);
        }
        let o = hookgate(&all, &[]).await;
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("error"), "{all:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{all:?}");
    }
    assert_eq!(api.take(), [], "no usage error sends a request");
}

#[tokio::test]
async fn an_unreachable_api_exits_3() {
    let url = format!("http://{}", free_addr());
    for args in [
        &["stats"][..],
        &["events", "list", "--json"],
        &["replay", "--id", "1"],
    ] {
        let o = hookgate(&[args, &["--admin", &url][..]].concat(), &[]).await;
        assert_exit(&o, 3);
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: cannot reach the admin API at {url}: ")),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(stdout(&o), "");
    }
}

// === end to end, against a real gateway ===

/// A github source `name` delivering to `upstream` with small backoffs, and a dead letter on a 4xx.
fn e2e_source(name: &str, upstream: &str) -> String {
    format!(
        "{}\n[sources.forward]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\nmax_attempts = 5\n",
        github_source(name, upstream)
    )
}

/// POSTs event `id` to source `name`, asserting a 200.
async fn accept(gw: &TestGateway, name: &str, id: &str) {
    let body = format!(r#"{{"delivery":"{id}"}}"#);
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(r.status, 200, "event {id}: {}", r.body);
}

/// `hookgate ARGS --json --admin <gateway>` with `env`, asserting exit 0; its JSON.
async fn json(gw: &TestGateway, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let admin = gw.admin_url("");
    let o = hookgate(&[args, &["--json", "--admin", &admin][..]].concat(), env).await;
    assert_exit(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&o)))
}

/// The events of a `{"events":[...]}` document.
fn events(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]

async fn e2e_a_dead_letter_is_listed_replayed_by_id_and_delivered() {
    let name = "cli_e2e_replay";
    let mut app = TestSink::start().await;
    // The first attempt gets a 400: a dead letter at once. The replay gets the default 200.
    app.script([400]);
    let gw = TestGateway::start(&e2e_source(name, &app.url("/app"))).await;
    accept(&gw, name, "dead-1").await;
    let first = app.next(Duration::from_secs(5)).await.expect("first attempt");
    assert_eq!(first.header("x-hookgate-event-id"), "dead-1");

    eventually("the event is a dead letter", Duration::from_secs(5), || async {
        !events(&json(&gw, &["dlq", "list", "--source", name], &[]).await).is_empty()
    })
    .await;
    let dead = events(&json(&gw, &["dlq", "list", "--source", name], &[]).await);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event_id"], "dead-1");
    assert_eq!(dead[0]["state"], "dead");
    let id = dead[0]["id"].as_u64().expect("numeric id").to_string();

    let admin = gw.admin_url("");
    let o = hookgate(&["dlq", "list", "--admin", &admin], &[]).await;
    assert_exit(&o, 0);
    let table = stdout(&o);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("event {id} not in the table:\n{table}"));
    assert!(
        row.contains(name) && row.contains("dead-1") && row.contains("dead"),
        "{row}"
    );

    let o = hookgate(&["replay", "--id", &id, "--admin", &admin], &[]).await;
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!("replayed event {id}: queued for delivery now\n")
    );
    let again = app
        .next(Duration::from_secs(5))
        .await
        .expect("the replay is delivered");
    assert_eq!(again.header("x-hookgate-event-id"), "dead-1");
    assert_eq!(
        again.header("x-hookgate-attempt"),
        "2",
        "the attempt counter continues"
    );

    eventually("the event is delivered", Duration::from_secs(5), || async {
        let doc = json(&gw, &["events", "show", &id], &[]).await;
        doc["event"]["state"] == "delivered"
    })
    .await;
    let doc = json(&gw, &["events", "show", &id], &[]).await;
    assert_eq!(doc["event"]["history"].as_array().map(Vec::len), Some(2), "{doc}");
    assert!(events(&json(&gw, &["dlq", "list", "--source", name], &[]).await).is_empty());

    let stats = json(&gw, &["stats"], &[]).await;
    let s = stats["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {stats}"))
        .clone();
    assert_eq!(
        (&s["accepted"], &s["queued"], &s["dead"], &s["delivered"]),
        (&1.into(), &0.into(), &0.into(), &1.into()),
        "{s}"
    );
    let o = hookgate(&["stats", "--admin", &admin], &[]).await;
    assert_exit(&o, 0);
    let table = stdout(&o);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in the table:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // SOURCE ACCEPTED DUPLICATES REJECTED QUEUED DEAD DELIVERED ...
    assert_eq!(&cells[..7], [name, "1", "0", "0", "0", "0", "1"], "{row}");
    gw.stop().await;
}

#[tokio::test]

async fn e2e_bulk_replay_by_source_and_purge() {
    let (name, other) = ("cli_e2e_bulk", "cli_e2e_other");
    let mut app = TestSink::start().await;
    app.script([400, 400, 400]);
    let toml = format!(
        "{}{}",
        e2e_source(name, &app.url("/app")),
        e2e_source(other, &app.url("/other"))
    );
    let gw = TestGateway::start(&toml).await;
    accept(&gw, name, "bulk-1").await;
    accept(&gw, name, "bulk-2").await;
    accept(&gw, other, "other-1").await;
    app.take(3, Duration::from_secs(5)).await;
    eventually("three dead letters", Duration::from_secs(5), || async {
        events(&json(&gw, &["dlq", "list"], &[]).await).len() == 3
    })
    .await;

    let doc = json(&gw, &["replay", "--source", name, "--since", "1h"], &[]).await;
    assert_eq!(doc["replayed"], 2, "{doc}");
    let mut ids: Vec<String> = app
        .take(2, Duration::from_secs(5))
        .await
        .iter()
        .map(|r| r.header("x-hookgate-event-id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["bulk-1", "bulk-2"]);

    // Nothing received in the future: nothing to replay.
    let doc = json(
        &gw,
        &["replay", "--source", other, "--since", "2099-01-01T00:00:00Z"],
        &[],
    )
    .await;
    assert_eq!(doc["replayed"], 0, "{doc}");

    let admin = gw.admin_url("");
    let o = hookgate(
        &["dlq", "purge", "--source", other, "--yes", "--admin", &admin],
        &[],
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "purged 1 dead letter\n");
    assert!(events(&json(&gw, &["dlq", "list"], &[]).await).is_empty());
    app.assert_quiet(Duration::from_millis(300)).await;
    gw.stop().await;
}

#[tokio::test]

async fn e2e_the_token_is_required_and_enforced() {
    let name = "cli_e2e_token";
    let app = TestSink::start().await;
    let toml = format!(
        "[admin]\ntoken = \"{TOKEN}\"\n{}",
        e2e_source(name, &app.url("/app"))
    );
    let gw = TestGateway::start(&toml).await;
    let admin = gw.admin_url("");
    let o = hookgate(&["stats", "--admin", &admin], &[]).await;
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "error: unauthorized (set HOOKGATE_ADMIN_TOKEN)\n");
    let o = hookgate(
        &["stats", "--admin", &admin],
        &[("HOOKGATE_ADMIN_TOKEN", "not-the-right-token")],
    )
    .await;
    assert_exit(&o, 1);
    assert!(!stderr(&o).contains("not-the-right-token"), "{}", stderr(&o));
    let doc = json(&gw, &["stats"], &[("HOOKGATE_ADMIN_TOKEN", TOKEN)]).await;
    assert!(
        doc["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == name)),
        "{doc}"
    );
    gw.stop().await;
}
