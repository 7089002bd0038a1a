use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    signature_key: String,
    notification_url: String,
    body: String,
    signature: String,
    event_id: Option<String>,
}

fn fixture() -> Vec<Vector> {
    let fx: Fixture =
        serde_json::from_str(include_str!("../../../tests/fixtures/square.json")).expect("valid fixture");
    fx.vectors
}

fn provider(secrets: &[&str], url: &str) -> Square {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Square::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: Some(url),
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

fn check(p: &Square, sig: &str, body: &[u8]) -> Result<EventMeta, VerifyError> {
    verify(p, &[("x-square-hmacsha256-signature", sig)], body, NOW)
}

const NOW: u64 = 1_700_000_000;
const URL: &str = "https://example.com/hooks/square";

#[test]
fn published_sdk_vectors_reproduce() {
    for v in fixture() {
        let p = provider(&[&v.signature_key], &v.notification_url);
        let meta = check(&p, &v.signature, v.body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let expected = v.event_id.unwrap_or_else(|| body_digest_id(v.body.as_bytes()));
        assert_eq!(meta, EventMeta::new(expected), "{}", v.name);
    }
}

#[test]
fn other_notification_url_is_a_mismatch() {
    // As in the SDK's "fails on notification url mismatch" test.
    let v = &fixture()[0];
    let p = provider(
        &[&v.signature_key],
        "https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9",
    );
    assert_eq!(
        check(&p, &v.signature, v.body.as_bytes()),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tampered_or_reformatted_body_is_a_mismatch() {
    let v = &fixture()[0];
    let p = provider(&[&v.signature_key], &v.notification_url);
    let tampered = v.body.replace("2022-07-13", "2022-06-13");
    assert_eq!(
        check(&p, &v.signature, tampered.as_bytes()),
        Err(VerifyError::SignatureMismatch)
    );
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&v.body).expect("json"))
            .expect("serializes");
    assert_eq!(
        check(&p, &v.signature, pretty.as_bytes()),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_key_is_a_mismatch_and_a_rotated_key_matches() {
    let v = &fixture()[0];
    let body = v.body.as_bytes();
    let wrong = provider(&["MCmhFRxGX82xMwg5FsaoQA"], &v.notification_url);
    assert_eq!(
        check(&wrong, &v.signature, body),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["MCmhFRxGX82xMwg5FsaoQA", &v.signature_key], &v.notification_url);
    check(&rotated, &v.signature, body).expect("second key matches");
}

#[test]
fn missing_header() {
    let p = provider(&["k"], URL);
    assert_eq!(
        verify(&p, &[("x-square-signature", "abc=")], b"{}", NOW),
        Err(VerifyError::MissingSignature("x-square-hmacsha256-signature"))
    );
}

#[test]
fn wrong_encoding_is_malformed() {
    let v = &fixture()[0];
    let p = provider(&[&v.signature_key], &v.notification_url);
    let raw = BASE64.decode(&v.signature).expect("fixture is base64");
    let malformed = Err(VerifyError::MalformedSignature("x-square-hmacsha256-signature"));
    for sig in [
        hex::encode(&raw),
        // The SDK test's "invalid signature header": a 20-byte (HMAC-SHA1 sized) value.
        "1z2n3DEJJiUPKcPzQo1ftvbxGdw=".to_owned(),
        format!("v1,{}", v.signature),
        "%%%".to_owned(),
        String::new(),
    ] {
        assert_eq!(check(&p, &sig, v.body.as_bytes()), malformed, "{sig}");
    }
}

#[test]
fn public_url_is_required() {
    let secrets = [Secret::new("k")];
    let err = Square::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect_err("no public_url");
    assert_eq!(
        err.to_string(),
        "public_url: is required with provider = \"square\" (expected the URL as the sender signs it, \
         e.g. \"https://example.com/hooks/square\")"
    );
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let p = provider(&["k"], URL);
    let headers = p
        .sign(
            &SignRequest {
                method: &http::Method::POST,
                uri: &http::Uri::from_static("/hooks/square"),
                body: b"[]",
                event_id: "x",
            },
            at(NOW),
        )
        .expect("signs");
    let sig = headers[0].1.to_str().expect("ascii");
    assert_eq!(
        check(&p, sig, b"[]").expect("valid").event_id,
        body_digest_id(b"[]")
    );
}

#[test]
fn sign_then_verify() {
    let v = &fixture()[0];
    let p = provider(&[&v.signature_key, "older"], &v.notification_url);
    let (method, uri) = (http::Method::POST, http::Uri::from_static("/hooks/square"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: v.body.as_bytes(),
        event_id: "ignored: the id is in the body",
    };
    let headers = p.sign(&req, at(NOW)).expect("symmetric scheme");
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), "x-square-hmacsha256-signature");
    assert_eq!(headers[0].1.to_str().expect("ascii"), v.signature);
    let meta = check(&p, &v.signature, v.body.as_bytes()).expect("verifies");
    assert_eq!(Some(meta.event_id), v.event_id.clone());
}

#[test]
fn debug_is_redacted() {
    assert_eq!(
        format!("{:?}", provider(&["top-secret"], URL)),
        "Square { secrets: [redacted; 1], notification_url: \"https://example.com/hooks/square\" }"
    );
}
