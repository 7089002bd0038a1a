//! Endpoint checks that senders make before sending events are answered by the gateway itself, after
//! verification, without the app: Slack `url_verification`, Zoom `endpoint.url_validation`, Twitch
//! `webhook_callback_verification` and Discord's PING. They are neither stored nor forwarded, and an
//! unverified check is rejected like any other request. Signatures here are computed from each
//! provider's documented scheme, independently of the gateway's code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::Sha256;

use crate::support::{metric, post, TestGateway, TestSink};

const SLACK_SECRET: &str = "handshake-slack-signing-secret";
const ZOOM_SECRET: &str = "handshake-zoom-secret-token";
const TWITCH_SECRET: &str = "handshake-twitch-secret";
/// RFC 8032, section 7.1, TEST 1: the secret key (the test plays Discord) and its public key (the
/// gateway's secret).
const DISCORD_SIGNING_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn source(name: &str, provider: &str, secret: &str, upstream: &str) -> String {
    format!(
        "\n[[sources]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nprovider = \"{provider}\"\nsecrets = [\"{secret}\"]\nupstream = \"{upstream}\"\n"
    )
}

struct Rig {
    gw: TestGateway,
    sink: TestSink,
}

async fn rig() -> Rig {
    let sink = TestSink::start().await;
    let toml = [
        source("hs-slack", "slack", SLACK_SECRET, &sink.url("/slack")),
        source("hs-zoom", "zoom", ZOOM_SECRET, &sink.url("/zoom")),
        source("hs-twitch", "twitch", TWITCH_SECRET, &sink.url("/twitch")),
        source("hs-discord", "discord", DISCORD_PUBLIC_KEY, &sink.url("/discord")),
    ]
    .concat();
    Rig {
        gw: TestGateway::start(&toml).await,
        sink,
    }
}

fn handshakes(metrics: &str, source: &str) -> f64 {
    metric(
        metrics,
        &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"handshake\",reason=\"none\"}}"),
    )
}

fn slack_headers(body: &str, secret: &str) -> Vec<(String, String)> {
    let ts = now_secs().to_string();
    let sig = hmac_hex(secret, &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]);
    vec![
        ("x-slack-request-timestamp".into(), ts),
        ("x-slack-signature".into(), format!("v0={sig}")),
        ("content-type".into(), "application/json".into()),
    ]
}

#[tokio::test]
async fn slack_url_verification_is_answered_with_the_challenge_and_not_forwarded() {
    let mut r = rig().await;
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let reply = post(
        &r.gw.url("/hooks/hs-slack"),
        &slack_headers(body, SLACK_SECRET),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    assert_eq!(reply.headers["content-type"], "text/plain");

    // Signed with another secret: rejected, never answered.
    let reply = post(
        &r.gw.url("/hooks/hs-slack"),
        &slack_headers(body, "not-the-secret"),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"signature_mismatch"}"#);

    r.sink.assert_quiet(Duration::from_millis(400)).await;
    assert_eq!(handshakes(&r.gw.metrics().await, "hs-slack"), 1.0);
    r.gw.stop().await;
}

#[tokio::test]
async fn zoom_url_validation_is_answered_with_the_encrypted_token() {
    let mut r = rig().await;
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let ts = now_secs().to_string();
    let sig = hmac_hex(ZOOM_SECRET, &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]);
    let headers = vec![
        ("x-zm-request-timestamp".to_string(), ts),
        ("x-zm-signature".to_string(), format!("v0={sig}")),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let reply = post(&r.gw.url("/hooks/hs-zoom"), &headers, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(json["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        json["encryptedToken"],
        hmac_hex(ZOOM_SECRET, &[b"qgg8vlvZRS6UYooatFL8Aw"])
    );

    // Without a signature, no answer.
    let unsigned = vec![("content-type".to_string(), "application/json".to_string())];
    let reply = post(&r.gw.url("/hooks/hs-zoom"), &unsigned, body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.body.contains("encryptedToken"));

    r.sink.assert_quiet(Duration::from_millis(400)).await;
    assert_eq!(handshakes(&r.gw.metrics().await, "hs-zoom"), 1.0);
    r.gw.stop().await;
}

fn rfc3339(secs: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), enough for a test clock.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.123456789Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test]
async fn twitch_callback_verification_is_answered_with_the_challenge() {
    let mut r = rig().await;
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow","version":"2"}}"#;
    let (id, ts) = ("e76c6bd4-55c9-4987-8304-da1588d8988b", rfc3339(now_secs()));
    let sig = hmac_hex(TWITCH_SECRET, &[id.as_bytes(), ts.as_bytes(), body.as_bytes()]);
    let headers = vec![
        ("twitch-eventsub-message-id".to_string(), id.to_string()),
        ("twitch-eventsub-message-timestamp".to_string(), ts),
        (
            "twitch-eventsub-message-signature".to_string(),
            format!("sha256={sig}"),
        ),
        (
            "twitch-eventsub-message-type".to_string(),
            "webhook_callback_verification".to_string(),
        ),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let reply = post(&r.gw.url("/hooks/hs-twitch"), &headers, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "pogchamp-kappa-360noscope-vohiyo");
    assert_eq!(reply.headers["content-type"], "text/plain");

    // The same check with a tampered body is rejected.
    let tampered = body.replace("vohiyo", "vohiyO");
    let reply = post(&r.gw.url("/hooks/hs-twitch"), &headers, tampered).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    r.sink.assert_quiet(Duration::from_millis(400)).await;
    assert_eq!(handshakes(&r.gw.metrics().await, "hs-twitch"), 1.0);
    r.gw.stop().await;
}

#[tokio::test]
async fn discord_ping_is_answered_pong_and_a_command_is_forwarded() {
    let mut r = rig().await;
    let key_bytes: [u8; 32] = hex::decode(DISCORD_SIGNING_KEY)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let key = SigningKey::from_bytes(&key_bytes);
    assert_eq!(hex::encode(key.verifying_key().to_bytes()), DISCORD_PUBLIC_KEY);
    let signed = |body: &str| {
        let ts = now_secs().to_string();
        let sig = key.sign(&[ts.as_bytes(), body.as_bytes()].concat());
        vec![
            ("x-signature-timestamp".to_string(), ts),
            ("x-signature-ed25519".to_string(), hex::encode(sig.to_bytes())),
            ("content-type".to_string(), "application/json".to_string()),
        ]
    };
    let ping = r#"{"id":"ping-1","type":1,"application_id":"1"}"#;
    let reply = post(&r.gw.url("/hooks/hs-discord"), &signed(ping), ping).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, r#"{"type":1}"#);
    r.sink.assert_quiet(Duration::from_millis(300)).await;

    // A forged PING (signed for another body) is rejected.
    let reply = post(&r.gw.url("/hooks/hs-discord"), &signed("{}"), ping).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // An application command is an event: stored and forwarded.
    let command = r#"{"id":"cmd-1","type":2,"data":{"name":"hello"}}"#;
    let reply = post(&r.gw.url("/hooks/hs-discord"), &signed(command), command).await;
    assert_eq!(reply.body, r#"{"status":"accepted"}"#);
    let got = r
        .sink
        .next(Duration::from_secs(15))
        .await
        .expect("the command is forwarded");
    assert_eq!(got.header("x-hookgate-event-id"), "cmd-1");
    assert_eq!(got.body, command.as_bytes());
    assert_eq!(handshakes(&r.gw.metrics().await, "hs-discord"), 1.0);
    r.gw.stop().await;
}
