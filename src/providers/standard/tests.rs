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
