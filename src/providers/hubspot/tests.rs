use http::{HeaderMap, Method};
use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    client_secret: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    public_url: String,
    request_uri: String,
    method: String,
    body: String,
    timestamp_ms: i64,
    signed_string: String,
    signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/hubspot.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], url: &str, tolerance: Option<Duration>) -> HubSpot {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    HubSpot::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: Some(url),
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

/// Runs `verify` with `method` and `uri` (path and query at the gateway) at `now_ms`.
fn verify_at(
    p: &HubSpot,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now_ms: i64,
) -> Result<EventMeta, VerifyError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_str(value).expect("valid value"),
        );
    }
    let method = Method::from_bytes(method.as_bytes()).expect("valid method");
    let uri: Uri = uri.parse().expect("valid uri");
    let req = WebhookRequest {
        method: &method,
        uri: &uri,
        headers: &map,
        body,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).expect("positive"));
    p.verify(&req, now)
}

/// The base64 HMAC-SHA256 of `signed` under `secret`, as HubSpot computes it.
fn sign(secret: &str, signed: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

const SECRET: &str = "client-secret";
const URL: &str = "https://example.com/hooks/hubspot";
const T_MS: i64 = 1_700_000_000_000;

/// A POST to `/hooks/hubspot` signed with `secret` at `ts_ms`.
fn post(p: &HubSpot, secret: &str, body: &str, ts_ms: i64, now_ms: i64) -> Result<EventMeta, VerifyError> {
    let ts = ts_ms.to_string();
    let sig = sign(secret, &format!("POST{URL}{body}{ts}"));
    let headers = [
        ("X-HubSpot-Signature-v3", sig.as_str()),
        ("X-HubSpot-Request-Timestamp", ts.as_str()),
    ];
    verify_at(p, "POST", "/hooks/hubspot", &headers, body.as_bytes(), now_ms)
}

#[test]
fn fixture_vectors_reproduce() {
    let fx = fixture();
    for v in &fx.vectors {
        assert_eq!(
            sign(&fx.client_secret, &v.signed_string),
            v.signature,
            "{}",
            v.name
        );
        let p = provider(&[&fx.client_secret], &v.public_url, None);
        let ts = v.timestamp_ms.to_string();
        let headers = [
            ("X-HubSpot-Signature-v3", v.signature.as_str()),
            ("X-HubSpot-Request-Timestamp", ts.as_str()),
        ];
        let got = verify_at(
            &p,
            &v.method,
            &v.request_uri,
            &headers,
            v.body.as_bytes(),
            v.timestamp_ms + 1000,
        );
        assert_eq!(
            got,
            Ok(EventMeta::new(body_digest_id(v.body.as_bytes()))),
            "{}",
            v.name
        );
    }
}

#[test]
fn method_url_body_and_timestamp_are_all_signed() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&fx.client_secret], &v.public_url, None);
    let ts = v.timestamp_ms.to_string();
    let headers = [
        ("X-HubSpot-Signature-v3", v.signature.as_str()),
        ("X-HubSpot-Request-Timestamp", ts.as_str()),
    ];
    let now = v.timestamp_ms;
    let body = v.body.as_bytes();
    let mismatch = Err(VerifyError::SignatureMismatch);
    assert_eq!(
        verify_at(&p, "PUT", &v.request_uri, &headers, body, now),
        mismatch
    );
    assert_eq!(
        verify_at(&p, "POST", "/hooks/hubspot?x=1", &headers, body, now),
        mismatch
    );
    assert_eq!(
        verify_at(&p, "POST", &v.request_uri, &headers, b"{}", now),
        mismatch
    );
    let later = (v.timestamp_ms + 1).to_string();
    let moved = [headers[0], ("X-HubSpot-Request-Timestamp", later.as_str())];
    assert_eq!(verify_at(&p, "POST", &v.request_uri, &moved, body, now), mismatch);
    let elsewhere = provider(&[&fx.client_secret], "https://www.example.com/other", None);
    assert_eq!(
        verify_at(&elsewhere, "POST", &v.request_uri, &headers, body, now),
        mismatch
    );
}

#[test]
fn only_the_documented_escapes_are_decoded() {
    assert_eq!(
        decode_reserved(b"https://a.com/p%3a%2F?q=%3F%40%21%24%27%28%29%2A%2c%3B&r=%20%3D%26%25%2541%"),
        b"https://a.com/p:/?q=?@!$'()*,;&r=%20%3D%26%25%2541%".to_vec()
    );
    // A configured query is decoded too.
    let p = provider(&[SECRET], "https://a.com/h?e=x%40y.com", None);
    let ts = T_MS.to_string();
    let sig = sign(SECRET, &format!("POSThttps://a.com/h?e=x@y.com{ts}"));
    let headers = [
        ("X-HubSpot-Signature-v3", sig.as_str()),
        ("X-HubSpot-Request-Timestamp", ts.as_str()),
    ];
    verify_at(&p, "POST", "/other?ignored=1", &headers, b"", T_MS).expect("valid");
}

#[test]
fn wrong_secret_is_a_mismatch_and_a_rotated_secret_matches() {
    let p = provider(&[SECRET], URL, None);
    assert_eq!(
        post(&p, "other", "[]", T_MS, T_MS),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["new", SECRET], URL, None);
    post(&rotated, SECRET, "[]", T_MS, T_MS).expect("second secret matches");
}

#[test]
fn missing_headers_and_malformed_values() {
    let p = provider(&[SECRET], URL, None);
    let sig = sign(SECRET, "x");
    let ts = T_MS.to_string();
    assert_eq!(
        verify(&p, &[("X-HubSpot-Request-Timestamp", &ts)], b"", 0),
        Err(VerifyError::MissingSignature("x-hubspot-signature-v3"))
    );
    // The v1/v2 header alone is not accepted.
    assert_eq!(
        verify(&p, &[("X-HubSpot-Signature", &"a".repeat(64))], b"", 0),
        Err(VerifyError::MissingSignature("x-hubspot-signature-v3"))
    );
    assert_eq!(
        verify(&p, &[("X-HubSpot-Signature-v3", &sig)], b"", 0),
        Err(VerifyError::MissingHeader("x-hubspot-request-timestamp"))
    );
    let malformed = Err(VerifyError::MalformedSignature("x-hubspot-signature-v3"));
    let raw = BASE64.decode(&sig).expect("base64");
    for bad in [
        hex::encode(&raw),
        format!("v3={sig}"),
        BASE64.encode(&raw[..20]),
        "***".to_owned(),
    ] {
        let got = verify(
            &p,
            &[
                ("X-HubSpot-Signature-v3", &bad),
                ("X-HubSpot-Request-Timestamp", &ts),
            ],
            b"",
            0,
        );
        assert_eq!(got, malformed, "{bad}");
    }
    for bad in ["soon", "1.7e12", ""] {
        let got = verify(
            &p,
            &[
                ("X-HubSpot-Signature-v3", &sig),
                ("X-HubSpot-Request-Timestamp", bad),
            ],
            b"",
            0,
        );
        assert_eq!(
            got,
            Err(VerifyError::MalformedTimestamp("x-hubspot-request-timestamp")),
            "{bad}"
        );
    }
}

#[test]
fn window_is_two_sided_in_milliseconds_and_checked_after_the_signature() {
    let p = provider(&[SECRET], URL, None);
    post(&p, SECRET, "[]", T_MS, T_MS + 300_000).expect("exactly 5 minutes old is inside");
    assert_eq!(
        post(&p, SECRET, "[]", T_MS, T_MS + 300_001),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 300 })
    );
    assert_eq!(
        post(&p, SECRET, "[]", T_MS, T_MS + 301_000),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    post(&p, SECRET, "[]", T_MS + 300_000, T_MS).expect("exactly 5 minutes ahead is inside");
    assert_eq!(
        post(&p, SECRET, "[]", T_MS + 300_001, T_MS),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -300 })
    );
    let years_ms: i64 = 31 * 365 * 24 * 3600 * 1000;
    assert_eq!(
        post(&p, SECRET, "[]", T_MS + years_ms, T_MS),
        Err(VerifyError::TimestampOutsideTolerance {
            age_secs: -years_ms / 1000
        }),
        "signed 31 years ahead"
    );
    // A timestamp in seconds read as milliseconds is in January 1970: stale.
    assert!(matches!(
        post(&p, SECRET, "[]", T_MS / 1000, T_MS),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    // A stale request with a forged signature reports the signature.
    assert_eq!(
        post(&p, "forger", "[]", T_MS, T_MS + 10_000_000),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn tolerance_is_overridable() {
    let p = provider(&[SECRET], URL, Some(Duration::from_secs(10)));
    post(&p, SECRET, "[]", T_MS, T_MS + 10_000).expect("inside");
    assert_eq!(
        post(&p, SECRET, "[]", T_MS, T_MS + 10_001),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 10 })
    );
}

#[test]
fn event_id_is_the_body_digest() {
    let p = provider(&[SECRET], URL, None);
    let body = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    let meta = post(&p, SECRET, body, T_MS, T_MS).expect("valid");
    assert_eq!(meta, EventMeta::new(body_digest_id(body.as_bytes())));
}

#[test]
fn public_url_is_required() {
    let secrets = [Secret::new("s")];
    let err = HubSpot::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect_err("no public_url");
    assert!(matches!(
        err,
        ProviderConfigError::Setting {
            key: "public_url",
            ..
        }
    ));
    assert!(err.to_string().contains("provider = \"hubspot\""));
}

#[test]
fn sign_then_verify() {
    let p = provider(&[SECRET, "older"], URL, None);
    for (method, uri, body) in [
        (Method::POST, "/hooks/hubspot", &br#"[{"eventId":7}]"#[..]),
        (Method::GET, "/hooks/hubspot?email=a%40b.com", b""),
    ] {
        let uri: Uri = uri.parse().expect("valid");
        let req = SignRequest {
            method: &method,
            uri: &uri,
            body,
            event_id: "unused",
        };
        let headers = p.sign(&req, at(1_700_000_000)).expect("symmetric scheme");
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        assert!(pairs.contains(&("x-hubspot-request-timestamp", "1700000000000")));
        verify_at(&p, method.as_str(), &uri.to_string(), &pairs, body, T_MS + 1).expect("verifies");
    }
}

#[test]
fn debug_is_redacted() {
    assert_eq!(
        format!("{:?}", provider(&["top-secret"], URL, None)),
        "HubSpot { secrets: [redacted; 1], public_url: \"https://example.com/hooks/hubspot\", tolerance: 300s }"
    );
}
