use serde::Deserialize;

use super::*;
use crate::providers::test_support::{stripped, verify};
use crate::secret::Secret;

#[derive(Deserialize)]
struct Fixture {
    payload: String,
    secret_token: String,
    idempotency_key: String,
    event_uuid: String,
    signing_token: String,
    webhook_timestamp: u64,
    webhook_signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/gitlab.json")).expect("valid fixture")
}

const OTHER_SIGNING: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn settings_provider(secrets: &[&str], tolerance: Option<Duration>) -> Result<GitLab, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    GitLab::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
}

fn provider(secrets: &[&str]) -> GitLab {
    settings_provider(secrets, None).expect("valid settings")
}

/// The fixture's signing-mode headers, with `signature` as the signature.
fn signed_headers<'a>(fx: &'a Fixture, ts: &'a str, signature: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("webhook-id", &fx.idempotency_key),
        ("webhook-timestamp", ts),
        ("webhook-signature", signature),
        ("Idempotency-Key", &fx.idempotency_key),
    ]
}

#[test]
fn secret_token_fixture_verifies_with_the_idempotency_key_as_id() {
    let fx = fixture();
    let p = provider(&[&fx.secret_token]);
    let headers = [
        ("X-Gitlab-Token", fx.secret_token.as_str()),
        ("Idempotency-Key", &fx.idempotency_key),
        ("X-Gitlab-Event-UUID", &fx.event_uuid),
    ];
    let meta = verify(&p, &headers, fx.payload.as_bytes(), 1).expect("valid");
    assert_eq!(meta.event_id, fx.idempotency_key);
}

#[test]
fn signing_token_fixture_verifies_with_the_webhook_id() {
    let fx = fixture();
    let ts = fx.webhook_timestamp.to_string();
    let p = provider(&[&fx.signing_token]);
    let headers = signed_headers(&fx, &ts, &fx.webhook_signature);
    let meta = verify(&p, &headers, fx.payload.as_bytes(), fx.webhook_timestamp).expect("valid");
    assert_eq!(meta.event_id, fx.idempotency_key);
}

#[test]
fn signing_fixture_is_what_the_scheme_computes() {
    let fx = fixture();
    let signer = StandardSigner::try_new(&Secret::new(fx.signing_token.as_str())).expect("valid");
    let ts = i64::try_from(fx.webhook_timestamp).expect("fits");
    assert_eq!(
        signer.sign(&fx.idempotency_key, ts, fx.payload.as_bytes()),
        fx.webhook_signature
    );
}

#[test]
fn wrong_or_missing_token() {
    let fx = fixture();
    let p = provider(&[&fx.secret_token]);
    let body = fx.payload.as_bytes();
    for wrong in [
        "My-GitLab-s3cret toke",
        "My-GitLab-s3cret token!",
        "x",
        "my-gitlab-s3cret token",
    ] {
        assert_eq!(
            verify(&p, &[("X-Gitlab-Token", wrong)], body, 1),
            Err(VerifyError::SignatureMismatch),
            "{wrong}"
        );
    }
    assert_eq!(
        verify(&p, &[], body, 1),
        Err(VerifyError::MissingSignature("x-gitlab-token"))
    );
}

#[test]
fn rotated_second_token_matches_and_event_id_falls_back() {
    let fx = fixture();
    let p = provider(&["new-token", &fx.secret_token]);
    let body = fx.payload.as_bytes();
    let token = ("X-Gitlab-Token", fx.secret_token.as_str());
    let meta = verify(&p, &[token, ("X-Gitlab-Event-UUID", &fx.event_uuid)], body, 1).expect("valid");
    assert_eq!(meta.event_id, fx.event_uuid);
    let meta = verify(&p, &[token], body, 1).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(body));
}

#[test]
fn signing_mode_rejects_tampering_and_wrong_keys() {
    let fx = fixture();
    let ts = fx.webhook_timestamp.to_string();
    let now = fx.webhook_timestamp;
    let headers = signed_headers(&fx, &ts, &fx.webhook_signature);
    let p = provider(&[&fx.signing_token]);
    let tampered = fx.payload.replace("main", "evil");
    assert_eq!(
        verify(&p, &headers, tampered.as_bytes(), now),
        Err(VerifyError::SignatureMismatch)
    );
    let other = provider(&[OTHER_SIGNING]);
    assert_eq!(
        verify(&other, &headers, fx.payload.as_bytes(), now),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&[OTHER_SIGNING, &fx.signing_token]);
    verify(&rotated, &headers, fx.payload.as_bytes(), now).expect("second signing token matches");
    let missing_id: Vec<_> = headers
        .iter()
        .copied()
        .filter(|(n, _)| *n != "webhook-id")
        .collect();
    assert_eq!(
        verify(&p, &missing_id, fx.payload.as_bytes(), now),
        Err(VerifyError::MissingHeader("webhook-id"))
    );
}

#[test]
fn a_present_signature_is_final_and_cannot_be_downgraded() {
    let fx = fixture();
    let ts = fx.webhook_timestamp.to_string();
    let p = provider(&[&fx.secret_token, OTHER_SIGNING]);
    let mut headers = signed_headers(&fx, &ts, &fx.webhook_signature);
    headers.push(("X-Gitlab-Token", &fx.secret_token));
    // The signature is from a key not configured: the matching token does not rescue it.
    assert_eq!(
        verify(&p, &headers, fx.payload.as_bytes(), fx.webhook_timestamp),
        Err(VerifyError::SignatureMismatch)
    );
    // Without signing tokens configured, a signed request is checked by its token.
    let tokens_only = provider(&[&fx.secret_token]);
    verify(
        &tokens_only,
        &headers,
        fx.payload.as_bytes(),
        fx.webhook_timestamp,
    )
    .expect("token mode");
}

#[test]
fn signing_window_is_two_sided_five_minutes() {
    let fx = fixture();
    let ts = fx.webhook_timestamp.to_string();
    let headers = signed_headers(&fx, &ts, &fx.webhook_signature);
    let p = provider(&[&fx.signing_token]);
    let body = fx.payload.as_bytes();
    let t = fx.webhook_timestamp;
    verify(&p, &headers, body, t + 300).expect("300 s old");
    verify(&p, &headers, body, t - 300).expect("300 s ahead");
    assert_eq!(
        verify(&p, &headers, body, t + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        verify(&p, &headers, body, t - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );
    // Token mode has no window.
    let tp = provider(&[&fx.secret_token]);
    verify(&tp, &[("X-Gitlab-Token", &fx.secret_token)], body, u64::MAX / 4).expect("no window");
}

#[test]
fn sign_round_trips_in_both_modes() {
    let fx = fixture();
    for secrets in [
        [fx.secret_token.as_str(), OTHER_SIGNING],
        [fx.signing_token.as_str(), "token"],
    ] {
        let p = provider(&secrets);
        let method = http::Method::POST;
        let uri = http::Uri::from_static("/hook");
        let req = SignRequest {
            method: &method,
            uri: &uri,
            body: fx.payload.as_bytes(),
            event_id: "evt-1",
        };
        let now = crate::providers::test_support::at(1_700_000_000);
        let headers: http::HeaderMap = p.sign(&req, now).expect("signs").into_iter().collect();
        let wreq = WebhookRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            body: fx.payload.as_bytes(),
        };
        assert_eq!(p.verify(&wreq, now).expect("verifies").event_id, "evt-1");
    }
}

#[test]
fn invalid_signing_secret_names_its_index() {
    assert_eq!(
        settings_provider(&["token", "whsec_not base64!"], None).err(),
        Some(ProviderConfigError::InvalidSecret {
            index: 1,
            expected: "\"whsec_\" followed by base64"
        })
    );
}

#[test]
fn debug_is_redacted() {
    let fx = fixture();
    let p = provider(&[&fx.secret_token, &fx.signing_token]);
    let debug = format!("{p:?}");
    assert_eq!(
        debug,
        "GitLab { secret_tokens: [redacted; 1], signing_tokens: [redacted; 1], tolerance: 300s }"
    );
}

#[test]
fn the_secret_token_is_stripped_and_the_signing_headers_kept() {
    let fx = fixture();
    let p = provider(&[&fx.secret_token, &fx.signing_token]);
    let head = stripped(
        &p,
        "/hook",
        &[
            ("x-gitlab-token", &fx.secret_token),
            ("webhook-signature", &fx.webhook_signature),
            ("idempotency-key", &fx.idempotency_key),
        ],
    );
    assert!(head.headers.get("x-gitlab-token").is_none());
    assert!(head.headers.contains_key("webhook-signature"));
    assert!(head.headers.contains_key("idempotency-key"));
}
