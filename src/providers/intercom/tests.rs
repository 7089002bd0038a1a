use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use http::{HeaderName, HeaderValue};
use http::{Method, Uri};
use serde::Deserialize;

use super::*;
use crate::providers::conformance::{append_to_body, conformance_tests, hmac_sha1, OwnSign, Scheme, Signed};
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
    x_hub_signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/intercom.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> GenericHmac {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Intercom::try_new(ProviderSettings {
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
    verify(p, &[("X-Hub-Signature", signature)], body, NOW)
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
    p.sign(&req, at(NOW)).expect("intercom always signs")
}

#[test]
fn constructed_example_reproduces() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let meta = check(&p, &fx.x_hub_signature, fx.payload.as_bytes()).expect("fixture verifies");
    assert_eq!(meta.event_id, fx.event_id);
    assert_eq!(meta.handshake, None);
}

#[test]
fn uppercase_hex_is_accepted() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let upper = format!("sha1={}", fx.x_hub_signature["sha1=".len()..].to_uppercase());
    check(&p, &upper, fx.payload.as_bytes()).expect("case-insensitive hex");
}

#[test]
fn githubs_sha256_header_is_not_intercoms() {
    let p = provider(&["s"]);
    let fx = fixture();
    let got = verify(
        &p,
        &[("X-Hub-Signature-256", &fx.x_hub_signature)],
        fx.payload.as_bytes(),
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingSignature("x-hub-signature")));
}

#[test]
fn wrong_prefix_or_encoding_is_malformed() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let hex = &fx.x_hub_signature["sha1=".len()..];
    let raw = hex::decode(hex).expect("fixture is hex");
    for bad in [
        hex.to_owned(),                          // no prefix
        format!("SHA1={hex}"),                   // prefix is case-sensitive
        format!("sha256={hex}"),                 // wrong algorithm
        format!("sha1={}", BASE64.encode(&raw)), // base64
        format!("sha1={}", &hex[..38]),          // too short
        format!("sha1={hex}00"),                 // too long
        format!("sha1={}zz", &hex[..38]),        // not hex
    ] {
        assert_eq!(
            check(&p, &bad, fx.payload.as_bytes()),
            Err(VerifyError::MalformedSignature("x-hub-signature")),
            "{bad}"
        );
    }
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let p = provider(&["k"]);
    for body in [
        &b"not json"[..],
        br#"{"type":"notification_event","topic":"ping"}"#,
        br#"{"id":""}"#,
        br#"{"id":7}"#,
    ] {
        let headers = signed(&p, body);
        let sig = headers[0].1.to_str().expect("ascii").to_owned();
        let meta = check(&p, &sig, body).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(body));
    }
}

#[test]
fn sign_reproduces_the_fixture_and_round_trips() {
    let fx = fixture();
    let p = provider(&[&fx.secret, "second"]);
    let headers = signed(&p, fx.payload.as_bytes());
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), "x-hub-signature");
    assert_eq!(headers[0].1.to_str().expect("ascii"), fx.x_hub_signature);
    let meta = check(&p, &fx.x_hub_signature, fx.payload.as_bytes()).expect("round trip");
    assert_eq!(meta.event_id, fx.event_id);
}

const SECRETS: [&str; 2] = ["It is a secret", "the new secret"];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Intercom,
        secrets: SECRETS,
        wrong: "not the secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let body = br#"{"type":"notification_event","id":"notif_1"}"#;
            let tag = hex::encode(hmac_sha1(SECRETS[key].as_bytes(), &[body]));
            Signed::new(&body[..], &[("X-Hub-Signature", format!("sha1={tag}"))])
        },
        signature_header: Some("x-hub-signature"),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
