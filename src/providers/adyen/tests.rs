use serde::Deserialize;

use super::*;
use crate::providers::conformance::{conformance_tests, hmac_sha256, OwnSign, Scheme, Signed};
use crate::providers::test_support::verify;
use crate::providers::ProviderKind;
use crate::secret::Secret;

#[derive(Deserialize)]
struct Fixture {
    single_key: String,
    single: String,
    single_event_id: String,
    batch_key: String,
    batch: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/adyen.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

fn provider(keys: &[&str]) -> Result<Adyen, ProviderConfigError> {
    let secrets: Vec<Secret> = keys.iter().map(|s| Secret::new(*s)).collect();
    Adyen::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
}

#[test]
fn the_sdk_vectors_verify() {
    let fx = fixture();
    let p = provider(&[&fx.single_key]).expect("valid key");
    let meta = verify(&p, &[], fx.single.as_bytes(), NOW).expect("the single item verifies");
    assert_eq!(meta, EventMeta::new(fx.single_event_id));
    // Four items with backslashes, colons and slashes in merchantReference: nothing is escaped.
    let p = provider(&[&fx.batch_key]).expect("valid key");
    let meta = verify(&p, &[], fx.batch.as_bytes(), NOW).expect("every item verifies");
    assert_eq!(meta, EventMeta::new(body_digest_id(fx.batch.as_bytes())));
    // The key in lowercase hex is the same key.
    let p = provider(&[&fx.batch_key.to_lowercase()]).expect("valid key");
    verify(&p, &[], fx.batch.as_bytes(), NOW).expect("either case");
}

#[test]
fn every_item_must_verify() {
    let fx = fixture();
    let p = provider(&[&fx.batch_key]).expect("valid key");
    let mut batch: Value = serde_json::from_str(&fx.batch).expect("JSON");
    // The last item tampered: the batch is refused, though the first still verifies.
    batch["notificationItems"][3]["NotificationRequestItem"]["amount"]["value"] = 100_000.into();
    let body = batch.to_string();
    assert_eq!(
        verify(&p, &[], body.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
    // An unsigned item appended to a signed batch.
    let mut batch: Value = serde_json::from_str(&fx.batch).expect("JSON");
    let mut extra = batch["notificationItems"][0].clone();
    extra["NotificationRequestItem"]["additionalData"]
        .as_object_mut()
        .expect("an object")
        .remove("hmacSignature");
    batch["notificationItems"]
        .as_array_mut()
        .expect("a list")
        .push(extra);
    assert_eq!(
        verify(&p, &[], batch.to_string().as_bytes(), NOW),
        Err(VerifyError::MissingSignature(SIGNATURE))
    );
}

#[test]
fn a_wrong_key_an_odd_body_or_a_bad_signature_is_refused() {
    let fx = fixture();
    let wrong =
        provider(&["00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"]).expect("valid");
    assert_eq!(
        verify(&wrong, &[], fx.single.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["00112233", &fx.single_key]).expect("valid");
    verify(&rotated, &[], fx.single.as_bytes(), NOW).expect("the second key matches");

    let p = provider(&[&fx.single_key]).expect("valid key");
    for body in [
        "not json",
        "{}",
        r#"{"notificationItems":[]}"#,
        r#"{"notificationItems":[{"Other":{}}]}"#,
        r#"{"notificationItems":[{"NotificationRequestItem":{"success":true,"additionalData":{"hmacSignature":"coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="}}}]}"#,
    ] {
        assert_eq!(
            verify(&p, &[], body.as_bytes(), NOW),
            Err(VerifyError::MalformedBody),
            "{body}"
        );
    }
    let hex_sig = fx.single.replace(
        "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=",
        "728a829adfc86781370b33ef318f334e34152f985825488146",
    );
    assert_eq!(
        verify(&p, &[], hex_sig.as_bytes(), NOW),
        Err(VerifyError::MalformedSignature(SIGNATURE))
    );
    assert!(matches!(
        provider(&["not hex"]),
        Err(ProviderConfigError::InvalidSecret { index: 0, .. })
    ));
}

#[test]
fn the_signing_string_follows_the_sdk() {
    let item: serde_json::Map<String, Value> = serde_json::from_str(
        r#"{"pspReference":"P","merchantAccountCode":"M","merchantReference":"a:b\\c","amount":{"value":1130,"currency":"EUR"},"eventCode":"AUTHORISATION","success":"true"}"#,
    )
    .expect("JSON");
    assert_eq!(
        signing_string(&item).expect("signable"),
        "P::M:a:b\\c:1130:EUR:AUTHORISATION:true"
    );
}

/// HMAC keys the conformance cases sign with, as hex.
const KEYS: [&str; 2] = [
    "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
    "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174",
];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Adyen,
        secrets: KEYS,
        wrong: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, _at| {
            let signed = "PSP1::Merchant:order-1:1000:EUR:AUTHORISATION:true";
            let tag = hmac_sha256(&hex::decode(KEYS[key]).expect("hex"), &[signed.as_bytes()]);
            let body = format!(
                r#"{{"live":"false","notificationItems":[{{"NotificationRequestItem":{{"additionalData":{{"hmacSignature":"{}"}},"amount":{{"currency":"EUR","value":1000}},"eventCode":"AUTHORISATION","merchantAccountCode":"Merchant","merchantReference":"order-1","pspReference":"PSP1","success":"true"}}}}]}}"#,
                BASE64.encode(tag)
            );
            Signed::new(body, &[])
        },
        signature_header: None,
        tamper: vec![
            |req| {
                let body = String::from_utf8(req.body.clone()).expect("utf-8");
                req.body = body.replace("\"value\":1000", "\"value\":1001").into_bytes();
            },
            |req| {
                let body = String::from_utf8(req.body.clone()).expect("utf-8");
                req.body = body
                    .replace("\"success\":\"true\"", "\"success\":\"false\"")
                    .into_bytes();
            },
        ],
        timestamps: None,
        own_sign: OwnSign::Refuses(SignError::Unsignable(
            "adyen signs fields inside each notification item of the body"
        )),
    },
    tamper,
);
