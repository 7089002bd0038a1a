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
    rfc8032_test1_empty_message_signature: String,
    timestamp: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    body: String,
    signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/discord.json")).expect("valid fixture")
}

/// RFC 8032 section 7.1 TEST 2's public key: a second, unrelated valid key.
const OTHER_KEY: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const NOW: u64 = 1_607_637_138;

fn provider(keys: &[&str], tolerance: Option<Duration>) -> Discord {
    let secrets: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    Discord::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

/// Signs `timestamp + body` with the fixture's RFC 8032 secret key, as Discord would.
fn sign(timestamp: &str, body: &[u8]) -> String {
    use ed25519_dalek::{Signer, SigningKey};
    let mut secret = [0u8; 32];
    hex::decode_to_slice(fixture().rfc8032_test1_secret_key, &mut secret).expect("hex key");
    let key = SigningKey::from_bytes(&secret);
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    hex::encode(key.sign(&message).to_bytes())
}

fn check(p: &Discord, sig: &str, ts: &str, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    verify(
        p,
        &[("X-Signature-Ed25519", sig), ("X-Signature-Timestamp", ts)],
        body,
        now,
    )
}

#[test]
fn the_fixture_key_is_rfc8032_test_1() {
    let fx = fixture();
    assert_eq!(sign("", b""), fx.rfc8032_test1_empty_message_signature);
    for v in &fx.vectors {
        assert_eq!(sign(&fx.timestamp, v.body.as_bytes()), v.signature, "{}", v.name);
    }
}

#[test]
fn fixture_vectors_verify_with_their_interaction_ids() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    for v in &fx.vectors {
        let meta = check(&p, &v.signature, &fx.timestamp, v.body.as_bytes(), NOW).expect("valid");
        assert_eq!(meta.event_id, v.event_id, "{}", v.name);
        // Hex is accepted in either case.
        let upper = v.signature.to_uppercase();
        check(&p, &upper, &fx.timestamp, v.body.as_bytes(), NOW).expect("upper-case hex");
    }
}

#[test]
fn ping_is_answered_with_pong_after_verification() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    let ping = &fx.vectors[0];
    let meta = check(&p, &ping.signature, &fx.timestamp, ping.body.as_bytes(), NOW).expect("valid");
    let handshake = meta.handshake.expect("a PING is a handshake");
    assert_eq!(handshake.content_type, "application/json");
    assert_eq!(handshake.body, br#"{"type":1}"#);
    let command = &fx.vectors[1];
    let meta = check(
        &p,
        &command.signature,
        &fx.timestamp,
        command.body.as_bytes(),
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.handshake, None);
    // A forged PING gets no PONG.
    let forged = ping.body.replace("555", "554");
    assert_eq!(
        check(&p, &ping.signature, &fx.timestamp, forged.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tampered_body_or_timestamp_is_a_mismatch() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    let v = &fx.vectors[1];
    let mut body = v.body.clone().into_bytes();
    body.push(b' ');
    assert_eq!(
        check(&p, &v.signature, &fx.timestamp, &body, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        check(&p, &v.signature, "1607637139", v.body.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn missing_and_malformed_headers() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    let v = &fx.vectors[1];
    let body = v.body.as_bytes();
    assert_eq!(
        verify(&p, &[("X-Signature-Timestamp", &fx.timestamp)], body, NOW),
        Err(VerifyError::MissingSignature("x-signature-ed25519"))
    );
    assert_eq!(
        verify(&p, &[("X-Signature-Ed25519", &v.signature)], body, NOW),
        Err(VerifyError::MissingHeader("x-signature-timestamp"))
    );
    let b64 = BASE64_OF_SIGNATURE.to_owned();
    for bad in [
        &v.signature[..126],           // truncated
        &format!("{}00", v.signature), // too long
        &format!("0x{}", &v.signature[2..]),
        &b64,
        "",
    ] {
        assert_eq!(
            check(&p, bad, &fx.timestamp, body, NOW),
            Err(VerifyError::MalformedSignature("x-signature-ed25519")),
            "{bad}"
        );
    }
}

/// A base64 (not hex) signature: the wrong encoding.
const BASE64_OF_SIGNATURE: &str =
    "HFhhf7kih1ToEqpfT1fgDavux7l719O6YBjVCcM4/+OS7k3tBm2iJ/fL4p5zXzO76UqMm7y3T8igHj59/GQTAQ==";

#[test]
fn no_window_by_default() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    let v = &fx.vectors[1];
    check(
        &p,
        &v.signature,
        &fx.timestamp,
        v.body.as_bytes(),
        NOW + 365 * 86_400,
    )
    .expect("a year later");
    check(&p, &v.signature, &fx.timestamp, v.body.as_bytes(), 0).expect("before");
    // Without a tolerance the timestamp is signed bytes only, never parsed.
    let sig = sign("soon", v.body.as_bytes());
    check(&p, &sig, "soon", v.body.as_bytes(), NOW).expect("unparsed timestamp");
}

#[test]
fn a_configured_tolerance_is_two_sided_in_seconds() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], Some(Duration::from_secs(60)));
    let v = &fx.vectors[1];
    let body = v.body.as_bytes();
    check(&p, &v.signature, &fx.timestamp, body, NOW + 60).expect("60 s old");
    check(&p, &v.signature, &fx.timestamp, body, NOW - 60).expect("60 s ahead");
    assert_eq!(
        check(&p, &v.signature, &fx.timestamp, body, NOW + 61),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 61 })
    );
    assert_eq!(
        check(&p, &v.signature, &fx.timestamp, body, NOW - 61),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -61 })
    );
    // Milliseconds are far in the future, not a valid timestamp.
    let ms = format!("{}000", fx.timestamp);
    let sig = sign(&ms, body);
    assert!(matches!(
        check(&p, &sig, &ms, body, NOW),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    let sig = sign("soon", body);
    assert_eq!(
        check(&p, &sig, "soon", body, NOW),
        Err(VerifyError::MalformedTimestamp("x-signature-timestamp"))
    );
    // The signature is checked first.
    assert_eq!(
        check(&p, &v.signature, "1", body, NOW),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let fx = fixture();
    let p = provider(&[&fx.public_key], None);
    for body in [
        &br#"{"type":2}"#[..],
        br#"{"id":787053080478613556}"#,
        b"[1]",
        b"not json",
    ] {
        let sig = sign(&fx.timestamp, body);
        let meta = check(&p, &sig, &fx.timestamp, body, NOW).expect("valid");
        assert_eq!(meta.event_id, body_digest_id(body));
        assert_eq!(meta.handshake, None);
    }
}

#[test]
fn invalid_keys_are_refused_with_their_index() {
    let fx = fixture();
    let expected = "a 64-digit hex Ed25519 public key";
    // y = 2 has no x on edwards25519: not a point encoding.
    let not_on_curve = format!("02{}", "00".repeat(31));
    for bad in [
        "not hex",
        &fx.public_key[..62],
        &format!("{}00", fx.public_key),
        "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        &not_on_curve,
    ] {
        let secrets = [Secret::new(fx.public_key.as_str()), Secret::new(bad)];
        let err = Discord::try_new(ProviderSettings {
            secrets: &secrets,
            tolerance: None,
            public_url: None,
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        })
        .err();
        assert_eq!(
            err,
            Some(ProviderConfigError::InvalidSecret { index: 1, expected }),
            "{bad}"
        );
    }
}

/// RFC 8032 section 7.1 TEST 2's secret key, whose public key is [`OTHER_KEY`].
const OTHER_SECRET_KEY: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
/// RFC 8032 section 7.1 TEST 3's public key: a key the requests are never signed with.
const UNRELATED_KEY: &str = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025";

conformance_tests!(
    Scheme {
        kind: ProviderKind::Discord,
        secrets: [
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            OTHER_KEY,
        ],
        wrong: UNRELATED_KEY,
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, at| {
            use ed25519_dalek::{Signer, SigningKey};
            let secret_hex = [fixture().rfc8032_test1_secret_key, OTHER_SECRET_KEY.to_owned()];
            let mut secret = [0u8; 32];
            hex::decode_to_slice(&secret_hex[key], &mut secret).expect("hex key");
            let body = br#"{"type":2,"id":"787053080478613556"}"#;
            let timestamp = at.to_string();
            let message = [timestamp.as_bytes(), body].concat();
            let signature = hex::encode(SigningKey::from_bytes(&secret).sign(&message).to_bytes());
            Signed::new(
                &body[..],
                &[
                    ("X-Signature-Ed25519", signature),
                    ("X-Signature-Timestamp", timestamp),
                ],
            )
        },
        signature_header: Some("x-signature-ed25519"),
        tamper: vec![append_to_body, |req| {
            req.header_mut("X-Signature-Timestamp").push('0');
        }],
        timestamps: Some(Timestamps {
            default: None,
            overridable: true,
        }),
        own_sign: OwnSign::Refuses(SignError::Unsupported("discord")),
    },
    tamper,
    missing,
    window,
    future,
    override,
    signature_first,
);
