//! Every catalogue entry gets the conformance cases, its fixture and the malformed-signature cases.
//!
//! [`catalogue_conformance!`] writes one module per entry with every [`conformance_tests!`] case
//! (the timestamp cases for timestamped entries). The request each case sends is signed by
//! [`sign_as_documented`], a second reading of the entry's data written here, independent of
//! [`GenericHmac`]'s own `sign`; the fixture of each entry (`tests/fixtures/catalogue/NAME.json`, the
//! sender's published example where there is one, else values computed independently and cited)
//! checks the data itself against the sender.

use std::{collections::BTreeSet, path::Path, time::SystemTime};

use base64::{
    engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD},
    Engine as _,
};
use hmac::{Hmac, Mac};
use serde::Deserialize;

use super::*;
use crate::providers::conformance::{
    append_to_body, conformance_tests, hmac_sha256, OwnSign, Scheme, Signed, Timestamps,
};
use crate::providers::test_support::verify_at;
use crate::providers::{ProviderKind, VerifyError};
use crate::secret::Secret;

/// The `public_url` of every entry that signs one.
const PUBLIC_URL: &str = "https://example.com/hooks/catalogue";
/// The event id [`sign_as_documented`] puts in an id header.
const EVENT_ID: &str = "evt_catalogue_conformance";

/// The kind of the entry `name`.
fn kind(name: &str) -> ProviderKind {
    ProviderKind::from_name(name).unwrap_or_else(|| panic!("{name} is not a provider"))
}

/// The entry `name`.
fn entry(name: &str) -> &'static Entry {
    ENTRIES
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the catalogue"))
}

/// Two keys the sender signs with and one it never does, in the form the entry's key takes.
fn keys(entry: &Entry) -> ([&'static str; 2], &'static str) {
    match entry.engine {
        Engine::Hmac(Spec {
            key: KeyForm::Base64, ..
        }) => (
            ["Y2F0YWxvZ3VlLWtleS1vbmU=", "Y2F0YWxvZ3VlLWtleS10d28="],
            "bm90LXRoZS1rZXk=",
        ),
        Engine::Hmac(_)
        | Engine::Standard {
            key: standard::KeyForm::Raw,
            ..
        } => (["catalogue-secret-one", "catalogue-secret-two"], "not-the-secret"),
        Engine::Standard { .. } => (
            [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            ],
            "whsec_bm90LXRoZS1rZXktYXQtYWxsLXJlYWxseQ==",
        ),
    }
}

/// The body every case signs: JSON with an id where every entry's event-id rule looks.
const BODY: &[u8] = br#"{"id":"evt_body","event":{"id":"evt_body"},"data":{"id":"evt_body"},"action":{"id":"evt_body"},"eventId":"evt_body","kind":"catalogue"}"#;

/// The HMAC key of a configured secret, decoded here rather than by the engine.
fn hmac_key(key: KeyForm, secret: &str) -> Vec<u8> {
    match key {
        KeyForm::Raw => secret.as_bytes().to_vec(),
        KeyForm::Base64 => BASE64.decode(secret).expect("test keys are base64"),
    }
}

/// HMAC of `parts` with `algorithm`, computed with the `hmac` crate directly.
fn tag(algorithm: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// A tag written in `encoding`.
fn encode(encoding: HmacEncoding, tag: &[u8]) -> String {
    match encoding {
        HmacEncoding::Hex => hex::encode(tag),
        HmacEncoding::Base64 => BASE64.encode(tag),
        HmacEncoding::Base64Url => URL_SAFE_NO_PAD.encode(tag),
    }
}

/// `at` (Unix seconds) written as the entry's timestamp.
fn timestamp_text(unit: TimestampUnit, at: u64) -> String {
    match unit {
        TimestampUnit::Seconds => at.to_string(),
        TimestampUnit::Millis => (at * 1000).to_string(),
        TimestampUnit::Rfc3339 => {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at))
                .to_string()
        }
    }
}

/// A request to `/hook` of [`BODY`] signed at `at` with `secret`, as the entry's data says the
/// sender signs.
fn sign_as_documented(name: &str, secret: &str, at: u64) -> Signed {
    let entry = entry(name);
    let spec = match entry.engine {
        Engine::Hmac(spec) => spec,
        Engine::Standard { headers, key } => {
            let key = match key {
                standard::KeyForm::Raw => secret.as_bytes().to_vec(),
                standard::KeyForm::Specified => BASE64
                    .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                    .expect("test keys are base64"),
            };
            let ts = at.to_string();
            let content = [EVENT_ID.as_bytes(), b".", ts.as_bytes(), b".", BODY].concat();
            let sig = BASE64.encode(hmac_sha256(&key, &[&content]));
            let (id, timestamp, signature) = headers.names();
            return Signed::new(
                BODY,
                &[
                    (id, EVENT_ID.to_owned()),
                    (timestamp, ts),
                    (signature, format!("v1,{sig}")),
                ],
            );
        }
    };
    let ts = spec.timestamp.map(|t| timestamp_text(t.unit, at));
    let ts_header = match spec.timestamp {
        Some(Timestamp {
            source: TimestampSource::Header(h),
            ..
        }) => Some(h),
        _ => None,
    };
    let id_header = spec.id.header();
    let mut message = Vec::new();
    for part in spec.signed {
        match *part {
            Part::Literal(text) => message.extend_from_slice(text.as_bytes()),
            Part::Body => message.extend_from_slice(BODY),
            Part::Timestamp => message.extend_from_slice(ts.as_deref().expect("timestamped").as_bytes()),
            Part::PublicUrl => message.extend_from_slice(PUBLIC_URL.as_bytes()),
            Part::Header(h) if Some(h) == ts_header => {
                message.extend_from_slice(ts.as_deref().expect("timestamped").as_bytes())
            }
            Part::Header(h) if Some(h) == id_header => message.extend_from_slice(EVENT_ID.as_bytes()),
            Part::Header(h) => panic!("{name}: signs header {h}, which the cases cannot supply"),
        }
    }
    let sig = encode(
        spec.encoding,
        &tag(spec.algorithm, &hmac_key(spec.key, secret), &message),
    );
    let value = match spec.layout {
        Layout::Single | Layout::List { .. } => format!("{}{sig}", spec.prefix),
        Layout::Pairs {
            separator,
            timestamp_key: Some(tk),
            signature_key,
            ..
        } => format!(
            "{tk}={}{separator}{signature_key}={sig}",
            ts.as_deref().expect("timestamped")
        ),
        Layout::Pairs {
            signature_key,
            timestamp_key: None,
            ..
        } => format!("{signature_key}={sig}"),
        Layout::TimestampFirst { separator } => {
            format!("{}{separator}{sig}", ts.as_deref().expect("timestamped"))
        }
    };
    let mut headers = vec![(spec.headers[0], value)];
    if let (Some(h), Some(ts)) = (ts_header, &ts) {
        headers.push((h, ts.clone()));
    }
    if let Some(h) = id_header {
        headers.push((h, EVENT_ID.to_owned()));
    }
    Signed::new(BODY, &headers)
}

/// The conformance description of the entry `name`; `sign` is [`sign_as_documented`] with the
/// entry's keys.
fn entry_scheme(name: &'static str, sign: fn(usize, u64) -> Signed) -> Scheme {
    let entry = entry(name);
    let (secrets, wrong) = keys(entry);
    let (signature_header, timestamps, public_url) = match entry.engine {
        Engine::Hmac(spec) => (
            spec.headers[0],
            spec.timestamp.map(|t| Timestamps {
                default: t.window,
                overridable: true,
            }),
            spec.signed.contains(&Part::PublicUrl).then_some(PUBLIC_URL),
        ),
        Engine::Standard { headers, .. } => (
            headers.names().2,
            Some(Timestamps {
                default: Some(std::time::Duration::from_secs(300)),
                overridable: true,
            }),
            None,
        ),
    };
    Scheme {
        kind: kind(name),
        secrets,
        wrong,
        public_url,
        hmac: None,
        token: None,
        sign,
        signature_header: Some(intern(&signature_header.to_ascii_lowercase())),
        tamper: vec![append_to_body],
        timestamps,
        own_sign: OwnSign::RoundTrip,
    }
}

use crate::providers::hmac::intern;

/// The keys of the entry `name`, by index: what `Scheme::sign` passes.
fn secret_at(name: &str, key: usize) -> &'static str {
    keys(entry(name)).0[key]
}

/// One module per entry with the conformance cases: `untimed:` entries get the untimed set, `timed:`
/// entries the timestamp cases too. [`every_entry_has_its_conformance_module`] fails for an entry
/// listed in neither.
macro_rules! catalogue_conformance {
    (untimed: $($plain:ident),* ; timed: $($timed:ident),* $(;)?) => {
        /// The entries with conformance modules.
        const COVERED: &[&str] = &[$(stringify!($plain),)* $(stringify!($timed),)*];
        $(
            mod $plain {
                use super::*;
                conformance_tests!(
                    entry_scheme(stringify!($plain).trim_start_matches("r#"), |key, at| {
                        sign_as_documented(stringify!($plain).trim_start_matches("r#"), secret_at(stringify!($plain).trim_start_matches("r#"), key), at)
                    }),
                    tamper,
                    missing,
                );
            }
        )*
        $(
            mod $timed {
                use super::*;
                conformance_tests!(
                    entry_scheme(stringify!($timed).trim_start_matches("r#"), |key, at| {
                        sign_as_documented(stringify!($timed).trim_start_matches("r#"), secret_at(stringify!($timed).trim_start_matches("r#"), key), at)
                    }),
                    tamper,
                    missing,
                    window,
                    future,
                    override,
                    signature_first,
                );
            }
        )*
    };
}

catalogue_conformance! {
    untimed: airtable, checkout, circleci, coinbase_commerce, docusign, fastspring, gitea, gocardless, gogs, jira,
        launchdarkly, lemonsqueezy, microsoft_teams, modern_treasury, notion, pusher, razorpay,
        sentry, tally, terraform_cloud, trello, webex, woocommerce, xero;
    timed: r#box, brex, calendly, clerk, elevenlabs, frameio, mux, openai, persona, polar, recurly,
        replicate, resend, sanity, webflow, workos, zendesk;
}

#[test]
fn every_entry_has_its_conformance_module() {
    let names: BTreeSet<&str> = ENTRIES.iter().map(|e| e.name).collect();
    let covered: BTreeSet<&str> = COVERED.iter().map(|n| n.trim_start_matches("r#")).collect();
    assert_eq!(
        names, covered,
        "add the entry to catalogue_conformance! in catalogue/tests.rs"
    );
    assert_eq!(COVERED.len(), covered.len(), "an entry listed twice");
    for entry in ENTRIES {
        let timed = match entry.engine {
            Engine::Hmac(spec) => spec.timestamp.is_some(),
            Engine::Standard { .. } => true,
        };
        let built = entry_scheme(entry.name, |_, _| unreachable!("not signed here"));
        assert_eq!(built.timestamps.is_some(), timed, "{}", entry.name);
    }
}

#[test]
fn names_are_unique_and_not_code_providers() {
    let mut seen = BTreeSet::new();
    for entry in ENTRIES {
        assert!(seen.insert(entry.name), "{} twice", entry.name);
        assert_eq!(
            kind(entry.name),
            ProviderKind::Catalogue(CatalogueId::from_name(entry.name).expect("listed"))
        );
        assert!(
            entry.docs.starts_with("https://"),
            "{}: cite the doc or SDK",
            entry.name
        );
        assert!(
            entry.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{}: config names are snake_case",
            entry.name
        );
    }
}

// === fixtures ===

/// `tests/fixtures/catalogue/NAME.json`: one request as the sender sent (or would send) it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// Where the values come from: the published example, or how they were computed.
    source: String,
    /// The secret as the sender shows it.
    secret: String,
    /// `public_url`, for entries that sign one.
    #[serde(default)]
    public_url: Option<String>,
    /// When the request is verified, in Unix seconds.
    now: u64,
    /// The request's headers.
    headers: Vec<(String, String)>,
    /// The body, exactly.
    body: String,
    /// The event id the provider must give.
    event_id: String,
}

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalogue")
}

fn fixture(name: &str) -> Fixture {
    let path = fixtures_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name}: every catalogue entry needs {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_provider(name: &str, fx: &Fixture) -> Arc<dyn Provider> {
    let secrets = [Secret::new(fx.secret.as_str())];
    build(
        CatalogueId::from_name(name).expect("listed"),
        ProviderSettings {
            secrets: &secrets,
            tolerance: None,
            public_url: fx.public_url.as_deref(),
            hmac: None,
            token: None,
            id_header: None,
            challenge: None,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: the fixture's settings: {e}"))
}

fn check(
    p: &dyn Provider,
    headers: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<String, VerifyError> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    verify_at(p, "/hook", &headers, body, now).map(|meta| meta.event_id)
}

#[test]
fn every_fixture_verifies_with_its_event_id() {
    for entry in ENTRIES {
        let fx = fixture(entry.name);
        assert!(!fx.source.is_empty(), "{}: cite the fixture's source", entry.name);
        let p = fixture_provider(entry.name, &fx);
        assert_eq!(
            check(&*p, &fx.headers, fx.body.as_bytes(), fx.now).as_deref(),
            Ok(fx.event_id.as_str()),
            "{}: the fixture",
            entry.name
        );
        let mut tampered = fx.body.clone().into_bytes();
        tampered.push(b' ');
        assert_eq!(
            check(&*p, &fx.headers, &tampered, fx.now),
            Err(VerifyError::SignatureMismatch),
            "{}: the fixture with one more byte",
            entry.name
        );
        let wrong = Fixture {
            secret: another_secret(entry, &fx.secret),
            ..fixture(entry.name)
        };
        let p = fixture_provider(entry.name, &wrong);
        assert_eq!(
            check(&*p, &fx.headers, fx.body.as_bytes(), fx.now),
            Err(VerifyError::SignatureMismatch),
            "{}: the fixture with another secret",
            entry.name
        );
    }
}

/// A secret of the entry's form that differs from `secret` by one byte of key.
fn another_secret(entry: &Entry, secret: &str) -> String {
    let decoded_plus_one = |encoded: &str| {
        let mut key = BASE64.decode(encoded).expect("the fixture's secret is base64");
        // Not a zero byte: HMAC pads short keys with zeros, so `key` and `key + [0]` are one key.
        key.push(1);
        BASE64.encode(key)
    };
    match entry.engine {
        Engine::Hmac(Spec {
            key: KeyForm::Base64, ..
        }) => decoded_plus_one(secret),
        Engine::Standard {
            key: standard::KeyForm::Specified,
            ..
        } => format!(
            "whsec_{}",
            decoded_plus_one(secret.strip_prefix("whsec_").unwrap_or(secret))
        ),
        _ => format!("{secret}x"),
    }
}

#[test]
fn every_fixture_is_an_entry() {
    let names: BTreeSet<&str> = ENTRIES.iter().map(|e| e.name).collect();
    for file in std::fs::read_dir(fixtures_dir()).expect("tests/fixtures/catalogue") {
        let file = file.expect("readable");
        let name = file.file_name().to_string_lossy().into_owned();
        let stem = name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("{name}: not a .json fixture"));
        assert!(names.contains(stem), "{name}: no catalogue entry of that name");
    }
}

// === malformed signatures ===

/// A signature header with its prefix removed, or written in the other encoding, is malformed, never
/// a mismatch that some key might still match.
#[test]
fn wrong_prefix_or_encoding_is_malformed() {
    let mut ran = 0;
    for entry in ENTRIES {
        let Engine::Hmac(spec) = entry.engine else {
            continue;
        };
        let (secrets, _) = keys(entry);
        let signed = sign_as_documented(entry.name, secrets[0], conformance::NOW);
        let p = entry_scheme(entry.name, |_, _| unreachable!())
            .provider(&[secrets[0]], None)
            .expect("valid settings");
        let header = spec.headers[0];
        let value = signed
            .headers
            .iter()
            .find(|(n, _)| *n == header)
            .map(|(_, v)| v.clone())
            .expect("the signature header");
        let lower = intern(&header.to_ascii_lowercase());
        let malformed = Err(VerifyError::MalformedSignature(lower));
        let sig = tag(spec.algorithm, &hmac_key(spec.key, secrets[0]), b"anything");
        let other = match spec.encoding {
            HmacEncoding::Hex => BASE64.encode(&sig),
            HmacEncoding::Base64 | HmacEncoding::Base64Url => hex::encode(&sig),
        };
        let mut bad = vec![format!("{value}!"), String::new()];
        match spec.layout {
            Layout::Single => {
                bad.push(format!("{}{other}", spec.prefix));
                if !spec.prefix.is_empty() {
                    bad.push(value[spec.prefix.len()..].to_owned());
                    let other_case = if spec.prefix.to_uppercase() == spec.prefix {
                        spec.prefix.to_lowercase()
                    } else {
                        spec.prefix.to_uppercase()
                    };
                    bad.push(format!("{other_case}{}", &value[spec.prefix.len()..]));
                }
            }
            Layout::List { .. } => {
                bad.push(format!("{}{other}", spec.prefix));
                bad.push(format!("x{}", spec.prefix));
            }
            Layout::Pairs { signature_key, .. } => {
                bad.push(value.replace(&format!("{signature_key}="), "zz="));
                bad.push(format!("{signature_key}={other}"));
            }
            Layout::TimestampFirst { separator } => {
                bad.push(format!("1700000000{separator}{other}"));
            }
        }
        for value in bad {
            let mut req = signed.clone();
            *req.header_mut(header) = value.clone();
            let headers: Vec<(&str, &str)> = req
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                verify_at(&*p, "/hook", &headers, &req.body, conformance::NOW).map(|m| m.event_id),
                malformed.clone(),
                "{}: {value:?}",
                entry.name
            );
        }
        ran += 1;
    }
    assert!(ran > 0);
}

use crate::providers::conformance;

// === DocuSign's numbered signature headers ===

/// Connect sends one `X-DocuSign-Signature-N` per active key, N up to 100; any of them may carry the
/// configured key's signature, the others (keys not configured here, or not base64) are passed over.
#[test]
fn docusign_accepts_the_configured_key_in_any_numbered_header() {
    let p = entry_scheme("docusign", |_, _| unreachable!())
        .provider(&["docusign-key-configured"], None)
        .expect("valid settings");
    let sig = |key: &str| BASE64.encode(tag(HmacAlgorithm::Sha256, key.as_bytes(), BODY));
    let verify = |headers: &[(&str, String)]| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        verify_at(&*p, "/hook", &headers, BODY, conformance::NOW).map(|m| m.event_id)
    };
    let digest = crate::providers::body_digest_id(BODY);
    let ours = sig("docusign-key-configured");
    let theirs = sig("docusign-key-of-another-listener");
    for headers in [
        vec![("X-DocuSign-Signature-1", ours.clone())],
        vec![
            ("X-DocuSign-Signature-1", theirs.clone()),
            ("X-DocuSign-Signature-2", ours.clone()),
        ],
        vec![("X-DocuSign-Signature-37", ours.clone())],
        vec![("X-DocuSign-Signature-100", ours.clone())],
        vec![
            ("X-DocuSign-Signature-1", "not base64!".to_owned()),
            ("X-DocuSign-Signature-2", ours.clone()),
        ],
    ] {
        assert_eq!(verify(&headers).as_deref(), Ok(digest.as_str()), "{headers:?}");
    }
    assert_eq!(
        verify(&[
            ("X-DocuSign-Signature-1", theirs.clone()),
            ("X-DocuSign-Signature-2", theirs),
        ]),
        Err(VerifyError::SignatureMismatch)
    );
    // Past DocuSign's 100 keys there is no header to read.
    assert_eq!(
        verify(&[("X-DocuSign-Signature-101", ours)]),
        Err(VerifyError::MissingSignature("x-docusign-signature-1"))
    );
}

// === Box's two keys and its delivery id ===

/// Box's SDK vector (the fixture) carries one signature per key: it verifies under the secondary key
/// alone, under both keys, and not under the SDK's `IncorrectKey`.
#[test]
fn box_sdk_vector_verifies_under_either_key() {
    let fx = fixture("box");
    let now = fx.now;
    let headers = fx.headers.clone();
    let body = fx.body.clone();
    let provider = |secrets: &[&str]| {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        build(
            CatalogueId::from_name("box").expect("listed"),
            ProviderSettings {
                secrets: &secrets,
                tolerance: None,
                public_url: None,
                hmac: None,
                token: None,
                id_header: None,
                challenge: None,
            },
        )
        .expect("valid settings")
    };
    for secrets in [
        &["SampleSecondaryKey"][..],
        &["SamplePrimaryKey", "SampleSecondaryKey"],
        &["IncorrectKey", "SampleSecondaryKey"],
    ] {
        assert_eq!(
            check(&*provider(secrets), &headers, body.as_bytes(), now).as_deref(),
            Ok(fx.event_id.as_str()),
            "{secrets:?}"
        );
    }
    assert_eq!(
        check(&*provider(&["IncorrectKey"]), &headers, body.as_bytes(), now),
        Err(VerifyError::SignatureMismatch)
    );
}

/// A retry has a new `BOX-DELIVERY-ID` and the same body: the event id is the body's `id`, so the
/// retry is the same event.
#[test]
fn box_retries_keep_the_body_id() {
    let scheme = entry_scheme("box", |_, _| unreachable!());
    let p = scheme
        .provider(&[secret_at("box", 0)], None)
        .expect("valid settings");
    let signed = sign_as_documented("box", secret_at("box", 0), conformance::NOW);
    for delivery in [
        "f96bb54b-ee16-4fc5-aa65-8c2d9e5b546f",
        "0b7e3c1a-5d2f-4e8a-9c6b-1a2b3c4d5e6f",
    ] {
        let mut headers: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.push(("BOX-DELIVERY-ID", delivery));
        assert_eq!(
            verify_at(&*p, "/hook", &headers, &signed.body, conformance::NOW).map(|m| m.event_id),
            Ok("evt_body".to_owned()),
            "{delivery}"
        );
    }
}
