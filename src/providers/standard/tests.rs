use serde::Deserialize;

use super::*;
use crate::providers::test_support::verify;

#[derive(Deserialize)]
struct Fixtures {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    secret: String,
    msg_id: String,
    timestamp: i64,
    payload: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let fx: Fixtures = serde_json::from_str(include_str!("../../../tests/fixtures/standard_webhooks.json"))
        .expect("valid fixture");
    assert!(!fx.vectors.is_empty());
    fx.vectors
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const T: i64 = 1_700_000_000;
const NOW: u64 = 1_700_000_000;

fn provider(secrets: &[&str], headers: Headers, tolerance: Option<Duration>) -> StandardWebhooks {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    StandardWebhooks::try_new(
        ProviderSettings {
            secrets: &secrets,
            tolerance,
            public_url: None,
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        },
        headers,
    )
    .expect("valid settings")
}

fn signer(secret: &str) -> StandardSigner {
    StandardSigner::try_new(&Secret::new(secret)).expect("valid secret")
}

fn check(
    p: &StandardWebhooks,
    id: &str,
    t: i64,
    sig: &str,
    body: &[u8],
    now: u64,
) -> Result<EventMeta, VerifyError> {
    let t = t.to_string();
    verify(
        p,
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &t),
            ("webhook-signature", sig),
        ],
        body,
        now,
    )
}

#[test]
fn published_vectors_sign_exactly() {
    for v in vectors() {
        assert_eq!(
            signer(&v.secret).sign(&v.msg_id, v.timestamp, v.payload.as_bytes()),
            v.signature
        );
        let bare = v.secret.strip_prefix("whsec_").expect("prefixed");
        assert_eq!(
            signer(bare).sign(&v.msg_id, v.timestamp, v.payload.as_bytes()),
            v.signature,
            "no prefix"
        );
    }
}

#[test]
fn published_vectors_verify_with_both_header_sets() {
    for v in vectors() {
        let now = u64::try_from(v.timestamp).expect("positive");
        let p = provider(&[&v.secret], Headers::STANDARD, None);
        let meta = check(
            &p,
            &v.msg_id,
            v.timestamp,
            &v.signature,
            v.payload.as_bytes(),
            now,
        )
        .expect("valid");
        assert_eq!(meta.event_id, v.msg_id);

        let p = provider(&[&v.secret], Headers::SVIX, None);
        let t = v.timestamp.to_string();
        let headers = [
            ("svix-id", &*v.msg_id),
            ("svix-timestamp", &t),
            ("svix-signature", &v.signature),
        ];
        let meta = verify(&p, &headers, v.payload.as_bytes(), now).expect("valid with svix headers");
        assert_eq!(meta.event_id, v.msg_id);
    }
}

#[test]
fn tampered_body_id_or_timestamp_is_a_mismatch() {
    let p = provider(&[SECRET], Headers::STANDARD, None);
    let sig = signer(SECRET).sign("msg_1", T, b"{}");
    check(&p, "msg_1", T, &sig, b"{}", NOW).expect("valid");
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{ }", NOW),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        check(&p, "msg_2", T, &sig, b"{}", NOW),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        check(&p, "msg_1", T + 1, &sig, b"{}", NOW),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_secret_is_a_mismatch_and_rotated_secret_matches() {
    let sig = signer(SECRET).sign("msg_1", T, b"{}");
    let p = provider(&[OTHER_SECRET], Headers::STANDARD, None);
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW),
        Err(VerifyError::SignatureMismatch)
    );
    let p = provider(&[OTHER_SECRET, SECRET], Headers::STANDARD, None);
    check(&p, "msg_1", T, &sig, b"{}", NOW).expect("second secret matches");
}

#[test]
fn any_v1_entry_of_the_list_matches() {
    let p = provider(&[SECRET], Headers::STANDARD, None);
    let good = signer(SECRET).sign("msg_1", T, b"{}");
    let other = signer(OTHER_SECRET).sign("msg_1", T, b"{}");
    let v1a = good.replacen("v1,", "v1a,", 1);
    let list = format!("{other} v1,not-base64 {v1a} {good} v2,{}", &good[3..]);
    check(&p, "msg_1", T, &list, b"{}", NOW).expect("the valid entry matches");
}

#[test]
fn lists_without_a_usable_v1_entry_are_a_mismatch_like_the_reference_libraries() {
    let p = provider(&[SECRET], Headers::STANDARD, None);
    let good = signer(SECRET).sign("msg_1", T, b"{}");
    let b64 = &good[3..];
    for list in [
        format!("v1a,{b64}"),        // another version
        format!("v2,{b64}"),         // another version
        b64.to_owned(),              // no version
        "BAD_SIG_NATURE".to_owned(), // svix-webhooks' test value
        "v1,dawfeoifkpqwoekfpqoekf".to_owned(),
        format!("v1,{}", &b64[..40]),                // truncated
        format!("v1,{b64}AAAA"),                     // too long
        format!("v1,{}", b64.trim_end_matches('=')), // unpadded
    ] {
        assert_eq!(
            check(&p, "msg_1", T, &list, b"{}", NOW),
            Err(VerifyError::SignatureMismatch),
            "{list}"
        );
    }
}

#[test]
fn missing_and_malformed_headers() {
    let p = provider(&[SECRET], Headers::STANDARD, None);
    let sig = signer(SECRET).sign("msg_1", T, b"{}");
    let t = T.to_string();
    let got = verify(
        &p,
        &[("webhook-id", "msg_1"), ("webhook-timestamp", &t)],
        b"{}",
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingSignature("webhook-signature")));
    let got = verify(
        &p,
        &[("webhook-timestamp", &t), ("webhook-signature", &sig)],
        b"{}",
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingHeader("webhook-id")));
    let got = verify(
        &p,
        &[("webhook-id", "msg_1"), ("webhook-signature", &sig)],
        b"{}",
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingHeader("webhook-timestamp")));
    for bad in ["", "1700000000.5", "soon", "0x65"] {
        let got = verify(
            &p,
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", bad),
                ("webhook-signature", &sig),
            ],
            b"{}",
            NOW,
        );
        assert_eq!(
            got,
            Err(VerifyError::MalformedTimestamp("webhook-timestamp")),
            "{bad}"
        );
    }
    // Svix headers are not accepted by the standard provider, and vice versa.
    let got = verify(
        &p,
        &[
            ("svix-id", "msg_1"),
            ("svix-timestamp", &t),
            ("svix-signature", &sig),
        ],
        b"{}",
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingSignature("webhook-signature")));
    let svix = provider(&[SECRET], Headers::SVIX, None);
    assert_eq!(
        check(&svix, "msg_1", T, &sig, b"{}", NOW),
        Err(VerifyError::MissingSignature("svix-signature"))
    );
}

#[test]
fn timestamp_window_is_two_sided() {
    let p = provider(&[SECRET], Headers::STANDARD, None);
    let sig = signer(SECRET).sign("msg_1", T, b"{}");
    check(&p, "msg_1", T, &sig, b"{}", NOW + 300).expect("5 minutes old");
    check(&p, "msg_1", T, &sig, b"{}", NOW - 300).expect("5 minutes ahead");
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    // The signature is checked first.
    let forged = signer(OTHER_SECRET).sign("msg_1", T, b"{}");
    assert_eq!(
        check(&p, "msg_1", T, &forged, b"{}", NOW + 10_000),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tolerance_is_overridable() {
    let p = provider(&[SECRET], Headers::SVIX, Some(Duration::from_secs(60)));
    let sig = signer(SECRET).sign("msg_1", T, b"{}");
    let t = T.to_string();
    let headers = [
        ("svix-id", "msg_1"),
        ("svix-timestamp", &*t),
        ("svix-signature", &*sig),
    ];
    verify(&p, &headers, b"{}", NOW + 60).expect("inside");
    assert_eq!(
        verify(&p, &headers, b"{}", NOW + 61),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 61 })
    );
}

#[test]
fn invalid_secrets_are_refused_with_their_index() {
    let expected = "\"whsec_\" followed by base64";
    for bad in ["whsec_not base64!", "whsec_", "whsec_AAA", "plain text secret"] {
        let secrets = [Secret::new(SECRET), Secret::new(bad)];
        let settings = ProviderSettings {
            secrets: &secrets,
            tolerance: None,
            public_url: None,
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        };
        let err = StandardWebhooks::try_new(settings, Headers::STANDARD).err();
        assert_eq!(
            err,
            Some(ProviderConfigError::InvalidSecret { index: 1, expected }),
            "{bad}"
        );
        assert!(StandardSigner::try_new(&Secret::new(bad)).is_err());
    }
    let err = StandardSigner::try_new(&Secret::new(vec![0xff, 0xfe])).err();
    assert_eq!(
        err,
        Some(ProviderConfigError::InvalidSecret { index: 0, expected })
    );
    let err = StandardSigner::try_new(&Secret::new("")).err();
    assert_eq!(err, Some(ProviderConfigError::EmptySecret { index: 0 }));
    let message = ProviderConfigError::InvalidSecret { index: 1, expected }.to_string();
    assert_eq!(message, "secret #1 is invalid: \"whsec_\" followed by base64");
}

#[test]
fn signer_is_clone_send_sync_and_redacted() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<StandardSigner>();
    let s = signer(SECRET);
    assert_eq!(format!("{:?}", s.clone()), "StandardSigner { key: [redacted] }");
}

#[test]
fn provider_name_and_debug() {
    let p = provider(&[SECRET, OTHER_SECRET], Headers::SVIX, None);
    assert_eq!(p.name(), "svix");
    let shown = format!("{p:?}");
    assert!(shown.contains("secrets: [redacted; 2]"), "{shown}");
    assert!(!shown.contains("MfKQ9r8G"), "{shown}");
    assert_eq!(
        provider(&[SECRET], Headers::STANDARD, None).name(),
        "standard_webhooks"
    );
}

// Asymmetric (`v1a`, `whpk_`) signatures.

#[derive(Deserialize)]
struct AsymmetricFixtures {
    asymmetric_vectors: Vec<AsymmetricVector>,
}

#[derive(Deserialize)]
struct AsymmetricVector {
    public_key: String,
    msg_id: String,
    timestamp: i64,
    payload: String,
    signature: String,
}

fn asymmetric_vector() -> AsymmetricVector {
    let fx: AsymmetricFixtures =
        serde_json::from_str(include_str!("../../../tests/fixtures/standard_webhooks.json"))
            .expect("valid fixture");
    fx.asymmetric_vectors.into_iter().next().expect("one vector")
}

/// RFC 8032 section 7.1 TEST 1's secret key, the fixture's signing key.
const RFC8032_TEST1_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// RFC 8032 section 7.1 TEST 2's public key, as a `whpk_` secret: another valid key.
const OTHER_PUBLIC_KEY: &str = "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";

/// `v1a,<base64 Ed25519 signature>` of `"{id}.{t}.{body}"` under the RFC 8032 TEST 1 key.
fn sign_v1a(id: &str, t: i64, body: &[u8]) -> String {
    use ed25519_dalek::{Signer, SigningKey};
    let mut secret = [0u8; 32];
    hex::decode_to_slice(RFC8032_TEST1_SECRET, &mut secret).expect("hex key");
    let key = SigningKey::from_bytes(&secret);
    let signature = key.sign(&signed_content(id, t, body));
    format!("v1a,{}", BASE64.encode(signature.to_bytes()))
}

#[test]
fn asymmetric_vector_is_what_the_rfc8032_key_signs() {
    let v = asymmetric_vector();
    assert_eq!(
        sign_v1a(&v.msg_id, v.timestamp, v.payload.as_bytes()),
        v.signature
    );
}

#[test]
fn asymmetric_vector_verifies_with_both_header_sets() {
    let v = asymmetric_vector();
    let now = u64::try_from(v.timestamp).expect("positive");
    let p = provider(&[&v.public_key], Headers::STANDARD, None);
    let meta = check(
        &p,
        &v.msg_id,
        v.timestamp,
        &v.signature,
        v.payload.as_bytes(),
        now,
    )
    .expect("valid");
    assert_eq!(meta.event_id, v.msg_id);
    let p = provider(&[&v.public_key], Headers::SVIX, None);
    let t = v.timestamp.to_string();
    let headers = [
        ("svix-id", &*v.msg_id),
        ("svix-timestamp", &t),
        ("svix-signature", &v.signature),
    ];
    verify(&p, &headers, v.payload.as_bytes(), now).expect("valid with svix headers");
}

#[test]
fn asymmetric_tampering_wrong_key_and_rotation() {
    let v = asymmetric_vector();
    let sig = sign_v1a("msg_1", T, b"{}");
    let p = provider(&[&v.public_key], Headers::STANDARD, None);
    check(&p, "msg_1", T, &sig, b"{}", NOW).expect("valid");
    for (id, t, body) in [
        ("msg_1", T, &b"{ }"[..]),
        ("msg_2", T, b"{}"),
        ("msg_1", T + 1, b"{}"),
    ] {
        assert_eq!(
            check(&p, id, t, &sig, body, NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }
    let p = provider(&[OTHER_PUBLIC_KEY], Headers::STANDARD, None);
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW),
        Err(VerifyError::SignatureMismatch)
    );
    let p = provider(&[OTHER_PUBLIC_KEY, &v.public_key], Headers::STANDARD, None);
    check(&p, "msg_1", T, &sig, b"{}", NOW).expect("second key matches");
}

#[test]
fn versions_are_tied_to_key_kinds_and_lists_may_mix_them() {
    let v = asymmetric_vector();
    let v1 = signer(SECRET).sign("msg_1", T, b"{}");
    let v1a = sign_v1a("msg_1", T, b"{}");
    // A v1a entry never matches an HMAC key, a v1 entry never matches a public key, and the base64 of
    // one version under the other's name is skipped.
    let public_only = provider(&[&v.public_key], Headers::STANDARD, None);
    let hmac_only = provider(&[SECRET], Headers::STANDARD, None);
    for (p, list) in [
        (&public_only, v1.clone()),
        (&public_only, v1a.replacen("v1a,", "v1,", 1)),
        (&hmac_only, v1a.clone()),
        (&hmac_only, v1.replacen("v1,", "v1a,", 1)),
    ] {
        assert_eq!(
            check(p, "msg_1", T, &list, b"{}", NOW),
            Err(VerifyError::SignatureMismatch),
            "{list}"
        );
    }
    // One list with both, one source with both kinds of secret: any match passes.
    let list = format!("{v1} {v1a}");
    check(&public_only, "msg_1", T, &list, b"{}", NOW).expect("v1a entry matches");
    check(&hmac_only, "msg_1", T, &list, b"{}", NOW).expect("v1 entry matches");
    let both = provider(&[OTHER_SECRET, &v.public_key], Headers::STANDARD, None);
    check(&both, "msg_1", T, &v1a, b"{}", NOW).expect("public key matches");
    let both = provider(&[&v.public_key, SECRET], Headers::STANDARD, None);
    check(&both, "msg_1", T, &v1, b"{}", NOW).expect("HMAC key matches");
}

#[test]
fn unusable_v1a_entries_are_a_mismatch() {
    let v = asymmetric_vector();
    let p = provider(&[&v.public_key], Headers::STANDARD, None);
    let good = sign_v1a("msg_1", T, b"{}");
    let b64 = &good[4..];
    for list in [
        b64.to_owned(),                                                      // no version
        format!("v1a,{}", &b64[..80]),                                       // truncated
        format!("v1a,{b64}AAAA"),                                            // too long
        format!("v1a,{}", b64.trim_end_matches('=')),                        // unpadded
        format!("v1a,{}", hex::encode(BASE64.decode(b64).expect("base64"))), // hex
        format!("v1b,{b64}"),                                                // another version
    ] {
        assert_eq!(
            check(&p, "msg_1", T, &list, b"{}", NOW),
            Err(VerifyError::SignatureMismatch),
            "{list}"
        );
    }
}

#[test]
fn asymmetric_timestamp_window_is_two_sided_and_checked_after_the_signature() {
    let v = asymmetric_vector();
    let p = provider(&[&v.public_key], Headers::STANDARD, None);
    let sig = sign_v1a("msg_1", T, b"{}");
    check(&p, "msg_1", T, &sig, b"{}", NOW + 300).expect("5 minutes old");
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        check(&p, "msg_1", T, &sig, b"{}", NOW - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    let forged = sign_v1a("msg_1", T, b"{ }");
    assert_eq!(
        check(&p, "msg_1", T, &forged, b"{}", NOW + 10_000),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn invalid_public_keys_are_refused_with_their_index() {
    let expected = "\"whpk_\" followed by the base64 of a 32-byte Ed25519 public key";
    // y = 2 has no x on edwards25519: 32 bytes that are not a point encoding.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let not_a_point = format!("whpk_{}", BASE64.encode(not_a_point));
    let short = format!("whpk_{}", BASE64.encode([7u8; 31]));
    let long = format!("whpk_{}", BASE64.encode([7u8; 33]));
    let hex_key = "whpk_d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    for bad in ["whpk_", "whpk_not base64!", &short, &long, &not_a_point, hex_key] {
        let secrets = [Secret::new(SECRET), Secret::new(bad)];
        let settings = ProviderSettings {
            secrets: &secrets,
            tolerance: None,
            public_url: None,
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        };
        let err = StandardWebhooks::try_new(settings, Headers::STANDARD).err();
        assert_eq!(
            err,
            Some(ProviderConfigError::InvalidSecret { index: 1, expected }),
            "{bad}"
        );
    }
}

#[test]
fn the_forwarders_signer_refuses_public_keys() {
    let v = asymmetric_vector();
    let err = StandardSigner::try_new(&Secret::new(v.public_key.as_str())).err();
    assert_eq!(
        err,
        Some(ProviderConfigError::InvalidSecret {
            index: 0,
            expected: "\"whsec_\" followed by base64"
        })
    );
}

#[test]
fn sign_uses_the_first_secret_and_round_trips() {
    use http::{Method, Uri};
    let v = asymmetric_vector();
    let (method, uri) = (Method::POST, Uri::from_static("/hook"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body: br#"{"a":1}"#,
        event_id: "msg_signed",
    };
    for headers in [Headers::STANDARD, Headers::SVIX] {
        let p = provider(&[SECRET, &v.public_key], headers, None);
        let signed = p
            .sign(&req, crate::providers::test_support::at(NOW))
            .expect("signs");
        let pairs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().expect("ascii")))
            .collect();
        assert_eq!(pairs.len(), 3);
        assert!(pairs.contains(&(headers.id, "msg_signed")));
        assert!(pairs.contains(&(headers.timestamp, "1700000000")));
        let meta = verify(&p, &pairs, req.body, NOW).expect("verifies");
        assert_eq!(meta.event_id, "msg_signed");

        let p = provider(&[&v.public_key, SECRET], headers, None);
        assert_eq!(
            p.sign(&req, crate::providers::test_support::at(NOW)),
            Err(SignError::Unsupported(p.name()))
        );
    }
}
