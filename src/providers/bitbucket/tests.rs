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
    x_hub_signature: String,
    x_request_uuid: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/bitbucket.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

/// The webhook's UUID (`X-Hook-UUID`): the same for every delivery, so never the event id.
const HOOK_UUID: &str = "{0b9c3e4d-5f6a-4b7c-8d9e-0f1a2b3c4d5e}";

fn provider(secrets: &[&str]) -> GenericHmac {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Bitbucket::try_new(ProviderSettings {
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

/// The headers `p.sign` produces for a `POST /hook` of `body` with event id `id`.
fn signed(p: &GenericHmac, body: &[u8], id: &str) -> Vec<(HeaderName, HeaderValue)> {
    let (method, uri) = (Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: id,
    };
    p.sign(&req, at(NOW)).expect("bitbucket always signs")
}

#[test]
fn constructed_example_reproduces_with_the_request_uuid_as_event_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let meta = verify(
        &p,
        &[
            ("X-Event-Key", "repo:push"),
            ("X-Hook-UUID", HOOK_UUID),
            ("X-Request-UUID", &fx.x_request_uuid),
            ("X-Attempt-Number", "1"),
            ("X-Hub-Signature", &fx.x_hub_signature),
        ],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("fixture verifies");
    assert_eq!(meta.event_id, fx.x_request_uuid);
    assert_eq!(meta.handshake, None);
}

#[test]
fn event_id_falls_back_to_data_center_request_id_then_digest_never_hook_uuid() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let body = fx.payload.as_bytes();
    let meta = verify(
        &p,
        &[
            ("X-Hub-Signature", &fx.x_hub_signature),
            ("X-Request-Id", "d2f1b2a4-1c3e-4f5a-9b8c-7d6e5f4a3b2c"),
        ],
        body,
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.event_id, "d2f1b2a4-1c3e-4f5a-9b8c-7d6e5f4a3b2c");

    let meta = verify(
        &p,
        &[
            ("X-Hub-Signature", &fx.x_hub_signature),
            ("X-Hook-UUID", HOOK_UUID),
            ("X-Request-UUID", ""),
        ],
        body,
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.event_id, body_digest_id(body));
}

#[test]
fn uppercase_hex_is_accepted() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let upper = format!("sha256={}", fx.x_hub_signature["sha256=".len()..].to_uppercase());
    check(&p, &upper, fx.payload.as_bytes()).expect("case-insensitive hex");
}

#[test]
fn wrong_prefix_or_encoding_is_malformed() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let hex = &fx.x_hub_signature["sha256=".len()..];
    let raw = hex::decode(hex).expect("fixture is hex");
    for bad in [
        hex.to_owned(),                            // no prefix
        format!("SHA256={hex}"),                   // prefix is case-sensitive
        format!("sha1={hex}"),                     // GitHub's legacy prefix
        format!("sha256={}", BASE64.encode(&raw)), // base64
        format!("sha256={}", &hex[..62]),          // too short
        format!("sha256={hex}00"),                 // too long
        format!("sha256={}zz", &hex[..62]),        // not hex
    ] {
        assert_eq!(
            check(&p, &bad, fx.payload.as_bytes()),
            Err(VerifyError::MalformedSignature("x-hub-signature")),
            "{bad}"
        );
    }
}

#[test]
fn sign_reproduces_the_fixture_and_round_trips() {
    let fx = fixture();
    let p = provider(&[&fx.secret, "second"]);
    let headers = signed(&p, fx.payload.as_bytes(), &fx.x_request_uuid);
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-hub-signature", "x-request-uuid"]);
    assert_eq!(headers[0].1.to_str().expect("ascii"), fx.x_hub_signature);

    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    let meta = verify(&p, &pairs, fx.payload.as_bytes(), NOW).expect("round trip");
    assert_eq!(meta.event_id, fx.x_request_uuid);
}

const SECRETS: [&str; 2] = ["It is a secret", "the new secret"];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Bitbucket,
        secrets: SECRETS,
        wrong: "not the secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let body = br#"{"push":{"changes":[]}}"#;
            let tag = hex::encode(hmac_sha256(SECRETS[key].as_bytes(), &[body]));
            Signed::new(&body[..], &[("X-Hub-Signature", format!("sha256={tag}"))])
        },
        signature_header: Some("x-hub-signature"),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
