use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed,
};
use crate::providers::test_support::verify;
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    payload: String,
    x_hub_signature_256: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/github.json")).expect("valid fixture")
}

/// HMAC-SHA1 of the fixture payload with the fixture secret, computed independently with
/// `printf 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody"`.
const FIXTURE_SHA1: &str = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";

const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str]) -> GitHub {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    GitHub::try_new(ProviderSettings {
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
fn published_example_reproduces() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let meta = verify(
        &p,
        &[("X-Hub-Signature-256", &fx.x_hub_signature_256)],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("GitHub's published example verifies");
    assert_eq!(meta.event_id, body_digest_id(fx.payload.as_bytes()));
}

#[test]
fn uppercase_hex_is_accepted() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let upper = format!(
        "sha256={}",
        fx.x_hub_signature_256["sha256=".len()..].to_uppercase()
    );
    verify(&p, &[("x-hub-signature-256", &upper)], fx.payload.as_bytes(), NOW).expect("case-insensitive hex");
}

#[test]
fn malformed_signatures_are_rejected_before_any_mac() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let hex = &fx.x_hub_signature_256["sha256=".len()..];
    for bad in [
        hex.to_owned(),                     // no prefix
        format!("sha1={hex}"),              // wrong prefix
        format!("SHA256={hex}"),            // prefix is case-sensitive
        format!("sha256={}", &hex[..62]),   // too short
        format!("sha256={hex}00"),          // too long
        format!("sha256={}zz", &hex[..62]), // not hex
    ] {
        let got = verify(&p, &[("X-Hub-Signature-256", &bad)], fx.payload.as_bytes(), NOW);
        assert_eq!(
            got,
            Err(VerifyError::MalformedSignature("x-hub-signature-256")),
            "{bad}"
        );
    }
}

#[test]
fn sha1_fallback_only_when_sha256_is_absent() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let body = fx.payload.as_bytes();

    verify(&p, &[("X-Hub-Signature", FIXTURE_SHA1)], body, NOW).expect("legacy SHA-1 alone verifies");

    // A wrong SHA-256 signature is final, even next to a valid SHA-1 one.
    let wrong_256 = format!("sha256={}", "0".repeat(64));
    let got = verify(
        &p,
        &[
            ("X-Hub-Signature-256", &wrong_256),
            ("X-Hub-Signature", FIXTURE_SHA1),
        ],
        body,
        NOW,
    );
    assert_eq!(got, Err(VerifyError::SignatureMismatch));

    // A malformed SHA-256 header is not skipped either.
    let got = verify(
        &p,
        &[
            ("X-Hub-Signature-256", "garbage"),
            ("X-Hub-Signature", FIXTURE_SHA1),
        ],
        body,
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MalformedSignature("x-hub-signature-256")));

    let got = verify(&p, &[("X-Hub-Signature", "sha256=01dc")], body, NOW);
    assert_eq!(got, Err(VerifyError::MalformedSignature("x-hub-signature")));

    let got = verify(&p, &[("X-Hub-Signature", FIXTURE_SHA1)], b"tampered", NOW);
    assert_eq!(got, Err(VerifyError::SignatureMismatch));
}

#[test]
fn event_id_is_the_delivery_header() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let meta = verify(
        &p,
        &[
            ("X-Hub-Signature-256", &fx.x_hub_signature_256),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        fx.payload.as_bytes(),
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.event_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Github,
        secrets: ["It's a Secret to Everybody", "the new secret"],
        wrong: "not the secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let secret = ["It's a Secret to Everybody", "the new secret"][key];
            let body = br#"{"zen":"Keep it logically awesome."}"#;
            let tag = hex::encode(hmac_sha256(secret.as_bytes(), &[body]));
            Signed::new(&body[..], &[("X-Hub-Signature-256", format!("sha256={tag}"))])
        },
        signature_header: Some("x-hub-signature-256"),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
