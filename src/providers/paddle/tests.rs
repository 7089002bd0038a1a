use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    vectors: Vec<Vector>,
    timestamp: u64,
    accepted_at: Vec<u64>,
    rejected_at: Vec<u64>,
}

#[derive(Deserialize)]
struct Vector {
    payload: String,
    paddle_signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/paddle.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], tolerance: Option<Duration>) -> Paddle {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Paddle::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

/// The hex HMAC-SHA256 of `"{ts}:{body}"` under `secret`.
fn h1(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{ts}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn check(p: &Paddle, header: &str, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    verify(p, &[("Paddle-Signature", header)], body, now)
}

#[test]
fn sdk_vectors_verify() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    for v in &fx.vectors {
        let meta = check(&p, &v.paddle_signature, v.payload.as_bytes(), fx.timestamp).expect("valid");
        assert_eq!(
            meta.event_id,
            body_digest_id(v.payload.as_bytes()),
            "no event_id in the body"
        );
    }
}

#[test]
fn sdk_window_cases_reproduce() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let v = &fx.vectors[0];
    for now in &fx.accepted_at {
        check(&p, &v.paddle_signature, v.payload.as_bytes(), *now).expect("inside 5 s");
    }
    for now in &fx.rejected_at {
        let got = check(&p, &v.paddle_signature, v.payload.as_bytes(), *now);
        assert!(
            matches!(got, Err(VerifyError::TimestampOutsideTolerance { .. })),
            "{now}: {got:?}"
        );
    }
    // The future is bounded by the same 5 s (Paddle's SDKs leave it open).
    let (sig, body) = (&v.paddle_signature, v.payload.as_bytes());
    check(&p, sig, body, fx.timestamp - 5).expect("5 s ahead is inside");
    assert_eq!(
        check(&p, sig, body, fx.timestamp - 6),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -6 })
    );
    let years: u64 = 31 * 365 * 24 * 3600;
    assert_eq!(
        check(&p, sig, body, fx.timestamp - years),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: -(years as i64)
        }),
        "signed 31 years ahead"
    );
}

#[test]
fn sdk_negative_cases() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let wrong = provider(&["INVALID_VALID_SECRET"], None);
    assert_eq!(
        check(&wrong, &v.paddle_signature, v.payload.as_bytes(), fx.timestamp),
        Err(VerifyError::SignatureMismatch)
    );
    let p = provider(&[&fx.secret], None);
    assert_eq!(
        check(
            &p,
            &v.paddle_signature,
            br#"{ "data": [ "1", "2" ]}"#,
            fx.timestamp
        ),
        Err(VerifyError::SignatureMismatch),
        "more whitespace is a different body"
    );
    let moved = v.paddle_signature.replace("ts=1698796800", "ts=1698796801");
    assert_eq!(
        check(&p, &moved, v.payload.as_bytes(), fx.timestamp),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn rotation_secrets_and_several_h1() {
    let body = br#"{"event_id":"evt_01h8","event_type":"transaction.completed"}"#;
    let t = 1_700_000_000;
    let header = format!(
        "ts={t};h1={};h1={}",
        h1("pdl_old", t, body),
        h1("pdl_new", t, body)
    );
    let meta = check(&provider(&["pdl_new"], None), &header, body, 1_700_000_000).expect("second h1");
    assert_eq!(meta.event_id, "evt_01h8");
    let single = format!("ts={t};h1={}", h1("pdl_new", t, body));
    check(
        &provider(&["pdl_old", "pdl_new"], None),
        &single,
        body,
        1_700_000_000,
    )
    .expect("second secret");
}

#[test]
fn missing_and_malformed_headers() {
    let p = provider(&["pdl_a"], None);
    assert_eq!(
        verify(&p, &[], b"{}", 0),
        Err(VerifyError::MissingSignature("paddle-signature"))
    );
    let hex = "a".repeat(64);
    let malformed = Err(VerifyError::MalformedSignature("paddle-signature"));
    for header in [
        "invalid_header".to_owned(),
        "h1=invalid_header".to_owned(),
        "ts=1234;h2=invalid_header".to_owned(),
        format!("ts=1;ts=2;h1={hex}"),
        format!("ts=1;h1={}", &hex[..62]),
        format!("ts=1,h1={hex}"), // Stripe's separator
        format!("t=1;v1={hex}"),
        "ts=1234;h1=invalid_signature".to_owned(),
    ] {
        assert_eq!(check(&p, &header, b"{}", 1), malformed, "{header}");
    }
    assert_eq!(
        check(&p, &format!("ts=soon;h1={hex}"), b"{}", 1),
        Err(VerifyError::MalformedTimestamp("paddle-signature"))
    );
}

#[test]
fn forged_stale_request_reports_the_signature_and_tolerance_overrides() {
    let body = b"{}";
    let t = 1_700_000_000;
    let forged = format!("ts={t};h1={}", h1("pdl_x", t, body));
    let p = provider(&["pdl_a"], None);
    assert_eq!(
        check(&p, &forged, body, 1_800_000_000),
        Err(VerifyError::SignatureMismatch)
    );
    let good = format!("ts={t};h1={}", h1("pdl_a", t, body));
    assert_eq!(
        check(&p, &good, body, 1_700_000_006),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 6 })
    );
    let lenient = provider(&["pdl_a"], Some(Duration::from_secs(60)));
    check(&lenient, &good, body, 1_700_000_060).expect("inside 60 s");
}

#[test]
fn sign_round_trips() {
    let p = provider(&["pdl_ntfset_first", "pdl_second"], None);
    let body = br#"{"event_id":"evt_1"}"#;
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "ignored",
    };
    let headers = p.sign(&req, at(1_700_000_000)).expect("signs");
    let value = headers[0].1.to_str().expect("ascii");
    assert_eq!(
        value,
        format!("ts=1700000000;h1={}", h1("pdl_ntfset_first", 1_700_000_000, body))
    );
    let meta = check(&p, value, body, 1_700_000_002).expect("verifies");
    assert_eq!(meta.event_id, "evt_1");
}

#[test]
fn debug_is_redacted() {
    let p = provider(&["pdl_secret"], None);
    assert_eq!(
        format!("{p:?}"),
        "Paddle { secrets: [redacted; 1], tolerance: 5s }"
    );
}
