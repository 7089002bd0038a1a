use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed,
};
use crate::providers::test_support::{challenge, verify};
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    consumer_secret: String,
    crc_token: String,
    response_token: String,
    payload: String,
    x_twitter_webhooks_signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/x.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> X {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    X::try_new(ProviderSettings {
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
fn the_published_crc_example_is_answered_with_its_response_token() {
    let fx = fixture();
    let p = provider(&[&fx.consumer_secret]);
    assert!(p.answers_get());
    let target = format!("/hook?crc_token={}", fx.crc_token);
    let handshake = challenge(&p, Method::GET, &target, &[], NOW)
        .expect("a GET is a CRC")
        .expect("answered");
    assert_eq!(handshake.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&handshake.body).expect("JSON");
    assert_eq!(body, serde_json::json!({ "response_token": fx.response_token }));
    // Another consumer secret answers another token: X marks the webhook invalid.
    let other = challenge(&provider(&["another-secret"]), Method::GET, &target, &[], NOW)
        .expect("a CRC")
        .expect("answered");
    assert_ne!(other.body, handshake.body);
    assert_eq!(challenge(&p, Method::POST, &target, &[], NOW), None);
}

#[test]
fn a_crc_token_that_could_pass_for_a_body_is_refused() {
    let p = provider(&["s"]);
    for (target, expected) in [
        ("/hook", VerifyError::MissingParameter(CRC_TOKEN)),
        ("/hook?crc_token=", VerifyError::MissingParameter(CRC_TOKEN)),
        (
            "/hook?crc_token=%7B%22a%22%3A1%7D",
            VerifyError::MalformedParameter(CRC_TOKEN),
        ),
        (
            "/hook?crc_token=has%20space",
            VerifyError::MalformedParameter(CRC_TOKEN),
        ),
    ] {
        assert_eq!(
            challenge(&p, Method::GET, target, &[], NOW),
            Some(Err(expected)),
            "{target}"
        );
    }
    let long = format!("/hook?crc_token={}", "a".repeat(MAX_CRC_TOKEN + 1));
    assert_eq!(
        challenge(&p, Method::GET, &long, &[], NOW),
        Some(Err(VerifyError::MalformedParameter(CRC_TOKEN)))
    );
}

#[test]
fn an_answered_crc_cannot_be_replayed_as_an_event() {
    // The CRC answer is the signature of the token under the same key: as a body it is refused.
    let fx = fixture();
    let p = provider(&[&fx.consumer_secret]);
    assert_eq!(
        verify(
            &p,
            &[("x-twitter-webhooks-signature", &fx.response_token)],
            fx.crc_token.as_bytes(),
            NOW
        ),
        Err(VerifyError::MalformedBody)
    );
}

#[test]
fn the_example_event_verifies_and_encodings_are_checked() {
    let fx = fixture();
    let p = provider(&[&fx.consumer_secret]);
    let meta = verify(
        &p,
        &[("x-twitter-webhooks-signature", &fx.x_twitter_webhooks_signature)],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("verifies");
    assert_eq!(meta, EventMeta::new(body_digest_id(fx.payload.as_bytes())));
    let raw = BASE64
        .decode(&fx.x_twitter_webhooks_signature[PREFIX.len()..])
        .expect("base64");
    for bad in [
        fx.x_twitter_webhooks_signature[PREFIX.len()..].to_owned(),
        format!("sha256={}", hex::encode(&raw)),
        format!("sha256={}", BASE64.encode(&raw[..31])),
    ] {
        assert_eq!(
            verify(
                &p,
                &[("x-twitter-webhooks-signature", &bad)],
                fx.payload.as_bytes(),
                NOW
            ),
            Err(VerifyError::MalformedSignature(SIGNATURE)),
            "{bad}"
        );
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::X,
        secrets: ["x-consumer-secret-one", "x-consumer-secret-two"],
        wrong: "not-the-consumer-secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let secret = ["x-consumer-secret-one", "x-consumer-secret-two"][key];
            let body = br#"{"for_user_id":"1","favorite_events":[]}"#;
            let sig = format!(
                "sha256={}",
                BASE64.encode(hmac_sha256(secret.as_bytes(), &[body]))
            );
            Signed::new(&body[..], &[("x-twitter-webhooks-signature", sig)])
        },
        signature_header: Some(SIGNATURE),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
