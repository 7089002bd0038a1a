use http::{Method, Uri};
use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    body: String,
    valid_signature: String,
    mismatched_signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/pagerduty.json")).expect("valid fixture")
}

const OTHER_SECRET: &str = "another-subscription-secret";

fn provider(secrets: &[&str]) -> PagerDuty {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    PagerDuty::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

/// `v1=` and the hex HMAC-SHA256 of `body` under `secret`, as PagerDuty computes it.
fn v1(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn check(p: &PagerDuty, header: &str, body: &[u8]) -> Result<EventMeta, VerifyError> {
    verify(p, &[("X-PagerDuty-Signature", header)], body, 0)
}

#[test]
fn published_vector_verifies_with_the_event_id() {
    let fx = fixture();
    assert_eq!(v1(&fx.secret, fx.body.as_bytes()), fx.valid_signature);
    let p = provider(&[&fx.secret]);
    let meta = check(&p, &fx.valid_signature, fx.body.as_bytes()).expect("valid");
    assert_eq!(meta.event_id, fx.event_id);
    assert_eq!(meta.handshake, None);
    assert_eq!(
        check(&p, &fx.mismatched_signature, fx.body.as_bytes()),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn any_entry_of_the_rotation_list_matches() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let body = fx.body.as_bytes();
    for header in [
        format!("{},{}", fx.mismatched_signature, fx.valid_signature),
        format!("{}, {}", fx.valid_signature, fx.mismatched_signature),
        format!("v2=abcd,v1=zz,{}", fx.valid_signature),
        fx.valid_signature.to_uppercase().replacen("V1=", "v1=", 1),
    ] {
        check(&p, &header, body).expect(&header);
    }
}

#[test]
fn tampered_body_is_a_mismatch() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let tampered = fx.body.replace("\"urgency\":\"high\"", "\"urgency\":\"low\"");
    assert_ne!(tampered, fx.body);
    assert_eq!(
        check(&p, &fx.valid_signature, tampered.as_bytes()),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_secret_is_a_mismatch_and_a_rotated_secret_matches() {
    let fx = fixture();
    let body = fx.body.as_bytes();
    assert_eq!(
        check(&provider(&[OTHER_SECRET]), &fx.valid_signature, body),
        Err(VerifyError::SignatureMismatch)
    );
    check(&provider(&[OTHER_SECRET, &fx.secret]), &fx.valid_signature, body).expect("second secret matches");
}

#[test]
fn missing_and_malformed_headers() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let body = fx.body.as_bytes();
    assert_eq!(
        verify(&p, &[], body, 0),
        Err(VerifyError::MissingSignature("x-pagerduty-signature"))
    );
    let hex_only = fx.valid_signature.trim_start_matches("v1=").to_owned();
    for bad in [
        String::new(),
        hex_only.clone(),                          // no prefix
        format!("sha256={hex_only}"),              // another prefix
        format!("v2={hex_only}"),                  // another version
        format!("v1={}", &hex_only[..62]),         // truncated
        format!("v1={hex_only}00"),                // too long
        format!("v1={}", BASE64_OF_THE_VALID_TAG), // base64, not hex
    ] {
        assert_eq!(
            check(&p, &bad, body),
            Err(VerifyError::MalformedSignature("x-pagerduty-signature")),
            "{bad}"
        );
    }
}

/// The valid tag, base64-encoded: the wrong encoding.
const BASE64_OF_THE_VALID_TAG: &str = "DAuUlbiTo55w0f6i/hH74Kgl+IufZ4RvbMB90rxUds0=";

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let p = provider(&[OTHER_SECRET]);
    for body in [
        &br#"{"event":{"event_type":"pagey.ping"}}"#[..],
        br#"{"event":{"id":""}}"#,
        br#"{"id":"top-level is not event.id"}"#,
        b"[]",
    ] {
        let meta = check(&p, &v1(OTHER_SECRET, body), body).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(body));
    }
}

#[test]
fn sign_then_verify_round_trips() {
    let fx = fixture();
    let p = provider(&[&fx.secret, OTHER_SECRET]);
    let (method, uri) = (Method::POST, Uri::from_static("/hooks/pagerduty"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: fx.body.as_bytes(),
        event_id: "ignored",
    };
    let headers = p.sign(&req, at(1_700_000_000)).expect("signs");
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, "x-pagerduty-signature");
    assert_eq!(headers[0].1, fx.valid_signature.as_str());
    let meta = check(&p, headers[0].1.to_str().expect("ascii"), fx.body.as_bytes()).expect("valid");
    assert_eq!(meta.event_id, fx.event_id);
}

#[test]
fn name_and_redacted_debug() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    assert_eq!(p.name(), "pagerduty");
    let shown = format!("{p:?}");
    assert!(shown.contains("[redacted; 1]"), "{shown}");
    assert!(!shown.contains("lDQH"), "{shown}");
}
