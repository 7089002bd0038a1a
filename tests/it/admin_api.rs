//! The admin API against a real running gateway: listing with every filter, one event with its history
//! and redacted headers, bodies, replay (single and bulk), delete, dead-letter purge, stats, retention,
//! the bearer token, and bad requests.

use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{
    eventually, github_headers, github_signature, github_source, post, send, Reply, Reply2, TestGateway,
    TestSink,
};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(15);
/// The admin token of the tests that set one.
const TOKEN: &str = "test-admin-token-0123456789";

/// `[admin] token` set to [`TOKEN`].
fn with_token(toml: &str) -> String {
    format!("[admin]\ntoken = \"{TOKEN}\"\n{toml}")
}

/// A github source whose deliveries dead-letter on the first failure.
fn one_shot_source(name: &str, upstream: &str) -> String {
    format!(
        "{}\n[sources.forward]\nmax_attempts = 1\n",
        github_source(name, upstream)
    )
}

/// An app that answers 503 with `Retry-After: 3600` (ten times): its events stay queued for an hour.
async fn busy_app() -> TestSink {
    let app = TestSink::start().await;
    app.script((0..10).map(|_| Reply::Status(503, vec![("retry-after", "3600".to_owned())])));
    app
}

/// A github source delivering to `app` that may wait an hour between attempts.
fn patient_source(name: &str, app: &TestSink) -> String {
    format!(
        "{}\n[sources.forward]\nmax_backoff = \"1h\"\n",
        github_source(name, &app.url(&format!("/{name}")))
    )
}

/// An admin API answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

/// `method path` on the admin listener, with the bearer `token` if given.
async fn call(gw: &TestGateway, method: &str, path: &str, token: Option<&str>) -> Answer {
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
        .unwrap_or_default();
    let r = send(method, &gw.admin_url(path), &headers, "").await;
    let json =
        serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", r.body));
    Answer {
        status: r.status,
        headers: r.headers,
        json,
    }
}

/// `method path` without a token, asserting 200; the JSON.
async fn ok(gw: &TestGateway, method: &str, path: &str) -> Value {
    let a = call(gw, method, path, None).await;
    assert_eq!(a.status, StatusCode::OK, "{method} {path}: {}", a.json);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{method} {path}"
    );
    a.json
}

/// `GET /events{query}`: the events.
async fn events(gw: &TestGateway, query: &str) -> Vec<Value> {
    let v = ok(gw, "GET", &format!("/events{query}")).await;
    v["events"].as_array().expect("an events array").clone()
}

/// The event ids of `GET /events{query}`, in order.
async fn event_ids(gw: &TestGateway, query: &str) -> Vec<String> {
    events(gw, query)
        .await
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// The admin id of the event with sender id `event_id`.
async fn id_of(gw: &TestGateway, event_id: &str) -> u64 {
    events(gw, "?limit=1000")
        .await
        .iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is listed"))["id"]
        .as_u64()
        .expect("a numeric id")
}

/// POSTs event `id` with `body` to source `name`; returns the answer's `status` field.
async fn send_event(gw: &TestGateway, name: &str, id: &str, body: &[u8]) -> String {
    let r = post(
        &gw.url(&format!("/hooks/{name}")),
        &github_headers(id, body),
        body.to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "event {id}: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    v["status"].as_str().expect("status").to_owned()
}

/// Waits until event `event_id` is in `state`.
async fn until_state(gw: &TestGateway, event_id: &str, state: &str) {
    eventually(&format!("{event_id} is {state}"), WAIT, || async {
        event_ids(gw, &format!("?state={state}"))
            .await
            .iter()
            .any(|e| e == event_id)
    })
    .await;
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn events_are_listed_with_every_filter_and_shown_with_history_headers_and_bodies() {
    let ok_app = TestSink::start().await;
    let failing_app = TestSink::start().await;
    failing_app.script([400]);
    let busy = busy_app().await;
    let toml = format!(
        "{}{}{}",
        github_source("gh", &ok_app.url("/gh")),
        one_shot_source("other", &failing_app.url("/other")),
        patient_source("slow", &busy),
    );
    let gw = TestGateway::start(&toml).await;

    assert_eq!(send_event(&gw, "gh", "gh-1", b"{\"n\":1}").await, "accepted");
    until_state(&gw, "gh-1", "delivered").await;
    assert_eq!(
        send_event(&gw, "other", "other-1", b"plain text").await,
        "accepted"
    );
    until_state(&gw, "other-1", "dead").await;
    assert_eq!(
        send_event(&gw, "slow", "slow-1", &[0xff, 0xfe, 0x00]).await,
        "accepted"
    );
    eventually("slow-1 has failed once", WAIT, || async {
        events(&gw, "?source=slow").await[0]["attempts"] == 1
    })
    .await;

    // Newest first, every field.
    assert_eq!(event_ids(&gw, "").await, ["slow-1", "other-1", "gh-1"]);
    let all = events(&gw, "").await;
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().expect("id")).collect();
    assert!(
        ids[0] > ids[1] && ids[1] > ids[2],
        "ids grow with acceptance: {ids:?}"
    );
    let (slow, other, gh) = (&all[0], &all[1], &all[2]);
    assert_eq!(gh["source"], "gh");
    assert_eq!(gh["state"], "delivered");
    assert_eq!(gh["attempts"], 1);
    assert_eq!(gh["last_status"], 200);
    assert_eq!(gh["last_error"], Value::Null);
    assert_eq!(gh["next_attempt_at"], Value::Null);
    assert_eq!(gh["dead_reason"], Value::Null);
    let received = gh["received_at"].as_str().expect("received_at");
    assert!(
        received.len() == 24 && received.ends_with('Z') && received.as_bytes()[19] == b'.',
        "RFC 3339 with milliseconds: {received}"
    );
    assert!(gh["delivered_at"].as_str().expect("delivered_at") >= received);
    assert!(gh.get("body").is_none(), "no body unless asked");
    assert!(gh.get("history").is_none() && gh.get("headers").is_none());
    assert_eq!(other["state"], "dead");
    assert_eq!(other["last_status"], 400);
    assert_eq!(other["dead_reason"], "status 400");
    assert_eq!(other["last_error"], "dead letter: status 400");
    assert_eq!(slow["state"], "queued");
    assert_eq!(slow["last_status"], 503);
    assert_eq!(slow["last_error"], "retry in 1h: status 503");
    assert!(slow["next_attempt_at"].as_str().expect("next_attempt_at") > received);

    // Each filter.
    assert_eq!(event_ids(&gw, "?source=gh").await, ["gh-1"]);
    assert_eq!(event_ids(&gw, "?source=nope").await, Vec::<String>::new());
    assert_eq!(event_ids(&gw, "?state=queued").await, ["slow-1"]);
    assert_eq!(event_ids(&gw, "?state=delivered").await, ["gh-1"]);
    assert_eq!(event_ids(&gw, "?state=dead").await, ["other-1"]);
    assert_eq!(event_ids(&gw, "?source=other&state=dead").await, ["other-1"]);
    assert_eq!(
        event_ids(&gw, "?source=gh&state=dead").await,
        Vec::<String>::new()
    );
    assert_eq!(event_ids(&gw, "?limit=2").await, ["slow-1", "other-1"]);
    assert_eq!(event_ids(&gw, "?since=1h").await.len(), 3);
    let other_received = other["received_at"].as_str().expect("received_at");
    assert_eq!(
        event_ids(&gw, &format!("?since={}", url_encode(other_received))).await,
        ["slow-1", "other-1"],
        "since is inclusive"
    );
    assert_eq!(
        event_ids(&gw, "?since=2999-01-01T00:00:00Z").await,
        Vec::<String>::new()
    );

    // Bodies: UTF-8 as text, anything else as base64.
    let with_bodies = events(&gw, "?include=body").await;
    assert_eq!(with_bodies[2]["body"], "{\"n\":1}");
    assert_eq!(with_bodies[1]["body"], "plain text");
    assert_eq!(with_bodies[0]["body_base64"], "//4A");
    assert!(with_bodies[0].get("body").is_none());

    // One event: history and headers, signature redacted.
    let shown = ok(&gw, "GET", &format!("/events/{}", ids[1])).await;
    let event = &shown["event"];
    assert_eq!(event["event_id"], "other-1");
    assert_eq!(event["dead_reason"], "status 400");
    let history = event["history"].as_array().expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], 400);
    assert_eq!(history[0]["outcome"], "dead letter: status 400");
    assert!(history[0]["at"].as_str().expect("at").ends_with('Z'));
    let headers = event["headers"].as_array().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h[0] == name)
            .unwrap_or_else(|| panic!("{name} in {headers:?}"))[1]
            .clone()
    };
    assert_eq!(header("x-hub-signature-256"), "[redacted]");
    assert_eq!(header("x-github-event"), "push");
    assert_eq!(header("x-github-delivery"), "other-1");
    assert!(event.get("body").is_none());
    let with_body = ok(&gw, "GET", &format!("/events/{}?include=body", ids[1])).await;
    assert_eq!(with_body["event"]["body"], "plain text");
    let binary = ok(&gw, "GET", &format!("/events/{}?include=body", ids[0])).await;
    assert_eq!(binary["event"]["body_base64"], "//4A");

    let missing = call(&gw, "GET", "/events/999999999", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json, json!({"error": "not_found"}));
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_letter_replayed_is_delivered_although_its_event_id_was_seen() {
    let mut app = TestSink::start().await;
    app.script([503, 400]);
    let toml = format!(
        "{}\n[sources.forward]\nmax_attempts = 5\ninitial_backoff = \"10ms\"\nmax_backoff = \"20ms\"\n",
        github_source("gh", &app.url("/gh"))
    );
    let gw = TestGateway::start(&toml).await;
    assert_eq!(send_event(&gw, "gh", "evt-1", b"{}").await, "accepted");
    let tries = app.take(2, WAIT).await;
    assert_eq!(tries[1].header("x-hookgate-attempt"), "2");
    until_state(&gw, "evt-1", "dead").await;
    // The sender's retry is still a duplicate: it is not delivered again.
    assert_eq!(send_event(&gw, "gh", "evt-1", b"{}").await, "duplicate");

    let id = id_of(&gw, "evt-1").await;
    let replayed = ok(&gw, "POST", &format!("/events/{id}/replay")).await;
    assert_eq!(replayed, json!({"replayed": 1}));
    let delivery = app.next(WAIT).await.expect("the replay is delivered");
    assert_eq!(delivery.header("x-hookgate-event-id"), "evt-1");
    assert_eq!(
        delivery.header("x-hookgate-attempt"),
        "3",
        "the attempt counter continues"
    );
    assert_eq!(&delivery.body[..], b"{}");
    until_state(&gw, "evt-1", "delivered").await;
    let shown = ok(&gw, "GET", &format!("/events/{id}")).await;
    let statuses: Vec<&Value> = shown["event"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(400), &json!(200)]);

    // A delivered event can be replayed too.
    assert_eq!(
        ok(&gw, "POST", &format!("/events/{id}/replay")).await,
        json!({"replayed": 1})
    );
    let again = app.next(WAIT).await.expect("delivered again");
    assert_eq!(again.header("x-hookgate-attempt"), "4");
    app.assert_quiet(Duration::from_millis(300)).await;

    let unknown = call(&gw, "POST", "/events/999999999/replay", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json, json!({"error": "not_found"}));
    gw.stop().await;
}

#[tokio::test]
async fn bulk_replay_selects_dead_letters_by_source_and_time() {
    let mut gh_app = TestSink::start().await;
    let mut other_app = TestSink::start().await;
    gh_app.script([400, 400]);
    other_app.script([400]);
    let toml = format!(
        "{}{}",
        one_shot_source("gh", &gh_app.url("/gh")),
        one_shot_source("other", &other_app.url("/other"))
    );
    let gw = TestGateway::start(&toml).await;
    for (source, id) in [("gh", "old"), ("gh", "new"), ("other", "elsewhere")] {
        assert_eq!(send_event(&gw, source, id, id.as_bytes()).await, "accepted");
        until_state(&gw, id, "dead").await;
    }
    gh_app.take(2, WAIT).await;
    other_app.take(1, WAIT).await;
    let listed = events(&gw, "?source=gh").await;
    let new_received = listed[0]["received_at"].as_str().expect("received_at").to_owned();
    assert_ne!(
        listed[1]["received_at"], listed[0]["received_at"],
        "received in different ms"
    );

    // gh, received since "new": only "new".
    let bulk = ok(
        &gw,
        "POST",
        &format!("/replay?source=gh&since={}", url_encode(&new_received)),
    )
    .await;
    assert_eq!(bulk, json!({"replayed": 1}));
    let got = gh_app.next(WAIT).await.expect("new is delivered");
    assert_eq!(got.header("x-hookgate-event-id"), "new");
    assert_eq!(got.header("x-hookgate-attempt"), "2");
    until_state(&gw, "new", "delivered").await;
    gh_app.assert_quiet(Duration::from_millis(300)).await;
    other_app.assert_quiet(Duration::ZERO).await;

    // No filter: every dead letter (state defaults to dead), by age.
    assert_eq!(ok(&gw, "POST", "/replay?since=1h").await, json!({"replayed": 2}));
    assert_eq!(
        gh_app
            .next(WAIT)
            .await
            .expect("old")
            .header("x-hookgate-event-id"),
        "old"
    );
    assert_eq!(
        other_app
            .next(WAIT)
            .await
            .expect("elsewhere")
            .header("x-hookgate-event-id"),
        "elsewhere"
    );
    until_state(&gw, "old", "delivered").await;
    until_state(&gw, "elsewhere", "delivered").await;
    assert_eq!(ok(&gw, "POST", "/replay").await, json!({"replayed": 0}));

    // Delivered events of one source, on request.
    assert_eq!(
        ok(&gw, "POST", "/replay?source=other&state=delivered").await,
        json!({"replayed": 1})
    );
    assert_eq!(
        other_app
            .next(WAIT)
            .await
            .expect("again")
            .header("x-hookgate-event-id"),
        "elsewhere"
    );
    gh_app.assert_quiet(Duration::from_millis(300)).await;
    gw.stop().await;
}

#[tokio::test]
async fn delete_one_event_and_purge_dead_letters() {
    let app = TestSink::start().await;
    app.script([400, 400, 400]);
    let gw = TestGateway::start(&one_shot_source("gh", &app.url("/gh"))).await;
    for id in ["d-1", "d-2", "d-3"] {
        send_event(&gw, "gh", id, b"{}").await;
        until_state(&gw, id, "dead").await;
    }
    send_event(&gw, "gh", "fine", b"{}").await;
    until_state(&gw, "fine", "delivered").await;

    let id = id_of(&gw, "d-1").await;
    assert_eq!(
        ok(&gw, "DELETE", &format!("/events/{id}")).await,
        json!({"deleted": 1})
    );
    assert_eq!(
        call(&gw, "GET", &format!("/events/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    let again = call(&gw, "DELETE", &format!("/events/{id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.json, json!({"error": "not_found"}));
    // Its dedup mark stays.
    assert_eq!(send_event(&gw, "gh", "d-1", b"{}").await, "duplicate");

    assert_eq!(ok(&gw, "DELETE", "/dlq?source=other").await, json!({"purged": 0}));
    assert_eq!(
        ok(&gw, "DELETE", "/dlq?since=2999-01-01T00:00:00Z").await,
        json!({"purged": 0})
    );
    assert_eq!(ok(&gw, "DELETE", "/dlq?source=gh").await, json!({"purged": 2}));
    assert_eq!(event_ids(&gw, "?state=dead").await, Vec::<String>::new());
    assert_eq!(
        event_ids(&gw, "").await,
        ["fine"],
        "delivered events are not dead letters"
    );
    assert_eq!(ok(&gw, "DELETE", "/dlq").await, json!({"purged": 0}));
    gw.stop().await;
}

#[tokio::test]
async fn stats_count_requests_and_stored_events_per_source() {
    let app = TestSink::start().await;
    let failing = TestSink::start().await;
    failing.script([400]);
    let toml = format!(
        "{}{}{}",
        github_source("gh", &app.url("/gh")),
        one_shot_source("other", &failing.url("/other")),
        github_source("quiet", &app.url("/quiet")),
    );
    let gw = TestGateway::start(&toml).await;
    send_event(&gw, "gh", "a", b"{}").await;
    send_event(&gw, "gh", "b", b"{}").await;
    assert_eq!(send_event(&gw, "gh", "a", b"{}").await, "duplicate");
    let mut forged = github_headers("c", b"{}");
    forged[0].1 = github_signature("wrong-secret", b"{}");
    assert_eq!(post(&gw.url("/hooks/gh"), &forged, "{}").await.status, 401);
    send_event(&gw, "other", "x", b"{}").await;
    until_state(&gw, "b", "delivered").await;
    until_state(&gw, "a", "delivered").await;
    until_state(&gw, "x", "dead").await;

    let stats = ok(&gw, "GET", "/stats").await;
    let sources = stats["sources"].as_array().expect("sources");
    let names: Vec<&str> = sources
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["gh", "other", "quiet"], "one entry per configured source");
    let gh = &sources[0];
    assert_eq!(gh["accepted"], 2);
    assert_eq!(gh["duplicates"], 1);
    assert_eq!(gh["rejected"], json!({"signature_mismatch": 1}));
    assert_eq!(
        (&gh["queued"], &gh["dead"], &gh["delivered"]),
        (&json!(0), &json!(0), &json!(2))
    );
    assert!(gh["last_event_at"]
        .as_str()
        .expect("last_event_at")
        .ends_with('Z'));
    assert_eq!(gh["silent"], false);
    let other = &sources[1];
    assert_eq!(
        (&other["accepted"], &other["dead"], &other["delivered"]),
        (&json!(1), &json!(1), &json!(0))
    );
    assert_eq!(other["rejected"], json!({}));
    let quiet = &sources[2];
    assert_eq!(quiet["accepted"], 0);
    assert_eq!(quiet["last_event_at"], Value::Null);
    assert_eq!(quiet["queued"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn retention_purges_delivered_events_and_keeps_queued_ones() {
    let app = TestSink::start().await;
    let busy = busy_app().await;
    // Before any table: these keys extend the `[store]` table that the test gateway opens.
    let toml = format!(
        "retention = \"1s\"\n{}{}",
        github_source("gh", &app.url("/gh")),
        patient_source("slow", &busy)
    );
    let gw = TestGateway::start(&toml).await;
    send_event(&gw, "slow", "waiting", b"{}").await;
    eventually("waiting has failed once", WAIT, || async {
        events(&gw, "?source=slow").await[0]["attempts"] == 1
    })
    .await;
    send_event(&gw, "gh", "done", b"{}").await;
    until_state(&gw, "done", "delivered").await;
    let done = id_of(&gw, "done").await;
    let waiting = id_of(&gw, "waiting").await;
    eventually("the delivered event is purged", WAIT, || async {
        call(&gw, "GET", &format!("/events/{done}"), None).await.status == StatusCode::NOT_FOUND
    })
    .await;
    let kept = ok(&gw, "GET", &format!("/events/{waiting}")).await;
    assert_eq!(kept["event"]["state"], "queued", "queued events are never purged");
    assert_eq!(event_ids(&gw, "").await, ["waiting"]);
    let metrics = gw.metrics().await;
    assert!(
        crate::support::metric(&metrics, "hookgate_delivered_purged_total") >= 1.0,
        "the purge is counted"
    );
    // Its dedup mark outlives it.
    assert_eq!(send_event(&gw, "gh", "done", b"{}").await, "duplicate");
    gw.stop().await;
}

#[tokio::test]
async fn the_token_is_required_and_enforced_but_probes_and_metrics_stay_open() {
    let app = TestSink::start().await;
    let gw = TestGateway::start(&with_token(&github_source("gh", &app.url("/gh")))).await;
    for (method, path) in [
        ("GET", "/events"),
        ("GET", "/events/1"),
        ("POST", "/events/1/replay"),
        ("DELETE", "/events/1"),
        ("POST", "/replay"),
        ("DELETE", "/dlq"),
        ("GET", "/stats"),
        ("POST", "/reload"),
        ("GET", "/no-such-route"),
    ] {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let a = call(&gw, method, path, token).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(a.json, json!({"error": "unauthorized"}));
            assert_eq!(
                a.headers.get("www-authenticate").and_then(|v| v.to_str().ok()),
                Some("Bearer")
            );
        }
    }
    let basic = send(
        "GET",
        &gw.admin_url("/events"),
        &[("authorization".into(), format!("Basic {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED, "only the Bearer scheme");

    let listed = call(&gw, "GET", "/events", Some(TOKEN)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json, json!({"events": []}));
    assert_eq!(
        call(&gw, "GET", "/stats", Some(TOKEN)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&gw, "DELETE", "/dlq", Some(TOKEN)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&gw, "GET", "/no-such-route", Some(TOKEN)).await.status,
        StatusCode::NOT_FOUND
    );
    for path in ["/healthz", "/livez", "/readyz", "/metrics"] {
        let r = send("GET", &gw.admin_url(path), &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{path} needs no token");
    }
    gw.stop().await;
}

#[tokio::test]
async fn bad_requests_are_answered_400_with_what_is_wrong() {
    let app = TestSink::start().await;
    let gw = TestGateway::start(&github_source("gh", &app.url("/gh"))).await;
    for (method, path, message) in [
        (
            "GET",
            "/events?state=foo",
            "state: \"foo\" is not a state (expected queued, delivered or dead)",
        ),
        (
            "GET",
            "/events?limit=0",
            "limit: \"0\" is not valid (expected a number from 1 to 1000)",
        ),
        (
            "GET",
            "/events?limit=many",
            "limit: \"many\" is not valid (expected a number from 1 to 1000)",
        ),
        (
            "GET",
            "/events?since=yesterday",
            "since: \"yesterday\" is neither an RFC 3339 time nor an age (expected e.g. \"2026-11-23T21:30:00Z\" or \"2h\")",
        ),
        (
            "GET",
            "/events?include=headers",
            "include: \"headers\" is not valid (expected \"body\")",
        ),
        (
            "POST",
            "/replay?stat=dead",
            "\"stat\" is not a parameter of this route (expected one of: source, state, since, until)",
        ),
        (
            "DELETE",
            "/dlq?state=queued",
            "\"state\" is not a parameter of this route (expected one of: source, since, until)",
        ),
        (
            "GET",
            "/events/abc",
            "id: \"abc\" is not an event id (expected a number, as listed by GET /events)",
        ),
    ] {
        let a = call(&gw, method, path, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method} {path}: {}", a.json);
        assert_eq!(a.json, json!({"error": "bad_request", "message": message}), "{method} {path}");
    }
    for (method, path, allow) in [
        ("POST", "/events", "GET"),
        ("PUT", "/events/1", "GET, DELETE"),
        ("GET", "/replay", "POST"),
        ("GET", "/events/1/replay", "POST"),
        ("GET", "/dlq", "DELETE"),
        ("DELETE", "/stats", "GET"),
    ] {
        let a = call(&gw, method, path, None).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(a.json, json!({"error": "method_not_allowed"}));
        assert_eq!(a.headers.get("allow").and_then(|v| v.to_str().ok()), Some(allow));
    }
    let unknown = call(&gw, "GET", "/nope", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json, json!({"error": "not_found"}));
    gw.stop().await;
}

// === cross-site requests and DNS rebinding (issue 23.7) ===

/// `method path` on the admin listener with `headers` (a `Host` given here replaces the client's).
async fn call_with(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, String)]) -> Reply2 {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    send(method, &gw.admin_url(path), &headers, "").await
}

/// `reply` is the admin API's 403, naming the header it refused.
fn assert_forbidden(reply: &Reply2, header: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {}", reply.body);
    assert_eq!(
        reply.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}"
    );
    let v: Value = serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("{what}: {}", reply.body));
    assert_eq!(v["error"], "forbidden", "{what}: {v}");
    let message = v["message"].as_str().expect("a message");
    assert!(message.contains(header), "{what}: {message}");
}

/// A dead letter of source `xs` for event `evt-xs`, on a gateway started with `admin`'s `[admin]` lines.
async fn gateway_with_a_dead_letter(admin: &str) -> (TestGateway, TestSink) {
    let mut app = TestSink::start().await;
    app.script([400]);
    let toml = format!("[admin]\n{admin}\n{}", one_shot_source("xs", &app.url("/xs")));
    let gw = TestGateway::start(&toml).await;
    assert_eq!(send_event(&gw, "xs", "evt-xs", b"{}").await, "accepted");
    app.next(WAIT).await.expect("the first attempt");
    until_state(&gw, "evt-xs", "dead").await;
    (gw, app)
}

#[tokio::test]
async fn a_cross_site_post_is_refused_403_and_replays_nothing() {
    let (gw, mut app) = gateway_with_a_dead_letter("").await;
    let port = gw.admin.port();
    // A page on another site posts to the admin listener's real address: the browser sends the
    // right Host, and the page's own Origin.
    for origin in [
        "http://attacker.example".to_owned(),
        "https://attacker.example".to_owned(),
        format!("http://attacker.example:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        "null".to_owned(),
        format!("http://127.0.0.1:{port}/replay"),
    ] {
        for (method, path) in [
            ("POST", "/replay"),
            ("POST", "/events/1/replay"),
            ("DELETE", "/dlq"),
            ("DELETE", "/events/1"),
            ("POST", "/reload"),
            ("PUT", "/replay"),
            ("PATCH", "/replay"),
        ] {
            let reply = call_with(&gw, method, path, &[("origin", origin.clone())]).await;
            assert_forbidden(&reply, "Origin", &format!("{method} {path} from {origin}"));
        }
        // A read is not refused for its Origin: without CORS headers the page cannot read it.
        let read = call_with(&gw, "GET", "/stats", &[("origin", origin.clone())]).await;
        assert_eq!(read.status, StatusCode::OK, "GET /stats from {origin}");
    }
    // Nothing was replayed or deleted.
    app.assert_quiet(Duration::from_millis(300)).await;
    until_state(&gw, "evt-xs", "dead").await;

    // Its own origin, by address or as localhost, may; so may a client that sends no Origin (curl,
    // the CLI).
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("HTTP://LOCALHOST:{port}"),
    ] {
        let reply = call_with(&gw, "POST", "/replay?state=queued", &[("origin", origin.clone())]).await;
        assert_eq!(reply.status, StatusCode::OK, "from {origin}: {}", reply.body);
    }
    let reply = call_with(&gw, "POST", "/replay", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).expect("JSON"),
        json!({"replayed": 1})
    );
    let delivery = app.next(WAIT).await.expect("the replay is delivered");
    assert_eq!(delivery.header("x-hookgate-event-id"), "evt-xs");
    gw.stop().await;
}

#[tokio::test]
async fn a_host_that_is_not_the_listener_is_refused_403_on_every_route() {
    let (gw, mut app) = gateway_with_a_dead_letter("").await;
    let port = gw.admin.port();
    // DNS rebinding: a name the attacker controls resolves to 127.0.0.1, and the browser sends it.
    for host in [
        format!("rebind.attacker.example:{port}"),
        "rebind.attacker.example".to_owned(),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("localhost:{}", port.wrapping_add(1)),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        format!("user@127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        String::new(),
    ] {
        for (method, path) in [
            ("GET", "/stats"),
            ("GET", "/events"),
            ("POST", "/replay"),
            ("GET", "/metrics"),
            ("GET", "/healthz"),
            ("GET", "/no-such-route"),
        ] {
            let reply = call_with(&gw, method, path, &[("host", host.clone())]).await;
            assert_forbidden(&reply, "Host", &format!("{method} {path} with Host {host:?}"));
        }
    }
    app.assert_quiet(Duration::from_millis(300)).await;
    until_state(&gw, "evt-xs", "dead").await;

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let reply = call_with(&gw, "GET", "/stats", &[("host", host.clone())]).await;
        assert_eq!(reply.status, StatusCode::OK, "Host {host}: {}", reply.body);
        let reply = call_with(&gw, "GET", "/healthz", &[("host", host.clone())]).await;
        assert_eq!(reply.status, StatusCode::OK, "Host {host}: {}", reply.body);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_name_in_allowed_hosts_is_accepted_as_host_and_origin() {
    let (gw, mut app) =
        gateway_with_a_dead_letter("allowed_hosts = [\"hookgate.internal\", \"192.0.2.10\"]").await;
    for host in [
        "hookgate.internal:9090",
        "hookgate.internal",
        "HookGate.Internal:443",
        "192.0.2.10:9090",
    ] {
        let reply = call_with(&gw, "GET", "/stats", &[("host", host.to_owned())]).await;
        assert_eq!(reply.status, StatusCode::OK, "Host {host}: {}", reply.body);
    }
    for host in ["other.internal:9090", "sub.hookgate.internal", "192.0.2.11:9090"] {
        let reply = call_with(&gw, "GET", "/stats", &[("host", host.to_owned())]).await;
        assert_forbidden(&reply, "Host", host);
    }
    // Behind a proxy that serves the admin API as https://hookgate.internal.
    let headers = [
        ("host", "hookgate.internal".to_owned()),
        ("origin", "http://attacker.example".to_owned()),
    ];
    assert_forbidden(
        &call_with(&gw, "POST", "/replay", &headers).await,
        "Origin",
        "cross-site",
    );
    let headers = [
        ("host", "hookgate.internal".to_owned()),
        ("origin", "https://hookgate.internal".to_owned()),
    ];
    let reply = call_with(&gw, "POST", "/replay", &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).expect("JSON"),
        json!({"replayed": 1})
    );
    app.next(WAIT).await.expect("the replay is delivered");
    gw.stop().await;
}
