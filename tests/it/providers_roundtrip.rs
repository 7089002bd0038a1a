//! Every provider in `ProviderKind::NAMES` signs a request (`hookgate sign`'s `capture::sign_request`)
//! that its own `verify` accepts offline (`capture::verify_capture`) and that a running gateway accepts
//! over a raw socket and delivers to the app byte for byte.
//!
//! To add a code provider, add one [`Row`] to [`rows`]: the test fails for any name in `NAMES` without a
//! row. Catalogue entries get their rows from their listing ([`catalogue_rows`]): a secret of the
//! form the entry takes, `public_url` where it signs one, and a body with its event id where the
//! entry looks for one.
//! A provider that cannot sign (asymmetric or body-embedded schemes) still needs a row, so that the
//! config loads, and its name in [`EXPECTED_UNSUPPORTED`]: any other provider whose `sign` refuses
//! fails the test, and so does a listed provider that signs.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hookgate::{
    capture::{self, CaptureError, Verdict},
    providers::{
        body_digest_id,
        listing::{self, EventIdSource, Origin, SecretForm},
        ProviderKind, SignError,
    },
    Config,
};
use http::HeaderMap;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestGateway, TestSink};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(15);

/// Providers whose `sign` returns `SignError::Unsupported` or `SignError::Unsignable` for their row:
/// the only ones allowed to be skipped.
const EXPECTED_UNSUPPORTED: &[&str] = &["discord", "sendgrid", "mailgun", "telnyx", "adyen"];

/// The event id the gateway should derive from a signed request.
#[derive(Debug, Clone, Copy)]
enum Id {
    /// The id `sign_request` generates (`hg_...`), carried in a header of the scheme.
    Generated,
    /// An id read from the body (or otherwise fixed by the row).
    Exact(&'static str),
    /// No id in the request: `sha256:` and the body's digest.
    Digest,
}

/// One source of the test config: a provider and what it needs to sign and verify.
struct Row {
    /// The provider's config name (`provider = "..."`); also the source's name and path.
    provider: &'static str,
    /// The `secrets` value, as a TOML literal.
    secrets: &'static str,
    /// More TOML for the source, appended after its keys: keys (`public_url = "..."`) first, then
    /// sub-tables (`[sources.hmac]`).
    extra: &'static str,
    /// The body to sign, at the signing instant (for schemes that read a time from the body).
    body: fn(SystemTime) -> Vec<u8>,
    /// The event id the gateway should derive.
    id: Id,
}

/// Unix seconds of `now`.
#[allow(dead_code)]
fn secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// Unix milliseconds of `now`.
fn millis(now: SystemTime) -> u128 {
    now.duration_since(UNIX_EPOCH).expect("after 1970").as_millis()
}

/// One row per catalogue entry, from its listing. A row's strings are `'static`: each is built once
/// per test run and leaked, which the test's short life makes harmless.
fn catalogue_rows() -> Vec<Row> {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    listing::all()
        .into_iter()
        .filter(|info| info.origin == Origin::Catalogue)
        .map(|info| {
            let name = info.name;
            let secrets = match info.secret_form {
                SecretForm::Whole => format!(r#"["roundtrip-{name}-secret"]"#),
                // base64 of "roundtrip-catalogue-key".
                SecretForm::Base64 => r#"["cm91bmR0cmlwLWNhdGFsb2d1ZS1rZXk="]"#.to_owned(),
                SecretForm::StandardWebhooks => r#"["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#.to_owned(),
                SecretForm::Described => panic!("{name}: a catalogue entry states its secret form"),
            };
            let extra = if info.requires.contains(&"public_url") {
                format!(r#"public_url = "https://example.com/hooks/{name}""#)
            } else {
                String::new()
            };
            let id = match &info.event_id_source {
                EventIdSource::Headers(_) => Id::Generated,
                EventIdSource::Body(pointer) => {
                    let body: serde_json::Value =
                        serde_json::from_slice(&catalogue_body(SystemTime::now())).expect("JSON");
                    assert_eq!(
                        body.pointer(pointer).and_then(|v| v.as_str()),
                        Some(CATALOGUE_ID),
                        "{name}: add {pointer} to catalogue_body"
                    );
                    Id::Exact(CATALOGUE_ID)
                }
                EventIdSource::Digest => Id::Digest,
                EventIdSource::Described => panic!("{name}: a catalogue entry states its event id"),
            };
            Row {
                provider: name,
                secrets: leak(secrets),
                extra: leak(extra),
                body: catalogue_body,
                id,
            }
        })
        .collect()
}

/// The event id every catalogue row's body holds.
const CATALOGUE_ID: &str = "evt_roundtrip_catalogue";

/// The body of every catalogue row: JSON with [`CATALOGUE_ID`] at every place a catalogue entry
/// reads its event id from (dedup is per source, so the rows may share it).
fn catalogue_body(_: SystemTime) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": CATALOGUE_ID,
        "eventId": CATALOGUE_ID,
        "event": { "id": CATALOGUE_ID },
        "data": { "id": CATALOGUE_ID },
        "action": { "id": CATALOGUE_ID },
        "via": "catalogue",
    }))
    .expect("serializes")
}

/// One row per provider. Bodies differ between rows, so that no two events share an id.
fn rows() -> Vec<Row> {
    let mut rows = code_rows();
    rows.extend(catalogue_rows());
    rows
}

/// One row per code provider.
fn code_rows() -> Vec<Row> {
    vec![
        Row {
            provider: "github",
            secrets: r#"["roundtrip-github-secret"]"#,
            extra: "",
            body: |_| br#"{"action":"opened","number":1,"via":"github"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "stripe",
            secrets: r#"["whsec_roundtrip_stripe_secret"]"#,
            extra: "",
            body: |_| br#"{"id":"evt_roundtrip_stripe","object":"event","type":"charge.succeeded"}"#.to_vec(),
            id: Id::Exact("evt_roundtrip_stripe"),
        },
        Row {
            provider: "standard_webhooks",
            secrets: r#"["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
            extra: "",
            body: |_| br#"{"type":"user.created","via":"standard_webhooks"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "svix",
            secrets: r#"["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]"#,
            extra: "",
            body: |_| br#"{"type":"user.created","via":"svix"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "hmac",
            secrets: r#"["roundtrip-hmac-secret"]"#,
            extra: r#"
[sources.hmac]
header = "X-Signature"
algorithm = "sha256"
encoding = "hex"
prefix = "sha256="
signed = "{header:X-Timestamp}.{body}"
timestamp_header = "X-Timestamp"
"#,
            body: |_| b"kind=roundtrip&via=hmac".to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "typeform",
            secrets: r#"["roundtrip-typeform-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"event_id":"01HXROUNDTRIPTYPEFORM0000","event_type":"form_response","form_response":{"form_id":"lT4Z3j","answers":[]}}"#
                    .to_vec()
            },
            id: Id::Exact("01HXROUNDTRIPTYPEFORM0000"),
        },
        Row {
            provider: "intercom",
            secrets: r#"["roundtrip-intercom-client-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"type":"notification_event","id":"notif_roundtrip_intercom","topic":"conversation.user.created","data":{"item":{}}}"#
                    .to_vec()
            },
            id: Id::Exact("notif_roundtrip_intercom"),
        },
        Row {
            provider: "bitbucket",
            secrets: r#"["roundtrip-bitbucket-secret"]"#,
            extra: "",
            body: |_| br#"{"push":{"changes":[]},"repository":{"full_name":"team/roundtrip"}}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "vercel",
            secrets: r#"["roundtrip-vercel-secret"]"#,
            extra: "",
            body: |_| br#"{"id":"roundtrip_vercel_evt","type":"deployment.created","payload":{}}"#.to_vec(),
            id: Id::Exact("roundtrip_vercel_evt"),
        },
        Row {
            provider: "slack",
            secrets: r#"["roundtrip-slack-signing-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"type":"event_callback","event_id":"Ev_ROUNDTRIP_SLACK","event":{"type":"app_mention"}}"#
                    .to_vec()
            },
            id: Id::Exact("Ev_ROUNDTRIP_SLACK"),
        },
        Row {
            provider: "shopify",
            secrets: r#"["roundtrip-shopify-app-secret"]"#,
            extra: "",
            body: |_| br#"{"id":820982911946154508,"email":"jon@example.com","via":"shopify"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "twilio",
            secrets: r#"["roundtrip-twilio-auth-token"]"#,
            extra: r#"public_url = "https://example.com/hooks/twilio""#,
            body: |_| {
                b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309".to_vec()
            },
            id: Id::Generated,
        },
        Row {
            provider: "square",
            secrets: r#"["roundtrip-square-signature-key"]"#,
            extra: r#"public_url = "https://example.com/hooks/square""#,
            body: |_| {
                br#"{"merchant_id":"ML1","type":"payment.updated","event_id":"sq-roundtrip-event"}"#.to_vec()
            },
            id: Id::Exact("sq-roundtrip-event"),
        },
        Row {
            provider: "hubspot",
            secrets: r#"["roundtrip-hubspot-client-secret"]"#,
            extra: r#"public_url = "https://example.com/hooks/hubspot""#,
            body: |_| {
                br#"[{"eventId":100,"subscriptionType":"contact.creation","attemptNumber":0}]"#.to_vec()
            },
            id: Id::Digest,
        },
        Row {
            provider: "gitlab",
            secrets: r#"["roundtrip-gitlab-secret-token"]"#,
            extra: "",
            body: |_| br#"{"object_kind":"push","ref":"refs/heads/main","via":"gitlab"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "paddle",
            secrets: r#"["pdl_ntfset_roundtrip_secret"]"#,
            extra: "",
            body: |_| {
                br#"{"event_id":"evt_roundtrip_paddle","event_type":"transaction.completed","data":{}}"#
                    .to_vec()
            },
            id: Id::Exact("evt_roundtrip_paddle"),
        },
        Row {
            provider: "linear",
            secrets: r#"["lin_wh_roundtrip_secret"]"#,
            extra: "",
            body: |now| {
                format!(
                    r#"{{"action":"create","type":"Issue","data":{{}},"webhookTimestamp":{}}}"#,
                    millis(now)
                )
                .into_bytes()
            },
            id: Id::Generated,
        },
        Row {
            provider: "zoom",
            secrets: r#"["roundtrip-zoom-secret-token"]"#,
            extra: "",
            body: |now| {
                format!(
                    r#"{{"event":"meeting.started","payload":{{"object":{{"id":"1"}}}},"event_ts":{}}}"#,
                    millis(now)
                )
                .into_bytes()
            },
            id: Id::Digest,
        },
        Row {
            provider: "twitch",
            secrets: r#"["roundtrip-twitch-eventsub-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"subscription":{"type":"channel.follow","version":"2"},"event":{"user_id":"1"}}"#
                    .to_vec()
            },
            id: Id::Generated,
        },
        Row {
            provider: "discord",
            // RFC 8032, section 7.1, TEST 1 public key: the gateway holds only public keys.
            secrets: r#"["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"]"#,
            extra: "",
            body: |_| br#"{"id":"roundtrip-discord","type":2}"#.to_vec(),
            id: Id::Exact("roundtrip-discord"),
        },
        Row {
            provider: "sendgrid",
            // The public key of SendGrid's published test vector (tests/fixtures/sendgrid.json).
            secrets: r#"["MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="]"#,
            extra: "",
            body: |_| br#"[{"email":"a@example.com","event":"processed"}]"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "mailgun",
            secrets: r#"["roundtrip-mailgun-signing-key"]"#,
            extra: "",
            body: |_| br#"{"signature":{},"event-data":{"id":"mg-roundtrip"}}"#.to_vec(),
            id: Id::Exact("mg-roundtrip"),
        },
        Row {
            provider: "pagerduty",
            secrets: r#"["roundtrip-pagerduty-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"event":{"id":"01ROUNDTRIPPAGERDUTY","event_type":"incident.triggered"}}"#.to_vec()
            },
            id: Id::Exact("01ROUNDTRIPPAGERDUTY"),
        },
        Row {
            provider: "bearer",
            secrets: r#"["roundtrip-bearer-token"]"#,
            extra: "id_header = \"X-Request-Id\"",
            body: |_| br#"{"via":"bearer"}"#.to_vec(),
            id: Id::Generated,
        },
        Row {
            provider: "basic",
            secrets: r#"["roundtrip:basic-password"]"#,
            extra: "",
            body: |_| br#"{"via":"basic"}"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            // In the query: the app must get the request at /app/token, without it.
            provider: "token",
            secrets: r#"["roundtrip token/with&specials"]"#,
            extra: "[sources.token]\nquery = \"token\"",
            body: |_| br#"{"via":"token"}"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "meta",
            secrets: r#"["roundtrip-meta-app-secret"]"#,
            extra: "[sources.challenge]\nverify_token = \"roundtrip-meta-verify-token\"",
            body: |_| br#"{"object":"page","entry":[{"id":"1","messaging":[]}],"via":"meta"}"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "x",
            secrets: r#"["roundtrip-x-consumer-secret"]"#,
            extra: "",
            body: |_| br#"{"for_user_id":"1","favorite_events":[],"via":"x"}"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "okta",
            secrets: r#"["Basic cm91bmR0cmlwOm9rdGE="]"#,
            extra: "",
            body: |_| {
                br#"{"eventType":"com.okta.event_hook","eventId":"roundtrip-okta-event","data":{"events":[]}}"#
                    .to_vec()
            },
            id: Id::Exact("roundtrip-okta-event"),
        },
        Row {
            provider: "dropbox",
            secrets: r#"["roundtrip-dropbox-app-secret"]"#,
            extra: "",
            body: |_| br#"{"list_folder":{"accounts":["dbid:roundtrip"]}}"#.to_vec(),
            id: Id::Digest,
        },
        Row {
            provider: "nylas",
            secrets: r#"["roundtrip-nylas-webhook-secret"]"#,
            extra: "",
            body: |_| {
                br#"{"specversion":"1.0","type":"message.created","id":"roundtrip-nylas","data":{}}"#.to_vec()
            },
            id: Id::Exact("roundtrip-nylas"),
        },
        Row {
            provider: "telnyx",
            // RFC 8032, section 7.1, TEST 1 public key, base64: the gateway holds only public keys.
            secrets: r#"["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]"#,
            extra: "",
            body: |_| br#"{"data":{"event_type":"message.sent","id":"roundtrip-telnyx"}}"#.to_vec(),
            id: Id::Exact("roundtrip-telnyx"),
        },
        Row {
            provider: "adyen",
            secrets: r#"["44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"]"#,
            extra: "",
            body: |_| br#"{"live":"false","notificationItems":[]}"#.to_vec(),
            id: Id::Digest,
        },
    ]
}

/// The sources' TOML: one per row at `/hooks/{provider}`, delivering to `{sink}/app/{provider}`.
fn sources_toml(rows: &[Row], sink: &TestSink) -> String {
    let mut toml = String::new();
    for row in rows {
        toml.push_str(&format!(
            "\n[[sources]]\nname = \"{p}\"\npath = \"/hooks/{p}\"\nprovider = \"{p}\"\nsecrets = {s}\nupstream = \"{u}\"\n{e}\n",
            p = row.provider,
            s = row.secrets,
            u = sink.url(&format!("/app/{}", row.provider)),
            e = row.extra,
        ));
    }
    toml
}

/// Writes `request` on a fresh connection and reads one response (status and body).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, HeaderMap, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read response");
            buf.extend_from_slice(&chunk[..n]);
            let mut storage = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut storage);
            if let httparse::Status::Complete(head_len) = resp.parse(&buf).expect("a valid response head") {
                let mut headers = HeaderMap::new();
                for h in resp.headers.iter() {
                    headers.append(
                        http::HeaderName::from_bytes(h.name.as_bytes()).expect("header name"),
                        http::HeaderValue::from_bytes(h.value).expect("header value"),
                    );
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("responses have a content-length");
                if let Some(body) = buf.get(head_len..head_len + len) {
                    return (resp.code.expect("a status"), headers, body.to_vec());
                }
            }
            assert!(
                n > 0,
                "connection closed before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("no response within {WAIT:?}"))
}

#[tokio::test]
async fn every_provider_signs_what_it_verifies_offline_and_through_the_gateway() {
    let rows = rows();

    // The table covers exactly the providers there are.
    let covered: Vec<&str> = rows.iter().map(|r| r.provider).collect();
    for name in ProviderKind::NAMES {
        assert!(
            covered.contains(name),
            "provider {name:?} has no row in providers_roundtrip::rows()"
        );
    }
    for name in covered.iter().chain(EXPECTED_UNSUPPORTED) {
        assert!(
            ProviderKind::NAMES.contains(name),
            "{name:?} is not a provider (ProviderKind::NAMES)"
        );
    }
    assert_eq!(covered.len(), ProviderKind::NAMES.len(), "one row per provider");

    let mut sink = TestSink::start().await;
    let toml = sources_toml(&rows, &sink);
    let dir = TempDir::new().expect("temp dir");
    let config = Config::from_toml(
        &format!(
            "[store]\npath = {:?}\n{toml}",
            dir.path().join("offline").display().to_string()
        ),
        |_| None,
    )
    .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    let gw = TestGateway::start(&toml).await;

    let mut skipped = Vec::new();
    // Provider → (body, event id) of each request the gateway accepted.
    let mut sent: HashMap<&str, (Vec<u8>, String)> = HashMap::new();
    for row in &rows {
        let p = row.provider;
        let now = SystemTime::now();
        let body = (row.body)(now);
        let raw = match capture::sign_request(&config, p, &body, now) {
            Ok(raw) => raw,
            Err(CaptureError::Sign(e @ (SignError::Unsupported(_) | SignError::Unsignable(_)))) => {
                println!("note: skipping provider {p:?}: {e}");
                assert!(
                    EXPECTED_UNSUPPORTED.contains(&p),
                    "provider {p:?} cannot sign ({e}) but is not in EXPECTED_UNSUPPORTED"
                );
                skipped.push(p);
                continue;
            }
            Err(e) => panic!("provider {p:?}: sign_request failed: {e}"),
        };
        assert!(
            !EXPECTED_UNSUPPORTED.contains(&p),
            "provider {p:?} signs: remove it from EXPECTED_UNSUPPORTED"
        );

        // (a) Offline, the provider accepts what it signed.
        let event_id = match capture::verify_capture(&config, p, &raw, now) {
            Ok(Verdict::Valid { event_id }) => event_id,
            other => panic!("provider {p:?}: verify_capture of its own signed request: {other:?}"),
        };
        match row.id {
            Id::Generated => assert!(
                event_id.starts_with("hg_"),
                "provider {p:?}: event id {event_id:?} is not the generated one"
            ),
            Id::Exact(id) => assert_eq!(event_id, id, "provider {p:?}: event id"),
            Id::Digest => assert_eq!(event_id, body_digest_id(&body), "provider {p:?}: event id"),
        }

        // (b) The same bytes, over a socket, are accepted by a running gateway.
        let (status, headers, reply) = raw_exchange(gw.addr, &raw).await;
        let reply_text = String::from_utf8_lossy(&reply);
        assert_eq!(status, 200, "provider {p:?}: gateway answered {reply_text}");
        let json: serde_json::Value = serde_json::from_slice(&reply)
            .unwrap_or_else(|e| panic!("provider {p:?}: response {reply_text:?} is not JSON: {e}"));
        assert_eq!(json, serde_json::json!({"status": "accepted"}), "provider {p:?}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "provider {p:?}"
        );
        sent.insert(p, (body, event_id));
    }

    // Every accepted request reaches the app byte for byte, with the id verify_capture derived.
    let received = sink.take(sent.len(), WAIT).await;
    for r in &received {
        let p = r
            .target
            .strip_prefix("/app/")
            .unwrap_or_else(|| panic!("unexpected delivery to {}", r.target));
        let (body, event_id) = sent
            .remove(p)
            .unwrap_or_else(|| panic!("unexpected or repeated delivery for {p:?}"));
        assert_eq!(r.method, http::Method::POST, "provider {p:?}");
        assert_eq!(
            r.body.as_ref(),
            body.as_slice(),
            "provider {p:?}: body changed on the way"
        );
        assert_eq!(r.header("x-hookgate-source"), p, "provider {p:?}");
        assert_eq!(r.header("x-hookgate-event-id"), event_id, "provider {p:?}");
    }
    assert!(sent.is_empty(), "not delivered: {:?}", sent.keys());
    sink.assert_quiet(Duration::from_millis(200)).await;
    if !skipped.is_empty() {
        println!(
            "note: {} provider(s) skipped as unable to sign: {skipped:?}",
            skipped.len()
        );
    }
    gw.stop().await;
}
