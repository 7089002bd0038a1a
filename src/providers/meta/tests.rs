use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed,
};
use crate::providers::test_support::{challenge, verify};
use crate::providers::{ChallengeSettings, ProviderKind};

#[derive(Deserialize)]
struct Fixture {
    app_secret: String,
    payload: String,
    x_hub_signature_256: String,
    verify_token: String,
    hub_challenge: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/meta.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str], verify_token: Option<&str>) -> Result<Meta, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    let challenge = ChallengeSettings {
        verify_token: verify_token.map(Secret::new),
    };
    Meta::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: Some(&challenge),
    })
}

fn fixture_provider() -> Meta {
    let fx = fixture();
    provider(&[&fx.app_secret], Some(&fx.verify_token)).expect("valid settings")
}

#[test]
fn the_example_payload_verifies_with_the_body_digest_as_id() {
    let fx = fixture();
    let meta = verify(
        &fixture_provider(),
        &[("X-Hub-Signature-256", &fx.x_hub_signature_256)],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("the example verifies");
    assert_eq!(meta, EventMeta::new(body_digest_id(fx.payload.as_bytes())));
}

#[test]
fn malformed_signatures_are_rejected() {
    let fx = fixture();
    let p = fixture_provider();
    let hex = &fx.x_hub_signature_256[PREFIX.len()..];
    for bad in [
        hex.to_owned(),
        format!("sha1={hex}"),
        format!("sha256={}", &hex[..62]),
        format!("sha256={}", BASE64_OF_32),
    ] {
        assert_eq!(
            verify(&p, &[("X-Hub-Signature-256", &bad)], fx.payload.as_bytes(), NOW),
            Err(VerifyError::MalformedSignature(SIGNATURE)),
            "{bad}"
        );
    }
    let upper = format!("sha256={}", hex.to_uppercase());
    verify(&p, &[("X-Hub-Signature-256", &upper)], fx.payload.as_bytes(), NOW).expect("either case");
}

/// A base64 rendering of 32 bytes: the wrong encoding for a hex scheme.
const BASE64_OF_32: &str = "3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+796tvu8=";

#[test]
fn the_verification_request_echoes_the_challenge_when_the_token_matches() {
    let fx = fixture();
    let p = fixture_provider();
    assert!(p.answers_get());
    let target = format!(
        "/hook?hub.mode=subscribe&hub.challenge={}&hub.verify_token={}",
        fx.hub_challenge, fx.verify_token
    );
    let answer = challenge(&p, Method::GET, &target, &[], NOW).expect("a GET is a challenge");
    let handshake = answer.expect("the right token");
    assert_eq!(handshake.body, fx.hub_challenge.as_bytes());
    assert_eq!(handshake.content_type, "text/plain");
    // A POST is an event, not a challenge, whatever its query.
    assert_eq!(challenge(&p, Method::POST, &target, &[], NOW), None);
}

#[test]
fn the_verification_request_is_refused_without_the_right_token() {
    let p = fixture_provider();
    let cases = [
        (
            "/hook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
            VerifyError::TokenMismatch,
        ),
        (
            "/hook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhockX",
            VerifyError::TokenMismatch,
        ),
        (
            "/hook?hub.mode=subscribe&hub.challenge=1",
            VerifyError::MissingToken(VERIFY_TOKEN),
        ),
        (
            "/hook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
            VerifyError::MissingToken(VERIFY_TOKEN),
        ),
        (
            "/hook?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock",
            VerifyError::MalformedParameter(MODE),
        ),
        (
            "/hook?hub.mode=subscribe&hub.verify_token=meatyhamhock",
            VerifyError::MissingParameter(CHALLENGE),
        ),
        (
            "/hook?hub.mode=subscribe&hub.challenge=%3Cscript%3E%20x&hub.verify_token=meatyhamhock",
            VerifyError::MalformedParameter(CHALLENGE),
        ),
        ("/hook", VerifyError::MissingToken(VERIFY_TOKEN)),
    ];
    for (target, expected) in cases {
        assert_eq!(
            challenge(&p, Method::GET, target, &[], NOW),
            Some(Err(expected)),
            "{target}"
        );
    }
}

#[test]
fn the_verify_token_is_required_and_never_shown() {
    let err = provider(&["s"], None).expect_err("no verify token");
    assert!(
        matches!(
            err,
            ProviderConfigError::Setting {
                key: "challenge.verify_token",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(provider(&["s"], Some("")).is_err(), "an empty verify token");
    let shown = format!(
        "{:?}",
        provider(&["app-secret"], Some("the-token")).expect("valid")
    );
    assert!(
        !shown.contains("the-token") && !shown.contains("app-secret"),
        "{shown}"
    );
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Meta,
        secrets: ["meta-app-secret-one", "meta-app-secret-two"],
        wrong: "not-the-app-secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let secret = ["meta-app-secret-one", "meta-app-secret-two"][key];
            let body = br#"{"object":"page","entry":[{"id":"1","time":1700000000,"messaging":[]}]}"#;
            let sig = format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[body])));
            Signed::new(&body[..], &[("X-Hub-Signature-256", sig)])
        },
        signature_header: Some(SIGNATURE),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
