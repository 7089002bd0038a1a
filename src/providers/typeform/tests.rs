use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use http::{HeaderName, HeaderValue};
use http::{Method, Uri};
use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed,
};
use crate::providers::test_support::{at, verify};
use crate::providers::ProviderKind;
use crate::{
    providers::{
        body_digest_id, hmac::GenericHmac, EventMeta, Provider, ProviderSettings, SignRequest, VerifyError,
    },
    secret::Secret,
};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    payload: String,
    typeform_signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/typeform.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> GenericHmac {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Typeform::try_new(ProviderSettings {
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

fn check(p: &GenericHmac, signature: &str, body: &[u8]) -> Result<EventMeta, VerifyError> {
    verify(p, &[("Typeform-Signature", signature)], body, NOW)
}

#[test]
fn constructed_example_reproduces() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let meta = check(&p, &fx.typeform_signature, fx.payload.as_bytes()).expect("fixture verifies");
    assert_eq!(meta.event_id, fx.event_id);
    assert_eq!(meta.handshake, None);
}

#[test]
fn wrong_prefix_or_encoding_is_malformed() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let b64 = &fx.typeform_signature["sha256=".len()..];
    let raw = BASE64.decode(b64).expect("fixture is base64");
    for bad in [
        b64.to_owned(),                                                 // no prefix
        format!("SHA256={b64}"),                                        // prefix is case-sensitive
        format!("sha1={b64}"),                                          // wrong algorithm
        format!("sha256={}", hex::encode(&raw)),                        // hex instead of base64
        format!("sha256={}", b64.trim_end_matches('=')),                // unpadded
        format!("sha256={}", BASE64.encode(&raw[..31])),                // too short
        format!("sha256={}", BASE64.encode([&raw[..], &[0]].concat())), // too long
    ] {
        assert_eq!(
            check(&p, &bad, fx.payload.as_bytes()),
            Err(VerifyError::MalformedSignature("typeform-signature")),
            "{bad}"
        );
    }
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let p = provider(&["k"]);
    for body in [
        &b"not json"[..],
        br#"{"event_type":"form_response"}"#,
        br#"{"event_id":""}"#,
        br#"{"event_id":42}"#,
    ] {
        let headers = signed(&p, body);
        let sig = headers[0].1.to_str().expect("ascii").to_owned();
        let meta = check(&p, &sig, body).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(body));
    }
}

/// The headers `p.sign` produces for a `POST /hook` of `body`.
fn signed(p: &GenericHmac, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    let (method, uri) = (Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "hg_unused",
    };
    p.sign(&req, at(NOW)).expect("typeform always signs")
}

#[test]
fn sign_reproduces_the_fixture_and_round_trips() {
    let fx = fixture();
    let p = provider(&[&fx.secret, "second"]);
    let headers = signed(&p, fx.payload.as_bytes());
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), "typeform-signature");
    assert_eq!(headers[0].1.to_str().expect("ascii"), fx.typeform_signature);
    let meta = check(&p, &fx.typeform_signature, fx.payload.as_bytes()).expect("round trip");
    assert_eq!(meta.event_id, fx.event_id);
}

const SECRETS: [&str; 2] = ["It is a secret", "the new secret"];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Typeform,
        secrets: SECRETS,
        wrong: "not the secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let body = br#"{"event_id":"01H","event_type":"form_response"}"#;
            let tag = BASE64.encode(hmac_sha256(SECRETS[key].as_bytes(), &[body]));
            Signed::new(&body[..], &[("Typeform-Signature", format!("sha256={tag}"))])
        },
        signature_header: Some("typeform-signature"),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
