use serde::Deserialize;

use super::*;
use crate::providers::conformance::{append_to_body, conformance_tests, OwnSign, Scheme, Signed};
use crate::providers::test_support::{at, verify};
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    body: String,
    x_shopify_hmac_sha256: String,
    x_shopify_event_id: String,
    x_shopify_webhook_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/shopify.json")).expect("valid fixture")
}

fn provider(secrets: &[&str]) -> Shopify {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Shopify::try_new(ProviderSettings {
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

/// The base64 HMAC-SHA256 of `body`, as Shopify computes it.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

const NOW: u64 = 1_700_000_000;

#[test]
fn fixture_reproduces_with_both_id_headers() {
    let fx = fixture();
    assert_eq!(sign(&fx.secret, fx.body.as_bytes()), fx.x_shopify_hmac_sha256);
    let p = provider(&[&fx.secret]);
    let meta = verify(
        &p,
        &[
            ("X-Shopify-Hmac-Sha256", &fx.x_shopify_hmac_sha256),
            ("X-Shopify-Webhook-Id", &fx.x_shopify_webhook_id),
            ("X-Shopify-Event-Id", &fx.x_shopify_event_id),
        ],
        fx.body.as_bytes(),
        NOW,
    )
    .expect("valid");
    assert_eq!(meta, EventMeta::new(fx.x_shopify_event_id));
}

#[test]
fn event_id_falls_back_to_webhook_id_then_digest() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let sig = ("X-Shopify-Hmac-Sha256", fx.x_shopify_hmac_sha256.as_str());
    let body = fx.body.as_bytes();
    let meta = verify(
        &p,
        &[sig, ("X-Shopify-Webhook-Id", &fx.x_shopify_webhook_id)],
        body,
        NOW,
    );
    assert_eq!(meta.expect("valid").event_id, fx.x_shopify_webhook_id);
    let meta = verify(&p, &[sig, ("X-Shopify-Event-Id", "")], body, NOW).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(body));
    let meta = verify(&p, &[sig], body, NOW).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(body));
}

#[test]
fn wrong_encoding_is_malformed() {
    let fx = fixture();
    let p = provider(&[&fx.secret]);
    let raw = BASE64
        .decode(&fx.x_shopify_hmac_sha256)
        .expect("fixture is base64");
    let malformed = Err(VerifyError::MalformedSignature("x-shopify-hmac-sha256"));
    for sig in [
        hex::encode(&raw),                              // hex, as GitHub sends
        format!("sha256={}", fx.x_shopify_hmac_sha256), // a prefix
        BASE64.encode(&raw[..20]),                      // a SHA-1 length tag
        "!!!!".to_owned(),                              // not base64
        String::new(),                                  // empty
    ] {
        let got = verify(&p, &[("X-Shopify-Hmac-Sha256", &sig)], fx.body.as_bytes(), NOW);
        assert_eq!(got, malformed, "{sig}");
    }
}

#[test]
fn sign_then_verify() {
    let p = provider(&["first", "second"]);
    let body = br#"{"id":1}"#;
    let (method, uri) = (http::Method::POST, http::Uri::from_static("/hooks/shopify"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "evt-123",
    };
    let headers = p.sign(&req, at(NOW)).expect("symmetric scheme");
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    assert!(pairs.contains(&("x-shopify-hmac-sha256", sign("first", body).as_str())));
    let meta = verify(&p, &pairs, body, NOW).expect("verifies");
    assert_eq!(meta.event_id, "evt-123");
}

const SECRETS: [&str; 2] = ["shpss_first", "shpss_second"];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Shopify,
        secrets: SECRETS,
        wrong: "not the secret",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let body = br#"{"id":820982911946154508,"total_price":"403.00"}"#;
            Signed::new(&body[..], &[("X-Shopify-Hmac-Sha256", sign(SECRETS[key], body))])
        },
        signature_header: Some("x-shopify-hmac-sha256"),
        tamper: vec![append_to_body],
        timestamps: None,
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
);
