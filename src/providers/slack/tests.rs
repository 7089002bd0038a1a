use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    signing_secret: String,
    timestamp: u64,
    body: String,
    x_slack_signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/slack.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], tolerance: Option<Duration>) -> Slack {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Slack::try_new(ProviderSettings {
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

/// `v0=` and the hex HMAC-SHA256 of `"v0:{t}:{body}"`, as Slack computes it.
fn sign(secret: &str, t: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{t}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn check(p: &Slack, sig: &str, t: &str, body: &[u8], now: u64) -> Result<EventMeta, VerifyError> {
    verify(
        p,
        &[("X-Slack-Signature", sig), ("X-Slack-Request-Timestamp", t)],
        body,
        now,
    )
}

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "slack-signing-secret";

#[test]
fn published_example_reproduces() {
    let fx = fixture();
    let p = provider(&[&fx.signing_secret], None);
    let t = fx.timestamp.to_string();
    assert_eq!(
        sign(&fx.signing_secret, &t, fx.body.as_bytes()),
        fx.x_slack_signature
    );
    let meta = check(
        &p,
        &fx.x_slack_signature,
        &t,
        fx.body.as_bytes(),
        fx.timestamp + 60,
    )
    .expect("Slack's example verifies");
    // A slash command is a form body: no event_id, so the body digest.
    assert_eq!(meta, EventMeta::new(body_digest_id(fx.body.as_bytes())));
}

#[test]
fn tampered_body_is_a_mismatch() {
    let fx = fixture();
    let p = provider(&[&fx.signing_secret], None);
    let body = fx.body.replace("roadrunner", "coyote");
    let t = fx.timestamp.to_string();
    assert_eq!(
        check(&p, &fx.x_slack_signature, &t, body.as_bytes(), fx.timestamp),
        Err(VerifyError::SignatureMismatch)
    );
    // The timestamp is signed too.
    let t = (fx.timestamp + 1).to_string();
    assert_eq!(
        check(&p, &fx.x_slack_signature, &t, fx.body.as_bytes(), fx.timestamp),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_secret_is_a_mismatch_and_a_rotated_secret_matches() {
    let fx = fixture();
    let t = fx.timestamp.to_string();
    let body = fx.body.as_bytes();
    let wrong = provider(&["another-secret"], None);
    assert_eq!(
        check(&wrong, &fx.x_slack_signature, &t, body, fx.timestamp),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["new-secret", &fx.signing_secret], None);
    check(&rotated, &fx.x_slack_signature, &t, body, fx.timestamp).expect("second secret matches");
}

#[test]
fn missing_headers() {
    let p = provider(&[SECRET], None);
    assert_eq!(
        verify(&p, &[("X-Slack-Request-Timestamp", "1")], b"{}", NOW),
        Err(VerifyError::MissingSignature("x-slack-signature"))
    );
    let sig = sign(SECRET, "1", b"{}");
    assert_eq!(
        verify(&p, &[("X-Slack-Signature", &sig)], b"{}", NOW),
        Err(VerifyError::MissingHeader("x-slack-request-timestamp"))
    );
}

#[test]
fn malformed_signatures_and_timestamps() {
    let p = provider(&[SECRET], None);
    let t = NOW.to_string();
    let good = sign(SECRET, &t, b"{}");
    let hex_digits = &good[3..];
    let malformed = Err(VerifyError::MalformedSignature("x-slack-signature"));
    for sig in [
        hex_digits.to_owned(),               // no prefix
        format!("v1={hex_digits}"),          // unknown version
        format!("v0:{hex_digits}"),          // wrong separator
        format!("sha256={hex_digits}"),      // another sender's prefix
        format!("v0={}", &hex_digits[..62]), // too short
        format!("v0={hex_digits}00"),        // too long
        "v0=zz".to_owned(),                  // not hex
        String::new(),                       // empty
    ] {
        assert_eq!(check(&p, &sig, &t, b"{}", NOW), malformed, "{sig}");
    }
    for t in ["yesterday", "", "1.5"] {
        assert_eq!(
            check(&p, &good, t, b"{}", NOW),
            Err(VerifyError::MalformedTimestamp("x-slack-request-timestamp")),
            "{t}"
        );
    }
}

#[test]
fn uppercase_hex_is_accepted() {
    let p = provider(&[SECRET], None);
    let t = NOW.to_string();
    let sig = sign(SECRET, &t, b"{}");
    let upper = format!("v0={}", sig[3..].to_ascii_uppercase());
    check(&p, &upper, &t, b"{}", NOW).expect("hex in either case");
}

#[test]
fn window_is_two_sided_and_checked_after_the_signature() {
    let p = provider(&[SECRET], None);
    let body = br#"{"event_id":"Ev1"}"#;
    let t = NOW.to_string();
    let sig = sign(SECRET, &t, body);
    check(&p, &sig, &t, body, NOW + 300).expect("300 s old is inside");
    assert_eq!(
        check(&p, &sig, &t, body, NOW + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    check(&p, &sig, &t, body, NOW - 300).expect("300 s ahead is inside");
    assert_eq!(
        check(&p, &sig, &t, body, NOW - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    // A timestamp in milliseconds is far in the future: rejected, not silently accepted.
    let ms = (NOW * 1000).to_string();
    let sig_ms = sign(SECRET, &ms, body);
    assert!(matches!(
        check(&p, &sig_ms, &ms, body, NOW),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    // A stale request with a forged signature reports the signature.
    let forged = sign("forger", &t, body);
    assert_eq!(
        check(&p, &forged, &t, body, NOW + 10_000),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tolerance_is_overridable() {
    let p = provider(&[SECRET], Some(Duration::from_secs(10)));
    let t = NOW.to_string();
    let sig = sign(SECRET, &t, b"{}");
    check(&p, &sig, &t, b"{}", NOW + 10).expect("inside");
    assert_eq!(
        check(&p, &sig, &t, b"{}", NOW + 11),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 11 })
    );
}

#[test]
fn event_id_comes_from_the_events_api_body() {
    let p = provider(&[SECRET], None);
    let t = NOW.to_string();
    let body = br#"{"token":"x","team_id":"T1","type":"event_callback","event":{"type":"app_mention"},"event_id":"Ev08MFMKH6","event_time":1234567890}"#;
    let meta = check(&p, &sign(SECRET, &t, body), &t, body, NOW).expect("valid");
    assert_eq!(meta, EventMeta::new("Ev08MFMKH6"));

    for body in [
        &br#"{"type":"event_callback"}"#[..],
        br#"{"event_id":42}"#,
        br#"{"event_id":""}"#,
        br#"["Ev1"]"#,
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
    ] {
        let meta = check(&p, &sign(SECRET, &t, body), &t, body, NOW).expect("valid");
        assert_eq!(meta, EventMeta::new(body_digest_id(body)));
    }
}

#[test]
fn url_verification_is_answered_with_the_challenge() {
    let p = provider(&[SECRET], None);
    let t = NOW.to_string();
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let meta = check(&p, &sign(SECRET, &t, body), &t, body, NOW).expect("valid");
    assert_eq!(
        meta,
        EventMeta::handshake(
            body_digest_id(body),
            Handshake {
                content_type: "text/plain",
                headers: Vec::new(),
                body: b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_vec(),
            }
        )
    );

    // Unsigned, it is rejected like any other request.
    assert_eq!(
        check(&p, &sign("forger", &t, body), &t, body, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    // Without a challenge it cannot be answered.
    let body = br#"{"type":"url_verification"}"#;
    assert_eq!(
        check(&p, &sign(SECRET, &t, body), &t, body, NOW),
        Err(VerifyError::MalformedBody)
    );
}

#[test]
fn sign_then_verify() {
    let p = provider(&[SECRET, "older"], None);
    let body = br#"{"event_id":"Ev9"}"#;
    let (method, uri) = (http::Method::POST, http::Uri::from_static("/hooks/slack"));
    let req = SignRequest {
        method: &method,
        uri: &uri,
        body,
        event_id: "ignored",
    };
    let headers = p.sign(&req, at(NOW)).expect("symmetric scheme");
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
        .collect();
    assert!(pairs.contains(&("x-slack-request-timestamp", "1700000000")));
    let meta = verify(&p, &pairs, body, NOW).expect("verifies");
    assert_eq!(meta.event_id, "Ev9");
}

#[test]
fn debug_is_redacted() {
    let p = provider(&["top-secret"], None);
    assert_eq!(
        format!("{p:?}"),
        "Slack { secrets: [redacted; 1], tolerance: 300s }"
    );
}
