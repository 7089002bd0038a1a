use http::Uri;

use super::*;
use crate::providers::conformance::{conformance_tests, OwnSign, Scheme, Signed};
use crate::providers::test_support::{stripped, verify, verify_at};
use crate::providers::{body_digest_id, ProviderKind};

fn location(header: Option<&str>, query: Option<&str>) -> TokenLocation {
    TokenLocation {
        header: header.map(str::to_owned),
        query: query.map(str::to_owned),
    }
}

fn provider(
    secrets: &[&str],
    location: Option<&TokenLocation>,
    id_header: Option<&str>,
) -> Result<Token, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Token::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: location,
        id_header,
        challenge: None,
    })
}

fn in_header(secrets: &[&str]) -> Token {
    provider(secrets, Some(&location(Some("X-Webhook-Token"), None)), None).expect("valid")
}

fn in_query(secrets: &[&str]) -> Token {
    provider(secrets, Some(&location(None, Some("token"))), None).expect("valid")
}

const BODY: &[u8] = br#"{"event":"ping"}"#;

#[test]
fn a_header_token_verifies_and_is_compared_exactly() {
    let p = in_header(&["tok-current", "tok-next"]);
    for token in ["tok-current", "tok-next"] {
        let meta = verify(&p, &[("x-webhook-token", token)], BODY, 1).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(BODY));
    }
    for token in ["tok-Current", "tok-curren", "tok-current-", "Bearer tok-current"] {
        let got = verify(&p, &[("x-webhook-token", token)], BODY, 1);
        assert_eq!(got, Err(VerifyError::TokenMismatch), "{token:?}");
    }
    let missing = Err(VerifyError::MissingToken("x-webhook-token"));
    assert_eq!(verify(&p, &[], BODY, 1), missing);
    assert_eq!(verify(&p, &[("x-webhook-token", "")], BODY, 1), missing, "empty");
    assert_eq!(
        verify(&p, &[("authorization", "tok-current")], BODY, 1),
        missing,
        "another header"
    );
}

#[test]
fn a_query_token_verifies_percent_decoded() {
    let p = in_query(&["tok/with+special chars", "plain"]);
    for target in [
        "/hook?token=plain",
        "/hook?a=1&token=plain&b=2",
        "/hook?token=tok%2Fwith%2Bspecial+chars",
        "/hook?tok%65n=plain",
        "/hook?token=plain&token=x",
    ] {
        verify_at(&p, target, &[], BODY, 1).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
    for target in ["/hook?token=plai", "/hook?token=tok/with+special+chars"] {
        let got = verify_at(&p, target, &[], BODY, 1);
        assert_eq!(got, Err(VerifyError::TokenMismatch), "{target}");
    }
    // The first occurrence is the one checked.
    let got = verify_at(&p, "/hook?token=x&token=plain", &[], BODY, 1);
    assert_eq!(got, Err(VerifyError::TokenMismatch));
    let missing = Err(VerifyError::MissingToken("query parameter token"));
    for target in [
        "/hook",
        "/hook?",
        "/hook?token=",
        "/hook?tokens=plain",
        "/hook?x=token",
    ] {
        assert_eq!(verify_at(&p, target, &[], BODY, 1), missing, "{target}");
    }
    let header_only = verify(&p, &[("token", "plain")], BODY, 1);
    assert_eq!(header_only, missing, "a header of that name is not the query");
}

#[test]
fn the_query_token_is_stripped_and_the_rest_kept_as_received() {
    let p = in_query(&["plain"]);
    let strip = |target: &str| stripped(&p, target, &[]).uri.to_string();
    assert_eq!(strip("/hook?token=plain"), "/hook");
    assert_eq!(strip("/hook?token=wrong"), "/hook", "verified or not");
    assert_eq!(strip("/hook?a=%20x&token=plain&b=2"), "/hook?a=%20x&b=2");
    assert_eq!(strip("/hook?token=1&a=1&tok%65n=2&token"), "/hook?a=1");
    assert_eq!(strip("/hook?a=1&&token=plain"), "/hook?a=1");
    assert_eq!(
        strip("http://gw.example/hook?token=plain&z=9"),
        "http://gw.example/hook?z=9",
        "an absolute target keeps its authority"
    );
    assert_eq!(
        strip("/hook?a=1&&tokens=2"),
        "/hook?a=1&&tokens=2",
        "no token: unchanged"
    );
    assert_eq!(strip("/hook"), "/hook");
    let head = stripped(&p, "/hook?token=plain", &[("token", "plain"), ("x-other", "1")]);
    assert_eq!(head.headers.len(), 2, "a query scheme keeps the headers");
}

#[test]
fn the_header_token_is_stripped_and_the_query_kept() {
    let p = in_header(&["plain"]);
    let head = stripped(
        &p,
        "/hook?token=plain",
        &[
            ("X-Webhook-Token", "wrong"),
            ("x-webhook-token", "plain"),
            ("x-other", "1"),
        ],
    );
    assert_eq!(
        head.uri.to_string(),
        "/hook?token=plain",
        "a header scheme keeps the query"
    );
    assert!(
        head.headers.get("x-webhook-token").is_none(),
        "every value goes, verified or not"
    );
    assert_eq!(head.headers.get("x-other").map(|v| v.as_bytes()), Some(&b"1"[..]));
}

#[test]
fn sign_puts_the_first_secret_where_the_source_expects_it() {
    let (method, uri) = (http::Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: BODY,
        event_id: "hg_1",
    };
    let now = crate::providers::test_support::at(1);
    let q = in_query(&["a b&c", "second"]);
    assert_eq!(
        q.sign_target("/hooks/x").expect("target"),
        "/hooks/x?token=a+b%26c"
    );
    assert!(q.sign(&req, now).expect("signs").is_empty());
    verify_at(&q, "/hooks/x?token=a+b%26c", &[], BODY, 1).expect("what sign_target builds verifies");

    let h = provider(
        &["tok-1"],
        Some(&location(Some("X-Webhook-Token"), None)),
        Some("X-Request-Id"),
    )
    .expect("valid");
    assert_eq!(h.sign_target("/hooks/x").expect("target"), "/hooks/x");
    let headers = h.sign(&req, now).expect("signs");
    let shown: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    assert_eq!(shown, [("x-webhook-token", "tok-1"), ("x-request-id", "hg_1")]);
}

#[test]
fn the_event_id_is_the_id_header_when_configured_and_present() {
    let p = provider(
        &["tok"],
        Some(&location(None, Some("token"))),
        Some("X-Request-Id"),
    )
    .expect("valid");
    let meta = verify_at(&p, "/hook?token=tok", &[("x-request-id", "abc-1")], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, "abc-1");
    let meta = verify_at(&p, "/hook?token=tok", &[], BODY, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(BODY));
}

#[test]
fn the_location_must_name_exactly_one_valid_place() {
    let err = |loc: Option<&TokenLocation>| provider(&["tok"], loc, None).expect_err("invalid").to_string();
    assert_eq!(
        err(None),
        "token: is required with provider = \"token\" ([sources.token] expected exactly one of \
         header = \"X-Webhook-Token\" or query = \"token\")"
    );
    assert_eq!(
        err(Some(&location(Some("X-T"), Some("t")))),
        "token: has both header and query (expected exactly one of header = \"X-Webhook-Token\" or query = \"token\")"
    );
    assert_eq!(
        err(Some(&location(None, None))),
        "token: has neither header nor query (expected exactly one of header = \"X-Webhook-Token\" or query = \"token\")"
    );
    assert_eq!(
        err(Some(&location(Some("X Token"), None))),
        "token.header: \"X Token\" is not a valid header name (expected e.g. \"X-Webhook-Token\")"
    );
    assert_eq!(
        err(Some(&location(None, Some("")))),
        "token.query: \"\" is not valid (expected a query parameter name such as \"token\")"
    );
}

#[test]
fn header_secrets_must_be_sendable_in_a_header_query_secrets_need_not() {
    let header = location(Some("X-Webhook-Token"), None);
    assert!(matches!(
        provider(&["ok", "new\nline"], Some(&header), None),
        Err(ProviderConfigError::InvalidSecret { index: 1, .. })
    ));
    provider(&["ok", " spaced "], Some(&location(None, Some("token"))), None)
        .expect("a query secret is percent-encoded");
}

#[test]
fn debug_names_the_place_but_no_secret() {
    assert_eq!(
        format!("{:?}", in_header(&["tok-secret"])),
        "Token { header: \"x-webhook-token\", secrets: [redacted; 1], id_header: None }"
    );
    assert_eq!(
        format!("{:?}", in_query(&["tok-secret", "other"])),
        "Token { query: \"token\", secrets: [redacted; 2], id_header: None }"
    );
}

mod header {
    use super::*;

    conformance_tests!(
        Scheme {
            kind: ProviderKind::Token,
            secrets: ["header-token-current", "header-token-next"],
            wrong: "header-token-wrong",
            public_url: None,
            hmac: None,
            token: Some(|| location(Some("X-Webhook-Token"), None)),
            sign: |key, _at| {
                let token = ["header-token-current", "header-token-next"][key];
                Signed::new(
                    &br#"{"event":"ping"}"#[..],
                    &[("X-Webhook-Token", token.to_owned())],
                )
            },
            signature_header: Some("x-webhook-token"),
            tamper: vec![],
            timestamps: None,
            own_sign: OwnSign::RoundTrip,
        },
        missing
    );
}

mod query {
    use super::*;

    conformance_tests!(Scheme {
        kind: ProviderKind::Token,
        secrets: ["query-token-current", "query-token-next"],
        wrong: "query-token-wrong",
        public_url: None,
        hmac: None,
        token: Some(|| location(None, Some("token"))),
        sign: |key, _at| {
            let token = ["query-token-current", "query-token-next"][key];
            Signed::new(&br#"{"event":"ping"}"#[..], &[]).to(format!("/hook?token={token}"))
        },
        signature_header: None,
        tamper: vec![],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    });
}
