use serde::Deserialize;

use super::*;
use crate::providers::conformance::{append_to_body, conformance_tests, OwnSign, Scheme, Signed, Timestamps};
use crate::providers::test_support::verify;
use crate::providers::ProviderKind;

#[derive(Deserialize)]
struct Fixture {
    secret: String,
    timestamp: u64,
    payload: String,
    stripe_signature: String,
    event_id: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/stripe.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], tolerance: Option<Duration>) -> Stripe {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Stripe::try_new(ProviderSettings {
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

/// The HMAC-SHA256 hex of `"{t}.{body}"` under `secret`, as a sender would compute it.
fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn check(p: &Stripe, header: &str, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    verify(p, &[("Stripe-Signature", header)], body, now)
}

#[test]
fn fixture_verifies_and_yields_the_event_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret], None);
    let meta = check(&p, &fx.stripe_signature, fx.payload.as_bytes(), fx.timestamp + 10).expect("valid");
    assert_eq!(meta.event_id, fx.event_id);
}

#[test]
fn fixture_signature_is_what_the_scheme_computes() {
    let fx = fixture();
    let ts = i64::try_from(fx.timestamp).expect("fits");
    let v1 = sign(&fx.secret, ts, fx.payload.as_bytes());
    assert!(fx.stripe_signature.contains(&format!("v1={v1}")));
}

#[test]
fn any_of_several_v1_signatures_matches() {
    let body = br#"{"id":"evt_1"}"#;
    let t = 1_700_000_000;
    let good = sign("whsec_a", t, body);
    let other = sign("whsec_b", t, body);
    let p = provider(&["whsec_a"], None);
    let header = format!("t={t},v1={other},v1={good},v0={other}");
    let meta = check(&p, &header, body, 1_700_000_000).expect("second v1 matches");
    assert_eq!(meta.event_id, "evt_1");
}

#[test]
fn v0_alone_is_not_enough() {
    let body = b"{}";
    let t = 1_700_000_000;
    let p = provider(&["whsec_a"], None);
    let header = format!("t={t},v0={}", sign("whsec_a", t, body));
    assert_eq!(
        check(&p, &header, body, 1_700_000_000),
        Err(VerifyError::MalformedSignature("stripe-signature"))
    );
}

#[test]
fn malformed_headers() {
    let p = provider(&["whsec_a"], None);
    let v1 = "a".repeat(64);
    let malformed = Err(VerifyError::MalformedSignature("stripe-signature"));
    for header in [
        format!("v1={v1}"),              // no t
        format!("t=1,t=2,v1={v1}"),      // two t
        "t=1".to_owned(),                // no v1
        "t=1,v1=zz".to_owned(),          // v1 not hex
        format!("t=1,v1={}", &v1[..62]), // v1 too short
        format!("t=1,v1={v1}00"),        // v1 too long
        format!("sha256={v1}"),          // another sender's format
        String::new(),                   // empty
    ] {
        assert_eq!(check(&p, &header, b"{}", 1), malformed, "{header}");
    }
    let got = check(&p, &format!("t=yesterday,v1={v1}"), b"{}", 1);
    assert_eq!(got, Err(VerifyError::MalformedTimestamp("stripe-signature")));
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let t = 1_700_000_000;
    let p = provider(&["whsec_a"], None);
    for body in [
        &b"not json"[..],
        br#"{"object":"event"}"#,
        br#"{"id":42}"#,
        br#"["evt_1"]"#,
    ] {
        let header = format!("t={t},v1={}", sign("whsec_a", t, body));
        let meta = check(&p, &header, body, 1_700_000_000).expect("valid signature");
        assert_eq!(meta.event_id, body_digest_id(body));
    }
}

const SECRETS: [&str; 2] = ["whsec_a", "whsec_new"];

conformance_tests!(
    Scheme {
        kind: ProviderKind::Stripe,
        secrets: SECRETS,
        wrong: "whsec_other",
        public_url: None,
        hmac: None,
        token: None,
        sign: |key, at| {
            let body = br#"{"id":"evt_1","object":"event"}"#;
            let t = i64::try_from(at).expect("fits");
            let header = format!("t={t},v1={}", sign(SECRETS[key], t, body));
            Signed::new(&body[..], &[("Stripe-Signature", header)])
        },
        signature_header: Some("stripe-signature"),
        tamper: vec![append_to_body, |req| {
            let header = req.header_mut("Stripe-Signature");
            *header = header.replacen("t=1700000000", "t=1700000001", 1);
        }],
        timestamps: Some(Timestamps {
            default: Some(Duration::from_secs(300)),
            overridable: true,
        }),
        own_sign: OwnSign::RoundTrip,
    },
    tamper,
    missing,
    window,
    future,
    override,
    signature_first,
);
