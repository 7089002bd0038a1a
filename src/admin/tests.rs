use std::time::{Duration, UNIX_EPOCH};

use super::api::{event_json, shown_header_value, with_body, with_details, ApiError, Params, Route};
use super::wire::{param, Filter, Since};
use crate::store::{AttemptRecord, EventRecord, EventState, StateFilter};

fn bad_request(e: ApiError) -> String {
    match e {
        ApiError::BadRequest(message) => message,
        other => panic!("expected a bad request, got {other:?}"),
    }
}

#[test]
fn routes() {
    let parse = |p: &str| Route::parse(p).expect("parses");
    assert_eq!(parse("/events"), Some(Route::Events));
    assert_eq!(parse("/events/12"), Some(Route::Event(12)));
    assert_eq!(parse("/events/12/replay"), Some(Route::EventReplay(12)));
    assert_eq!(parse("/replay"), Some(Route::Replay));
    assert_eq!(parse("/dlq"), Some(Route::Dlq));
    assert_eq!(parse("/stats"), Some(Route::Stats));
    assert_eq!(parse("/reload"), Some(Route::Reload));
    assert_eq!(parse("/events/12/other"), None);
    assert_eq!(parse("/events/"), None);
    assert_eq!(parse("/nope"), None);
    let message = bad_request(Route::parse("/events/abc").expect_err("not a number"));
    assert_eq!(
        message,
        "id: \"abc\" is not an event id (expected a number, as listed by GET /events)"
    );
}

#[test]
fn query_parameters_are_checked() {
    let now = UNIX_EPOCH + Duration::from_secs(10 * 3600);
    let all = ["source", "state", "since", "limit", "include"];
    let p = Params::parse("source=github&state=dead&since=2h&limit=5&include=body", &all).expect("valid");
    let q = p.query(now, None, p.limit().expect("limit")).expect("query");
    assert_eq!(q.source.as_deref(), Some("github"));
    assert_eq!(q.state, Some(StateFilter::Dead));
    assert_eq!(q.since_ms, Some(8 * 3600 * 1000));
    assert_eq!(q.limit, 5);
    assert!(p.include_body().expect("include"));

    let p = Params::parse("", &all).expect("valid");
    assert_eq!(p.limit().expect("default"), 100);
    assert_eq!(
        p.query(now, Some(StateFilter::Dead), 7).expect("q").state,
        Some(StateFilter::Dead)
    );
    assert!(!p.include_body().expect("include"));

    let err = |query: &str| {
        let p = match Params::parse(query, &all) {
            Ok(p) => p,
            Err(e) => return bad_request(e),
        };
        let e = p
            .limit()
            .and_then(|limit| p.query(now, None, limit))
            .and_then(|_| p.include_body())
            .expect_err("invalid");
        bad_request(e)
    };
    assert_eq!(
        err("state=foo"),
        "state: \"foo\" is not a state (expected queued, delivered or dead)"
    );
    assert_eq!(
        err("limit=0"),
        "limit: \"0\" is not valid (expected a number from 1 to 1000)"
    );
    assert_eq!(
        err("limit=1001"),
        "limit: \"1001\" is not valid (expected a number from 1 to 1000)"
    );
    assert_eq!(
        err("include=headers"),
        "include: \"headers\" is not valid (expected \"body\")"
    );
    assert_eq!(err("source="), "source: is empty (expected a source name)");
    assert_eq!(err("state=dead&state=queued"), "state: given more than once");
    assert_eq!(
        err("stat=dead"),
        "\"stat\" is not a parameter of this route (expected one of: source, state, since, limit, include)"
    );
    assert_eq!(
        bad_request(Params::parse("x=1", &[]).expect_err("no params")),
        "\"x\" is not a parameter of this route (this route takes no parameters)"
    );
}

#[test]
fn since_is_a_time_or_an_age() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let since =
        |raw: &str| Params::parse(&format!("since={raw}"), &["since"]).and_then(|p| p.query(now, None, 1));
    assert_eq!(
        since("2026-11-23T21:30:00.123Z").expect("rfc 3339").since_ms,
        Some(1_795_469_400_123)
    );
    assert_eq!(since("90s").expect("age").since_ms, Some((1_000_000 - 90) * 1000));
    assert_eq!(since("100000h").expect("before the epoch").since_ms, Some(0));
    let message = bad_request(since("yesterday").expect_err("neither"));
    assert_eq!(
        message,
        "since: \"yesterday\" is neither an RFC 3339 time nor an age (expected e.g. \"2026-11-23T21:30:00Z\" or \"2h\")"
    );
}

#[test]
fn until_closes_a_time_window_and_before_is_an_event_id() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let all = ["since", "until", "before"];
    let p = Params::parse("since=2h&until=2026-11-23T21:30:00.123Z&before=42", &all).expect("valid");
    let q = p.query(now, None, 10).expect("query");
    assert_eq!(q.since_ms, Some((1_000_000 - 7_200) * 1000));
    assert_eq!(q.until_ms, Some(1_795_469_400_123));
    assert_eq!(q.before_seq, None, "before is the listing's own");
    assert_eq!(p.before().expect("before"), Some(42));
    let p = Params::parse("until=90s", &all).expect("valid");
    assert_eq!(
        p.query(now, None, 1).expect("age").until_ms,
        Some((1_000_000 - 90) * 1000)
    );
    assert_eq!(p.before().expect("absent"), None);
    let p = Params::parse("until=tomorrow", &all).expect("parses");
    assert_eq!(
        bad_request(p.query(now, None, 1).expect_err("neither")),
        "until: \"tomorrow\" is neither an RFC 3339 time nor an age (expected e.g. \"2026-11-23T21:30:00Z\" or \"2h\")"
    );
    let p = Params::parse("before=x1", &all).expect("parses");
    assert_eq!(
        bad_request(p.before().expect_err("not a number")),
        "before: \"x1\" is not an event id (expected a number, as listed by GET /events)"
    );
}

#[test]
fn a_filter_reads_back_as_the_client_wrote_it() {
    let at = UNIX_EPOCH + Duration::from_millis(1_795_469_400_123);
    let filters = [
        Filter::default(),
        Filter {
            source: Some("a b&c=d/é".into()),
            state: Some(StateFilter::Delivered),
            since: Some(Since::Age(Duration::from_secs(5_400))),
            until: None,
        },
        Filter {
            source: None,
            state: Some(StateFilter::Dead),
            since: Some(Since::At(at)),
            until: Some(Since::Age(Duration::from_secs(60))),
        },
    ];
    for filter in filters {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in filter.pairs() {
            query.append_pair(k, &v);
        }
        let query = query.finish();
        let params =
            Params::parse(&query, &[param::SOURCE, param::STATE, param::SINCE, param::UNTIL]).expect("valid");
        assert_eq!(params.filter().expect("valid"), filter, "{query}");
    }
}

#[test]
fn credential_like_headers_are_redacted() {
    for name in [
        "X-Hub-Signature-256",
        "stripe-signature",
        "x-gitlab-token",
        "Authorization",
        "x-shopify-hmac-sha256",
        "x-my-secret",
        "cookie",
        "x-api-key",
    ] {
        assert_eq!(shown_header_value(name, b"v"), "[redacted]", "{name}");
    }
    assert_eq!(shown_header_value("x-github-delivery", b"abc"), "abc");
    assert_eq!(shown_header_value("x-bin", b"a\xffb"), "a\u{fffd}b");
}

fn record(state: EventState, attempts: Vec<AttemptRecord>) -> EventRecord {
    EventRecord {
        source: "github".into(),
        event_id: "abc".into(),
        received_at_ms: 1_000,
        method: "POST".into(),
        query: None,
        headers: vec![
            ("x-hub-signature-256".into(), b"sha256=00".to_vec()),
            ("x-github-event".into(), b"push".to_vec()),
        ],
        verified: true,
        state,
        attempts,
    }
}

#[test]
fn event_json_shape() {
    let failed = AttemptRecord {
        at_ms: 2_000,
        status: Some(503),
        outcome: crate::store::AttemptResult::Retry {
            after: std::time::Duration::from_millis(1200),
            reason: "status 503".into(),
        },
    };
    let queued = record(EventState::Queued { due_ms: 3_200 }, vec![failed.clone()]);
    let v = serde_json::to_value(event_json(12, queued)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "id": 12, "source": "github", "event_id": "abc",
            "received_at": "1970-01-01T00:00:01.000Z", "state": "queued", "attempts": 1,
            "last_status": 503, "last_error": "retry in 1s 200ms: status 503",
            "next_attempt_at": "1970-01-01T00:00:03.200Z", "delivered_at": null, "dead_reason": null,
        })
    );

    let delivered_attempt = AttemptRecord {
        at_ms: 4_000,
        status: Some(200),
        outcome: crate::store::AttemptResult::Delivered,
    };
    let delivered = record(
        EventState::Delivered { at_ms: 4_000 },
        vec![failed, delivered_attempt],
    );
    let v = serde_json::to_value(with_body(
        with_details(event_json(13, delivered.clone()), &delivered),
        b"{\"a\":1}",
    ))
    .expect("json");
    assert_eq!(v["state"], "delivered");
    assert_eq!(v["last_status"], 200);
    assert_eq!(v["last_error"], serde_json::Value::Null, "a delivery is no error");
    assert_eq!(v["delivered_at"], "1970-01-01T00:00:04.000Z");
    assert_eq!(v["body"], "{\"a\":1}");
    assert!(v.get("body_base64").is_none());
    assert_eq!(v["history"][0]["status"], 503);
    assert_eq!(v["history"][1]["outcome"], "delivered");
    assert_eq!(
        v["headers"],
        serde_json::json!([["x-hub-signature-256", "[redacted]"], ["x-github-event", "push"]])
    );

    let dead = record(
        EventState::Dead {
            reason: "status 400".into(),
        },
        vec![],
    );
    let v = serde_json::to_value(with_body(event_json(14, dead), &[0xff, 0x00])).expect("json");
    assert_eq!(v["dead_reason"], "status 400");
    assert_eq!(v["last_status"], serde_json::Value::Null);
    assert_eq!(v["body_base64"], "/wA=");
    assert!(v.get("body").is_none());
    assert!(
        v.get("history").is_none(),
        "only GET /events/{{id}} shows history"
    );
}

// === the service: reload and the /stats hooks ===

mod service {
    use std::sync::Arc;

    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use crate::{
        admin::{Admin, AdminApi, Readiness, ReloadReport},
        config::Config,
        stats::Stats,
        store::Store,
    };

    const TOML: &str = r#"
        [[sources]]
        name = "gh"
        path = "/hooks/gh"
        provider = "github"
        secrets = ["s3cret"]
        upstream = "http://127.0.0.1:1/gh"
    "#;

    async fn request(admin: &Admin, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        // Addressed to the listener, as the server's accept loop records it.
        let local: std::net::SocketAddr = "127.0.0.1:9090".parse().expect("address");
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, local.to_string())
            .body(())
            .expect("request");
        req.extensions_mut()
            .insert(crate::layers::facts::LocalAddr(local));
        let resp = admin.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    fn admin(api: impl FnOnce(AdminApi) -> AdminApi) -> (tempfile::TempDir, Admin) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let config = Config::from_toml(TOML, |_| None).expect("config");
        let api = api(AdminApi::new(&config, Stats::default()));
        (dir, Admin::new(store, Readiness::default(), api))
    }

    #[tokio::test]
    async fn reload_reports_what_the_reload_loop_answers() {
        let (tx, mut rx) = mpsc::channel::<tokio::sync::oneshot::Sender<ReloadReport>>(1);
        let (_dir, admin) = admin(|api| api.with_reloader(Some(tx)));
        let answers = tokio::spawn(async move {
            let applied = ReloadReport {
                applied: true,
                errors: vec![],
                restart_required: vec!["server.listen".into()],
            };
            let rejected = ReloadReport {
                applied: false,
                errors: vec!["sources.x.provider: bad".into()],
                restart_required: vec![],
            };
            for report in [applied, rejected] {
                let reply = rx.recv().await.expect("a reload request");
                let _ = reply.send(report);
            }
            // Then the loop is gone: the channel closes.
        });
        assert_eq!(
            request(&admin, "POST", "/reload").await,
            (
                StatusCode::OK,
                serde_json::json!({"status": "reloaded", "restart_required": ["server.listen"]})
            )
        );
        assert_eq!(
            request(&admin, "POST", "/reload").await,
            (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"status": "rejected", "errors": ["sources.x.provider: bad"]})
            )
        );
        answers.await.expect("answers");
        assert_eq!(
            request(&admin, "POST", "/reload").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "reload_unavailable"})
            )
        );
    }

    #[tokio::test]
    async fn reload_without_a_reload_loop_is_unavailable() {
        let (_dir, admin) = admin(|api| api);
        let (status, body) = request(&admin, "POST", "/reload").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, serde_json::json!({"error": "reload_unavailable"}));
    }

    #[tokio::test]
    async fn stats_follow_the_source_list_and_the_silence_monitor() {
        let (_dir, admin) = admin(|api| {
            api.with_sources(Arc::new(|| vec![Arc::from("gh"), Arc::from("new")]))
                .with_silence(Arc::new(|source| source == "new"))
        });
        let (status, body) = request(&admin, "GET", "/stats").await;
        assert_eq!(status, StatusCode::OK);
        let sources = body["sources"].as_array().expect("sources");
        assert_eq!(sources.len(), 2);
        assert_eq!(
            (&sources[0]["name"], &sources[0]["silent"]),
            (&"gh".into(), &false.into())
        );
        assert_eq!(
            (&sources[1]["name"], &sources[1]["silent"]),
            (&"new".into(), &true.into())
        );
        assert_eq!(sources[1]["accepted"], 0);
        assert_eq!(sources[1]["rejected"], serde_json::json!({}));
    }
}
