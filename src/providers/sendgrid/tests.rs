use http::{Method, Uri};
use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    other_public_key: String,
    bad_signature: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    public_key: String,
    signature: String,
    timestamp: String,
    payload: String,
}

fn fixture() -> Fixture {
    let fx: Fixture =
        serde_json::from_str(include_str!("../../../tests/fixtures/sendgrid.json")).expect("valid fixture");
    assert_eq!(fx.vectors.len(), 2);
    fx
}

fn provider(keys: &[&str], tolerance: Option<Duration>) -> SendGrid {
    let secrets: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    SendGrid::try_new(ProviderSettings {
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

fn check(p: &SendGrid, sig: &str, ts: &str, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    verify(
        p,
        &[
            ("X-Twilio-Email-Event-Webhook-Signature", sig),
            ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
        ],
        body,
        now,
    )
}

fn now_of(v: &Vector) -> u64 {
    v.timestamp.parse().expect("numeric timestamp")
}

#[test]
fn published_vectors_verify_exactly() {
    let fx = fixture();
    for v in &fx.vectors {
        let p = provider(&[&v.public_key], None);
        let meta = check(&p, &v.signature, &v.timestamp, v.payload.as_bytes(), now_of(v)).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(v.payload.as_bytes()));
        assert_eq!(meta.handshake, None);
    }
}

#[test]
fn the_python_vector_needs_its_trailing_crlf_and_has_a_high_s() {
    let fx = fixture();
    let v = &fx.vectors[1];
    assert!(v.payload.ends_with("}]\r\n"));
    let sig = Signature::from_der(&BASE64.decode(&v.signature).expect("base64")).expect("DER");
    assert!(
        sig.normalize_s().is_some(),
        "high S is accepted, as SendGrid's libraries do"
    );
    let p = provider(&[&v.public_key], None);
    let trimmed = v.payload.trim_end().as_bytes();
    assert_eq!(
        check(&p, &v.signature, &v.timestamp, trimmed, now_of(v)),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn the_libraries_rejections_are_mismatches() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let (body, now) = (v.payload.as_bytes(), now_of(v));
    // Bad key.
    let p = provider(&[&fx.other_public_key], None);
    assert_eq!(
        check(&p, &v.signature, &v.timestamp, body, now),
        Err(VerifyError::SignatureMismatch)
    );
    let p = provider(&[&v.public_key], None);
    // Bad payload.
    assert_eq!(
        check(&p, &v.signature, &v.timestamp, b"payload", now),
        Err(VerifyError::SignatureMismatch)
    );
    // Bad signature (one digit changed, still valid DER).
    assert_eq!(
        check(&p, &fx.bad_signature, &v.timestamp, body, now),
        Err(VerifyError::SignatureMismatch)
    );
    // Bad timestamp.
    assert_eq!(
        check(&p, &v.signature, "timestamp", body, now),
        Err(VerifyError::SignatureMismatch)
    );
    // Another vector's signature.
    assert_eq!(
        check(&p, &fx.vectors[1].signature, &v.timestamp, body, now),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn any_configured_key_matches() {
    let fx = fixture();
    let p = provider(
        &[
            &fx.other_public_key,
            &fx.vectors[0].public_key,
            &fx.vectors[1].public_key,
        ],
        None,
    );
    for v in &fx.vectors {
        check(&p, &v.signature, &v.timestamp, v.payload.as_bytes(), now_of(v)).expect("a key matches");
    }
}

#[test]
fn missing_and_malformed_headers() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&v.public_key], None);
    let (body, now) = (v.payload.as_bytes(), now_of(v));
    assert_eq!(
        verify(
            &p,
            &[("X-Twilio-Email-Event-Webhook-Timestamp", &v.timestamp)],
            body,
            now
        ),
        Err(VerifyError::MissingSignature(
            "x-twilio-email-event-webhook-signature"
        ))
    );
    assert_eq!(
        verify(
            &p,
            &[("X-Twilio-Email-Event-Webhook-Signature", &v.signature)],
            body,
            now
        ),
        Err(VerifyError::MissingHeader(
            "x-twilio-email-event-webhook-timestamp"
        ))
    );
    let der = BASE64.decode(&v.signature).expect("base64");
    let raw = Signature::from_der(&der).expect("DER").to_bytes();
    for bad in [
        String::new(),
        "not base64!".to_owned(),
        hex::encode(&der),                    // hex, not base64
        BASE64.encode(raw),                   // raw r||s, not DER
        BASE64.encode(&der[..der.len() - 1]), // truncated DER
        format!("t={}", v.signature),         // a prefix
    ] {
        assert_eq!(
            check(&p, &bad, &v.timestamp, body, now),
            Err(VerifyError::MalformedSignature(
                "x-twilio-email-event-webhook-signature"
            )),
            "{bad}"
        );
    }
}

#[test]
fn no_window_by_default() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&v.public_key], None);
    check(
        &p,
        &v.signature,
        &v.timestamp,
        v.payload.as_bytes(),
        now_of(v) + 10 * 365 * 86_400,
    )
    .expect("years later: SendGrid documents no window");
}

#[test]
fn a_configured_tolerance_is_two_sided_in_seconds() {
    let fx = fixture();
    let v = &fx.vectors[1];
    let p = provider(&[&v.public_key], Some(Duration::from_secs(300)));
    let (body, now) = (v.payload.as_bytes(), now_of(v));
    check(&p, &v.signature, &v.timestamp, body, now + 300).expect("5 minutes old");
    check(&p, &v.signature, &v.timestamp, body, now - 300).expect("5 minutes ahead");
    assert_eq!(
        check(&p, &v.signature, &v.timestamp, body, now + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        check(&p, &v.signature, &v.timestamp, body, now - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    // A forged request always gets a mismatch, whatever its timestamp.
    assert_eq!(
        check(&p, &v.signature, "1", body, now),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn sign_is_unsupported() {
    let fx = fixture();
    let p = provider(&[&fx.vectors[0].public_key], None);
    let (method, uri) = (Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: b"[]",
        event_id: "evt_1",
    };
    assert_eq!(p.sign(&req, at(0)), Err(SignError::Unsupported("sendgrid")));
}

#[test]
fn pem_keys_are_accepted() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &v.public_key[..64],
        &v.public_key[64..]
    );
    let p = provider(&[&pem], None);
    check(&p, &v.signature, &v.timestamp, v.payload.as_bytes(), now_of(v)).expect("PEM key");
}

#[test]
fn invalid_keys_are_refused_with_their_index() {
    let fx = fixture();
    let good = &fx.vectors[0].public_key;
    let expected = SECRET_EXPECTED;
    // An Ed25519 SPKI (RFC 8410 section 10.1's example key): valid DER, wrong algorithm.
    let ed25519 = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    for bad in [
        "not base64!",
        "AAAA",
        &good[..good.len() - 4],
        ed25519,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ] {
        let secrets = [Secret::new(good.as_str()), Secret::new(bad)];
        let err = SendGrid::try_new(ProviderSettings {
            secrets: &secrets,
            tolerance: None,
            public_url: None,
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        })
        .err();
        assert_eq!(
            err,
            Some(ProviderConfigError::InvalidSecret { index: 1, expected }),
            "{bad}"
        );
    }
}

#[test]
fn name_and_redacted_debug() {
    let fx = fixture();
    let p = provider(&[&fx.vectors[0].public_key], None);
    assert_eq!(p.name(), "sendgrid");
    let shown = format!("{p:?}");
    assert!(shown.contains("[redacted; 1]"), "{shown}");
    assert!(!shown.contains("MFkw"), "{shown}");
}
