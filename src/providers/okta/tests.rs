use serde::Deserialize;

use super::*;
use crate::providers::conformance::{conformance_tests, OwnSign, Scheme, Signed};
use crate::providers::test_support::{challenge, stripped, verify};
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    authorization: String,
    payload: String,
    event_id: String,
    challenge: String,
    verification: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/okta.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> Okta {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Okta::try_new(ProviderSettings {
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
fn a_delivery_with_the_hooks_authorization_value_is_accepted_with_its_event_id() {
    let fx = fixture();
    let p = provider(&["old-value", &fx.authorization]);
    let meta = verify(
        &p,
        &[("Authorization", &fx.authorization)],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("valid");
    assert_eq!(meta, EventMeta::new(fx.event_id));
    // The value is compared whole: its scheme word alone, or another case, is not it.
    for wrong in [
        "Basic",
        "basic b2t0YS1ob29rOnMzY3IzdA==",
        "Bearer b2t0YS1ob29rOnMzY3IzdA==",
    ] {
        assert_eq!(
            verify(&p, &[("Authorization", wrong)], fx.payload.as_bytes(), NOW),
            Err(VerifyError::TokenMismatch),
            "{wrong}"
        );
    }
    assert_eq!(
        verify(&p, &[], fx.payload.as_bytes(), NOW),
        Err(VerifyError::MissingToken(HEADER))
    );
    // Stripped before anything stores or forwards it.
    let head = stripped(&p, "/hook", &[("Authorization", &fx.authorization)]);
    assert!(head.headers.get(AUTHORIZATION).is_none());
}

#[test]
fn the_verification_request_is_answered_with_the_challenge_in_json() {
    let fx = fixture();
    let p = provider(&[&fx.authorization]);
    assert!(p.answers_get());
    for headers in [
        vec![(CHALLENGE, fx.challenge.as_str())],
        vec![
            (CHALLENGE, fx.challenge.as_str()),
            ("Authorization", fx.authorization.as_str()),
        ],
    ] {
        let handshake = challenge(&p, Method::GET, "/hook", &headers, NOW)
            .expect("a GET is a verification")
            .expect("answered");
        assert_eq!(handshake.content_type, "application/json");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&handshake.body).expect("JSON"),
            serde_json::from_str::<serde_json::Value>(&fx.verification).expect("JSON")
        );
    }
    assert_eq!(
        challenge(&p, Method::POST, "/hook", &[(CHALLENGE, "x")], NOW),
        None
    );
}

#[test]
fn the_verification_request_is_refused_with_a_wrong_authorization_or_no_challenge() {
    let fx = fixture();
    let p = provider(&[&fx.authorization]);
    let cases: [(&[(&str, &str)], VerifyError); 3] = [
        (
            &[(CHALLENGE, "abc"), ("Authorization", "Basic d3Jvbmc6d3Jvbmc=")],
            VerifyError::TokenMismatch,
        ),
        (&[], VerifyError::MissingHeader(CHALLENGE)),
        (
            &[(CHALLENGE, "two words")],
            VerifyError::MalformedParameter(CHALLENGE),
        ),
    ];
    for (headers, expected) in cases {
        assert_eq!(
            challenge(&p, Method::GET, "/hook", headers, NOW),
            Some(Err(expected.clone())),
            "{expected}"
        );
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Okta,
        secrets: ["okta-hook-value-one", "Basic b2t0YTp0d28="],
        wrong: "not-the-hook-value",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let value = ["okta-hook-value-one", "Basic b2t0YTp0d28="][key];
            let body = br#"{"eventType":"com.okta.event_hook","eventId":"evt-1","data":{"events":[]}}"#;
            Signed::new(&body[..], &[("Authorization", value.to_owned())])
        },
        signature_header: Some(HEADER),
        tamper: vec![],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    missing,
);
