use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    payload: String,
    webhook_timestamp_ms: i64,
    linear_signature: String,
    linear_delivery: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/linear.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], tolerance: Option<Duration>) -> Linear {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Linear::try_new(ProviderSettings {
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

/// The hex HMAC-SHA256 of `body` under `secret`.
fn sig(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Runs `verify` at `now_ms` (Unix milliseconds).
fn check_ms(
    p: &Linear,
    headers: &[(&str, &str)],
    body: &[u8],
    now_ms: u64,
) -> Result<EventMeta, VerifyError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid"),
            http::HeaderValue::from_str(value).expect("valid"),
        );
    }
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let req = WebhookRequest {
        method: &method,
        uri: &uri,
        headers: &map,
        body,
    };
    p.verify(&req, SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms))
}

fn fx_now(fx: &Fixture) -> u64 {
    u64::try_from(fx.webhook_timestamp_ms).expect("positive")
}

#[test]
fn fixture_verifies_with_the_delivery_id() {
    let fx = fixture();
    assert_eq!(sig(&fx.secret, fx.payload.as_bytes()), fx.linear_signature);
    let p = provider(&[&fx.secret], None);
    let headers = [
        ("Linear-Signature", fx.linear_signature.as_str()),
        ("Linear-Delivery", &fx.linear_delivery),
    ];
    let meta = check_ms(&p, &headers, fx.payload.as_bytes(), fx_now(&fx) + 1_500).expect("valid");
    assert_eq!(meta.event_id, fx.linear_delivery);
    let upper = fx.linear_signature.to_uppercase();
    let meta = check_ms(
        &p,
        &[("Linear-Signature", &upper)],
        fx.payload.as_bytes(),
        fx_now(&fx),
    )
    .expect("upper-case hex");
    assert_eq!(meta.event_id, body_digest_id(fx.payload.as_bytes()));
}

#[test]
fn tampered_body_wrong_secret_rotation() {
    let fx = fixture();
    let headers = [("Linear-Signature", fx.linear_signature.as_str())];
    let p = provider(&[&fx.secret], None);
    let tampered = fx.payload.replace("Fix", "Break");
    assert_eq!(
        check_ms(&p, &headers, tampered.as_bytes(), fx_now(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
    let wrong = provider(&["lin_wh_other"], None);
    assert_eq!(
        check_ms(&wrong, &headers, fx.payload.as_bytes(), fx_now(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["lin_wh_other", &fx.secret], None);
    check_ms(&rotated, &headers, fx.payload.as_bytes(), fx_now(&fx)).expect("second secret");
}

#[test]
fn missing_and_malformed_signature() {
    let p = provider(&["lin_wh_a"], None);
    assert_eq!(
        verify(&p, &[], b"{}", 0),
        Err(VerifyError::MissingSignature("linear-signature"))
    );
    let good = sig("lin_wh_a", b"{}");
    for bad in [
        format!("sha256={good}"),
        good[..62].to_owned(),
        format!("{good}00"),
        "zz".repeat(32),
    ] {
        assert_eq!(
            verify(&p, &[("Linear-Signature", &bad)], b"{}", 0),
            Err(VerifyError::MalformedSignature("linear-signature")),
            "{bad}"
        );
    }
}

#[test]
fn window_is_sixty_seconds_both_ways_in_milliseconds() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let headers = [("Linear-Signature", fx.linear_signature.as_str())];
    let body = fx.payload.as_bytes();
    let t = fx_now(&fx);
    check_ms(&p, &headers, body, t + 60_000).expect("60 s old");
    check_ms(&p, &headers, body, t - 60_000).expect("60 s ahead");
    assert_eq!(
        check_ms(&p, &headers, body, t + 60_001),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 60 })
    );
    assert_eq!(
        check_ms(&p, &headers, body, t - 60_001),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -60 })
    );
    // Reading the milliseconds as seconds would put the event 50,000 years ahead.
    let now_secs = t / 1000;
    assert!(check_ms(&p, &headers, body, now_secs).is_err());
    // A forged stale request reports the signature.
    let forged = [("Linear-Signature", "00".repeat(32))];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        check_ms(&p, &forged, body, t + 10_000_000),
        Err(VerifyError::SignatureMismatch)
    );
    let lenient = provider(&[&fx.secret], Some(Duration::from_secs(600)));
    check_ms(&lenient, &headers, body, t + 600_000).expect("overridden");
}

#[test]
fn body_without_timestamp_is_malformed() {
    let p = provider(&["lin_wh_a"], None);
    for body in [
        &b"{}"[..],
        br#"{"webhookTimestamp":"1700000000000"}"#,
        br#"{"webhookTimestamp":1.5}"#,
        br#"[1700000000000]"#,
        b"not json",
    ] {
        let s = sig("lin_wh_a", body);
        assert_eq!(
            verify(&p, &[("Linear-Signature", &s)], body, 1_700_000_000),
            Err(VerifyError::MalformedBody),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn sign_round_trips_and_needs_a_timestamp() {
    let fx = fixture();
    let p = provider(&[&fx.secret, "lin_wh_second"], None);
    let method = http::Method::POST;
    let uri = http::Uri::from_static("/hook");
    let mut req = SignRequest {
        method: &method,
        uri: &uri,
        body: fx.payload.as_bytes(),
        event_id: "delivery-1",
    };
    let headers = p.sign(&req, at(0)).expect("signs");
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    let meta = check_ms(&p, &pairs, fx.payload.as_bytes(), fx_now(&fx)).expect("verifies");
    assert_eq!(meta.event_id, "delivery-1");
    req.body = b"{}";
    assert!(matches!(p.sign(&req, at(0)), Err(SignError::Unsignable(_))));
}

#[test]
fn debug_is_redacted() {
    let p = provider(&["lin_wh_secret"], None);
    assert_eq!(
        format!("{p:?}"),
        "Linear { secrets: [redacted; 1], tolerance: 60s }"
    );
}
