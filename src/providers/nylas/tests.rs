use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed,
};
use crate::providers::test_support::{challenge, verify};
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    webhook_secret: String,
    payload: String,
    x_nylas_signature: String,
    event_id: String,
    challenge: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/nylas.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> Nylas {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Nylas::try_new(ProviderSettings {
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

#[test]
fn the_example_notification_verifies_with_its_id_in_either_hex_case() {
    let fx = fixture();
    let p = provider(&[&fx.webhook_secret]);
    let body = fx.payload.as_bytes();
    let meta = verify(&p, &[("X-Nylas-Signature", &fx.x_nylas_signature)], body, NOW).expect("verifies");
    assert_eq!(meta, EventMeta::new(fx.event_id));
    // Without a top-level id, the body digest.
    let bare = br#"{"type":"grant.expired"}"#;
    let sig = hex::encode(crate::providers::conformance::hmac_sha256(
        fx.webhook_secret.as_bytes(),
        &[bare],
    ));
    let meta = verify(&p, &[("X-Nylas-Signature", &sig)], bare, NOW).expect("verifies");
    assert_eq!(meta, EventMeta::new(body_digest_id(bare)));
    let upper = fx.x_nylas_signature.to_uppercase();
    verify(&p, &[("X-Nylas-Signature", &upper)], body, NOW).expect("either case");
    let raw = hex::decode(&fx.x_nylas_signature).expect("hex");
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    for bad in [
        STANDARD.encode(&raw),
        format!("sha256={}", fx.x_nylas_signature),
        fx.x_nylas_signature[..62].to_owned(),
    ] {
        assert_eq!(
            verify(&p, &[("X-Nylas-Signature", &bad)], body, NOW),
            Err(VerifyError::MalformedSignature(SIGNATURE)),
            "{bad}"
        );
    }
}

#[test]
fn the_verification_request_is_echoed_exactly() {
    let fx = fixture();
    let p = provider(&[&fx.webhook_secret]);
    assert!(p.answers_get());
    let target = format!("/hook?challenge={}", fx.challenge);
    let handshake = challenge(&p, Method::GET, &target, &[], NOW)
        .expect("a GET is a challenge")
        .expect("answered");
    assert_eq!(handshake.body, fx.challenge.as_bytes());
    assert_eq!(handshake.content_type, "text/plain");
    assert_eq!(
        handshake.headers,
        vec![(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff")
        )]
    );
    assert_eq!(challenge(&p, Method::POST, &target, &[], NOW), None);
    for (target, expected) in [
        ("/hook", VerifyError::MissingParameter(CHALLENGE)),
        ("/hook?challenge=", VerifyError::MissingParameter(CHALLENGE)),
        (
            "/hook?challenge=a%0Ab",
            VerifyError::MalformedParameter(CHALLENGE),
        ),
    ] {
        assert_eq!(
            challenge(&p, Method::GET, target, &[], NOW),
            Some(Err(expected)),
            "{target}"
        );
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Nylas,
        secrets: ["nylas-webhook-secret-one", "nylas-webhook-secret-two"],
        wrong: "not-the-webhook-secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let secret = ["nylas-webhook-secret-one", "nylas-webhook-secret-two"][key];
            let body = br#"{"specversion":"1.0","type":"message.created","id":"evt-1","data":{}}"#;
            let sig = hex::encode(hmac_sha256(secret.as_bytes(), &[body]));
            Signed::new(&body[..], &[("X-Nylas-Signature", sig)])
        },
        signature_header: Some(SIGNATURE),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
