use std::time::Duration;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use ed25519_dalek::{Signer, SigningKey};
use serde::Deserialize;

use super::*;
use crate::providers::conformance::{append_to_body, conformance_tests, OwnSign, Scheme, Signed, Timestamps};
use crate::providers::test_support::verify;
use crate::providers::ProviderKind;
use crate::secret::Secret;

#[derive(Deserialize)]
struct Fixture {
    rfc8032_test1_secret_key: String,
    public_key: String,
    timestamp: String,
    payload: String,
    signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/telnyx.json")).expect("valid fixture")
}

/// RFC 8032 section 7.1 TEST 2: a second key pair.
const OTHER_SECRET_KEY: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const OTHER_PUBLIC_KEY: &str = "PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";
/// RFC 8032 section 7.1 TEST 3's public key: never signs here.
const UNRELATED_KEY: &str = "/FHNjmIYoaONpH7QAjDwWAgW7RO6MwOsXeuRFUiQgCU=";
const NOW: u64 = 1_700_000_000;

fn provider(keys: &[&str], tolerance: Option<Duration>) -> Result<Telnyx, ProviderConfigError> {
    let secrets: Vec<Secret> = keys.iter().map(|s| Secret::new(*s)).collect();
    Telnyx::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
}

fn sign(secret_hex: &str, timestamp: &str, body: &[u8]) -> String {
    let mut secret = [0u8; 32];
    hex::decode_to_slice(secret_hex, &mut secret).expect("hex key");
    let message = [timestamp.as_bytes(), b"|", body].concat();
    BASE64.encode(SigningKey::from_bytes(&secret).sign(&message).to_bytes())
}

#[test]
fn the_fixture_verifies_with_data_id_as_the_event_id() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None).expect("valid key");
    let headers = [
        ("telnyx-signature-ed25519", fx.signature.as_str()),
        ("telnyx-timestamp", fx.timestamp.as_str()),
    ];
    let meta = verify(&p, &headers, fx.payload.as_bytes(), NOW).expect("verifies");
    assert_eq!(meta, EventMeta::new(fx.event_id));
    // Independently computed signature equals ours.
    assert_eq!(
        sign(&fx.rfc8032_test1_secret_key, &fx.timestamp, fx.payload.as_bytes()),
        fx.signature
    );
    // Without the "|" separator, the signature is another one.
    let wrong = {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&fx.rfc8032_test1_secret_key, &mut secret).expect("hex");
        let message = [fx.timestamp.as_bytes(), fx.payload.as_bytes()].concat();
        BASE64.encode(SigningKey::from_bytes(&secret).sign(&message).to_bytes())
    };
    assert_eq!(
        verify(
            &p,
            &[
                ("telnyx-signature-ed25519", &wrong),
                ("telnyx-timestamp", &fx.timestamp)
            ],
            fx.payload.as_bytes(),
            NOW
        ),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn encodings_and_keys_are_checked() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None).expect("valid key");
    let raw = BASE64.decode(&fx.signature).expect("base64");
    for bad in [hex::encode(&raw), BASE64.encode(&raw[..63]), "@@".to_owned()] {
        assert_eq!(
            verify(
                &p,
                &[
                    ("telnyx-signature-ed25519", &bad),
                    ("telnyx-timestamp", &fx.timestamp)
                ],
                fx.payload.as_bytes(),
                NOW
            ),
            Err(VerifyError::MalformedSignature(SIGNATURE)),
            "{bad}"
        );
    }
    assert_eq!(
        verify(
            &p,
            &[("telnyx-signature-ed25519", &fx.signature)],
            fx.payload.as_bytes(),
            NOW
        ),
        Err(VerifyError::MissingHeader(TIMESTAMP))
    );
    // A hex key (Discord's form) or a short one is refused at load.
    for key in [
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "11qYAYKxCrfVS/7TyWQHOg==",
    ] {
        assert_eq!(
            provider(&[key], None).err(),
            Some(ProviderConfigError::InvalidSecret {
                index: 0,
                expected: SECRET_EXPECTED
            }),
            "{key}"
        );
    }
}

conformance_tests!(
    Scheme {
        kind: ProviderKind::Telnyx,
        secrets: ["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", OTHER_PUBLIC_KEY],
        wrong: UNRELATED_KEY,
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, at| {
            let secret = [fixture().rfc8032_test1_secret_key, OTHER_SECRET_KEY.to_owned()];
            let body = br#"{"data":{"event_type":"message.sent","id":"evt-1","payload":{}}}"#;
            let timestamp = at.to_string();
            let signature = sign(&secret[key], &timestamp, body);
            Signed::new(
                &body[..],
                &[
                    ("telnyx-signature-ed25519", signature),
                    ("telnyx-timestamp", timestamp),
                ],
            )
        },
        signature_header: Some(SIGNATURE),
        tamper: vec![append_to_body, |req| {
            req.header_mut("telnyx-timestamp").push('0');
        }],
        timestamps: Some(Timestamps {
            default: Some(Duration::from_secs(300)),
            overridable: true,
        }),
        own_sign: OwnSign::Refuses(SignError::Unsupported("telnyx")),
    },
    tamper,
    missing,
    window,
    future,
    override,
    signature_first,
);
