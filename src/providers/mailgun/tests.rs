use http::{Method, Uri};
use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    signing_key: String,
    timestamp: String,
    token: String,
    signature: String,
    bad_token: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/mailgun.json")).expect("valid fixture")
}

const OTHER_KEY: &str = "key-another-signing-key";

fn provider(keys: &[&str], tolerance: Option<Duration>) -> Mailgun {
    let secrets: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    Mailgun::try_new(ProviderSettings {
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

/// The hex HMAC-SHA256 of `timestamp + token` under `key`, as Mailgun computes it.
fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A current (JSON) webhook body.
fn json_body(timestamp: &str, token: &str, signature: &str, event_id: &str) -> Vec<u8> {
    serde_json::json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": "delivered", "id": event_id, "timestamp": 1_403_645_220.5},
    })
    .to_string()
    .into_bytes()
}

/// A legacy (form) webhook body.
fn form_body(timestamp: &str, token: &str, signature: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("event", "delivered")
        .append_pair("recipient", "alice@example.com")
        .append_pair("timestamp", timestamp)
        .append_pair("token", token)
        .append_pair("signature", signature)
        .finish()
        .into_bytes()
}

fn now_of(fx: &Fixture) -> u64 {
    fx.timestamp.parse().expect("numeric")
}

#[test]
fn published_vector_reproduces_and_verifies_as_json_and_form() {
    let fx = fixture();
    assert_eq!(sign(&fx.signing_key, &fx.timestamp, &fx.token), fx.signature);
    let p = provider(&[&fx.signing_key], None);
    let body = json_body(&fx.timestamp, &fx.token, &fx.signature, &fx.event_id);
    let meta = verify(&p, &[], &body, now_of(&fx)).expect("valid JSON");
    assert_eq!(meta.event_id, fx.event_id);
    assert_eq!(meta.handshake, None);
    let body = form_body(&fx.timestamp, &fx.token, &fx.signature);
    let meta = verify(&p, &[], &body, now_of(&fx)).expect("valid form");
    assert_eq!(
        meta.event_id, fx.token,
        "legacy bodies carry no event id: the token"
    );
}

#[test]
fn the_published_bad_token_is_a_mismatch() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let body = json_body(&fx.timestamp, &fx.bad_token, &fx.signature, &fx.event_id);
    assert_eq!(
        verify(&p, &[], &body, now_of(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
    let body = form_body(&fx.timestamp, &fx.bad_token, &fx.signature);
    assert_eq!(
        verify(&p, &[], &body, now_of(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn a_tampered_timestamp_is_a_mismatch() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let later = (now_of(&fx) + 1).to_string();
    let body = json_body(&later, &fx.token, &fx.signature, &fx.event_id);
    assert_eq!(
        verify(&p, &[], &body, now_of(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_key_is_a_mismatch_and_a_rotated_key_matches() {
    let fx = fixture();
    let body = json_body(&fx.timestamp, &fx.token, &fx.signature, &fx.event_id);
    let p = provider(&[OTHER_KEY], None);
    assert_eq!(
        verify(&p, &[], &body, now_of(&fx)),
        Err(VerifyError::SignatureMismatch)
    );
    let p = provider(&[OTHER_KEY, &fx.signing_key], None);
    verify(&p, &[], &body, now_of(&fx)).expect("second key matches");
}

#[test]
fn a_parent_signature_matches_under_the_primary_accounts_key() {
    let fx = fixture();
    let sub = sign(OTHER_KEY, &fx.timestamp, &fx.token);
    let body = serde_json::json!({
        "signature": {
            "timestamp": fx.timestamp, "token": fx.token,
            "signature": sub, "parent-signature": fx.signature,
        },
        "event-data": {"id": fx.event_id},
    })
    .to_string();
    let p = provider(&[&fx.signing_key], None);
    verify(&p, &[], body.as_bytes(), now_of(&fx)).expect("parent signature matches");
    let p = provider(&[OTHER_KEY], None);
    verify(&p, &[], body.as_bytes(), now_of(&fx)).expect("own signature matches");
}

#[test]
fn a_numeric_timestamp_is_signed_as_its_digits() {
    let fx = fixture();
    let body = format!(
        r#"{{"signature":{{"timestamp":{},"token":"{}","signature":"{}"}}}}"#,
        fx.timestamp, fx.token, fx.signature
    );
    let p = provider(&[&fx.signing_key], None);
    verify(&p, &[], body.as_bytes(), now_of(&fx)).expect("valid");
}

#[test]
fn missing_and_malformed_fields() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let now = now_of(&fx);
    let cases: [(&str, VerifyError); 9] = [
        (r#"{"event-data":{}}"#, VerifyError::MissingSignature("signature")),
        (
            r#"{"signature":"abc"}"#,
            VerifyError::MissingSignature("signature"),
        ),
        (
            r#"{"signature":{"timestamp":"1","token":"t"}}"#,
            VerifyError::MissingSignature("signature.signature"),
        ),
        (
            r#"{"signature":{"token":"t","signature":"SIG"}}"#,
            VerifyError::MissingHeader("signature.timestamp"),
        ),
        (
            r#"{"signature":{"timestamp":"1","signature":"SIG"}}"#,
            VerifyError::MissingHeader("signature.token"),
        ),
        (
            r#"{"signature":{"timestamp":"1","token":"t","signature":"c0ffee"}}"#,
            VerifyError::MalformedSignature("signature.signature"),
        ),
        (r#"{"signature": "#, VerifyError::MalformedBody),
        ("timestamp=1&token=t", VerifyError::MissingSignature("signature")),
        ("signature=SIG&token=t", VerifyError::MissingHeader("timestamp")),
    ];
    for (body, expected) in cases {
        let body = body.replace("SIG", &fx.signature);
        assert_eq!(verify(&p, &[], body.as_bytes(), now), Err(expected), "{body}");
    }
    assert_eq!(
        verify(&p, &[], b"", now),
        Err(VerifyError::MissingSignature("signature"))
    );
    let b64 = BASE64_OF_THE_SIGNATURE;
    let body = form_body(&fx.timestamp, &fx.token, b64);
    assert_eq!(
        verify(&p, &[], &body, now),
        Err(VerifyError::MalformedSignature("signature"))
    );
}

/// The published signature, base64-encoded: the wrong encoding.
const BASE64_OF_THE_SIGNATURE: &str = "nPxcQVguUSRuc8iNNNs68KOiaSp2+6uBSShC8AAlbTM=";

#[test]
fn a_signed_but_non_numeric_timestamp_is_malformed() {
    let p = provider(&[OTHER_KEY], None);
    let sig = sign(OTHER_KEY, "soon", "tok");
    let body = json_body("soon", "tok", &sig, "id");
    assert_eq!(
        verify(&p, &[], &body, 0),
        Err(VerifyError::MalformedTimestamp("signature.timestamp"))
    );
    let body = form_body("soon", "tok", &sig);
    assert_eq!(
        verify(&p, &[], &body, 0),
        Err(VerifyError::MalformedTimestamp("timestamp"))
    );
}

#[test]
fn the_window_is_five_minutes_either_way() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let body = json_body(&fx.timestamp, &fx.token, &fx.signature, &fx.event_id);
    let now = now_of(&fx);
    verify(&p, &[], &body, now + 300).expect("5 minutes old");
    verify(&p, &[], &body, now - 300).expect("5 minutes ahead");
    assert_eq!(
        verify(&p, &[], &body, now + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        verify(&p, &[], &body, now - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    let years: u64 = 31 * 365 * 24 * 3600;
    assert_eq!(
        verify(&p, &[], &body, now - years),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: -(years as i64)
        }),
        "signed 31 years ahead"
    );
    // Seconds, not milliseconds: a millisecond timestamp is read as far in the future and refused.
    let ms = format!("{}000", fx.timestamp);
    let sig = sign(&fx.signing_key, &ms, &fx.token);
    assert!(matches!(
        verify(&p, &[], &json_body(&ms, &fx.token, &sig, "id"), now),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    // The signature is checked first.
    let forged = json_body(
        &fx.timestamp,
        &fx.token,
        &sign(OTHER_KEY, &fx.timestamp, &fx.token),
        "x",
    );
    assert_eq!(
        verify(&p, &[], &forged, now + 10_000),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tolerance_is_overridable() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], Some(Duration::from_secs(8 * 3600)));
    let body = form_body(&fx.timestamp, &fx.token, &fx.signature);
    verify(&p, &[], &body, now_of(&fx) + 8 * 3600).expect("inside");
    assert_eq!(
        verify(&p, &[], &body, now_of(&fx) + 8 * 3600 + 1),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: 8 * 3600 + 1
        })
    );
}

#[test]
fn event_id_falls_back_to_the_token() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let body = json_body(&fx.timestamp, &fx.token, &fx.signature, "");
    let meta = verify(&p, &[], &body, now_of(&fx)).expect("valid");
    assert_eq!(meta.event_id, fx.token);
}

#[test]
fn sign_is_unsignable() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    let (method, uri) = (Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: b"{}",
        event_id: "evt_1",
    };
    assert_eq!(
        p.sign(&req, at(0)),
        Err(SignError::Unsignable("mailgun signs fields inside the JSON body"))
    );
}

#[test]
fn name_and_redacted_debug() {
    let fx = fixture();
    let p = provider(&[&fx.signing_key], None);
    assert_eq!(p.name(), "mailgun");
    let shown = format!("{p:?}");
    assert!(shown.contains("[redacted; 1]"), "{shown}");
    assert!(!shown.contains("3ax6"), "{shown}");
}
