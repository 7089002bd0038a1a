use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
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
    serde_json::from_str(include_str!("../../../tests/fixtures/basic.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], id_header: Option<&str>) -> Result<Basic, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Basic::try_new(ProviderSettings {
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

fn basic(credentials: &str) -> String {
    format!("Basic {}", BASE64.encode(credentials))
}

#[test]
fn the_rfc_example_verifies_with_the_body_digest_as_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None).expect("valid");
    let meta = verify(&p, &[("Authorization", &fx.authorization)], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY));
    let lower = fx.authorization.replacen("Basic", "basic", 1);
    verify(&p, &[("Authorization", &lower)], BODY, 1).expect("the scheme in any case");
}

#[test]
fn no_header_another_scheme_or_no_credentials_is_missing_token() {
    let p = provider(&["hooks:pa55word"], None).expect("valid");
    let missing = Err(VerifyError::MissingToken("authorization"));
    assert_eq!(verify(&p, &[], BODY, 1), missing);
    let bearer = format!("Bearer {}", BASE64.encode("hooks:pa55word"));
    for value in [bearer.as_str(), "Basic", "Basic  "] {
        assert_eq!(
            verify(&p, &[("authorization", value)], BODY, 1),
            missing,
            "{value:?}"
        );
    }
}

#[test]
fn wrong_user_password_or_encoding_is_a_mismatch() {
    let p = provider(&["hooks:pa55word"], None).expect("valid");
    for value in [
        basic("hooks:pa55wor"),
        basic("hooks:pa55word2"),
        basic("hook:pa55word"),
        basic("Hooks:pa55word"),
        basic("hooks"),
        basic(":pa55word"),
        "Basic not*base64".to_owned(),
        format!(
            "Basic {}",
            BASE64.encode("hooks:pa55word").trim_end_matches('=').to_owned() + "%"
        ),
    ] {
        let got = verify(&p, &[("authorization", &value)], BODY, 1);
        assert_eq!(got, Err(VerifyError::TokenMismatch), "{value:?}");
    }
}

#[test]
fn the_password_may_be_empty_and_may_contain_colons() {
    let p = provider(&["sk_live_123:", "user:pa:ss"], None).expect("valid");
    verify(&p, &[("authorization", &basic("sk_live_123:"))], BODY, 1).expect("empty password");
    verify(&p, &[("authorization", &basic("user:pa:ss"))], BODY, 1).expect("colon in the password");
    let got = verify(&p, &[("authorization", &basic("sk_live_123"))], BODY, 1);
    assert_eq!(
        got,
        Err(VerifyError::TokenMismatch),
        "the colon is part of the credentials"
    );
}

#[test]
fn a_secret_without_a_colon_is_a_config_error_naming_it() {
    for (secrets, index) in [(["user:pass", "nocolon"], 1), ([":", "user:pass"], 0)] {
        assert_eq!(
            provider(&secrets, None).err(),
            Some(ProviderConfigError::InvalidSecret {
                index,
                expected: "expected \"user:password\""
            }),
            "{secrets:?}"
        );
    }
}

#[test]
fn the_event_id_is_the_id_header_when_configured_and_present() {
    let auth = basic("hooks:pa55word");
    let with = provider(&["hooks:pa55word"], Some("X-Request-Id")).expect("valid");
    let meta = verify(
        &with,
        &[("authorization", &auth), ("X-Request-Id", "r-1")],
        BODY,
        1,
    )
    .expect("valid");
    assert_eq!(meta.event_id, "r-1");
    let meta = verify(&with, &[("authorization", &auth)], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY));
}

#[test]
fn debug_shows_no_credentials() {
    let p = provider(&["hooks:pa55word"], None).expect("valid");
    let shown = format!("{p:?}");
    assert_eq!(shown, "Basic { secrets: [redacted; 1], id_header: None }");
    assert!(!shown.contains(&BASE64.encode("hooks:pa55word")));
}

#[test]
fn the_authorization_header_is_stripped_verified_or_not() {
    let p = provider(&["u:p"], None).expect("valid");
    for value in ["Basic dTpw", "Basic other", "garbage"] {
        let head = stripped(&p, "/hook?a=1", &[("authorization", value), ("x-other", "1")]);
        assert!(head.headers.get("authorization").is_none(), "{value}");
        assert_eq!(head.headers.len(), 1, "other headers stay");
        assert_eq!(head.uri.to_string(), "/hook?a=1", "the query stays");
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Basic,
        secrets: ["hooks:current-password", "hooks:next-password"],
        wrong: "hooks:not-the-password",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let credentials = ["hooks:current-password", "hooks:next-password"][key];
            Signed::new(
                &br#"{"event":"ping"}"#[..],
                &[("Authorization", format!("Basic {}", BASE64.encode(credentials)))],
            )
        },
        signature_header: Some("authorization"),
        tamper: vec![],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    missing
);
