//! Signature verification per provider, at 1 KiB and 64 KiB, against the raw HMAC-SHA256 of the body
//! (the floor no scheme can beat). Run: `cargo bench --bench verify`.

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use hookgate::{
    config::Secret,
    providers::{self, ProviderKind, ProviderSettings, WebhookRequest},
};
use http::{HeaderMap, HeaderValue, Method, Uri};
use sha2::Sha256;

const GH_SECRET: &str = "bench-secret";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn body(len: usize) -> Vec<u8> {
    let mut b = br#"{"action":"opened","payload":""#.to_vec();
    b.resize(len - 2, b'x');
    b.extend_from_slice(br#""}"#);
    b
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let ts = now
        .duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_secs()
        .to_string();
    for size in [1024, 64 * 1024] {
        let body = body(size);
        let mut group = c.benchmark_group(format!("verify/{}KiB", size / 1024));
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_function("raw_hmac_sha256", |b| {
            b.iter(|| hmac_hex(GH_SECRET.as_bytes(), &[&body]));
        });

        let cases: Vec<(&str, ProviderKind, &str, HeaderMap)> = vec![
            ("github", ProviderKind::Github, GH_SECRET, {
                let mut h = HeaderMap::new();
                let sig = format!("sha256={}", hmac_hex(GH_SECRET.as_bytes(), &[&body]));
                h.insert(
                    "x-hub-signature-256",
                    HeaderValue::from_str(&sig).expect("header"),
                );
                h.insert(
                    "x-github-delivery",
                    HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                );
                h
            }),
            ("stripe", ProviderKind::Stripe, WHSEC, {
                let mut h = HeaderMap::new();
                let sig = hmac_hex(WHSEC.as_bytes(), &[ts.as_bytes(), b".", &body]);
                h.insert(
                    "stripe-signature",
                    HeaderValue::from_str(&format!("t={ts},v1={sig}")).expect("header"),
                );
                h
            }),
            ("standard_webhooks", ProviderKind::StandardWebhooks, WHSEC, {
                use base64::Engine as _;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(WHSEC.trim_start_matches("whsec_"))
                    .expect("base64");
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
                mac.update(format!("msg_1.{ts}.").as_bytes());
                mac.update(&body);
                let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                let mut h = HeaderMap::new();
                h.insert("webhook-id", HeaderValue::from_static("msg_1"));
                h.insert("webhook-timestamp", HeaderValue::from_str(&ts).expect("header"));
                h.insert(
                    "webhook-signature",
                    HeaderValue::from_str(&format!("v1,{sig}")).expect("header"),
                );
                h
            }),
            // A token scheme: no HMAC, but the body digest is its event id.
            ("bearer", ProviderKind::Bearer, GH_SECRET, {
                let mut h = HeaderMap::new();
                h.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {GH_SECRET}")).expect("header"),
                );
                h
            }),
        ];
        for (name, kind, secret, headers) in cases {
            let secrets = [Secret::new(secret)];
            let settings = ProviderSettings {
                secrets: &secrets,
                tolerance: None,
                public_url: None,
                hmac: None,
                token: None,
                id_header: None,
                challenge: None,
            };
            let provider = providers::build(kind, settings).expect("valid provider");
            let (method, uri) = (Method::POST, Uri::from_static("/hooks/x"));
            let req = WebhookRequest {
                method: &method,
                uri: &uri,
                headers: &headers,
                body: &body,
            };
            provider.verify(&req, now).expect("the bench request is valid");
            group.bench_with_input(BenchmarkId::from_parameter(name), &req, |b, req| {
                b.iter(|| provider.verify(req, now).expect("valid"));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
