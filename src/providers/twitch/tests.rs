use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    timestamp: String,
    timestamp_unix: u64,
    notification: Message,
    verification: Message,
}

#[derive(Deserialize)]
struct Message {
    message_id: String,
    payload: String,
    signature: String,
    #[serde(default)]
    challenge: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/twitch.json")).expect("valid fixture")
}

fn try_provider(secrets: &[&str], tolerance: Option<Duration>) -> Result<Twitch, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Twitch::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
}

fn provider(secrets: &[&str]) -> Twitch {
    try_provider(secrets, None).expect("valid settings")
}

fn check(
    p: &Twitch,
    m: &Message,
    ts: &str,
    kind: &str,
    body: &[u8],
    now: u64,
) -> Result<EventMeta, VerifyError> {
    verify(
        p,
        &[
            ("Twitch-Eventsub-Message-Id", &m.message_id),
            ("Twitch-Eventsub-Message-Timestamp", ts),
            ("Twitch-Eventsub-Message-Signature", &m.signature),
            ("Twitch-Eventsub-Message-Type", kind),
        ],
        body,
        now,
    )
}

#[test]
fn fixture_notification_verifies_with_the_message_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let m = &fx.notification;
    let meta = check(
        &p,
        m,
        &fx.timestamp,
        "notification",
        m.payload.as_bytes(),
        fx.timestamp_unix + 1,
    )
    .expect("valid");
    assert_eq!(meta, EventMeta::new(m.message_id.clone()));
    let meta = check(
        &p,
        m,
        &fx.timestamp,
        "revocation",
        m.payload.as_bytes(),
        fx.timestamp_unix,
    )
    .expect("revocations are verified and forwarded");
    assert!(meta.handshake.is_none());
}

#[test]
fn fixture_verification_answers_the_challenge() {
    let fx = fixture();
    let p = provider(&["another-secret-1", &fx.secret]);
    let m = &fx.verification;
    let kind = "webhook_callback_verification";
    let meta = check(
        &p,
        m,
        &fx.timestamp,
        kind,
        m.payload.as_bytes(),
        fx.timestamp_unix,
    )
    .expect("valid");
    assert_eq!(
        meta.handshake,
        Some(Handshake {
            content_type: "text/plain",
            headers: Vec::new(),
            body: m.challenge.clone().into_bytes()
        })
    );
    // A forged challenge is not answered.
    let forged = m.payload.replace("pogchamp", "attacker");
    assert_eq!(
        check(&p, m, &fx.timestamp, kind, forged.as_bytes(), fx.timestamp_unix),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn verification_without_challenge_is_malformed() {
    let p = provider(&["0123456789abc"]);
    let body = br#"{"subscription":{}}"#;
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "m-1",
    };
    let mut headers = p.sign(&req, at(1_700_000_000)).expect("signs");
    headers.retain(|(n, _)| n != "twitch-eventsub-message-type");
    let mut pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    pairs.push(("Twitch-Eventsub-Message-Type", "webhook_callback_verification"));
    assert_eq!(
        verify(&p, &pairs, body, 1_700_000_000),
        Err(VerifyError::MalformedBody)
    );
}

#[test]
fn tampering_wrong_secret_and_rotation() {
    let fx = fixture();
    let m = &fx.notification;
    let (body, now) = (m.payload.as_bytes(), fx.timestamp_unix);
    let p = provider(&[&fx.secret]);
    let tampered = m.payload.replace("1337", "1338");
    assert_eq!(
        check(&p, m, &fx.timestamp, "notification", tampered.as_bytes(), now),
        Err(VerifyError::SignatureMismatch)
    );
    // The timestamp is signed as its raw text: the same instant written differently does not verify.
    let rewritten = "2023-11-14T22:13:20.634234626+00:00";
    assert_eq!(
        check(&p, m, rewritten, "notification", body, now),
        Err(VerifyError::SignatureMismatch)
    );
    let wrong = provider(&["another-secret-1"]);
    assert_eq!(
        check(&wrong, m, &fx.timestamp, "notification", body, now),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["another-secret-1", &fx.secret]);
    check(&rotated, m, &fx.timestamp, "notification", body, now).expect("second secret");
}

#[test]
fn missing_and_malformed_headers() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let m = &fx.notification;
    let body = m.payload.as_bytes();
    assert_eq!(
        verify(&p, &[("Twitch-Eventsub-Message-Id", &m.message_id)], body, 0),
        Err(VerifyError::MissingSignature("twitch-eventsub-message-signature"))
    );
    assert_eq!(
        verify(
            &p,
            &[
                ("Twitch-Eventsub-Message-Signature", &m.signature),
                ("Twitch-Eventsub-Message-Timestamp", &fx.timestamp)
            ],
            body,
            0
        ),
        Err(VerifyError::MissingHeader("twitch-eventsub-message-id"))
    );
    let hex = m.signature.trim_start_matches("sha256=");
    for bad in [
        hex.to_owned(),
        format!("sha1={hex}"),
        format!("sha256={}", &hex[..60]),
    ] {
        let bad_msg = Message {
            signature: bad.clone(),
            message_id: m.message_id.clone(),
            payload: String::new(),
            challenge: String::new(),
        };
        assert_eq!(
            check(&p, &bad_msg, &fx.timestamp, "notification", body, 0),
            Err(VerifyError::MalformedSignature(
                "twitch-eventsub-message-signature"
            )),
            "{bad}"
        );
    }
    for ts in [
        "1700000000",
        "2023-11-14 22:13:20Z",
        "Tue, 14 Nov 2023 22:13:20 GMT",
    ] {
        assert_eq!(
            check(&p, m, ts, "notification", body, 0),
            Err(VerifyError::MalformedTimestamp(
                "twitch-eventsub-message-timestamp"
            )),
            "{ts}"
        );
    }
}

#[test]
fn window_is_ten_minutes_either_way() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let m = &fx.notification;
    let (body, t) = (m.payload.as_bytes(), fx.timestamp_unix);
    check(&p, m, &fx.timestamp, "notification", body, t + 600).expect("10 minutes old");
    assert_eq!(
        check(&p, m, &fx.timestamp, "notification", body, t + 601),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 601 })
    );
    check(&p, m, &fx.timestamp, "notification", body, t - 600).expect("10 minutes ahead");
    assert_eq!(
        check(&p, m, &fx.timestamp, "notification", body, t - 601),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -601 })
    );
    let years: u64 = 31 * 365 * 24 * 3600;
    assert_eq!(
        check(&p, m, &fx.timestamp, "notification", body, t - years),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: -(years as i64)
        }),
        "signed 31 years ahead"
    );
    let strict = try_provider(&[&fx.secret], Some(Duration::from_secs(30))).expect("valid");
    assert!(check(&strict, m, &fx.timestamp, "notification", body, t + 31).is_err());
}

#[test]
fn sign_round_trips_with_an_rfc3339_timestamp() {
    let p = provider(&["0123456789abc", "second-secret"]);
    let body = br#"{"event":{}}"#;
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "msg-42",
    };
    let headers = p.sign(&req, at(1_700_000_000)).expect("signs");
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    assert!(pairs.contains(&("twitch-eventsub-message-timestamp", "2023-11-14T22:13:20Z")));
    let meta = verify(&p, &pairs, body, 1_700_000_100).expect("verifies");
    assert_eq!(meta.event_id, "msg-42");
}

#[test]
fn secrets_must_be_10_to_100_ascii_characters() {
    let long = "x".repeat(101);
    for (secrets, index) in [
        (vec!["0123456789", "short"], 1),
        (vec![long.as_str()], 0),
        (vec!["ééééééééééé"], 0),
    ] {
        assert_eq!(
            try_provider(&secrets, None).err(),
            Some(ProviderConfigError::InvalidSecret {
                index,
                expected: SECRET_EXPECTED
            })
        );
    }
    try_provider(&["0123456789", &"x".repeat(100)], None).expect("bounds inclusive");
}

#[test]
fn rfc3339_parses_strictly() {
    let ok = [
        ("1970-01-01T00:00:00Z", 0),
        ("2023-11-14T22:13:20Z", 1_700_000_000),
        ("2023-11-14T22:13:20.634234626Z", 1_700_000_000),
        ("2023-11-14T22:13:20.9Z", 1_700_000_000),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000),
        ("2023-11-14T17:13:20.5-05:00", 1_700_000_000),
        ("2024-02-29T00:00:00Z", 1_709_164_800),
        ("2000-02-29T12:00:00Z", 951_825_600),
        ("1969-12-31T23:59:59Z", -1),
        ("2016-12-31T23:59:60Z", 1_483_228_800),
        ("9999-12-31T23:59:59Z", 253_402_300_799),
    ];
    for (text, secs) in ok {
        assert_eq!(parse_rfc3339(text), Some(secs), "{text}");
    }
    let bad = [
        "",
        "2023-11-14",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20z",
        "2023-11-14t22:13:20Z",
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20+0200",
        "2023-11-14T22:13:20+02",
        "2023-11-14T22:13:20+24:00",
        "2023-11-14T22:13:20+02:60",
        "2023-11-14T22:13:20ZZ",
        "2023-11-14T22:13:20Z ",
        "2023-13-14T22:13:20Z",
        "2023-00-14T22:13:20Z",
        "2023-02-29T22:13:20Z",
        "1900-02-29T22:13:20Z",
        "2023-04-31T22:13:20Z",
        "2023-11-00T22:13:20Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:60:00Z",
        "2023-11-14T22:13:61Z",
        "+023-11-14T22:13:20Z",
        "2023-1-14T22:13:20Z",
        "２０２３-11-14T22:13:20Z",
    ];
    for text in bad {
        assert_eq!(parse_rfc3339(text), None, "{text}");
    }
}

#[test]
fn rfc3339_formats_and_round_trips() {
    for secs in [0, 1_700_000_000, 951_825_600, -1, 253_402_300_799, 1_709_164_800] {
        let text = format_rfc3339(secs);
        assert_eq!(parse_rfc3339(&text), Some(secs), "{text}");
    }
    assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
}

#[test]
fn debug_is_redacted() {
    let p = provider(&["0123456789abc"]);
    assert_eq!(
        format!("{p:?}"),
        "Twitch { secrets: [redacted; 1], tolerance: 600s }"
    );
}
