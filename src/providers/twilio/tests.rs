use http::{HeaderMap, Method};
use serde::Deserialize;

use super::*;
use crate::providers::test_support::{at, verify};

#[derive(Deserialize)]
struct Fixture {
    auth_token: String,
    form_body: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    public_url: String,
    body: Option<String>,
    signature: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("../../../tests/fixtures/twilio.json")).expect("valid fixture")
}

fn provider(secrets: &[&str], url: &str) -> Twilio {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Twilio::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: Some(url),
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect("valid settings")
}

/// Runs `verify` on a `POST` to `uri` (path and query at the gateway).
fn verify_at(p: &Twilio, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<EventMeta, VerifyError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_str(value).expect("valid value"),
        );
    }
    let uri: Uri = uri.parse().expect("valid uri");
    let req = WebhookRequest {
        method: &Method::POST,
        uri: &uri,
        headers: &map,
        body,
    };
    p.verify(&req, at(NOW))
}

/// The base64 HMAC-SHA1 of `signed` under `token`, as Twilio computes it.
fn sign(token: &str, signed: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

const NOW: u64 = 1_700_000_000;
const URL: &str = "https://example.com/hooks/twilio";

#[test]
fn published_sdk_vectors_reproduce() {
    let fx = fixture();
    for v in &fx.vectors {
        let p = provider(&[&fx.auth_token], &v.public_url);
        let body = v.body.as_deref().unwrap_or(&fx.form_body);
        let got = verify(&p, &[("X-Twilio-Signature", &v.signature)], body.as_bytes(), NOW);
        assert_eq!(
            got,
            Ok(EventMeta::new(body_digest_id(body.as_bytes()))),
            "{}",
            v.name
        );
    }
}

#[test]
fn the_json_variant_takes_the_query_from_the_request() {
    // Twilio appends bodySHA256 per request, so public_url holds the URL without a query.
    let fx = fixture();
    let v = fx.vectors.last().expect("the bodySHA256 vector");
    let body = v.body.as_deref().expect("a JSON body").as_bytes();
    let query = v.public_url.split_once('?').expect("a query").1;
    let p = provider(&[&fx.auth_token], "https://mycompany.com/myapp.php");
    let uri = format!("/hooks/twilio?{query}");
    verify_at(&p, &uri, &[("X-Twilio-Signature", &v.signature)], body).expect("valid");

    // The body must match bodySHA256, which the signature covers.
    let other = br#"{"property": "value", "boolean": false}"#;
    assert_eq!(
        verify_at(&p, &uri, &[("X-Twilio-Signature", &v.signature)], other),
        Err(VerifyError::SignatureMismatch)
    );
    // And bodySHA256 cannot be swapped for the hash of another body.
    let forged_uri = format!(
        "/hooks/twilio?foo=1&bar=2&bodySHA256={}",
        hex::encode(Sha256::digest(other))
    );
    assert_eq!(
        verify_at(&p, &forged_uri, &[("X-Twilio-Signature", &v.signature)], other),
        Err(VerifyError::SignatureMismatch)
    );
    // A configured query wins over the request's.
    let p = provider(&[&fx.auth_token], &v.public_url);
    verify_at(
        &p,
        "/elsewhere?x=1",
        &[("X-Twilio-Signature", &v.signature)],
        body,
    )
    .expect("valid");
}

#[test]
fn parameters_are_sorted_and_form_decoded() {
    let token = "token";
    let p = provider(&[token], URL);
    // Sorted by name, then value; "+" is a space and %2B a plus sign.
    let body = b"To=%2B1800&Body=Hello+there&A=2&A=10&From=%2B1415";
    let sig = sign(token, &format!("{URL}A10A2BodyHello thereFrom+1415To+1800"));
    verify(&p, &[("X-Twilio-Signature", &sig)], body, NOW).expect("valid");
    // Signing the raw (undecoded) body is not the scheme.
    let raw = sign(token, &format!("{URL}{}", String::from_utf8_lossy(body)));
    assert_eq!(
        verify(&p, &[("X-Twilio-Signature", &raw)], body, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    // An empty body (a GET) signs the URL alone.
    verify(&p, &[("X-Twilio-Signature", &sign(token, URL))], b"", NOW).expect("valid");
}

#[test]
fn a_repeated_parameter_signs_as_twilio_python_computes_it() {
    // twilio-python's compute_signature: sorted names, and for each name its values sorted with
    // repeats removed (sorted(set(values))), whatever their order in the body.
    let token = "token";
    let p = provider(&[token], URL);
    let signed = format!("{URL}Digits1234Digits5678SidCA123");
    let sig = sign(token, &signed);
    for body in [
        &b"Sid=CA123&Digits=5678&Digits=1234&Digits=1234"[..],
        b"Digits=1234&Sid=CA123&Digits=5678",
        b"Digits=1234&Digits=1234&Digits=5678&Digits=1234&Sid=CA123",
    ] {
        verify(&p, &[("X-Twilio-Signature", &sig)], body, NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
    }
    // Neither the values in body order nor every repeat appended is the SDK's string.
    let body = b"Sid=CA123&Digits=5678&Digits=1234&Digits=1234";
    for wrong in [
        format!("{URL}Digits5678Digits1234Digits1234SidCA123"),
        format!("{URL}Digits1234Digits1234Digits5678SidCA123"),
        format!("{URL}Digits5678Digits1234SidCA123"),
    ] {
        assert_eq!(
            verify(&p, &[("X-Twilio-Signature", &sign(token, &wrong))], body, NOW),
            Err(VerifyError::SignatureMismatch),
            "{wrong}"
        );
    }
    // `hookgate sign` builds the same string, so what it signs verifies.
    let req = SignRequest {
        method: &Method::POST,
        uri: &"/hooks/twilio".parse().expect("uri"),
        body,
        event_id: "hg_1",
    };
    let headers = p.sign(&req, at(NOW)).expect("signs");
    assert_eq!(headers[0].1.to_str().expect("ascii"), sig);
}

#[test]
fn tampered_parameters_are_a_mismatch() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&fx.auth_token], &v.public_url);
    let headers = [("X-Twilio-Signature", v.signature.as_str())];
    for body in [
        fx.form_body.replace("Digits=1234", "Digits=9999"),
        format!("{}&Extra=1", fx.form_body),
        fx.form_body.replace("&Caller=%2B14158675309", ""),
    ] {
        assert_eq!(
            verify(&p, &headers, body.as_bytes(), NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }
    // Another URL is a mismatch too.
    let other = provider(&[&fx.auth_token], "https://mycompany.com/myapp.php?foo=1&bar=3");
    assert_eq!(
        verify(&other, &headers, fx.form_body.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn wrong_token_is_a_mismatch_and_a_rotated_token_matches() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let headers = [("X-Twilio-Signature", v.signature.as_str())];
    let body = fx.form_body.as_bytes();
    let wrong = provider(&["54321"], &v.public_url);
    assert_eq!(
        verify(&wrong, &headers, body, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    let rotated = provider(&["secondary", &fx.auth_token], &v.public_url);
    verify(&rotated, &headers, body, NOW).expect("second token matches");
}

#[test]
fn missing_header_and_wrong_encoding() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&fx.auth_token], &v.public_url);
    assert_eq!(
        verify(&p, &[], fx.form_body.as_bytes(), NOW),
        Err(VerifyError::MissingSignature("x-twilio-signature"))
    );
    let raw = BASE64.decode(&v.signature).expect("base64");
    let malformed = Err(VerifyError::MalformedSignature("x-twilio-signature"));
    for sig in [
        hex::encode(&raw),
        format!("sha1={}", v.signature),
        BASE64.encode([0u8; 32]),
        "@@@@".to_owned(),
        String::new(),
    ] {
        let got = verify(&p, &[("X-Twilio-Signature", &sig)], fx.form_body.as_bytes(), NOW);
        assert_eq!(got, malformed, "{sig}");
    }
}

#[test]
fn port_variants_follow_the_sdks() {
    let cases = [
        (
            "https://a.com/x?y=1",
            "https://a.com/x?y=1",
            "https://a.com:443/x?y=1",
        ),
        ("http://a.com", "http://a.com", "http://a.com:80"),
        ("https://a.com:8443/x", "https://a.com/x", "https://a.com:8443/x"),
        ("https://[::1]/x", "https://[::1]/x", "https://[::1]:443/x"),
        ("https://[::1]:8443/x", "https://[::1]/x", "https://[::1]:8443/x"),
    ];
    for (url, without, with) in cases {
        assert_eq!(port_variants(url), (without.to_owned(), with.to_owned()), "{url}");
    }
}

#[test]
fn event_id_is_the_idempotency_token() {
    let fx = fixture();
    let v = &fx.vectors[0];
    let p = provider(&[&fx.auth_token], &v.public_url);
    let headers = [
        ("X-Twilio-Signature", v.signature.as_str()),
        ("I-Twilio-Idempotency-Token", "8a7c5d1e-idem"),
    ];
    let meta = verify(&p, &headers, fx.form_body.as_bytes(), NOW).expect("valid");
    assert_eq!(meta, EventMeta::new("8a7c5d1e-idem"));
}

#[test]
fn public_url_is_required() {
    let secrets = [Secret::new("t")];
    let err = Twilio::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    })
    .expect_err("no public_url");
    assert_eq!(
        err,
        ProviderConfigError::Setting {
            key: "public_url",
            message: "is required with provider = \"twilio\" (expected the URL as the sender signs it, \
                      e.g. \"https://example.com/hooks/twilio\")"
                .to_owned(),
        }
    );
}

#[test]
fn sign_then_verify() {
    let p = provider(&["primary", "secondary"], URL);
    for (uri, body) in [
        ("/hooks/twilio", &b"From=%2B1415&Body=hi+there"[..]),
        ("/hooks/twilio?call=1", b"From=%2B1415"),
    ] {
        let uri: Uri = uri.parse().expect("valid");
        let req = SignRequest {
            method: &Method::POST,
            uri: &uri,
            body,
            event_id: "idem-1",
        };
        let headers = p.sign(&req, at(NOW)).expect("symmetric scheme");
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        let meta = verify_at(&p, &uri.to_string(), &pairs, body).expect("verifies");
        assert_eq!(meta.event_id, "idem-1");
    }
    // A JSON body whose bodySHA256 does not match cannot be signed.
    let uri = Uri::from_static("/hooks/twilio?bodySHA256=00");
    let req = SignRequest {
        method: &Method::POST,
        uri: &uri,
        body: b"{}",
        event_id: "e",
    };
    assert!(matches!(p.sign(&req, at(NOW)), Err(SignError::Unsignable(_))));
}

#[test]
fn debug_is_redacted() {
    assert_eq!(
        format!("{:?}", provider(&["top-secret"], URL)),
        "Twilio { secrets: [redacted; 1], public_url: \"https://example.com/hooks/twilio\" }"
    );
}
