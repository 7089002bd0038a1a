use serde::Deserialize;

use super::*;
use crate::providers::conformance::{conformance_tests, OwnSign, Scheme, Signed};
use crate::providers::test_support::{stripped, verify};
use crate::providers::{body_digest_id, ProviderKind};

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    authorization: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/bearer.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], id_header: Option<&str>) -> Result<Bearer, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Bearer::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header,
        challenge: None,
    })
}

const BODY: &[u8] = br#"{"event":"ping"}"#;

#[test]
fn the_rfc_example_verifies_with_the_body_digest_as_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None).expect("valid");
    let meta = verify(&p, &[("Authorization", &fx.authorization)], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY));
}

#[test]
fn the_scheme_is_matched_in_any_case_and_whitespace_is_ignored() {
    let p = provider(&["s3cret-token"], None).expect("valid");
    for value in [
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "Bearer   s3cret-token  ",
    ] {
        verify(&p, &[("authorization", value)], BODY, 1).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    }
}

#[test]
fn no_header_another_scheme_or_no_token_is_missing_token() {
    let p = provider(&["s3cret-token"], None).expect("valid");
    let missing = Err(VerifyError::MissingToken("authorization"));
    assert_eq!(verify(&p, &[], BODY, 1), missing);
    for value in [
        "Basic s3cret-token",
        "s3cret-token",
        "Bearer",
        "Bearer   ",
        "Bearers3cret-token",
    ] {
        assert_eq!(
            verify(&p, &[("authorization", value)], BODY, 1),
            missing,
            "{value:?}"
        );
    }
    assert_eq!(
        VerifyError::MissingToken("authorization").reason(),
        "missing_token"
    );
}

#[test]
fn a_wrong_token_is_a_mismatch_whatever_its_length() {
    let p = provider(&["s3cret-token"], None).expect("valid");
    for value in [
        "Bearer s3cret-tokeN",
        "Bearer s3cret-toke",
        "Bearer s3cret-token-and-more",
        "Bearer x",
    ] {
        let got = verify(&p, &[("authorization", value)], BODY, 1);
        assert_eq!(got, Err(VerifyError::TokenMismatch), "{value:?}");
    }
    assert_eq!(VerifyError::TokenMismatch.reason(), "token_mismatch");
}

#[test]
fn the_event_id_is_the_id_header_when_configured_and_present() {
    let with = provider(&["s3cret-token"], Some("X-Request-Id")).expect("valid");
    let auth = ("authorization", "Bearer s3cret-token");
    let meta = verify(&with, &[auth, ("x-request-id", "req-42")], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, "req-42");
    let meta = verify(&with, &[auth], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY), "absent: the digest");
    let meta = verify(&with, &[auth, ("x-request-id", "")], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY), "empty: the digest");
    let without = provider(&["s3cret-token"], None).expect("valid");
    let meta = verify(&without, &[auth, ("x-request-id", "req-42")], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY), "not configured: the digest");
}

#[test]
fn secrets_that_cannot_travel_in_a_header_and_bad_id_headers_are_config_errors() {
    for (index, secrets) in [
        (0, [" padded", "ok"]),
        (1, ["ok", "line\nbreak"]),
        (1, ["ok", "trailing\t"]),
    ] {
        assert!(
            matches!(
                provider(&secrets, None),
                Err(ProviderConfigError::InvalidSecret { index: i, .. }) if i == index
            ),
            "{secrets:?}"
        );
    }
    let err = provider(&["ok"], Some("X Request")).expect_err("invalid header name");
    assert_eq!(
        err.to_string(),
        "id_header: \"X Request\" is not a valid header name (expected e.g. \"X-Request-Id\")"
    );
}

#[test]
fn debug_shows_the_id_header_but_no_secret() {
    let p = provider(&["first-secret", "second-secret"], Some("X-Request-Id")).expect("valid");
    let shown = format!("{p:?}");
    assert_eq!(
        shown,
        "Bearer { secrets: [redacted; 2], id_header: \"x-request-id\" }"
    );
}

#[test]
fn sign_adds_the_id_header_when_configured() {
    let p = provider(&["s3cret-token"], Some("X-Request-Id")).expect("valid");
    let (method, uri) = (http::Method::POST, http::Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: BODY,
        event_id: "hg_1",
    };
    let headers = p
        .sign(&req, crate::providers::test_support::at(1))
        .expect("signs");
    let shown: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    assert_eq!(
        shown,
        [("authorization", "Bearer s3cret-token"), ("x-request-id", "hg_1")]
    );
}

#[test]
fn the_authorization_header_is_stripped_verified_or_not() {
    let p = provider(&["tok"], None).expect("valid");
    for value in ["Bearer tok", "Basic other", "garbage"] {
        let head = stripped(&p, "/hook?a=1", &[("authorization", value), ("x-other", "1")]);
        assert!(head.headers.get("authorization").is_none(), "{value}");
        assert_eq!(head.headers.len(), 1, "other headers stay");
        assert_eq!(head.uri.to_string(), "/hook?a=1", "the query stays");
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Bearer,
        secrets: ["the-current-token", "the-next-token"],
        wrong: "not-the-token",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let token = ["the-current-token", "the-next-token"][key];
            Signed::new(
                &br#"{"event":"ping"}"#[..],
                &[("Authorization", format!("Bearer {token}"))],
            )
        },
        signature_header: Some("authorization"),
        tamper: vec![],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    missing
);
