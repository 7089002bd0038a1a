use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    timestamp: u64,
    event: Signed,
    validation: Validated,
}

#[derive(Deserialize)]
struct Signed {
    payload: String,
    signature: String,
}

#[derive(Deserialize)]
struct Validated {
    payload: String,
    signature: String,
    plain_token: String,
    encrypted_token: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/zoom.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], tolerance: Option<Duration>) -> Zoom {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Zoom::try_new(ProviderSettings {
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

fn check(p: &Zoom, sig: &str, ts: u64, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    let ts = ts.to_string();
    verify(
        p,
        &[("x-zm-signature", sig), ("x-zm-request-timestamp", &ts)],
        body,
        now,
    )
}

#[test]
fn fixture_event_verifies_with_the_body_digest_as_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let body = fx.event.payload.as_bytes();
    let meta = check(&p, &fx.event.signature, fx.timestamp, body, fx.timestamp + 5).expect("valid");
    assert_eq!(meta, EventMeta::new(body_digest_id(body)));
}

#[test]
fn fixture_validation_is_answered_with_the_verifying_secret() {
    let fx = fixture();
    let v = &fx.validation;
    // The fixture's secret is second: the answer uses the secret that verified, not the first one.
    let p = provider(&["zm_new_token", &fx.secret], None);
    let meta = check(&p, &v.signature, fx.timestamp, v.payload.as_bytes(), fx.timestamp).expect("valid");
    let handshake = meta.handshake.expect("a handshake");
    assert_eq!(handshake.content_type, "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&handshake.body).expect("json");
    assert_eq!(
        answer,
        serde_json::json!({"plainToken": v.plain_token, "encryptedToken": v.encrypted_token})
    );
}

#[test]
fn unsigned_or_malformed_validation_is_rejected() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let body = fx.validation.payload.as_bytes();
    assert_eq!(
        verify(&p, &[], body, fx.timestamp),
        Err(VerifyError::MissingSignature("x-zm-signature"))
    );
    let no_token = br#"{"event":"endpoint.url_validation","payload":{}}"#;
    let ts = fx.timestamp.to_string();
    let sig = sign_body(&p, no_token, fx.timestamp);
    assert_eq!(
        verify(
            &p,
            &[("x-zm-signature", &sig), ("x-zm-request-timestamp", &ts)],
            no_token,
            fx.timestamp
        ),
        Err(VerifyError::MalformedBody)
    );
}

#[test]
fn tampered_wrong_secret_rotation() {
    let fx = fixture();
    let body = fx.event.payload.replace("Standup", "Retro");
    let p = provider(&[&fx.secret], None);
    assert_eq!(
        check(
            &p,
            &fx.event.signature,
            fx.timestamp,
            body.as_bytes(),
            fx.timestamp
        ),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        check(
            &p,
            &fx.event.signature,
            fx.timestamp + 1,
            fx.event.payload.as_bytes(),
            fx.timestamp
        ),
        Err(VerifyError::SignatureMismatch),
        "the timestamp is signed"
    );
    let wrong = provider(&["zm_other"], None);
    assert_eq!(
        check(
            &wrong,
            &fx.event.signature,
            fx.timestamp,
            fx.event.payload.as_bytes(),
            fx.timestamp
        ),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["zm_other", &fx.secret], None);
    check(
        &rotated,
        &fx.event.signature,
        fx.timestamp,
        fx.event.payload.as_bytes(),
        fx.timestamp,
    )
    .expect("second secret");
}

#[test]
fn missing_and_malformed_headers() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let body = fx.event.payload.as_bytes();
    assert_eq!(
        verify(&p, &[("x-zm-signature", &fx.event.signature)], body, 0),
        Err(VerifyError::MissingHeader("x-zm-request-timestamp"))
    );
    let hex = fx.event.signature.trim_start_matches("v0=");
    for bad in [
        hex.to_owned(),
        format!("v1={hex}"),
        format!("sha256={hex}"),
        format!("v0={}", &hex[..62]),
    ] {
        assert_eq!(
            check(&p, &bad, fx.timestamp, body, fx.timestamp),
            Err(VerifyError::MalformedSignature("x-zm-signature")),
            "{bad}"
        );
    }
    let got = verify(
        &p,
        &[
            ("x-zm-signature", &fx.event.signature),
            ("x-zm-request-timestamp", "1700000000000.5"),
        ],
        body,
        0,
    );
    assert_eq!(
        got,
        Err(VerifyError::MalformedTimestamp("x-zm-request-timestamp"))
    );
}

#[test]
fn window_is_five_minutes_either_way_in_seconds() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let (sig, t, body) = (&fx.event.signature, fx.timestamp, fx.event.payload.as_bytes());
    check(&p, sig, t, body, t + 300).expect("300 s old");
    assert_eq!(
        check(&p, sig, t, body, t + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    check(&p, sig, t, body, t - 300).expect("300 s ahead");
    assert_eq!(
        check(&p, sig, t, body, t - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    let years: u64 = 31 * 365 * 24 * 3600;
    assert_eq!(
        check(&p, sig, t, body, t - years),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: -(years as i64)
        }),
        "signed 31 years ahead"
    );
    // Milliseconds in the header would be a different signed string: it cannot verify.
    assert_eq!(
        check(&p, sig, t * 1000, body, t),
        Err(VerifyError::SignatureMismatch)
    );
    let forged = format!("v0={}", "0".repeat(64));
    assert_eq!(
        check(&p, &forged, t, body, t + 99_999),
        Err(VerifyError::SignatureMismatch)
    );
    let strict = provider(&[&fx.secret], Some(Duration::from_secs(10)));
    assert!(check(&strict, sig, t, body, t + 11).is_err());
}

/// Signs `body` with `p` at `now` and returns the `x-zm-signature` value.
fn sign_body(p: &Zoom, body: &[u8], now: u64) -> String {
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "unused",
    };
    let headers = p.sign(&req, at(now)).expect("signs");
    headers[0].1.to_str().expect("ascii").to_owned()
}

#[test]
fn sign_round_trips() {
    let fx = fixture();
    let p = provider(&[&fx.secret, "zm_second"], None);
    let body = fx.event.payload.as_bytes();
    assert_eq!(sign_body(&p, body, fx.timestamp), fx.event.signature);
    let meta = check(&p, &fx.event.signature, fx.timestamp, body, fx.timestamp + 1).expect("verifies");
    assert_eq!(meta.event_id, body_digest_id(body));
}

#[test]
fn debug_is_redacted() {
    let p = provider(&["zm_secret"], None);
    assert_eq!(
        format!("{p:?}"),
        "Zoom { secrets: [redacted; 1], tolerance: 300s }"
    );
}
