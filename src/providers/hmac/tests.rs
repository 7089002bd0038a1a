use serde::Deserialize;

use super::*;
use crate::providers::test_support::verify;

#[derive(Deserialize)]
struct Rfc {
    key: String,
    data: String,
    sha1: String,
    sha256: String,
    sha512: String,
}

fn rfc() -> Rfc {
    serde_json::from_str(include_str!("../../../tests/fixtures/hmac.json")).expect("valid fixture")
}

const NOW: u64 = 1_700_000_000;

/// A scheme from TOML, as the config loader reads it.
fn scheme(toml_table: &str) -> HmacScheme {
    toml::from_str(toml_table).expect("valid [sources.hmac] table")
}

fn try_build(
    scheme: &HmacScheme,
    secrets: &[&str],
    tolerance: Option<Duration>,
) -> Result<GenericHmac, ProviderConfigError> {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    GenericHmac::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance,
        public_url: None,
        hmac: Some(scheme),
        token: None,
        id_header: None,
        challenge: None,
    })
}

fn build(scheme: &HmacScheme, secrets: &[&str]) -> GenericHmac {
    try_build(scheme, secrets, None).expect("valid settings")
}

fn signed_error(template: &str) -> String {
    let s = HmacScheme {
        signed: template.to_owned(),
        ..scheme("header = \"X-Sig\"")
    };
    match try_build(&s, &["k"], None) {
        Err(ProviderConfigError::Setting {
            key: "hmac.signed",
            message,
        }) => message,
        other => panic!("expected an hmac.signed error for {template:?}, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let s = scheme("header = \"X-Sig\"");
    assert_eq!(
        s,
        HmacScheme {
            header: "X-Sig".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: HmacEncoding::Hex,
            prefix: String::new(),
            signed: "{body}".into(),
            timestamp_header: None,
            id_header: None,
        }
    );
}

#[test]
fn unknown_fields_and_values_are_rejected() {
    assert!(toml::from_str::<HmacScheme>("header = \"X\"\nheaders = \"Y\"").is_err());
    assert!(toml::from_str::<HmacScheme>("header = \"X\"\nalgorithm = \"md5\"").is_err());
    assert!(toml::from_str::<HmacScheme>("header = \"X\"\nencoding = \"base32\"").is_err());
    assert!(
        toml::from_str::<HmacScheme>("algorithm = \"sha1\"").is_err(),
        "header is required"
    );
}

#[test]
fn rfc_vectors_for_every_algorithm_and_encoding() {
    let v = rfc();
    for (algorithm, hex_tag) in [("sha1", &v.sha1), ("sha256", &v.sha256), ("sha512", &v.sha512)] {
        let tag = hex::decode(hex_tag).expect("hex");
        for (encoding, encoded) in [
            ("hex", hex_tag.clone()),
            ("hex", hex_tag.to_uppercase()),
            ("base64", BASE64.encode(&tag)),
        ] {
            let s = scheme(&format!(
                "header = \"X-Sig\"\nalgorithm = \"{algorithm}\"\nencoding = \"{encoding}\"\nprefix = \"{algorithm}=\""
            ));
            let p = build(&s, &[&v.key]);
            let header = format!("{algorithm}={encoded}");
            let meta = verify(&p, &[("X-Sig", &header)], v.data.as_bytes(), NOW)
                .unwrap_or_else(|e| panic!("{algorithm}/{encoding}: {e}"));
            assert_eq!(meta.event_id, body_digest_id(v.data.as_bytes()));
            let got = verify(&p, &[("X-Sig", &header)], b"what do ya want for something?", NOW);
            assert_eq!(got, Err(VerifyError::SignatureMismatch), "{algorithm}/{encoding}");
        }
    }
}

#[test]
fn sha512_base64_published_form() {
    // RFC 4231 test case 2, base64-encoded (python3 base64.b64encode of the RFC's hex).
    let v = rfc();
    let s = scheme("header = \"X-Sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"");
    let p = build(&s, &[&v.key]);
    let b64 = "Fkt6e/z4GeLjlfvnO1bgo4e9ZCIugx/WECcM1+olBVSXWL91wFqZSm0DT2X48Ob9yuqxo01Ka0tjbgcKOLznNw==";
    verify(&p, &[("x-sig", b64)], v.data.as_bytes(), NOW).expect("valid");
}

#[test]
fn wrong_secret_mismatch_and_rotated_secret_matches() {
    let v = rfc();
    let s = scheme("header = \"X-Sig\"");
    let p = build(&s, &["not jefe"]);
    assert_eq!(
        verify(&p, &[("X-Sig", &v.sha256)], v.data.as_bytes(), NOW),
        Err(VerifyError::SignatureMismatch)
    );
    let p = build(&s, &["not jefe", &v.key]);
    verify(&p, &[("X-Sig", &v.sha256)], v.data.as_bytes(), NOW).expect("second secret matches");
}

#[test]
fn missing_and_malformed_signatures() {
    let v = rfc();
    let s = scheme("header = \"X-Sig\"\nprefix = \"sha256=\"");
    let p = build(&s, &[&v.key]);
    assert_eq!(
        verify(&p, &[], b"", NOW),
        Err(VerifyError::MissingSignature("x-sig"))
    );
    let b64 = BASE64.encode(hex::decode(&v.sha256).expect("hex"));
    for bad in [
        v.sha256.clone(),                            // no prefix
        format!("SHA256={}", v.sha256),              // prefix is case-sensitive
        format!("sha256={b64}"),                     // base64 where hex is configured
        format!("sha256={}", &v.sha256[..62]),       // short
        format!("sha256={}", v.sha1),                // SHA-1 length
        format!("sha256={},{}", v.sha256, v.sha256), // one signature only
    ] {
        let got = verify(&p, &[("X-Sig", &bad)], v.data.as_bytes(), NOW);
        assert_eq!(got, Err(VerifyError::MalformedSignature("x-sig")), "{bad}");
    }
    let s = scheme("header = \"X-Sig\"\nencoding = \"base64\"");
    let p = build(&s, &[&v.key]);
    let got = verify(&p, &[("X-Sig", &v.sha256)], v.data.as_bytes(), NOW);
    assert_eq!(
        got,
        Err(VerifyError::MalformedSignature("x-sig")),
        "hex where base64 is configured"
    );
}

#[test]
fn template_with_header_tokens() {
    // Expected tags computed with python3 hmac.new(b"shh", <message>, hashlib.sha256).hexdigest().
    let body = br#"{"a":1}"#;
    let s = scheme(
        "header = \"X-Sig\"\nsigned = \"{header:X-Timestamp}.{body}\"\ntimestamp_header = \"X-Timestamp\"",
    );
    let p = build(&s, &["shh"]);
    let sig = "be310eac0f84daf469d630347a950258de768b365563ab68f29f2f783473d547";
    verify(&p, &[("X-Sig", sig), ("X-Timestamp", "1700000000")], body, NOW).expect("valid");
    let got = verify(&p, &[("X-Sig", sig), ("X-Timestamp", "1700000001")], body, NOW);
    assert_eq!(
        got,
        Err(VerifyError::SignatureMismatch),
        "the timestamp is signed"
    );
    let got = verify(&p, &[("X-Sig", sig)], body, NOW);
    assert_eq!(got, Err(VerifyError::MissingHeader("x-timestamp")));

    let s = scheme(
        "header = \"X-Sig\"\nsigned = \"POST|{header:x-timestamp}|{header:X-Delivery}|{body}\"\nid_header = \"X-Delivery\"",
    );
    let p = build(&s, &["shh"]);
    let sig = "357b25b061867c8171388712d28aed823e42d54ffa4ec2100e2b98882f34e703";
    let meta = verify(
        &p,
        &[
            ("X-Sig", sig),
            ("X-Timestamp", "1700000000"),
            ("X-Delivery", "d-1"),
        ],
        body,
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.event_id, "d-1");
}

#[test]
fn escaped_braces_are_literal() {
    let s = scheme("header = \"X-Sig\"\nsigned = \"{{{body}}}\"");
    let p = build(&s, &["k"]);
    assert_eq!(p.signed, [Part::Literal("{"), Part::Body, Part::Literal("}")]);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").expect("any key");
    mac.update(b"{x}");
    let sig = hex::encode(mac.finalize().into_bytes());
    verify(&p, &[("X-Sig", &sig)], b"x", NOW).expect("valid");
}

#[test]
fn timestamp_window_is_two_sided_and_overridable() {
    let body = br#"{"a":1}"#;
    let sig = "be310eac0f84daf469d630347a950258de768b365563ab68f29f2f783473d547";
    let s = scheme(
        "header = \"X-Sig\"\nsigned = \"{header:X-Timestamp}.{body}\"\ntimestamp_header = \"X-Timestamp\"",
    );
    let headers = [("X-Sig", sig), ("X-Timestamp", "1700000000")];
    let p = build(&s, &["shh"]);
    verify(&p, &headers, body, NOW + 300).expect("5 minutes old");
    verify(&p, &headers, body, NOW - 300).expect("5 minutes ahead");
    assert_eq!(
        verify(&p, &headers, body, NOW + 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 301 })
    );
    assert_eq!(
        verify(&p, &headers, body, NOW - 301),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: -301 })
    );

    let p = try_build(&s, &["shh"], Some(Duration::from_secs(30))).expect("valid");
    assert_eq!(
        verify(&p, &headers, body, NOW + 31),
        Err(VerifyError::TimestampOutsideTolerance { age_secs: 31 })
    );

    let got = verify(&p, &[("X-Sig", sig), ("X-Timestamp", "2023-11-14")], body, NOW);
    assert_eq!(got, Err(VerifyError::MalformedTimestamp("x-timestamp")));
}

#[test]
fn event_id_falls_back_to_the_body_digest() {
    let v = rfc();
    let s = scheme("header = \"X-Sig\"\nid_header = \"X-Delivery\"");
    let p = build(&s, &[&v.key]);
    let meta = verify(&p, &[("X-Sig", &v.sha256)], v.data.as_bytes(), NOW).expect("valid");
    assert_eq!(meta.event_id, body_digest_id(v.data.as_bytes()));
    let meta = verify(
        &p,
        &[("X-Sig", &v.sha256), ("X-Delivery", "abc")],
        v.data.as_bytes(),
        NOW,
    )
    .expect("valid");
    assert_eq!(meta.event_id, "abc");
}

#[test]
fn bad_templates_are_rejected_with_exact_messages() {
    assert_eq!(
        signed_error("{timestamp}.{body}"),
        "unknown token \"{timestamp}\"; expected \"{body}\" or \"{header:Name}\""
    );
    assert_eq!(
        signed_error("{header:X Timestamp}.{body}"),
        "\"{header:X Timestamp}\" does not name a valid header; expected a token such as \"{header:X-Timestamp}\""
    );
    assert_eq!(
        signed_error("{header:}.{body}"),
        "\"{header:}\" does not name a valid header; expected a token such as \"{header:X-Timestamp}\""
    );
    assert_eq!(
        signed_error("{body"),
        "unclosed \"{\" at byte 0; expected \"{body}\" or \"{header:Name}\", or \"{{\" for a literal \"{\""
    );
    assert_eq!(
        signed_error("x.{bo{body}"),
        "unclosed \"{\" at byte 2; expected \"{body}\" or \"{header:Name}\", or \"{{\" for a literal \"{\""
    );
    assert_eq!(
        signed_error("{body}}"),
        "unmatched \"}\" at byte 6; write \"}}\" for a literal \"}\""
    );
    let no_body =
        "does not contain \"{body}\"; expected a template that signs the body, such as \"{body}\" or \
                   \"{header:X-Timestamp}.{body}\"";
    assert_eq!(signed_error("{header:X-Timestamp}"), no_body);
    assert_eq!(signed_error(""), no_body);
    assert_eq!(
        signed_error("{{body}}"),
        no_body,
        "escaped braces are literal text"
    );
}

#[test]
fn bad_header_names_are_rejected() {
    let cases = [
        (
            "header = \"X Sig\"",
            "hmac.header",
            "\"X Sig\" is not a valid header name; expected a name such as \"X-Signature\"",
        ),
        (
            "header = \"\"",
            "hmac.header",
            "\"\" is not a valid header name; expected a name such as \"X-Signature\"",
        ),
        (
            "header = \"X-Sig\"\ntimestamp_header = \"X:Ts\"",
            "hmac.timestamp_header",
            "\"X:Ts\" is not a valid header name; expected a name such as \"X-Signature\"",
        ),
        (
            "header = \"X-Sig\"\nid_header = \"é\"",
            "hmac.id_header",
            "\"é\" is not a valid header name; expected a name such as \"X-Signature\"",
        ),
    ];
    for (table, key, message) in cases {
        let err = try_build(&scheme(table), &["k"], None).err();
        assert_eq!(
            err,
            Some(ProviderConfigError::Setting {
                key,
                message: message.into()
            }),
            "{table}"
        );
    }
}

#[test]
fn hmac_table_is_required() {
    let secrets = [Secret::new("k")];
    let err = GenericHmac::try_new(ProviderSettings {
        secrets: &secrets,
        tolerance: None,
        public_url: None,
        hmac: None,
        token: None,
        id_header: None,
        challenge: None,
    });
    assert_eq!(
        err.err(),
        Some(ProviderConfigError::Setting {
            key: "hmac",
            message: "a [sources.hmac] table is required with provider = \"hmac\"".into()
        })
    );
}

#[test]
fn header_names_are_interned_once() {
    let a = intern("x-interned-test");
    let b = intern(&String::from("x-interned-test"));
    assert!(std::ptr::eq(a, b));
}

#[test]
fn debug_is_redacted() {
    let s = scheme("header = \"X-Sig\"");
    let p = build(&s, &["hunter2", "hunter3"]);
    let shown = format!("{p:?}");
    assert!(
        shown.starts_with("GenericHmac { name: \"hmac\", secrets: [redacted; 2], headers: [\"x-sig\"]"),
        "{shown}"
    );
    assert!(!shown.contains("hunter"), "{shown}");
}
